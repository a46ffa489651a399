// Package buildroot_test drives `forge run` as root: what a command sees
// inside a buildroot, exit codes and signals, and that nothing — no
// process, no mount — outlives a run, even one killed with SIGKILL or run
// eight at once under shared mount propagation.
package buildroot_test

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/internal/fstree"
	"github.com/forge-build/forge/internal/mountinfo"
)

var forgeBin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping integration/buildroot: needs root (namespaces, mounts, a store daemon)")
		os.Exit(0)
	}
	os.Exit(itest.RunWithForge(m, &forgeBin))
}

// storeDir makes a store whose daemon is stopped when the test ends.
func storeDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(fstree.DiskTempDir(t), "store")
	t.Cleanup(func() { itest.StopDaemon(t, forgeBin, dir) })
	return dir
}

// forge runs the CLI; it returns stdout, stderr and the exit status.
func forge(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(forgeBin, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("forge %s: %v", strings.Join(args, " "), err)
	}
	return stdout.String(), stderr.String(), code
}

// mustForge runs the CLI and fails the test unless it exits 0.
func mustForge(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, code := forge(t, args...)
	if code != 0 {
		t.Fatalf("forge %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// mountTable reads a mountinfo file (the host's, another namespace's).
func mountTable(t *testing.T, path string) []mountinfo.Mount {
	t.Helper()
	ms, err := mountinfo.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// mountsUnder lists the host's mountpoints at or under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	return mountinfo.Under(mountTable(t, mountinfo.Self), dir)
}

// eventually polls cond until it holds; it fails the test with what
// describe says after a generous deadline (cleanup is asynchronous, not
// timed).
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	var last string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		var ok bool
		if ok, last = cond(); ok {
			return
		}
	}
	t.Fatalf("%s: still %s", what, last)
}
