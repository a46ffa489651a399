package apt

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/forge-build/forge/stages/chroot"
	"github.com/forge-build/forge/stages/debrepo"
)

// A pinned install runs the tree's apt on a local repository of the
// stage's inputs, mounted in the tree's /run (a tmpfs of the stage's own
// while it runs, as a booted system's /run is): the repository's
// Packages and Release, the .debs bound read-only below it, and apt's
// sources, lists and archives pointed there. The source is file://, so
// dpkg reads the .debs where they are: copied into the tmpfs, a large
// package set would take its size in memory. The tree's own apt sources
// stay as they are (naming the mirror), and it gains no package lists,
// no .debs and no trace of the local repository.
//
// Two more things make the result reproducible and quicker:
//
//   - The kernel's postinst hook builds no initramfs (INITRD=No); the
//     stage builds each missing one once, afterwards. Otherwise Debian
//     builds it twice, from the hook and again from initramfs-tools'
//     trigger, and the initramfs is most of the stage's time.
//   - With SOURCE_DATE_EPOCH set, the files that record when and how
//     the install ran are removed, as mmdebstrap's cleanup does
//     (reproducibleCleanup), and /etc/machine-id is emptied (systemd
//     makes one at first boot).

// repoDir is the repository's directory in the tree, below /run.
const repoDir = "forge-repo"

// aptOptions point apt at the repository in /run, and nowhere else.
func aptOptions() []string {
	r := "/run/" + repoDir
	return []string{
		"-o", "Dir::Etc::SourceList=" + r + "/sources.list",
		"-o", "Dir::Etc::SourceParts=" + r + "/sources.list.d",
		"-o", "Dir::State::Lists=" + r + "/lists",
		"-o", "Dir::Cache::Archives=" + r + "/archives",
		"-o", "Dir::Cache::pkgcache=",
		"-o", "Dir::Cache::srcpkgcache=",
	}
}

// pinnedCommands are the apt-get runs of a pinned install.
func pinnedCommands(o Options) [][]string {
	opts := aptOptions()
	install := append([]string{aptGet}, opts...)
	install = append(install, "install", "-y",
		"-o", "Dpkg::Options::=--force-confdef",
		"-o", "Dpkg::Options::=--force-confold")
	if !o.Recommends {
		install = append(install, "--no-install-recommends")
	}
	return [][]string{
		append(append([]string{aptGet}, opts...), "update"),
		append(install, o.Packages...),
	}
}

func runPinned(ctx context.Context, tree string, o Options, in debrepo.Inputs) (err error) {
	if _, err := os.Lstat(filepath.Join(tree, aptGet)); err != nil {
		return fmt.Errorf("the tree has no %s (%w): org.osbuild.apt installs into a Debian tree, made by org.osbuild.mmdebstrap first", aptGet, err)
	}
	c, err := chroot.Setup(tree, os.Stderr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, c.Teardown()) }()
	if err := c.Substitute("usr/sbin/policy-rc.d", []byte(policyRCD), 0o755); err != nil {
		return err
	}
	run, err := c.PrivateDir("run")
	if err != nil {
		return err
	}
	repo := filepath.Join(run, repoDir)
	for _, d := range []string{"", "lists/partial", "archives/partial", "sources.list.d", debrepo.FilesDir} {
		if err := os.MkdirAll(filepath.Join(repo, d), 0o755); err != nil {
			return fmt.Errorf("local repository: %w", err)
		}
	}
	if err := in.Write(repo, "forge"); err != nil {
		return fmt.Errorf("local repository: %w", err)
	}
	if err := os.WriteFile(filepath.Join(repo, "sources.list"), []byte(debrepo.SourcesLine("file", "/run/"+repoDir)+"\n"), 0o644); err != nil {
		return fmt.Errorf("local repository: %w", err)
	}
	if err := c.BindReadOnly(in.Dir, "run/"+repoDir+"/"+debrepo.FilesDir); err != nil {
		return err
	}
	env := append(chroot.Env(), "INITRD=No")
	for _, args := range pinnedCommands(o) {
		fmt.Fprintf(os.Stderr, "+ chroot %s %s\n", c.Root(), strings.Join(args, " "))
		if err := c.Run(ctx, chroot.Command{Args: args, Env: env, Stdout: os.Stdout, Stderr: os.Stderr}); err != nil {
			return err
		}
	}
	if err := buildInitramfs(ctx, c); err != nil {
		return err
	}
	if _, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok {
		return reproducibleCleanup(tree)
	}
	return nil
}

// kernelRE is a kernel image's name in /boot.
var kernelRE = regexp.MustCompile(`^vmlinuz-([A-Za-z0-9._+~-]+)$`)

// buildInitramfs builds the initramfs of every installed kernel that
// has none, once each, and makes /vmlinuz and /initrd.img point at the
// newest (the links the kernel's postinst makes when it builds one
// itself). Without initramfs-tools in the tree there is nothing to do.
func buildInitramfs(ctx context.Context, c *chroot.Chroot) error {
	const updateInitramfs = "/usr/sbin/update-initramfs"
	if _, err := os.Lstat(filepath.Join(c.Root(), updateInitramfs)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	boot, err := os.ReadDir(filepath.Join(c.Root(), "boot"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var versions []string
	for _, e := range boot {
		m := kernelRE.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		if _, err := os.Lstat(filepath.Join(c.Root(), "boot", "initrd.img-"+m[1])); err == nil {
			continue
		}
		versions = append(versions, m[1])
	}
	sort.Strings(versions)
	for _, v := range versions {
		cmds := [][]string{{updateInitramfs, "-c", "-k", v}}
		if _, err := os.Lstat(filepath.Join(c.Root(), "usr/bin/linux-update-symlinks")); err == nil {
			cmds = append(cmds, []string{"/usr/bin/linux-update-symlinks", "install", v, "/boot/vmlinuz-" + v})
		}
		for _, args := range cmds {
			fmt.Fprintf(os.Stderr, "+ chroot %s %s\n", c.Root(), strings.Join(args, " "))
			if err := c.Run(ctx, chroot.Command{Args: args, Env: chroot.Env(), Stdout: os.Stdout, Stderr: os.Stderr}); err != nil {
				return err
			}
		}
	}
	return nil
}

// unreproducible are the files an install leaves that record when and
// how it ran, and differ between two installs of the same packages:
// mmdebstrap's list (its cleanup/reproducible).
var unreproducible = []string{
	"var/log/dpkg.log",
	"var/log/apt/history.log",
	"var/log/apt/term.log",
	"var/log/apt/eipp.log.xz",
	"var/log/alternatives.log",
	"var/cache/ldconfig/aux-cache",
	"var/lib/dbus/machine-id",
}

// reproducibleCleanup removes the unreproducible files and empties
// /etc/machine-id (systemd's postinst writes a random one; empty, systemd
// makes one at first boot). It works through os.Root, so a symlink in
// the tree cannot point it elsewhere.
func reproducibleCleanup(tree string) error {
	root, err := os.OpenRoot(tree)
	if err != nil {
		return err
	}
	defer root.Close()
	for _, p := range unreproducible {
		if err := root.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reproducible cleanup: %w", err)
		}
	}
	fi, err := root.Lstat("etc/machine-id")
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return nil
	case err != nil:
		return fmt.Errorf("reproducible cleanup: %w", err)
	case !fi.Mode().IsRegular():
		return nil
	}
	f, err := root.OpenFile("etc/machine-id", os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return fmt.Errorf("reproducible cleanup: %w", err)
	}
	return f.Close()
}
