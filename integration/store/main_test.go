// Package store_test runs the `forge store` CLI as root against real
// filesystems and checks the store's contract (issue 2, "What must hold"):
// fidelity, dedup, crash safety, integrity, bad input, diff and gc.
//
// TestMain builds the CLI once from the module root with
// `go build -o <tmp>/forge ./cmd/forge`. When not run as root every test
// skips, saying so.
package store_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
)

// harness is what TestMain learns once for all tests; nothing writes it
// after TestMain.
var harness struct {
	bin      string // path of the built forge binary
	skip     string // why every test skips, if it does
	buildErr error  // why building forge failed, if it did
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		harness.skip = "needs root: the store tests chown, mknod, set trusted.* xattrs, mount and attach loop devices"
		fmt.Fprintln(os.Stderr, "integration/store: skipping every test:", harness.skip)
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "forge-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration/store:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	harness.bin = filepath.Join(tmp, "forge")
	harness.buildErr = buildForge(harness.bin)
	if harness.buildErr != nil {
		fmt.Fprintln(os.Stderr, "integration/store:", harness.buildErr)
	}
	code := m.Run()
	// Tests stop what they caused; this catches what a failed one left.
	stopForgeProcesses("", func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "integration/store: "+format+"\n", args...)
	})
	return code
}

// buildForge builds ./cmd/forge of the module that holds the working
// directory (go test runs in the package's directory).
func buildForge(out string) error {
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("build forge: %w", err)
	}
	root, err := moduleRoot(wd)
	if err != nil {
		return fmt.Errorf("build forge: %w", err)
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	cmd := exec.Command(goBin, "build", "-o", out, "./cmd/forge")
	cmd.Dir = root
	if output, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("build forge: %s build -o %s ./cmd/forge in %s: %w\n%s", goBin, out, root, err, output)
	}
	return nil
}

// moduleRoot returns the nearest directory at or above dir holding go.mod.
func moduleRoot(dir string) (string, error) {
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		} else if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		if d == filepath.Dir(d) {
			return "", fmt.Errorf("no go.mod at or above %s", dir)
		}
	}
}

// forgeBin returns the built CLI, or skips or fails t when there is none.
func forgeBin(t testing.TB) string {
	t.Helper()
	if harness.skip != "" {
		t.Skip(harness.skip)
	}
	if harness.buildErr != nil {
		t.Fatal(harness.buildErr)
	}
	return harness.bin
}
