// Package mount_test mounts stored trees read-only through package fusefs,
// as root against the real kernel FUSE, and checks what issue 3 asks of
// such mounts: every property of the fidelity fixture reads back, other
// users see what modes and ACLs let them see, corruption is EIO for the
// file concerned only, unmount refuses a busy mount unless lazy, and
// mounting costs the same whatever the tree's size.
//
// Every test skips, saying why, when not run as root or without /dev/fuse.
// Every mount is unmounted in t.Cleanup (lazily if something still holds
// it), even when the test fails, before its store is closed.
package mount_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/fstree"
	"github.com/forge-build/forge/internal/mountinfo"
)

// requireFUSE skips t unless it runs as root with /dev/fuse.
func requireFUSE(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts FUSE filesystems and builds trees with chown, mknod and trusted.* xattrs")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
}

// testDir returns a new directory on disk (not tmpfs) that other users may
// traverse, removed when t ends.
func testDir(t testing.TB) string {
	t.Helper()
	dir := fstree.DiskTempDir(t)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// openStore opens a store under dir, closed when t ends (after the mounts
// made later, since cleanups run last first).
func openStore(t testing.TB, dir string) *cas.Store {
	t.Helper()
	s, err := cas.Open(filepath.Join(dir, "store"), cas.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close store: %v", err)
		}
	})
	return s
}

// importTree stores the tree at root and returns its hash.
func importTree(t testing.TB, s *cas.Store, root string) digest.Hash {
	t.Helper()
	res, err := s.Import(context.Background(), root, cas.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return res.Tree
}

// logBuffer collects what a mount logs, and passes it on to the test log.
type logBuffer struct {
	t     testing.TB
	mu    sync.Mutex
	lines []string
}

func (l *logBuffer) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	l.mu.Lock()
	l.lines = append(l.lines, line)
	l.mu.Unlock()
	l.t.Logf("mount: %s", line)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n")
}

// mountTree mounts tree at a new directory dir/name and returns the mount.
// A t.Cleanup unmounts it, lazily if it is busy, and waits for its server to
// stop.
func mountTree(t testing.TB, src fusefs.Source, tree digest.Hash, dir, name string, opts fusefs.Options) *fusefs.Mount {
	t.Helper()
	mnt := filepath.Join(dir, name)
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	if opts.Logf == nil {
		opts.Logf = (&logBuffer{t: t}).logf
	}
	m, err := fusefs.MountReadOnly(mnt, src, tree, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unmount(t, m) })
	return m
}

// unmount takes m down for good: plainly if it can, lazily if it is busy,
// then waits (a bounded time) for the server to stop.
func unmount(t testing.TB, m *fusefs.Mount) {
	t.Helper()
	err := m.Unmount(false)
	if errors.Is(err, syscall.EBUSY) {
		t.Logf("%s is busy, unmounting lazily", m.Mountpoint())
		err = m.Unmount(true)
	}
	if err != nil {
		t.Errorf("unmount: %v", err)
		return
	}
	done := make(chan struct{})
	go func() {
		m.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Errorf("%s: the FUSE server has not stopped 30s after unmount", m.Mountpoint())
	}
}

// findMount returns the first mount at path in this process's mount
// table.
func findMount(t testing.TB, path string) (mountinfo.Mount, bool) {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Point == path {
			return m, true
		}
	}
	return mountinfo.Mount{}, false
}

// hasOption reports whether the comma-separated list opts holds opt.
func hasOption(opts, opt string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// runAs runs a command as uid:gid with no supplementary groups and returns
// its exit code and combined output. Nothing it touches is in the test
// process's own mounts except the paths it is given (see go-fuse's notes on
// forking while serving: no working directory and no inherited descriptors
// point into a mount).
func runAs(t testing.TB, uid, gid uint32, name string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, string(out)
	case errors.As(err, &exit):
		return exit.ExitCode(), string(out)
	}
	t.Fatalf("run %s as %d:%d: %v", name, uid, gid, err)
	return -1, ""
}

// lstat is unix.Lstat or fail.
func lstat(t testing.TB, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st
}
