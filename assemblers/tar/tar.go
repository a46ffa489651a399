// Package tar is the assembler org.osbuild.tar: the tree as a tar archive,
// output_dir/filename, made by the build root's GNU tar.
//
// Options, as osbuild's schema has them:
//
//	filename     string, required: a plain file name
//	compression  string: "bzip2", "xz", "lzip", "lzma", "lzop" or "gzip",
//	             passed to tar as --<compression> (the program must be in
//	             the build root); absent means none. The file name gets no
//	             extension from it.
//	acls         boolean, default true: POSIX ACLs (--acls)
//	selinux      boolean, default true: SELinux contexts (--selinux)
//	xattrs       boolean, default true: every extended attribute
//	             (--xattrs --xattrs-include='*')
//
// Beyond osbuild's command, owners are stored as numbers only
// (--numeric-owner: the build root's /etc/passwd is not the tree's),
// holes are kept (--sparse), and members are sorted by name
// (--sort=name), so that one tree always gives the same archive. Sockets
// have no tar representation: tar leaves them out with a warning.
package tar

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"

	"github.com/forge-build/forge/assemblers/internal/command"
	"github.com/forge-build/forge/assemblers/internal/outfile"
	"github.com/forge-build/forge/stages/stage"
)

// Compressions are the values of the compression option; each is both
// tar's option and the program it runs.
var Compressions = []string{"bzip2", "xz", "lzip", "lzma", "lzop", "gzip"}

// Options are org.osbuild.tar's options.
type Options struct {
	Filename    string `json:"filename"`
	Compression string `json:"compression"`
	ACLs        *bool  `json:"acls"`
	SELinux     *bool  `json:"selinux"`
	Xattrs      *bool  `json:"xattrs"`
}

// ParseOptions decodes and checks the options; errors name the option.
func ParseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return o, err
	}
	if err := outfile.CheckOption("filename", o.Filename); err != nil {
		return o, err
	}
	// A present but empty compression is no compression in osbuild's
	// code, but its schema refuses it; so does forge.
	if o.Compression != "" || hasKey(raw, "compression") {
		if !slices.Contains(Compressions, o.Compression) {
			return o, stage.OptionError("compression", "%q is not one of %s", o.Compression, strings.Join(Compressions, ", "))
		}
	}
	return o, nil
}

func hasKey(raw json.RawMessage, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}

func enabled(b *bool) bool { return b == nil || *b }

// Args is tar's command line for archiving tree into file.
func (o Options) Args(tree, file string) []string {
	args := []string{"--create", "--file", file, "--directory", tree,
		"--numeric-owner", "--sparse", "--sort=name"}
	if o.Compression != "" {
		args = append(args, "--"+o.Compression)
	}
	if enabled(o.ACLs) {
		args = append(args, "--acls")
	}
	if enabled(o.SELinux) {
		args = append(args, "--selinux")
	}
	if enabled(o.Xattrs) {
		args = append(args, "--xattrs", "--xattrs-include=*")
	}
	return append(args, ".")
}

// Run assembles the archive.
func Run(ctx context.Context, a stage.Args) error {
	o, err := ParseOptions(a.Options)
	if err != nil {
		return err
	}
	if o.Compression != "" {
		if _, err := exec.LookPath(o.Compression); err != nil {
			return fmt.Errorf("compression %q: %s is not in the build root: %w", o.Compression, o.Compression, err)
		}
	}
	out, err := outfile.Create(a.OutputDir, o.Filename)
	if err != nil {
		return err
	}
	defer out.Remove()
	cmd := command.Cmd{
		Name: "tar",
		Args: o.Args(a.Tree, out.Name()),
		// As osbuild: xz on every core.
		Env: []string{"XZ_OPT=--threads=0"},
	}
	if err := cmd.Run(ctx); err != nil {
		return err
	}
	return out.Commit()
}
