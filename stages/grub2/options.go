package grub2

import (
	"encoding/json"
	"fmt"
	"path"
	"regexp"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// options are osbuild's, all of them.
type options struct {
	RootFS        *filesystem     `json:"rootfs"`
	BootFS        *filesystem     `json:"bootfs"`
	RootFSUUID    *string         `json:"root_fs_uuid"`
	BootFSUUID    *string         `json:"boot_fs_uuid"`
	KernelOpts    string          `json:"kernel_opts"`
	Legacy        json.RawMessage `json:"legacy"` // false, true (i386-pc) or a platform
	UEFI          *uefiOptions    `json:"uefi"`
	SavedEntry    *string         `json:"saved_entry"`
	WriteDefaults *bool           `json:"write_defaults"`
	WriteCmdline  *bool           `json:"write_cmdline"`
	Ignition      bool            `json:"ignition"`
	Greenboot     bool            `json:"greenboot"`
	// RemoveUnset leaves unset settings out of /etc/default/grub; this
	// stage never writes unset ones, so it holds either way.
	RemoveUnset bool           `json:"remove_unset"`
	Config      *configOptions `json:"config"`
}

type filesystem struct {
	UUID  string `json:"uuid"`
	Label string `json:"label"`
}

type uefiOptions struct {
	Vendor    *string `json:"vendor"`
	EFISrcDir *string `json:"efi_src_dir"`
	Install   bool    `json:"install"`
	Unified   bool    `json:"unified"`
}

type configOptions struct {
	Default         *string  `json:"default"`
	DisableRecovery bool     `json:"disable_recovery"`
	DisableSubmenu  bool     `json:"disable_submenu"`
	Distributor     *string  `json:"distributor"`
	Terminal        []string `json:"terminal"`
	TerminalInput   []string `json:"terminal_input"`
	TerminalOutput  []string `json:"terminal_output"`
	Timeout         *int     `json:"timeout"`
	TimeoutStyle    *string  `json:"timeout_style"`
	Serial          *string  `json:"serial"`
}

// fsID names a filesystem as GRUB's search and the kernel's root= do.
type fsID struct {
	label bool   // LABEL= rather than UUID=
	value string // the UUID or label
}

func (f fsID) kernelSpec() string {
	if f.label {
		return "LABEL=" + f.value
	}
	return "UUID=" + f.value
}

func (f fsID) searchArgs() string {
	if f.label {
		return "--label '" + f.value + "'"
	}
	return "--fs-uuid " + f.value
}

// settings are the options resolved: defaults filled in, aliases merged,
// every value checked.
type settings struct {
	root fsID
	boot *fsID // nil: /boot is on the root filesystem

	kernelOpts    string
	platform      string // legacy boot's GRUB platform, "" for none
	uefi          *uefiSettings
	savedEntry    string
	writeDefaults bool
	writeCmdline  bool
	ignition      bool
	greenboot     bool

	defaultEntry   string // GRUB_DEFAULT: an index, an entry ID or "saved"
	recovery       bool
	submenu        bool
	distributor    string
	terminalInput  []string
	terminalOutput []string
	timeout        int
	timeoutStyle   string
	serial         string
}

type uefiSettings struct {
	vendor    string
	efiSrcDir string
	install   bool
	unified   bool
}

// parse decodes and checks the options.
func parse(raw json.RawMessage) (*settings, error) {
	var o options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return nil, err
	}
	s := &settings{
		kernelOpts:    o.KernelOpts,
		writeDefaults: o.WriteDefaults == nil || *o.WriteDefaults,
		writeCmdline:  o.WriteCmdline == nil || *o.WriteCmdline,
		ignition:      o.Ignition,
		greenboot:     o.Greenboot,
		defaultEntry:  "0",
		recovery:      true,
		submenu:       true,
		distributor:   "Debian",
	}
	var err error
	// osbuild's oneOf: root_fs_uuid or rootfs, not both.
	switch {
	case o.RootFS != nil && o.RootFSUUID != nil:
		return nil, stage.OptionError("rootfs", "give either \"rootfs\" or \"root_fs_uuid\", not both")
	case o.RootFS != nil:
		if s.root, err = o.RootFS.id("rootfs"); err != nil {
			return nil, err
		}
	case o.RootFSUUID != nil:
		if err := validateUUID(*o.RootFSUUID); err != nil {
			return nil, stage.OptionError("root_fs_uuid", "%v", err)
		}
		s.root = fsID{value: *o.RootFSUUID}
	default:
		return nil, stage.OptionError("root_fs_uuid", "is required (or \"rootfs\")")
	}
	switch {
	case o.BootFS != nil && o.BootFSUUID != nil:
		return nil, stage.OptionError("bootfs", "give either \"bootfs\" or \"boot_fs_uuid\", not both")
	case o.BootFS != nil:
		id, err := o.BootFS.id("bootfs")
		if err != nil {
			return nil, err
		}
		s.boot = &id
	case o.BootFSUUID != nil:
		if err := validateUUID(*o.BootFSUUID); err != nil {
			return nil, stage.OptionError("boot_fs_uuid", "%v", err)
		}
		s.boot = &fsID{value: *o.BootFSUUID}
	}
	if err := noControl(s.kernelOpts); err != nil {
		return nil, stage.OptionError("kernel_opts", "%v", err)
	}
	if s.platform, err = parseLegacy(o.Legacy); err != nil {
		return nil, stage.OptionError("legacy", "%v", err)
	}
	if o.UEFI != nil {
		if s.uefi, err = o.UEFI.settings(); err != nil {
			return nil, err
		}
	}
	if o.SavedEntry != nil {
		if err := validateEntry(*o.SavedEntry); err != nil {
			return nil, stage.OptionError("saved_entry", "%v", err)
		}
		s.savedEntry = *o.SavedEntry
	}
	if c := o.Config; c != nil {
		if err := c.apply(s); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func (f *filesystem) id(option string) (fsID, error) {
	switch {
	case f.UUID != "" && f.Label != "":
		return fsID{}, stage.OptionError(option, "give either \"uuid\" or \"label\", not both")
	case f.UUID != "":
		if err := validateUUID(f.UUID); err != nil {
			return fsID{}, stage.OptionError(option+".uuid", "%v", err)
		}
		return fsID{value: f.UUID}, nil
	case f.Label != "":
		if err := validateLabel(f.Label); err != nil {
			return fsID{}, stage.OptionError(option+".label", "%v", err)
		}
		return fsID{label: true, value: f.Label}, nil
	}
	return fsID{}, stage.OptionError(option, "needs \"uuid\" or \"label\"")
}

// uuidPattern is osbuild's: a UUID, or a FAT volume ID.
var uuidPattern = regexp.MustCompile(`^([0-9A-Za-z]{8}(-[0-9A-Za-z]{4}){3}-[0-9A-Za-z]{12}|[0-9A-Za-z]{4}-[0-9A-Za-z]{4})$`)

func validateUUID(u string) error {
	if !uuidPattern.MatchString(u) {
		return fmt.Errorf("%q is not a filesystem UUID (like 9c6ae55b-cf88-45b8-84e8-64990759f39d or 6699-AFB5)", u)
	}
	return nil
}

// validateLabel keeps a label usable unquoted on the kernel command line
// and single-quoted in grub.cfg.
func validateLabel(l string) error {
	for _, c := range l {
		if c <= ' ' || c == 0x7f || strings.ContainsRune(`'"\$`, c) {
			return fmt.Errorf("label %q contains %q, which root=LABEL= or grub.cfg cannot carry", l, c)
		}
	}
	return nil
}

func noControl(s string) error {
	for _, c := range s {
		if c < ' ' || c == 0x7f {
			return fmt.Errorf("%q contains the control character %q", s, c)
		}
	}
	return nil
}

// platformPattern matches GRUB's platforms: i386-pc, x86_64-efi,
// powerpc-ieee1275, arm64-efi...
var platformPattern = regexp.MustCompile(`^[a-z0-9_]+-[a-z0-9_]+$`)

// parseLegacy reads "legacy": false (or absent, or "", as osbuild's
// falsy check) for none, true for i386-pc, or a platform.
func parseLegacy(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var b bool
	if err := json.Unmarshal(raw, &b); err == nil {
		if b {
			return "i386-pc", nil
		}
		return "", nil
	}
	var p string
	if err := json.Unmarshal(raw, &p); err != nil {
		return "", fmt.Errorf("want a boolean or a GRUB platform like \"i386-pc\", got %s", raw)
	}
	if p != "" && !platformPattern.MatchString(p) {
		return "", fmt.Errorf("%q is not a GRUB platform like \"i386-pc\"", p)
	}
	return p, nil
}

func (u *uefiOptions) settings() (*uefiSettings, error) {
	if u.Vendor == nil || *u.Vendor == "" {
		return nil, stage.OptionError("uefi.vendor", "is required (the directory in /boot/efi/EFI, like \"debian\")")
	}
	v := *u.Vendor
	if v == "." || v == ".." || strings.ContainsRune(v, '/') {
		return nil, stage.OptionError("uefi.vendor", "%q is not a directory name", v)
	}
	if err := noControl(v); err != nil {
		return nil, stage.OptionError("uefi.vendor", "%v", err)
	}
	s := &uefiSettings{vendor: v, efiSrcDir: "/boot/efi/EFI", install: u.Install, unified: u.Unified}
	if u.EFISrcDir != nil {
		if !path.IsAbs(*u.EFISrcDir) {
			return nil, stage.OptionError("uefi.efi_src_dir", "%q is not an absolute path in the build root", *u.EFISrcDir)
		}
		s.efiSrcDir = path.Clean(*u.EFISrcDir)
	}
	return s, nil
}

// validateEntry checks a menu entry reference (GRUB_DEFAULT,
// saved_entry): an index, an entry ID or a title path such as
// "Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux
// 6.1.0-13-amd64". It goes in double quotes in grub.cfg and single quotes
// in /etc/default/grub.
func validateEntry(e string) error {
	if e == "" {
		return fmt.Errorf("empty entry")
	}
	for _, c := range e {
		if c < ' ' || c == 0x7f || strings.ContainsRune("\"'\\$`", c) {
			return fmt.Errorf("entry %q contains %q", e, c)
		}
	}
	return nil
}

var (
	terminalPattern = regexp.MustCompile(`^[a-z][a-z0-9_]*$`)
	serialArg       = regexp.MustCompile(`^[A-Za-z0-9_=.,:-]+$`)
	timeoutStyles   = []string{"hidden", "menu", "countdown"}
)

func (c *configOptions) apply(s *settings) error {
	if c.Default != nil {
		if err := validateEntry(*c.Default); err != nil {
			return stage.OptionError("config.default", "%v", err)
		}
		s.defaultEntry = *c.Default
	}
	s.recovery = !c.DisableRecovery
	s.submenu = !c.DisableSubmenu
	if c.Distributor != nil {
		d := *c.Distributor
		if d == "" || strings.ContainsAny(d, `'"\$`+"`") || noControl(d) != nil {
			return stage.OptionError("config.distributor", "%q: want a name without quotes, '\\', '$' or control characters", d)
		}
		s.distributor = d
	}
	for _, t := range []struct {
		option string
		names  []string
	}{{"config.terminal", c.Terminal}, {"config.terminal_input", c.TerminalInput}, {"config.terminal_output", c.TerminalOutput}} {
		for _, n := range t.names {
			if !terminalPattern.MatchString(n) {
				return stage.OptionError(t.option, "%q is not a GRUB terminal name (like console, serial, gfxterm)", n)
			}
		}
	}
	// GRUB_TERMINAL sets both; the specific ones win, as in grub-mkconfig.
	s.terminalInput, s.terminalOutput = c.Terminal, c.Terminal
	if c.TerminalInput != nil {
		s.terminalInput = c.TerminalInput
	}
	if c.TerminalOutput != nil {
		s.terminalOutput = c.TerminalOutput
	}
	if c.Timeout != nil {
		if *c.Timeout < 0 {
			return stage.OptionError("config.timeout", "%d is negative", *c.Timeout)
		}
		s.timeout = *c.Timeout
	}
	if c.TimeoutStyle != nil {
		ok := false
		for _, st := range timeoutStyles {
			ok = ok || *c.TimeoutStyle == st
		}
		if !ok {
			return stage.OptionError("config.timeout_style", "%q is not one of %s", *c.TimeoutStyle, strings.Join(timeoutStyles, ", "))
		}
		s.timeoutStyle = *c.TimeoutStyle
	}
	if c.Serial != nil {
		f := strings.Fields(*c.Serial)
		if len(f) == 0 || f[0] != "serial" || noControl(*c.Serial) != nil {
			return stage.OptionError("config.serial", "%q is not a GRUB serial command (like \"serial --unit=0 --speed=115200\")", *c.Serial)
		}
		for _, a := range f[1:] {
			if !serialArg.MatchString(a) {
				return stage.OptionError("config.serial", "argument %q of %q has characters a serial command does not use", a, *c.Serial)
			}
		}
		s.serial = strings.Join(f, " ")
	}
	return nil
}
