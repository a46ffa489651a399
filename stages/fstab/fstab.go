// Package fstab is org.osbuild.fstab: it replaces /etc/fstab with one
// line per filesystem of the options, identified by UUID, label,
// partition label or device, in the options' order.
package fstab

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// options are osbuild's. Its "ostree" option (the deployment whose
// /etc/fstab to write) is not supported: forge builds no ostree trees.
type options struct {
	Filesystems *[]filesystem `json:"filesystems"`
	Ostree      any           `json:"ostree"`
}

type filesystem struct {
	Device    string `json:"device"`
	UUID      string `json:"uuid"`
	Label     string `json:"label"`
	PartLabel string `json:"partlabel"`
	Path      string `json:"path"`
	VFSType   string `json:"vfs_type"`
	Options   string `json:"options"`
	Freq      int    `json:"freq"`
	PassNo    int    `json:"passno"`
}

// Run writes /etc/fstab, root:root 0644.
func Run(ctx context.Context, a stage.Args) error {
	var o options
	if err := stage.DecodeOptions(a.Options, &o); err != nil {
		return err
	}
	if o.Ostree != nil {
		return stage.OptionError("ostree", "ostree deployments are not supported by forge")
	}
	if o.Filesystems == nil {
		return stage.OptionError("filesystems", "is required")
	}
	var b strings.Builder
	for i, fs := range *o.Filesystems {
		line, err := fs.line()
		if err != nil {
			return stage.OptionError(fmt.Sprintf("filesystems[%d]", i), "%v", err)
		}
		b.WriteString(line)
	}
	root, err := os.OpenRoot(a.Tree)
	if err != nil {
		return fmt.Errorf("open tree: %w", err)
	}
	defer root.Close()
	return stage.WriteFile(root, "etc/fstab", []byte(b.String()), 0o644)
}

// line is the filesystem's fstab line: spec, mount point, type, options,
// dump frequency and fsck pass, tab-separated as osbuild writes them,
// with osbuild's defaults ("none", "defaults", 0, 0).
func (fs filesystem) line() (string, error) {
	var specs []string
	for _, s := range []struct{ key, tag, val string }{
		{"uuid", "UUID=", fs.UUID},
		{"label", "LABEL=", fs.Label},
		{"partlabel", "PARTLABEL=", fs.PartLabel},
		{"device", "", fs.Device},
	} {
		if s.val != "" {
			specs = append(specs, s.tag+escape(s.val))
		}
	}
	// osbuild's schema: exactly one of them (oneOf).
	if len(specs) != 1 {
		return "", fmt.Errorf("give exactly one of \"uuid\", \"label\", \"partlabel\" and \"device\" (got %d)", len(specs))
	}
	if fs.Path == "" {
		return "", fmt.Errorf("\"path\" (the mount point) is required")
	}
	// Swap has no mount point: fstab(5) says "none" (or "swap").
	if !strings.HasPrefix(fs.Path, "/") && fs.Path != "none" && fs.Path != "swap" {
		return "", fmt.Errorf("\"path\" %q is neither an absolute mount point nor \"none\"", fs.Path)
	}
	for _, c := range fs.UUID {
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F' || c == '-') {
			return "", fmt.Errorf("\"uuid\" %q contains %q: a filesystem UUID holds only hex digits and '-'", fs.UUID, c)
		}
	}
	vfsType, err := field("vfs_type", fs.VFSType, "none")
	if err != nil {
		return "", err
	}
	opts, err := field("options", fs.Options, "defaults")
	if err != nil {
		return "", err
	}
	if fs.Freq < 0 {
		return "", fmt.Errorf("\"freq\" %d is negative", fs.Freq)
	}
	if fs.PassNo < 0 {
		return "", fmt.Errorf("\"passno\" %d is negative", fs.PassNo)
	}
	return strings.Join([]string{specs[0], escape(fs.Path), vfsType, opts,
		strconv.Itoa(fs.Freq), strconv.Itoa(fs.PassNo)}, "\t") + "\n", nil
}

// field returns value, or def when it is empty; a value with white space
// or control characters would split the line, so it is an error.
func field(name, value, def string) (string, error) {
	if value == "" {
		return def, nil
	}
	for _, c := range value {
		if c <= ' ' || c == 0x7f {
			return "", fmt.Errorf("%q %q contains white space or a control character", name, value)
		}
	}
	return value, nil
}

// escape writes white space and backslashes in octal, as fstab(5) reads
// them (a label "my disk" is LABEL=my\040disk).
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c == '\\' || c == 0x7f {
			fmt.Fprintf(&b, "\\%03o", c)
		} else {
			b.WriteByte(c)
		}
	}
	return b.String()
}
