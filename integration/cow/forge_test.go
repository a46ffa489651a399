package cow_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/internal/fstree"
	"github.com/forge-build/forge/internal/mountinfo"
)

// cliTimeout bounds one forge command, so that a hung daemon fails the
// test with the command's name instead of hanging it. Commits and exports
// of a Debian tree take their own, longer bound.
const cliTimeout = 5 * time.Minute

// testStore is a store directory whose daemon is stopped when the test
// that made it ends, after that test's mounts are gone.
type testStore struct {
	dir string
}

// newStore makes a store directory on disk; a t.Cleanup stops whatever
// daemon the test starts for it.
func newStore(t testing.TB) *testStore {
	t.Helper()
	s := &testStore{dir: filepath.Join(fstree.DiskTempDir(t), "store")}
	t.Cleanup(func() { s.stopDaemon(t) })
	return s
}

// forge runs `forge SUBCOMMAND --store DIR ARGS...` (sub is "store mount",
// "daemon stop", ...) and returns stdout, stderr and an error that carries
// the command line and stderr.
func (s *testStore) forge(timeout time.Duration, sub string, args ...string) (string, string, error) {
	full := append(strings.Fields(sub), "--store", s.dir)
	full = append(full, args...)
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, forgeBin, full...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	// A daemon spawned by the command must not keep our pipes open; if it
	// does, Wait gives up on them instead of hanging the test.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	if ctx.Err() != nil {
		err = fmt.Errorf("forge %s: no answer within %s (%w)\n%s", strings.Join(full, " "), timeout, err, stderr.String())
	} else if err != nil {
		err = fmt.Errorf("forge %s: %w\n%s", strings.Join(full, " "), err, stderr.String())
	}
	return stdout.String(), stderr.String(), err
}

// must runs a forge command and fails t with its error output when it fails.
func (s *testStore) must(t testing.TB, sub string, args ...string) string {
	t.Helper()
	out, _, err := s.forge(cliTimeout, sub, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var hashLine = regexp.MustCompile(`^[0-9a-f]{64}$`)

// lastHash returns the last line of out, which must be a tree hash.
func lastHash(t testing.TB, what, out string) string {
	t.Helper()
	lines := strings.Split(strings.TrimSpace(out), "\n")
	last := lines[len(lines)-1]
	if !hashLine.MatchString(last) {
		t.Fatalf("%s printed %q; want a tree hash (64 hex digits) as the last line", what, out)
	}
	return last
}

func (s *testStore) importTree(t testing.TB, src string, refs ...string) string {
	t.Helper()
	var args []string
	for _, r := range refs {
		args = append(args, "--ref", r)
	}
	return lastHash(t, "forge store import", s.must(t, "store import", append(args, src)...))
}

// mountRW mounts tree (a ref or hash; "" for an empty tree) read-write at
// mp, creating mp, as a build mounts a stage's tree (--build-root: device
// nodes and set-id bits work, as on the ext4 these tests compare with). A
// t.Cleanup takes down whatever is mounted at or below mp when t ends.
func (s *testStore) mountRW(t testing.TB, tree, mp string) {
	t.Helper()
	s.mountWith(t, tree, mp, "--rw", "--build-root")
}

// mountRWPlain mounts as mountRW does, without --build-root: nosuid,nodev.
func (s *testStore) mountRWPlain(t testing.TB, tree, mp string) {
	t.Helper()
	s.mountWith(t, tree, mp, "--rw")
}

func (s *testStore) mountWith(t testing.TB, tree, mp string, flags ...string) {
	t.Helper()
	must(t, os.MkdirAll(mp, 0o755))
	args := append([]string(nil), flags...)
	if tree != "" {
		args = append(args, tree)
	}
	t.Cleanup(func() { s.unmountAll(t, mp) })
	s.must(t, "store mount", append(args, mp)...)
	if !isForgeMount(mp) {
		t.Fatalf("forge store mount --rw returned, but %s is not a forge mount", mp)
	}
}

// commit commits the mount at mp and returns the new tree hash.
func (s *testStore) commit(t testing.TB, mp string, refs ...string) string {
	t.Helper()
	return s.commitWithin(t, cliTimeout, mp, refs...)
}

func (s *testStore) commitWithin(t testing.TB, timeout time.Duration, mp string, refs ...string) string {
	t.Helper()
	var args []string
	for _, r := range refs {
		args = append(args, "--ref", r)
	}
	out, _, err := s.forge(timeout, "store commit", append(args, mp)...)
	if err != nil {
		t.Fatal(err)
	}
	return lastHash(t, "forge store commit", out)
}

func (s *testStore) export(t testing.TB, tree, dst string) {
	t.Helper()
	s.exportWithin(t, cliTimeout, tree, dst)
}

func (s *testStore) exportWithin(t testing.TB, timeout time.Duration, tree, dst string) {
	t.Helper()
	if _, _, err := s.forge(timeout, "store export", tree, dst); err != nil {
		t.Fatal(err)
	}
}

// umount unmounts mp with `forge store umount` (not lazily) or fails t.
func (s *testStore) umount(t testing.TB, mp string) {
	t.Helper()
	s.must(t, "store umount", mp)
	if isForgeMount(mp) {
		t.Fatalf("forge store umount %s succeeded, but the mount is still there", mp)
	}
}

// unmountAll takes down every mount below mp (chroot binds, a /proc that
// debootstrap left), deepest first, then the forge mount at mp: with forge
// umount --lazy, and with a lazy umount(2) if forge cannot.
func (s *testStore) unmountAll(t testing.TB, mp string) {
	t.Helper()
	below := mountsBelow(mp)
	for _, m := range below {
		if m == filepath.Clean(mp) {
			continue
		}
		t.Logf("cleanup: unmounting %s, left mounted below %s", m, mp)
		if err := unix.Unmount(m, 0); err != nil {
			if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
				t.Errorf("cleanup: unmount %s: %v", m, err)
			}
		}
	}
	if !isForgeMount(mp) {
		return
	}
	if _, _, err := s.forge(cliTimeout, "store umount", "--lazy", mp); err != nil {
		t.Logf("cleanup: %v; detaching %s with umount(2)", err, mp)
		if err := unix.Unmount(mp, unix.MNT_DETACH); err != nil {
			t.Errorf("cleanup: detach %s: %v", mp, err)
		}
	}
}

// daemonPID returns the PID of the store's daemon, or fails t.
func (s *testStore) daemonPID(t testing.TB) int {
	t.Helper()
	c := client.NewClient(s.dir)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	info, err := c.Ping(ctx)
	if err != nil {
		t.Fatalf("no daemon answers for %s: %v", s.dir, err)
	}
	return info.PID
}

// stopDaemon stops the store's daemon: forge daemon stop, then SIGKILL by
// its PID if it is still there.
func (s *testStore) stopDaemon(t testing.TB) {
	t.Helper()
	c := client.NewClient(s.dir)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Ping(ctx)
	if err != nil {
		return
	}
	if _, _, err := s.forge(2*time.Minute, "daemon stop"); err != nil {
		t.Errorf("cleanup: %v", err)
	}
	if !waitGone(info.PID, 30*time.Second) {
		t.Errorf("cleanup: daemon %d still runs after forge daemon stop; killing it", info.PID)
		syscall.Kill(info.PID, syscall.SIGKILL)
		waitGone(info.PID, 10*time.Second)
	}
}

// waitGone waits for process pid to end and reports whether it did.
func waitGone(pid int, within time.Duration) bool {
	for deadline := time.Now().Add(within); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); errors.Is(err, syscall.ESRCH) {
			return true
		}
		// A zombie counts as gone.
		if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && bytes.Contains(b, []byte(") Z ")) {
			return true
		}
	}
	return false
}

// mountEntry is what the tests need of one /proc/self/mountinfo line.
type mountEntry struct {
	mountpoint, fstype, source string
}

func mountTable() []mountEntry {
	ms, err := mountinfo.Read()
	if err != nil {
		return nil
	}
	out := make([]mountEntry, 0, len(ms))
	for _, m := range ms {
		out = append(out, mountEntry{mountpoint: m.Point, fstype: m.FSType, source: m.Source})
	}
	return out
}

// isForgeMount reports whether a forge mount is at mp: FUSE, or the
// overlay of a writable mount (whose source forge names).
func isForgeMount(mp string) bool {
	mp = filepath.Clean(mp)
	for _, m := range mountTable() {
		if m.mountpoint == mp && (strings.HasPrefix(m.fstype, "fuse") ||
			m.fstype == "overlay" && strings.HasPrefix(m.source, "forge")) {
			return true
		}
	}
	return false
}

// mountsBelow lists the mount points at or below dir, deepest first (the
// order to unmount them in).
func mountsBelow(dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, m := range mountTable() {
		if m.mountpoint == dir || strings.HasPrefix(m.mountpoint, dir+"/") {
			out = append(out, m.mountpoint)
		}
	}
	// Later mounts stack on earlier ones; reverse table order, then by
	// depth, unmounts children before parents.
	slices.Reverse(out)
	slices.SortStableFunc(out, func(a, b string) int { return strings.Count(b, "/") - strings.Count(a, "/") })
	return out
}

// scratchUsage walks <store>/tmp and returns how many entries it holds
// (directories included, the root not) and how many bytes they allocate.
func (s *testStore) scratchUsage(t testing.TB) (entries int, allocated int64, names []string) {
	t.Helper()
	root := filepath.Join(s.dir, "tmp")
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root && errors.Is(err, fs.ErrNotExist) {
				return filepath.SkipDir
			}
			return err
		}
		if p == root {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		entries++
		allocated += st.Blocks * 512
		if len(names) < 20 {
			rel, _ := filepath.Rel(root, p)
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return entries, allocated, names
}
