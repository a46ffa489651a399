package fstree

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/mountinfo"
)

// TestDirEnv names the environment variable that points tests at a disk
// directory other than /var/tmp.
const TestDirEnv = "FORGE_TEST_DIR"

// RequireRoot skips t when the process is not root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds trees with chown, mknod and trusted.* xattrs")
	}
}

// DiskTempDir returns a new empty directory on a disk filesystem ($FORGE_TEST_DIR,
// else /var/tmp; t.TempDir's /tmp may be tmpfs, which has no security.*
// xattrs), after checking with CheckFilesystem that it holds everything
// the fixture needs. It is removed when t ends, unless something is still
// mounted below it: then t fails and the directory stays, so that removal
// never reaches into a mounted filesystem.
func DiskTempDir(t testing.TB) string {
	t.Helper()
	base := os.Getenv(TestDirEnv)
	if base == "" {
		base = "/var/tmp"
	}
	dir, err := os.MkdirTemp(base, "forge-test-")
	if err != nil {
		t.Fatalf("temp dir: %v", err)
	}
	t.Cleanup(func() {
		if m := mountsBelow(dir); len(m) > 0 {
			t.Errorf("not removing %s: still mounted below it: %s", dir, strings.Join(m, ", "))
			return
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Errorf("remove temp dir: %v", err)
		}
	})
	if err := CheckFilesystem(dir); err != nil {
		t.Fatalf("%v (set %s to a directory on ext4 or xfs)", err, TestDirEnv)
	}
	return dir
}

// mountsBelow lists the mount points at or below dir.
func mountsBelow(dir string) []string {
	ms, err := mountinfo.Read()
	if err != nil {
		return nil
	}
	return mountinfo.Under(ms, dir)
}

// MustBuildFixture builds the fixture in dir or fails t.
func MustBuildFixture(t testing.TB, dir string) {
	t.Helper()
	if err := BuildFixture(dir); err != nil {
		t.Fatalf("build fixture: %v", err)
	}
}

// MustAddLinkedSpecials adds to the fixture in dir what it lacks, for the
// copiers that must keep it: a directory linked-specials with a symbolic
// link and a FIFO of two names each (link(2) links a symlink itself).
func MustAddLinkedSpecials(t testing.TB, dir string) {
	t.Helper()
	extra := filepath.Join(dir, "linked-specials")
	for _, err := range []error{
		os.Mkdir(extra, 0o755),
		os.Symlink("../nowhere", filepath.Join(extra, "sym-1")),
		os.Link(filepath.Join(extra, "sym-1"), filepath.Join(extra, "sym-2")),
		unix.Mkfifo(filepath.Join(extra, "fifo-1"), 0o640),
		os.Link(filepath.Join(extra, "fifo-1"), filepath.Join(extra, "fifo-2")),
	} {
		if err != nil {
			t.Fatalf("linked specials: %v", err)
		}
	}
}

// MustRandomTree fills dir with RandomTree or fails t.
func MustRandomTree(t testing.TB, dir string, seed uint64, totalBytes int64) int64 {
	t.Helper()
	n, err := RandomTree(dir, seed, totalBytes)
	if err != nil {
		t.Fatalf("random tree: %v", err)
	}
	return n
}

// AssertSame fails t with every difference between the trees at a and b.
func AssertSame(t testing.TB, a, b string, opts Options) {
	t.Helper()
	diffs, err := Compare(a, b, opts)
	if err != nil {
		t.Fatalf("compare %s with %s: %v", a, b, err)
	}
	if len(diffs) == 0 {
		return
	}
	var sb strings.Builder
	for _, d := range diffs {
		sb.WriteString("\n\t" + d.String())
	}
	t.Errorf("%s and %s differ in %d properties:%s", a, b, len(diffs), sb.String())
}
