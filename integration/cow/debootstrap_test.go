package cow_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/internal/fstree"
)

// suite is the Debian release the workload installs.
const suite = "bookworm"

// TestDebootstrapAndAptGet is issue 4's real workload. On CoW mounts:
// debootstrap a minimal bookworm into a mount of the empty tree, commit;
// on a new mount of that commit, chroot and apt-get install openssh-server;
// commit and export. The same steps run at the same time in an ext4
// directory. In chroots, `dpkg --audit` of the export says nothing and
// `dpkg -V` reports nothing that it does not report on ext4; the export
// and the ext4 tree have the same structure: paths, types, modes, owners,
// device numbers, symlink targets, xattrs and hard-link groups (not
// mtimes, nor the contents of the few files that carry times and random
// keys), and the same contents elsewhere.
//
// The mirror is the host's: the URIs of the bookworm suite in its apt
// sources. The test fails, saying so, when the mirror does not answer.
func TestDebootstrapAndAptGet(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: runs debootstrap and apt-get against a Debian mirror for several minutes")
	}
	requireRoot(t)
	mirror := itest.DebianMirror(t, suite, "debootstrap", "chroot")

	work := testDir(t)
	ext := filepath.Join(work, "ext4")
	exp := filepath.Join(work, "export")
	// Mount first: a forge without rw mounts fails here, before minutes of
	// work on the ext4 side.
	s := newStore(t)
	mp := filepath.Join(work, "cow-debootstrap")
	s.mountRW(t, "", mp)
	var extReport, cowReport dpkgReport
	t.Run("build", func(t *testing.T) {
		t.Run("ext4", func(t *testing.T) {
			t.Parallel()
			must(t, os.Mkdir(ext, 0o755))
			debootstrap(t, ext, mirror, filepath.Join(work, "ext4-debootstrap.log"))
			installOpenSSH(t, ext, filepath.Join(work, "ext4-apt.log"))
			extReport = dpkgChecks(t, ext)
		})
		t.Run("cow", func(t *testing.T) {
			t.Parallel()
			debootstrap(t, mp, mirror, filepath.Join(work, "cow-debootstrap.log"))
			base := s.commitWithin(t, 20*time.Minute, mp, suite+"-minbase")
			s.umount(t, mp)

			mp2 := filepath.Join(work, "cow-apt")
			s.mountRW(t, base, mp2)
			installOpenSSH(t, mp2, filepath.Join(work, "cow-apt.log"))
			tree := s.commitWithin(t, 20*time.Minute, mp2, suite+"-openssh")
			s.exportWithin(t, 20*time.Minute, tree, exp)
			// The mount and the export of its commit agree on everything,
			// contents and times included.
			assertSameTreeOpts(t, exp, mp2, "the mount after its commit, against the export", time.Now(),
				fstree.Options{CompareRootMeta: true})
			cowReport = dpkgChecks(t, exp)
		})
	})
	if t.Failed() {
		return
	}

	if cowReport.audit != "" {
		t.Errorf("dpkg --audit in the export of the CoW build:\n%s", cowReport.audit)
	}
	if extReport.audit != "" {
		t.Logf("dpkg --audit on ext4 (the reference) is not empty either:\n%s", extReport.audit)
	}
	var extra []string
	for _, l := range cowReport.verify {
		if !slices.Contains(extReport.verify, l) {
			extra = append(extra, l)
		}
	}
	if len(extra) > 0 {
		t.Errorf("dpkg -V in the export of the CoW build reports %d problems that it does not report on ext4:\n%s\n(ext4 reports:\n%s)",
			len(extra), strings.Join(extra, "\n"), strings.Join(extReport.verify, "\n"))
	}
	assertSameStructure(t, ext, exp)
}

// assertSameStructure compares the trees on everything but mtimes (every
// one is a time of this run), and but the contents and sizes of the files
// that carryTimesOrIDs.
func assertSameStructure(t *testing.T, ext, got string) {
	t.Helper()
	diffs, err := fstree.Compare(ext, got, fstree.Options{CompareRootMeta: true})
	if err != nil {
		t.Fatalf("compare the export with the ext4 build: %v", err)
	}
	var shown []string
	n := 0
	for _, d := range diffs {
		switch {
		case d.Property == fstree.PropMtime:
			continue
		case (d.Property == fstree.PropContent || d.Property == fstree.PropSize) && carriesTimesOrIDs(d.Path):
			continue
		}
		n++
		if len(shown) < 200 {
			shown = append(shown, d.String())
		}
	}
	if n > 0 {
		t.Errorf("the export of the CoW build and the ext4 build differ in structure in %d properties (first %d):\n\t%s",
			n, len(shown), strings.Join(shown, "\n\t"))
	}
}

// carriesTimesOrIDs says whether two runs of the same debootstrap and
// apt-get write different bytes to the file at rel. Two runs on ext4 at the
// same time differ in exactly these (and in mtimes).
func carriesTimesOrIDs(rel string) bool {
	for _, prefix := range []string{
		"etc/ssh/ssh_host_",            // host keys, random
		"var/log/",                     // logs, with times
		"var/cache/apt/",               // package caches, with the lists' times
		"var/cache/ldconfig/aux-cache", // with library mtimes
	} {
		if strings.HasPrefix(rel, prefix) {
			return true
		}
	}
	// The day of the last password change, should the runs straddle midnight.
	return rel == "etc/shadow" || rel == "etc/shadow-"
}

// runLogged runs a command in its own process group, its output appended
// to logPath, and fails t with the end of the log when it fails. When the
// timeout passes, the whole group is killed (by its ID).
func runLogged(t *testing.T, timeout time.Duration, logPath string, env []string, name string, args ...string) {
	t.Helper()
	log, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	must(t, err)
	defer log.Close()
	fmt.Fprintf(log, "\n$ %s %s\n", name, strings.Join(args, " "))
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	start := time.Now()
	err = cmd.Run()
	t.Logf("%s %s: %v after %s", name, strings.Join(args, " "), errOrOK(err), time.Since(start).Round(time.Second))
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("no end within %s: %w", timeout, err)
		}
		t.Fatalf("%s %s: %v\nlast lines of %s:\n%s", name, strings.Join(args, " "), err, logPath, tail(logPath, 40))
	}
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// tail returns the last n lines of a file.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// chrootEnv is the environment of commands in the Debian tree.
var chrootEnv = []string{
	"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
	"LC_ALL=C",
	"HOME=/root",
	"DEBIAN_FRONTEND=noninteractive",
}

func debootstrap(t *testing.T, target, mirror, logPath string) {
	t.Helper()
	runLogged(t, 30*time.Minute, logPath, chrootEnv, "debootstrap", "--variant=minbase", suite, target, mirror)
	// debootstrap unmounts what it mounted in the target when it ends.
	var left []string
	for _, m := range mountsBelow(target) {
		if m != filepath.Clean(target) {
			left = append(left, m)
		}
	}
	if len(left) > 0 {
		t.Fatalf("debootstrap left mounts below %s: %s", target, strings.Join(left, ", "))
	}
}

// installOpenSSH installs openssh-server without recommends in a chroot of
// root, with /proc, /sys, /dev and /dev/pts bound in and a policy-rc.d that
// stops services from starting.
func installOpenSSH(t *testing.T, root, logPath string) {
	t.Helper()
	unbind := bindChroot(t, root)
	policy := filepath.Join(root, "usr/sbin/policy-rc.d")
	must(t, os.WriteFile(policy, []byte("#!/bin/sh\n# forge test: no service starts in a chroot\nexit 101\n"), 0o755))
	runLogged(t, 10*time.Minute, logPath, chrootEnv, "chroot", root, "apt-get", "update")
	runLogged(t, 20*time.Minute, logPath, chrootEnv, "chroot", root,
		"apt-get", "install", "-y", "--no-install-recommends", "openssh-server")
	must(t, os.Remove(policy))
	unbind()
}

// bindChroot bind-mounts the host's /proc, /sys, /dev and /dev/pts into
// root and returns a function that unmounts them in reverse order (lazily
// if they are busy); a t.Cleanup does the same if the test ends first.
func bindChroot(t *testing.T, root string) func() {
	t.Helper()
	var mounted []string
	unbind := func() {
		for i := len(mounted) - 1; i >= 0; i-- {
			m := mounted[i]
			if !slices.Contains(mountsBelow(m), m) {
				continue
			}
			if err := unix.Unmount(m, 0); err != nil {
				t.Logf("unmount %s: %v; detaching it lazily", m, err)
				if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
					t.Errorf("detach %s: %v", m, err)
				}
			}
		}
		mounted = nil
	}
	t.Cleanup(unbind)
	for _, dir := range []string{"proc", "sys", "dev", "dev/pts"} {
		dst := filepath.Join(root, dir)
		// The tree decides what its paths are: refuse to bind through a
		// symlink, which could point anywhere on the host.
		var st unix.Stat_t
		if err := unix.Lstat(dst, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			t.Fatalf("cannot bind /%s into the chroot: %s is not a directory (%v)", dir, dst, err)
		}
		if err := unix.Mount("/"+dir, dst, "", unix.MS_BIND, ""); err != nil {
			t.Fatalf("bind /%s to %s: %v", dir, dst, err)
		}
		mounted = append(mounted, dst)
	}
	return unbind
}

// dpkgReport is what dpkg says of an installed tree.
type dpkgReport struct {
	audit  string   // dpkg --audit: empty when every package is fine
	verify []string // dpkg -V: one line per file that fails a check
}

func dpkgChecks(t *testing.T, root string) dpkgReport {
	t.Helper()
	audit, _ := chrootOutput(t, root, "dpkg", "--audit")
	verify, _ := chrootOutput(t, root, "dpkg", "-V")
	var r dpkgReport
	r.audit = strings.TrimSpace(audit)
	for _, l := range strings.Split(verify, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			r.verify = append(r.verify, l)
		}
	}
	return r
}

// chrootOutput runs a command in a chroot of root and returns its combined
// output and exit status; only a failure to run it at all fails t.
func chrootOutput(t *testing.T, root, name string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "chroot", append([]string{root, name}, args...)...)
	cmd.Dir = "/"
	cmd.Env = chrootEnv
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case ctx.Err() != nil:
		t.Fatalf("chroot %s %s: no end within 10 minutes", root, name)
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("chroot %s %s: %v", root, name, err)
	}
	return string(out), 0
}
