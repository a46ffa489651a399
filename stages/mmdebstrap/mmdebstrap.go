// Package mmdebstrap is org.osbuild.mmdebstrap: it makes a Debian tree
// in the stage's empty tree with the build root's mmdebstrap (root mode,
// no user namespaces), or, when the build root has only debootstrap,
// with that.
//
// Options: suite and mirror (required), variant (mmdebstrap's, default
// minbase), components (default ["main"]), packages, keyrings (default
// Debian's archive keyring; the buildroot's /etc has no apt, so the
// keyring is always passed explicitly) and architectures.
//
// The tree it leaves has apt sources naming the mirror, the package
// lists of the bootstrap (see keptCleanups) and no .debs in apt's cache,
// so org.osbuild.apt can install into it with or without an update. Like the tools, it keeps
// the copies of the build root's /etc/resolv.conf and /etc/hostname
// the tools put into the tree; later stages set them.
//
// With inputs "packages" and "index" (package debrepo: the pinned .debs
// and the archive's stanzas for them, as samples/gen-manifest writes
// them) it installs those and nothing else, from a local repository,
// without the network: the tree is then the same as one made from the
// mirror, its apt sources naming the mirror, but with no package lists
// (they would be the local repository's) and no /etc/resolv.conf (the
// build host's, which has no business in a reproducible tree).
package mmdebstrap

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/forge-build/forge/stages/chroot"
	"github.com/forge-build/forge/stages/debrepo"
	"github.com/forge-build/forge/stages/stage"
)

// Run bootstraps the tree a.Tree, which must be empty.
func Run(ctx context.Context, a stage.Args) error {
	o, err := parseOptions(a.Options)
	if err != nil {
		return err
	}
	if err := checkEmpty(a.Tree); err != nil {
		return err
	}
	t, path, err := findTool()
	if err != nil {
		return err
	}
	in, pinned, err := debrepo.FromArgs(a)
	if err != nil {
		return err
	}
	var argv []string
	if pinned {
		if t != toolMmdebstrap {
			return fmt.Errorf("the stage's %q and %q inputs need mmdebstrap, which the build root lacks (it has only debootstrap)", debrepo.PackagesInput, debrepo.IndexInput)
		}
		repo, err := makeRepo(in, o)
		if err != nil {
			return err
		}
		defer os.RemoveAll(repo)
		argv = pinnedArgs(o, a.Tree, repo)
	} else {
		if argv, err = toolArgs(t, o, a.Tree); err != nil {
			return err
		}
	}
	argv[0] = path
	if err := bootstrap(ctx, a.Tree, argv); err != nil {
		return err
	}
	if t == toolDebootstrap {
		if err := finishDebootstrap(ctx, a.Tree); err != nil {
			return err
		}
	}
	return checkSources(a.Tree, o.Mirror)
}

// makeRepo writes the local repository of the stage's pinned packages
// in a new directory of the build root's /tmp, with the tree's apt
// sources beside it, and returns the directory.
func makeRepo(in debrepo.Inputs, o Options) (dir string, err error) {
	dir, err = os.MkdirTemp("", "forge-repo-")
	if err != nil {
		return "", fmt.Errorf("local repository: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if err := in.Write(dir, o.Suite); err != nil {
		return "", fmt.Errorf("local repository: %w", err)
	}
	if err := os.Symlink(in.Dir, filepath.Join(dir, debrepo.FilesDir)); err != nil {
		return "", fmt.Errorf("local repository: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, treeSourcesName), []byte(treeSources(o)), 0o644); err != nil {
		return "", fmt.Errorf("local repository: %w", err)
	}
	return dir, nil
}

// checkEmpty wants the tree empty: the tools make a tree from nothing.
func checkEmpty(tree string) error {
	f, err := os.Open(tree)
	if err != nil {
		return fmt.Errorf("tree: %w", err)
	}
	defer f.Close()
	names, err := f.Readdirnames(4)
	if errors.Is(err, io.EOF) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("tree %s: %w", tree, err)
	}
	return fmt.Errorf("tree %s is not empty (it has %s): org.osbuild.mmdebstrap makes a tree from nothing, so it comes first in its pipeline",
		tree, strings.Join(names, ", "))
}

// findTool looks for mmdebstrap, then debootstrap, on PATH.
func findTool() (tool, string, error) {
	for _, t := range []tool{toolMmdebstrap, toolDebootstrap} {
		if p, err := exec.LookPath(t.String()); err == nil {
			return t, p, nil
		}
	}
	return 0, "", errNoTool
}

// bootstrap runs the tool, its output streamed to the stage's, and
// afterwards unmounts whatever it left mounted in the tree and kills
// whatever it left running there (both only when it was killed midway).
func bootstrap(ctx context.Context, tree string, argv []string) (err error) {
	w, err := chroot.Watch(tree, os.Stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, w.Teardown()) }()
	fmt.Fprintf(os.Stderr, "+ %s\n", strings.Join(argv, " "))
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// The stage's environment (the buildroot's), in the C locale: a build
	// root need not have any other, and perl warns without one.
	cmd.Env = append(os.Environ(), "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive")
	cmd.Dir = "/"
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	return chroot.RunInGroup(ctx, cmd)
}

// finishDebootstrap makes debootstrap's tree like mmdebstrap's: with
// package lists (debootstrap leaves them, but not every version did:
// org.osbuild.apt with update false needs them) and without the .debs
// debootstrap leaves in apt's cache.
func finishDebootstrap(ctx context.Context, tree string) (err error) {
	c, err := chroot.Setup(tree, os.Stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.Teardown()) }()
	var cmds [][]string
	if lists, _ := filepath.Glob(filepath.Join(c.Root(), "var/lib/apt/lists/*_Packages")); len(lists) == 0 {
		if err := c.ProvideResolvConf(); err != nil {
			return err
		}
		cmds = append(cmds, []string{"/usr/bin/apt-get", "update"})
	}
	cmds = append(cmds, []string{"/usr/bin/apt-get", "clean"})
	for _, args := range cmds {
		fmt.Fprintf(os.Stderr, "+ chroot %s %s\n", c.Root(), strings.Join(args, " "))
		err := c.Run(ctx, chroot.Command{Args: args, Env: chroot.Env(), Stdout: os.Stdout, Stderr: os.Stderr})
		if err != nil {
			return err
		}
	}
	return nil
}
