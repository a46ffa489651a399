package grub2

import (
	"fmt"
	"slices"
	"strings"
)

// grubHome is where GRUB's files are, as GRUB sees the filesystem it
// searches for: /boot/grub on the root filesystem, /grub on a separate
// boot filesystem. kernelDir is the same for the kernels.
func (s *settings) grubHome() string { return s.kernelDir() + "/grub" }

func (s *settings) kernelDir() string {
	if s.boot != nil {
		return ""
	}
	return "/boot"
}

// grubFS is the filesystem holding /boot.
func (s *settings) grubFS() fsID {
	if s.boot != nil {
		return *s.boot
	}
	return s.root
}

// useSavedEntry says whether grub.cfg boots grubenv's saved_entry, which
// osbuild's saved_entry option and GRUB_DEFAULT=saved ask for.
func (s *settings) useSavedEntry() bool {
	return s.savedEntry != "" || s.defaultEntry == "saved"
}

// grubCfg is the main configuration file, at cfgPath in the tree.
func (s *settings) grubCfg(cfgPath string, kernels []kernel) string {
	var b strings.Builder
	w := func(format string, a ...any) { fmt.Fprintf(&b, format, a...) }
	search := "search --no-floppy --set=root " + s.grubFS().searchArgs()
	w("# /%s, written by forge's org.osbuild.grub2 stage for the kernels\n", cfgPath)
	w("# in /boot. update-grub writes it anew from /etc/default/grub.\n\n")
	w("set timeout=%d\n", s.timeout)
	if s.timeoutStyle != "" {
		w("set timeout_style=%s\n", s.timeoutStyle)
	}
	w("%s\n", search)
	w("set grubenv=($root)%s/grubenv\n", s.grubHome())
	w("if [ -s $grubenv ]; then\n\tload_env --file $grubenv\nfi\n")
	def := s.defaultEntry
	if def == "saved" {
		def = "0"
	}
	w("set default=\"%s\"\n", def)
	// grub-reboot's next_entry boots once, then is cleared.
	w("if [ \"${next_entry}\" ]; then\n\tset default=\"${next_entry}\"\n\tset next_entry=\n\tsave_env --file $grubenv next_entry\n")
	if s.useSavedEntry() {
		w("elif [ \"${saved_entry}\" ]; then\n\tset default=\"${saved_entry}\"\n")
	}
	w("fi\n")
	if s.greenboot {
		w("\n# greenboot: count boot attempts down, fall back to entry 1 when\n")
		w("# they are used up, until userspace reports a successful boot.\n")
		w("insmod increment\n")
		w("if [ -n \"${boot_counter}\" -a \"${boot_success}\" = \"0\" ]; then\n")
		w("\tif [ \"${boot_counter}\" = \"0\" -o \"${boot_counter}\" = \"-1\" ]; then\n")
		w("\t\tset default=1\n\t\tset boot_counter=-1\n\telse\n\t\tdecrement boot_counter\n\tfi\n")
		w("\tsave_env --file $grubenv boot_counter\nfi\n")
		w("set boot_success=0\nsave_env --file $grubenv boot_success\n")
	}
	if s.ignition {
		flag := "($root)" + s.kernelDir() + "/ignition.firstboot"
		w("\n# Ignition: a first boot while %s exists.\n", flag)
		w("set ignition_firstboot=\"\"\n")
		w("if [ -f \"%s\" ]; then\n", flag)
		w("\tset ignition_network_kcmdline=\"\"\n")
		w("\tsource \"%s\"\n", flag)
		w("\tset ignition_firstboot=\"ignition.firstboot ${ignition_network_kcmdline}\"\n")
		w("fi\n")
	}
	if s.serial != "" || len(s.terminalInput) > 0 || len(s.terminalOutput) > 0 {
		w("\n")
	}
	if s.serial != "" {
		w("%s\n", s.serial)
	}
	if slices.Contains(s.terminalOutput, "gfxterm") {
		w("if loadfont ($root)%s/fonts/unicode.pf2; then\n\tset gfxmode=auto\n\tinsmod all_video\n\tinsmod gfxterm\nfi\n", s.grubHome())
	}
	if len(s.terminalInput) > 0 {
		w("terminal_input %s\n", strings.Join(s.terminalInput, " "))
	}
	if len(s.terminalOutput) > 0 {
		w("terminal_output %s\n", strings.Join(s.terminalOutput, " "))
	}
	w("\n")

	// Debian's grub-mkconfig layout and entry IDs, so grub-reboot and
	// grub-set-default work with the same names on the booted system.
	osName := s.distributor + " GNU/Linux"
	classes := "--class gnu-linux --class gnu --class os"
	if c := osClass(s.distributor); c != "" {
		classes = "--class " + c + " " + classes
	}
	id := s.root.value
	entry := func(indent, title, entryID string, k kernel, recovery bool) {
		cmdline := "root=" + s.root.kernelSpec() + " ro"
		if recovery {
			cmdline += " single"
		}
		if s.kernelOpts != "" {
			cmdline += " " + grubQuoteArgs(s.kernelOpts)
		}
		if s.ignition {
			cmdline += " $ignition_firstboot"
		}
		w("%smenuentry '%s' %s --id '%s' {\n", indent, title, classes, entryID)
		w("%s\t%s\n", indent, search)
		w("%s\tlinux\t%s/%s %s\n", indent, s.kernelDir(), k.linux, cmdline)
		w("%s\tinitrd\t%s/%s\n", indent, s.kernelDir(), k.initrd)
		w("%s}\n", indent)
	}
	entry("", osName, "gnulinux-simple-"+id, kernels[0], false)
	indent := ""
	if s.submenu {
		w("submenu 'Advanced options for %s' --id 'gnulinux-advanced-%s' {\n", osName, id)
		indent = "\t"
	}
	for _, k := range kernels {
		title := osName + ", with Linux " + k.version
		entry(indent, title, "gnulinux-"+k.version+"-advanced-"+id, k, false)
		if s.recovery {
			entry(indent, title+" (recovery mode)", "gnulinux-"+k.version+"-recovery-"+id, k, true)
		}
	}
	if s.submenu {
		w("}\n")
	}
	return b.String()
}

// grubQuoteArgs quotes, for GRUB's script parser, each word of a kernel
// command line that has a character the parser would act on (';', '$',
// quotes, braces...), so the kernel gets the words as written: GRUB's
// linux command joins its arguments with spaces, which makes
// 'acpi_osi="Windows' '2020"' the kernel's acpi_osi="Windows 2020".
func grubQuoteArgs(opts string) string {
	words := strings.Fields(opts)
	for i, w := range words {
		if strings.IndexFunc(w, func(c rune) bool {
			return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_-=,.:/+@%", c))
		}) >= 0 {
			words[i] = "'" + strings.ReplaceAll(w, "'", `'\''`) + "'"
		}
	}
	return strings.Join(words, " ")
}

// osClass is the menu entry class of a distributor, as grub-mkconfig
// makes it: its first word in lower case ("debian").
func osClass(distributor string) string {
	f := strings.Fields(strings.ToLower(distributor))
	if len(f) == 0 {
		return ""
	}
	for _, c := range f[0] {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return ""
		}
	}
	return f[0]
}

// redirectCfg hands over from the EFI system partition to the main
// grub.cfg, as Debian's grub-install writes it there.
func (s *settings) redirectCfg(cfgPath string) string {
	return fmt.Sprintf("# /%s, written by forge's org.osbuild.grub2 stage:\n"+
		"# the configuration is %s/grub.cfg on the boot filesystem.\n"+
		"search --no-floppy --set=root %s\n"+
		"set prefix=($root)%s\n"+
		"configfile $prefix/grub.cfg\n", cfgPath, s.grubHome(), s.grubFS().searchArgs(), s.grubHome())
}

// grubenvSize is the size of GRUB's environment block, padded with '#'.
const grubenvSize = 1024

// grubenv is /boot/grub/grubenv: osbuild's kernelopts (the command line,
// which Debian's grub.cfg does not read but tools may) and saved_entry.
func (s *settings) grubenv() (string, error) {
	data := "# GRUB Environment Block\n"
	if s.writeCmdline {
		data += "kernelopts=" + strings.TrimSpace("root="+s.root.kernelSpec()+" "+s.kernelOpts) + "\n"
	}
	if s.savedEntry != "" {
		data += "saved_entry=" + s.savedEntry + "\n"
	}
	if len(data) > grubenvSize {
		return "", fmt.Errorf("grubenv would be %d bytes, more than GRUB's %d (kernel_opts or saved_entry is too long)", len(data), grubenvSize)
	}
	return data + strings.Repeat("#", grubenvSize-len(data)), nil
}

// defaults is /etc/default/grub: the settings in the form Debian's
// grub-mkconfig reads, so update-grub on the booted system makes a
// grub.cfg like this stage's. The kernel options are GRUB_CMDLINE_LINUX,
// and GRUB_CMDLINE_LINUX_DEFAULT is emptied (Debian's is "quiet"), so the
// command line stays what the options say.
func (s *settings) defaults() string {
	var b strings.Builder
	set := func(name, value string) { fmt.Fprintf(&b, "%s=%s\n", name, shellQuote(value)) }
	b.WriteString("# /etc/default/grub, written by forge's org.osbuild.grub2 stage;\n")
	b.WriteString("# update-grub reads it. See info -f grub -n 'Simple configuration'.\n")
	set("GRUB_DEFAULT", s.defaultEntry)
	set("GRUB_TIMEOUT", fmt.Sprint(s.timeout))
	if s.timeoutStyle != "" {
		set("GRUB_TIMEOUT_STYLE", s.timeoutStyle)
	}
	set("GRUB_DISTRIBUTOR", s.distributor)
	set("GRUB_CMDLINE_LINUX_DEFAULT", "")
	set("GRUB_CMDLINE_LINUX", s.kernelOpts)
	if len(s.terminalInput) > 0 {
		set("GRUB_TERMINAL_INPUT", strings.Join(s.terminalInput, " "))
	}
	if len(s.terminalOutput) > 0 {
		set("GRUB_TERMINAL_OUTPUT", strings.Join(s.terminalOutput, " "))
	}
	if s.serial != "" {
		set("GRUB_SERIAL_COMMAND", s.serial)
	}
	if !s.recovery {
		set("GRUB_DISABLE_RECOVERY", "true")
	}
	if !s.submenu {
		set("GRUB_DISABLE_SUBMENU", "y")
	}
	return b.String()
}

// shellQuote quotes s for a shell: /etc/default/grub is sourced.
func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(c rune) bool {
		return !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("_-.,/:=+@%", c))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
