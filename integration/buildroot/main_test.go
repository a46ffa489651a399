// Package buildroot_test drives `forge run` as root: what a command sees
// inside a buildroot, exit codes and signals, and that nothing — no
// process, no mount — outlives a run, even one killed with SIGKILL or run
// eight at once under shared mount propagation.
package buildroot_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge-build/forge/daemon"
	"github.com/forge-build/forge/internal/fstree"
)

var forgeBin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping integration/buildroot: needs root (namespaces, mounts, a store daemon)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "forge-bin-")
	if err != nil {
		panic(err)
	}
	// FORGE_TEST_BIN tests a forge binary built elsewhere (an installed one).
	if forgeBin = os.Getenv("FORGE_TEST_BIN"); forgeBin == "" {
		forgeBin = filepath.Join(dir, "forge")
		build := exec.Command("go", "build", "-o", forgeBin, "./cmd/forge")
		build.Dir = moduleRoot()
		if out, err := build.CombinedOutput(); err != nil {
			fmt.Printf("build forge: %v\n%s", err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
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

// storeDir makes a store whose daemon is stopped when the test ends.
func storeDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(fstree.DiskTempDir(t), "store")
	t.Cleanup(func() { stopDaemon(t, dir) })
	return dir
}

func stopDaemon(t *testing.T, store string) {
	t.Helper()
	c := daemon.NewClient(store)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Ping(ctx)
	if err != nil {
		return
	}
	if out, err := exec.Command(forgeBin, "daemon", "stop", "--store", store).CombinedOutput(); err != nil {
		t.Errorf("forge daemon stop: %v\n%s", err, out)
		syscall.Kill(info.PID, syscall.SIGKILL)
	}
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

// mountLines returns the lines of a mountinfo file.
func mountLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// mountsUnder lists the host's mountpoints under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	for _, l := range mountLines(t, "/proc/self/mountinfo") {
		if f := strings.Fields(l); len(f) > 4 && strings.HasPrefix(f[4], dir) {
			out = append(out, f[4])
		}
	}
	return out
}

// processesWith lists PIDs whose command line contains marker.
func processesWith(marker string) []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(marker)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
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
