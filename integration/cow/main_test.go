// Package cow_test checks forge's copy-on-write mounts (issue 4) from the
// outside, as a user would, through the forge CLI and the real kernel FUSE,
// as root.
//
// The POSIX tests do every operation twice, once in a fresh ext4 directory
// (the reference) and once in a fresh CoW mount over a stored copy of the
// same starting tree, and require the two to agree on what each call
// returned, on the tree the mount shows, and on the tree that a commit of
// the mount exports. Other tests cover commits (twice, with diff), umount
// discarding what was not committed, isolation between two mounts, scratch
// space, a daemon killed under a rw mount, and the real workload:
// debootstrap, then apt-get in a chroot, on CoW mounts.
//
// Every test skips, saying why, when not run as root or without /dev/fuse.
// FORGE_TEST_BIN=<binary> tests a forge binary built elsewhere. Every test
// unmounts what it mounted (lazily as a last resort), stops its store's
// daemon (forge daemon stop, then SIGKILL by PID) and undoes its chroot
// bind mounts in t.Cleanup, also when it fails.
package cow_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/fstree"
)

// forgeBin is the forge binary under test; empty when not root (every test
// then skips before using it).
var forgeBin string

func TestMain(m *testing.M) {
	// The test binary doubles as the child process that some tests need (a
	// second lock holder, a non-root writer): see helper_test.go.
	if os.Getenv(helperEnv) != "" {
		os.Exit(runHelper(os.Args[1:]))
	}
	// Both sides of every comparison run in this process; a fixed umask
	// makes the reference independent of the caller's shell.
	unix.Umask(0o022)
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // every test skips, saying why
	}
	dir, err := os.MkdirTemp("", "forge-cow-bin-")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	// FORGE_TEST_BIN tests a forge binary built elsewhere (an installed one).
	if forgeBin = os.Getenv("FORGE_TEST_BIN"); forgeBin == "" {
		forgeBin = filepath.Join(dir, "forge")
		build := exec.Command(goTool(), "build", "-o", forgeBin, "./cmd/forge")
		build.Dir = moduleRoot()
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Printf("build forge: %v\n%s", err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// goTool finds the go command: on PATH, else next to this test's runtime.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

func moduleRoot() string {
	dir, _ := os.Getwd()
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			panic("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// requireRoot skips t unless it runs as root with /dev/fuse.
func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts FUSE filesystems, chowns, mknods and sets trusted.* xattrs")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
	if forgeBin == "" {
		t.Fatal("no forge binary (TestMain did not build one)")
	}
}

// testDir returns a new directory on disk (ext4 or xfs, not tmpfs) that
// other users may traverse, removed when t ends.
func testDir(t testing.TB) string {
	t.Helper()
	dir := fstree.DiskTempDir(t)
	must(t, os.Chmod(dir, 0o755))
	return dir
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
