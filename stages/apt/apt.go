// Package apt is org.osbuild.apt: it installs packages into a Debian
// tree with the tree's own apt and sources, chrooted into the tree.
//
// Options: packages (required), recommends (default false), update
// (apt-get update first, default true) and clean (apt-get clean after,
// default true).
//
// While apt runs, the tree has /proc, a read-only /sys and a minimal /dev
// mounted (package chroot), a usr/sbin/policy-rc.d that exits 101 so no
// service starts, and the build root's /etc/resolv.conf so apt can
// resolve the mirror. Afterwards, whatever happened, the mounts are gone
// and the tree's own policy-rc.d and resolv.conf (a file, a symlink, or
// none) are back.
//
// With inputs "packages" and "index" (package debrepo) it installs from
// those alone: see pinned.go.
package apt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/forge-build/forge/stages/chroot"
	"github.com/forge-build/forge/stages/debrepo"
	"github.com/forge-build/forge/stages/stage"
)

// Options are the stage's options.
type Options struct {
	// Packages to install, as apt-get takes them: name, name:arch,
	// name=version or name/release.
	Packages []string `json:"packages"`
	// Recommends installs the packages' recommendations too.
	Recommends bool `json:"recommends"`
	// Update runs apt-get update first (default true).
	Update *bool `json:"update"`
	// Clean runs apt-get clean afterwards (default true): the downloaded
	// .debs are of no use in an image.
	Clean *bool `json:"clean"`
}

// A package as apt-get install takes it: a Debian package name (policy
// 5.6.1), then an architecture, and a version or a release.
var packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+(:[a-z0-9][a-z0-9-]*)?(=[A-Za-z0-9.+~:-]+|/[A-Za-z0-9][A-Za-z0-9.+_-]*)?$`)

// maxPackage bounds one package argument.
const maxPackage = 256

func parseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return o, err
	}
	if len(o.Packages) == 0 {
		return o, stage.OptionError("packages", "want at least one package")
	}
	for _, p := range o.Packages {
		if len(p) > maxPackage || !packageRE.MatchString(p) {
			return o, stage.OptionError("packages", "%q is not a package as apt-get install takes it (name, name:arch, name=version or name/release)", p)
		}
		// Policy allows it in a name, but apt-get install reads a
		// trailing "-" as "remove": no Debian package ends in one.
		if strings.HasSuffix(p, "-") {
			return o, stage.OptionError("packages", "%q ends in \"-\", which apt-get install reads as a removal", p)
		}
	}
	return o, nil
}

func (o Options) update() bool { return o.Update == nil || *o.Update }
func (o Options) clean() bool  { return o.Clean == nil || *o.Clean }

// aptGet is the tree's apt-get, as the chroot sees it.
const aptGet = "/usr/bin/apt-get"

// policyRCD makes invoke-rc.d refuse to start services (101: action
// forbidden by policy): a chroot is not a running system.
const policyRCD = "#!/bin/sh\n# forge org.osbuild.apt: no service starts while packages install\nexit 101\n"

// commands are the apt-get runs o asks for, in order.
func commands(o Options) [][]string {
	var cmds [][]string
	if o.update() {
		cmds = append(cmds, []string{aptGet, "update"})
	}
	install := []string{aptGet, "install", "-y",
		// Keep the tree's changed configuration files, without asking.
		"-o", "Dpkg::Options::=--force-confdef",
		"-o", "Dpkg::Options::=--force-confold",
	}
	if !o.Recommends {
		install = append(install, "--no-install-recommends")
	}
	cmds = append(cmds, append(install, o.Packages...))
	if o.clean() {
		cmds = append(cmds, []string{aptGet, "clean"})
	}
	return cmds
}

// Run installs the packages into a.Tree.
func Run(ctx context.Context, a stage.Args) (err error) {
	o, err := parseOptions(a.Options)
	if err != nil {
		return err
	}
	in, pinned, err := debrepo.FromArgs(a)
	if err != nil {
		return err
	}
	if pinned {
		return runPinned(ctx, a.Tree, o, in)
	}
	// Only a hint for a clear error: the chroot resolves the real path.
	if _, err := os.Lstat(filepath.Join(a.Tree, aptGet)); err != nil {
		return fmt.Errorf("the tree has no %s (%w): org.osbuild.apt installs into a Debian tree, made by org.osbuild.mmdebstrap first", aptGet, err)
	}
	c, err := chroot.Setup(a.Tree, os.Stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.Teardown()) }()
	if err := c.Substitute("usr/sbin/policy-rc.d", []byte(policyRCD), 0o755); err != nil {
		return err
	}
	if err := c.ProvideResolvConf(); err != nil {
		return err
	}
	for _, args := range commands(o) {
		fmt.Fprintf(os.Stderr, "+ chroot %s %s\n", c.Root(), strings.Join(args, " "))
		err := c.Run(ctx, chroot.Command{Args: args, Env: chroot.Env(), Stdout: os.Stdout, Stderr: os.Stderr})
		if err != nil {
			return err
		}
	}
	return nil
}
