// Package hostname is org.osbuild.hostname: it sets the tree's host name
// by writing /etc/hostname. osbuild's stage runs systemd-firstboot for
// this; writing the file directly does the same without needing systemd in
// the build root, and the name is checked the way systemd would.
package hostname

import (
	"context"
	"fmt"
	"os"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// options are osbuild's, unchanged.
type options struct {
	Hostname *string `json:"hostname"`
}

// Run writes /etc/hostname in the tree: the name and a newline, root:root
// 0644.
func Run(ctx context.Context, a stage.Args) error {
	var o options
	if err := stage.DecodeOptions(a.Options, &o); err != nil {
		return err
	}
	if o.Hostname == nil {
		return stage.OptionError("hostname", "is required")
	}
	if err := validate(*o.Hostname); err != nil {
		return stage.OptionError("hostname", "%v", err)
	}
	root, err := os.OpenRoot(a.Tree)
	if err != nil {
		return fmt.Errorf("open tree: %w", err)
	}
	defer root.Close()
	return stage.WriteFile(root, "etc/hostname", []byte(*o.Hostname+"\n"), 0o644)
}

// maxLen is HOST_NAME_MAX on Linux.
const maxLen = 64

// validate checks that name is a host name systemd would accept, in the
// stricter RFC 1123 form: dot-separated labels of letters, digits and
// hyphens, no label empty or starting or ending with a hyphen, at most 64
// characters in all.
func validate(name string) error {
	if name == "" {
		return fmt.Errorf("empty host name")
	}
	if len(name) > maxLen {
		return fmt.Errorf("%q is longer than %d characters", name, maxLen)
	}
	for _, label := range strings.Split(name, ".") {
		if label == "" {
			return fmt.Errorf("%q has an empty label (a leading, trailing or double dot)", name)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("%q has a label starting or ending with '-'", name)
		}
		for _, c := range label {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
				return fmt.Errorf("%q contains %q: only letters, digits, '-' and '.' are allowed", name, c)
			}
		}
	}
	return nil
}
