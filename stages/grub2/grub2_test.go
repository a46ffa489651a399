package grub2

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

const rootUUID = "76a22bf4-f153-4541-b6c7-0332c0dfaeac"

// kernelTree makes a tree with two Debian kernels and their initramfs
// images, the older one listed first by name.
func kernelTree(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	boot := filepath.Join(tree, "boot")
	must(t, os.MkdirAll(boot, 0o755))
	for _, f := range []string{"vmlinuz-6.1.0-13-amd64", "initrd.img-6.1.0-13-amd64", "vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64", "config-6.1.0-9-amd64"} {
		must(t, os.WriteFile(filepath.Join(boot, f), []byte(f), 0o644))
	}
	return tree
}

// scriptCheck runs GRUB's own parser, grub-script-check, on a grub.cfg
// the stage wrote, when there is one and GRUB's tools are installed.
func scriptCheck(t *testing.T, cfg string) {
	t.Helper()
	check, err := exec.LookPath("grub-script-check")
	if err != nil {
		return
	}
	if _, err := os.Stat(cfg); err != nil {
		return
	}
	if out, err := exec.Command(check, cfg).CombinedOutput(); err != nil {
		t.Errorf("grub-script-check %s: %v\n%s", cfg, err, out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// What a BIOS image with a serial console gets, in full.
func TestTwoKernelsSerial(t *testing.T) {
	tree := kernelTree(t)
	opts := `{"root_fs_uuid": "` + rootUUID + `", "kernel_opts": "console=ttyS0,115200n8 console=tty0",
	  "config": {"timeout": 5, "serial": "serial --unit=0 --speed=115200", "terminal_input": ["serial", "console"], "terminal_output": ["serial", "console"]}}`
	if err := run(stage.Args{Tree: tree, Options: json.RawMessage(opts)}, t.TempDir()); err != nil {
		t.Fatal(err)
	}
	want := `# /boot/grub/grub.cfg, written by forge's org.osbuild.grub2 stage for the kernels
# in /boot. update-grub writes it anew from /etc/default/grub.

set timeout=5
search --no-floppy --set=root --fs-uuid 76a22bf4-f153-4541-b6c7-0332c0dfaeac
set grubenv=($root)/boot/grub/grubenv
if [ -s $grubenv ]; then
	load_env --file $grubenv
fi
set default="0"
if [ "${next_entry}" ]; then
	set default="${next_entry}"
	set next_entry=
	save_env --file $grubenv next_entry
fi

serial --unit=0 --speed=115200
terminal_input serial console
terminal_output serial console

menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os --id 'gnulinux-simple-76a22bf4-f153-4541-b6c7-0332c0dfaeac' {
	search --no-floppy --set=root --fs-uuid 76a22bf4-f153-4541-b6c7-0332c0dfaeac
	linux	/boot/vmlinuz-6.1.0-13-amd64 root=UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac ro console=ttyS0,115200n8 console=tty0
	initrd	/boot/initrd.img-6.1.0-13-amd64
}
submenu 'Advanced options for Debian GNU/Linux' --id 'gnulinux-advanced-76a22bf4-f153-4541-b6c7-0332c0dfaeac' {
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-13-amd64' --class debian --class gnu-linux --class gnu --class os --id 'gnulinux-6.1.0-13-amd64-advanced-76a22bf4-f153-4541-b6c7-0332c0dfaeac' {
		search --no-floppy --set=root --fs-uuid 76a22bf4-f153-4541-b6c7-0332c0dfaeac
		linux	/boot/vmlinuz-6.1.0-13-amd64 root=UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac ro console=ttyS0,115200n8 console=tty0
		initrd	/boot/initrd.img-6.1.0-13-amd64
	}
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-13-amd64 (recovery mode)' --class debian --class gnu-linux --class gnu --class os --id 'gnulinux-6.1.0-13-amd64-recovery-76a22bf4-f153-4541-b6c7-0332c0dfaeac' {
		search --no-floppy --set=root --fs-uuid 76a22bf4-f153-4541-b6c7-0332c0dfaeac
		linux	/boot/vmlinuz-6.1.0-13-amd64 root=UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac ro single console=ttyS0,115200n8 console=tty0
		initrd	/boot/initrd.img-6.1.0-13-amd64
	}
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-9-amd64' --class debian --class gnu-linux --class gnu --class os --id 'gnulinux-6.1.0-9-amd64-advanced-76a22bf4-f153-4541-b6c7-0332c0dfaeac' {
		search --no-floppy --set=root --fs-uuid 76a22bf4-f153-4541-b6c7-0332c0dfaeac
		linux	/boot/vmlinuz-6.1.0-9-amd64 root=UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac ro console=ttyS0,115200n8 console=tty0
		initrd	/boot/initrd.img-6.1.0-9-amd64
	}
	menuentry 'Debian GNU/Linux, with Linux 6.1.0-9-amd64 (recovery mode)' --class debian --class gnu-linux --class gnu --class os --id 'gnulinux-6.1.0-9-amd64-recovery-76a22bf4-f153-4541-b6c7-0332c0dfaeac' {
		search --no-floppy --set=root --fs-uuid 76a22bf4-f153-4541-b6c7-0332c0dfaeac
		linux	/boot/vmlinuz-6.1.0-9-amd64 root=UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac ro single console=ttyS0,115200n8 console=tty0
		initrd	/boot/initrd.img-6.1.0-9-amd64
	}
}
`
	scriptCheck(t, filepath.Join(tree, "boot/grub/grub.cfg"))
	if got := read(t, filepath.Join(tree, "boot/grub/grub.cfg")); got != want {
		t.Errorf("grub.cfg:\n%s\nwant:\n%s", got, want)
	}
	wantDefaults := `# /etc/default/grub, written by forge's org.osbuild.grub2 stage;
# update-grub reads it. See info -f grub -n 'Simple configuration'.
GRUB_DEFAULT=0
GRUB_TIMEOUT=5
GRUB_DISTRIBUTOR=Debian
GRUB_CMDLINE_LINUX_DEFAULT=''
GRUB_CMDLINE_LINUX='console=ttyS0,115200n8 console=tty0'
GRUB_TERMINAL_INPUT='serial console'
GRUB_TERMINAL_OUTPUT='serial console'
GRUB_SERIAL_COMMAND='serial --unit=0 --speed=115200'
`
	if got := read(t, filepath.Join(tree, "etc/default/grub")); got != wantDefaults {
		t.Errorf("/etc/default/grub:\n%s\nwant:\n%s", got, wantDefaults)
	}
	env := read(t, filepath.Join(tree, "boot/grub/grubenv"))
	wantEnv := "# GRUB Environment Block\nkernelopts=root=UUID=" + rootUUID + " console=ttyS0,115200n8 console=tty0\n"
	if len(env) != 1024 || !strings.HasPrefix(env, wantEnv) || strings.Trim(env[len(wantEnv):], "#") != "" {
		t.Errorf("grubenv (%d bytes) = %q, want %q padded with '#' to 1024 bytes", len(env), env, wantEnv)
	}
	for f, mode := range map[string]os.FileMode{"boot/grub/grub.cfg": 0o444, "boot/grub/grubenv": 0o644, "etc/default/grub": 0o644} {
		fi, err := os.Lstat(filepath.Join(tree, f))
		must(t, err)
		if fi.Mode() != mode {
			t.Errorf("/%s: mode %v, want %v", f, fi.Mode(), mode)
		}
	}
	if _, err := os.Stat(filepath.Join(tree, "boot/grub/i386-pc")); !os.IsNotExist(err) {
		t.Errorf("without legacy, /boot/grub/i386-pc exists (%v)", err)
	}
}

// Variations, each checked by the lines it must and must not have.
func TestConfigVariants(t *testing.T) {
	tests := []struct {
		name    string
		options string
		file    string   // the file checked, relative to the tree
		has     []string // lines it must hold
		hasNot  []string // substrings it must not hold
	}{
		{"separate boot", `{"root_fs_uuid": "` + rootUUID + `", "boot_fs_uuid": "6699-AFB5"}`, "boot/grub/grub.cfg",
			[]string{"search --no-floppy --set=root --fs-uuid 6699-AFB5", "set grubenv=($root)/grub/grubenv",
				"\tlinux\t/vmlinuz-6.1.0-13-amd64 root=UUID=" + rootUUID + " ro", "\tinitrd\t/initrd.img-6.1.0-13-amd64"},
			[]string{"/boot/vmlinuz", "--fs-uuid " + rootUUID}},
		{"labels", `{"rootfs": {"label": "root"}, "bootfs": {"label": "boot"}}`, "boot/grub/grub.cfg",
			[]string{"search --no-floppy --set=root --label 'boot'", "\tlinux\t/vmlinuz-6.1.0-13-amd64 root=LABEL=root ro",
				"menuentry 'Debian GNU/Linux' --class debian --class gnu-linux --class gnu --class os --id 'gnulinux-simple-root' {"}, nil},
		{"no submenu, no recovery", `{"root_fs_uuid": "` + rootUUID + `", "config": {"disable_submenu": true, "disable_recovery": true, "distributor": "Forge OS"}}`, "boot/grub/grub.cfg",
			[]string{"menuentry 'Forge OS GNU/Linux' --class forge --class gnu-linux --class gnu --class os --id 'gnulinux-simple-" + rootUUID + "' {",
				"menuentry 'Forge OS GNU/Linux, with Linux 6.1.0-9-amd64' --class forge --class gnu-linux --class gnu --class os --id 'gnulinux-6.1.0-9-amd64-advanced-" + rootUUID + "' {"},
			[]string{"submenu", "recovery", "\t\t"}},
		{"defaults file for those", `{"root_fs_uuid": "` + rootUUID + `", "config": {"disable_submenu": true, "disable_recovery": true, "distributor": "Forge OS", "default": "saved", "timeout_style": "hidden"}}`, "etc/default/grub",
			[]string{"GRUB_DISABLE_SUBMENU=y", "GRUB_DISABLE_RECOVERY=true", "GRUB_DISTRIBUTOR='Forge OS'", "GRUB_DEFAULT=saved", "GRUB_TIMEOUT=0", "GRUB_TIMEOUT_STYLE=hidden"}, nil},
		{"saved default", `{"root_fs_uuid": "` + rootUUID + `", "config": {"default": "saved", "timeout_style": "countdown"}}`, "boot/grub/grub.cfg",
			[]string{"set default=\"0\"", "elif [ \"${saved_entry}\" ]; then", "set timeout_style=countdown"}, nil},
		{"saved entry", `{"root_fs_uuid": "` + rootUUID + `", "saved_entry": "gnulinux-6.1.0-9-amd64-advanced-` + rootUUID + `", "write_cmdline": false}`, "boot/grub/grubenv",
			[]string{"saved_entry=gnulinux-6.1.0-9-amd64-advanced-" + rootUUID}, []string{"kernelopts"}},
		{"default entry", `{"root_fs_uuid": "` + rootUUID + `", "config": {"default": "Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-9-amd64"}}`, "boot/grub/grub.cfg",
			[]string{`set default="Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-9-amd64"`}, []string{"saved_entry}\" ]"}},
		{"terminal sets both", `{"root_fs_uuid": "` + rootUUID + `", "config": {"terminal": ["serial"], "terminal_output": ["serial", "gfxterm"]}}`, "boot/grub/grub.cfg",
			[]string{"terminal_input serial", "terminal_output serial gfxterm", "if loadfont ($root)/boot/grub/fonts/unicode.pf2; then"}, nil},
		{"no defaults file", `{"root_fs_uuid": "` + rootUUID + `", "write_defaults": false}`, "etc/default/grub", nil, nil},
		{"kernel_opts quoted for GRUB", `{"root_fs_uuid": "` + rootUUID + `", "kernel_opts": "quiet  acpi_osi=\"Windows 2020\" a;reboot $x it's"}`, "boot/grub/grub.cfg",
			[]string{"\tlinux\t/boot/vmlinuz-6.1.0-13-amd64 root=UUID=" + rootUUID + ` ro quiet 'acpi_osi="Windows' '2020"' 'a;reboot' '$x' 'it'\''s'`}, nil},
		{"kernel_opts raw in grubenv", `{"root_fs_uuid": "` + rootUUID + `", "kernel_opts": "a;b"}`, "boot/grub/grubenv",
			[]string{"kernelopts=root=UUID=" + rootUUID + " a;b"}, nil},
		{"greenboot and ignition", `{"root_fs_uuid": "` + rootUUID + `", "greenboot": true, "ignition": true}`, "boot/grub/grub.cfg",
			[]string{"insmod increment", "\tsave_env --file $grubenv boot_counter", "save_env --file $grubenv boot_success",
				"if [ -f \"($root)/boot/ignition.firstboot\" ]; then",
				"\tlinux\t/boot/vmlinuz-6.1.0-13-amd64 root=UUID=" + rootUUID + " ro $ignition_firstboot"}, nil},
		{"uefi alone", `{"root_fs_uuid": "` + rootUUID + `", "uefi": {"vendor": "debian"}}`, "boot/efi/EFI/debian/grub.cfg",
			[]string{"# /boot/efi/EFI/debian/grub.cfg, written by forge's org.osbuild.grub2 stage for the kernels",
				"\tlinux\t/boot/vmlinuz-6.1.0-13-amd64 root=UUID=" + rootUUID + " ro"}, nil},
		{"hybrid", `{"root_fs_uuid": "` + rootUUID + `", "uefi": {"vendor": "debian"}, "legacy": "x86_64-xen"}`, "boot/efi/EFI/debian/grub.cfg",
			[]string{"search --no-floppy --set=root --fs-uuid " + rootUUID, "set prefix=($root)/boot/grub", "configfile $prefix/grub.cfg"},
			[]string{"menuentry"}},
		{"unified", `{"root_fs_uuid": "` + rootUUID + `", "boot_fs_uuid": "6699-AFB5", "uefi": {"vendor": "debian", "unified": true}}`, "boot/efi/EFI/debian/grub.cfg",
			[]string{"search --no-floppy --set=root --fs-uuid 6699-AFB5", "set prefix=($root)/grub"}, []string{"menuentry"}},
		{"unified main", `{"root_fs_uuid": "` + rootUUID + `", "uefi": {"vendor": "debian", "unified": true}}`, "boot/grub/grub.cfg",
			[]string{"# /boot/grub/grub.cfg, written by forge's org.osbuild.grub2 stage for the kernels"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := kernelTree(t)
			buildRoot := t.TempDir()
			// A build root with GRUB modules for the hybrid case.
			mods := filepath.Join(buildRoot, "usr/lib/grub/x86_64-xen")
			must(t, os.MkdirAll(mods, 0o755))
			must(t, os.WriteFile(filepath.Join(mods, "normal.mod"), []byte("mod"), 0o644))
			if err := run(stage.Args{Tree: tree, Options: json.RawMessage(tt.options)}, buildRoot); err != nil {
				t.Fatal(err)
			}
			scriptCheck(t, filepath.Join(tree, "boot/grub/grub.cfg"))
			scriptCheck(t, filepath.Join(tree, "boot/efi/EFI/debian/grub.cfg"))
			b, err := os.ReadFile(filepath.Join(tree, tt.file))
			if tt.has == nil && tt.hasNot == nil {
				if !os.IsNotExist(err) {
					t.Errorf("/%s exists (%v), want none", tt.file, err)
				}
				return
			}
			must(t, err)
			lines := strings.Split(string(b), "\n")
			for _, l := range tt.has {
				found := false
				for _, got := range lines {
					found = found || got == l
				}
				if !found {
					t.Errorf("/%s lacks the line %q:\n%s", tt.file, l, b)
				}
			}
			for _, s := range tt.hasNot {
				if strings.Contains(string(b), s) {
					t.Errorf("/%s holds %q:\n%s", tt.file, s, b)
				}
			}
		})
	}
}

func TestOptionErrors(t *testing.T) {
	u := `"root_fs_uuid": "` + rootUUID + `"`
	tests := []struct {
		name    string
		options string
		wantErr string
	}{
		{"no root", `{}`, `option "root_fs_uuid": is required (or "rootfs")`},
		{"both roots", `{` + u + `, "rootfs": {"label": "r"}}`, `option "rootfs": give either "rootfs" or "root_fs_uuid"`},
		{"both boots", `{` + u + `, "bootfs": {"label": "b"}, "boot_fs_uuid": "6699-AFB5"}`, `option "bootfs": give either`},
		{"bad uuid", `{"root_fs_uuid": "not-a-uuid"}`, `option "root_fs_uuid": "not-a-uuid" is not a filesystem UUID`},
		{"bad boot uuid", `{` + u + `, "boot_fs_uuid": "6699AFB5"}`, `option "boot_fs_uuid"`},
		{"uuid and label", `{"rootfs": {"uuid": "6699-AFB5", "label": "r"}}`, `option "rootfs": give either "uuid" or "label"`},
		{"empty fs", `{"rootfs": {}}`, `option "rootfs": needs "uuid" or "label"`},
		{"label quote", `{"rootfs": {"label": "a'b"}}`, `option "rootfs.label"`},
		{"label space", `{"rootfs": {"label": "a b"}}`, `option "rootfs.label"`},
		{"rootfs key", `{"rootfs": {"partuuid": "x"}}`, `unknown option "partuuid"`},
		{"kernel_opts newline", `{` + u + `, "kernel_opts": "quiet\nmenuentry x"}`, `option "kernel_opts"`},
		{"legacy number", `{` + u + `, "legacy": 1}`, `option "legacy": want a boolean or a GRUB platform`},
		{"legacy path", `{` + u + `, "legacy": "../../etc"}`, `option "legacy": "../../etc" is not a GRUB platform`},
		{"legacy missing modules", `{` + u + `, "legacy": "i386-pc"}`, `option "legacy": the build root has no GRUB modules for i386-pc`},
		{"uefi no vendor", `{` + u + `, "uefi": {}}`, `option "uefi.vendor": is required`},
		{"uefi vendor path", `{` + u + `, "uefi": {"vendor": "../x"}}`, `option "uefi.vendor": "../x" is not a directory name`},
		{"uefi src relative", `{` + u + `, "uefi": {"vendor": "debian", "efi_src_dir": "boot/efi"}}`, `option "uefi.efi_src_dir"`},
		{"uefi install missing", `{` + u + `, "uefi": {"vendor": "debian", "install": true}}`, `option "uefi.install": the build root has no directory /boot/efi/EFI/BOOT`},
		{"uefi unknown", `{` + u + `, "uefi": {"vendor": "debian", "secure": true}}`, `unknown option "secure"`},
		{"saved entry quote", `{` + u + `, "saved_entry": "a\"b"}`, `option "saved_entry"`},
		{"default dollar", `{` + u + `, "config": {"default": "$x"}}`, `option "config.default"`},
		{"distributor quote", `{` + u + `, "config": {"distributor": "Deb'ian"}}`, `option "config.distributor"`},
		{"terminal", `{` + u + `, "config": {"terminal_input": ["serial;reboot"]}}`, `option "config.terminal_input": "serial;reboot" is not a GRUB terminal`},
		{"timeout", `{` + u + `, "config": {"timeout": -1}}`, `option "config.timeout": -1 is negative`},
		{"timeout type", `{` + u + `, "config": {"timeout": "5"}}`, `option "config.timeout": want integer`},
		{"timeout style", `{` + u + `, "config": {"timeout_style": "loud"}}`, `option "config.timeout_style": "loud" is not one of hidden, menu, countdown`},
		{"serial not serial", `{` + u + `, "config": {"serial": "reboot"}}`, `option "config.serial": "reboot" is not a GRUB serial command`},
		{"serial injection", `{` + u + `, "config": {"serial": "serial --unit=0; reboot"}}`, `option "config.serial": argument "--unit=0;"`},
		{"config unknown", `{` + u + `, "config": {"theme": "x"}}`, `unknown option "theme"`},
		{"unknown option", `{` + u + `, "bootloader": "grub"}`, `unknown option "bootloader"`},
		{"grubenv overflow", `{` + u + `, "kernel_opts": "` + strings.Repeat("x", 1000) + `"}`, `grubenv would be`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := kernelTree(t)
			err := run(stage.Args{Tree: tree, Options: json.RawMessage(tt.options)}, t.TempDir())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("run: error %v, want one containing %q", err, tt.wantErr)
			}
		})
	}
}

// A tree without a kernel is an error, and the tree is left unchanged.
func TestNoKernel(t *testing.T) {
	tree := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(tree, "boot/grub"), 0o755))
	err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(`{"root_fs_uuid": "` + rootUUID + `"}`)})
	if err == nil || !strings.Contains(err.Error(), "no kernel") {
		t.Fatalf("Run: %v, want a no-kernel error", err)
	}
	if ents, _ := os.ReadDir(filepath.Join(tree, "boot/grub")); len(ents) != 0 {
		t.Errorf("a failed run wrote %v", ents)
	}
}

// Legacy boot copies the build root's modules and lists, and removes
// modules an earlier copy left that the build root no longer has.
func TestLegacyCopiesModules(t *testing.T) {
	tree := kernelTree(t)
	buildRoot := t.TempDir()
	src := filepath.Join(buildRoot, "usr/lib/grub/i386-pc")
	must(t, os.MkdirAll(src, 0o755))
	files := map[string]bool{ // name: copied
		"normal.mod": true, "linux.mod": true, "command.lst": true, "fdt.lst": true, "efiemu32.o": true,
		"boot.img": false, "kernel.img": false, "modinfo.sh": false, "grub-bios-setup": false,
	}
	for f := range files {
		must(t, os.WriteFile(filepath.Join(src, f), []byte("build root "+f), 0o644))
	}
	must(t, os.MkdirAll(filepath.Join(buildRoot, "usr/share/grub"), 0o755))
	must(t, os.WriteFile(filepath.Join(buildRoot, fontPath), []byte("font"), 0o644))
	dst := filepath.Join(tree, "boot/grub/i386-pc")
	must(t, os.MkdirAll(dst, 0o755))
	must(t, os.WriteFile(filepath.Join(dst, "stale.mod"), []byte("old"), 0o644))
	must(t, os.WriteFile(filepath.Join(dst, "linux.mod"), []byte("old"), 0o644))

	if err := run(stage.Args{Tree: tree, Options: json.RawMessage(`{"root_fs_uuid": "` + rootUUID + `", "legacy": true}`)}, buildRoot); err != nil {
		t.Fatal(err)
	}
	for f, copied := range files {
		b, err := os.ReadFile(filepath.Join(dst, f))
		switch {
		case copied && (err != nil || string(b) != "build root "+f):
			t.Errorf("/boot/grub/i386-pc/%s = %q, %v; want the build root's", f, b, err)
		case !copied && !os.IsNotExist(err):
			t.Errorf("/boot/grub/i386-pc/%s was copied", f)
		}
	}
	if _, err := os.Stat(filepath.Join(dst, "stale.mod")); !os.IsNotExist(err) {
		t.Errorf("stale.mod is still there (%v)", err)
	}
	if got := read(t, filepath.Join(tree, "boot/grub/fonts/unicode.pf2")); got != "font" {
		t.Errorf("unicode.pf2 = %q", got)
	}
	if ents, _ := os.ReadDir(dst); len(ents) != 5 {
		t.Errorf("/boot/grub/i386-pc holds %d files, want 5", len(ents))
	}
}

// uefi.install copies the build root's EFI directories into the ESP.
func TestUEFIInstall(t *testing.T) {
	tree := kernelTree(t)
	buildRoot := t.TempDir()
	for _, f := range []string{"EFI/BOOT/BOOTX64.EFI", "EFI/debian/shimx64.efi", "EFI/debian/fonts/unicode.pf2", "EFI/other/x.efi"} {
		p := filepath.Join(buildRoot, "usr/lib/efi", f)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(f), 0o644))
	}
	opts := `{"root_fs_uuid": "` + rootUUID + `", "uefi": {"vendor": "debian", "install": true, "efi_src_dir": "/usr/lib/efi/EFI"}}`
	if err := run(stage.Args{Tree: tree, Options: json.RawMessage(opts)}, buildRoot); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"EFI/BOOT/BOOTX64.EFI", "EFI/debian/shimx64.efi", "EFI/debian/fonts/unicode.pf2"} {
		if got := read(t, filepath.Join(tree, "boot/efi", f)); got != f {
			t.Errorf("/boot/efi/%s = %q", f, got)
		}
	}
	if _, err := os.Stat(filepath.Join(tree, "boot/efi/EFI/other")); !os.IsNotExist(err) {
		t.Errorf("another vendor's directory was copied (%v)", err)
	}
	if !strings.Contains(read(t, filepath.Join(tree, "boot/efi/EFI/debian/grub.cfg")), "menuentry 'Debian GNU/Linux'") {
		t.Errorf("the EFI grub.cfg is not the main configuration")
	}
}
