// Package itest holds what forge's integration tests (integration/...)
// share: building forge and its libdir once per test binary, stopping a
// store's daemon, and finding mounts and processes a test left behind.
package itest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge-build/forge/daemon"
	"github.com/forge-build/forge/internal/fstree"
)

// BinEnv names a forge binary built elsewhere (an installed one) for the
// tests to test instead of building one; its libdir is found beside it.
const BinEnv = "FORGE_TEST_BIN"

// ModuleRoot is the directory of the go.mod above the working directory.
func ModuleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("no go.mod above the test's directory")
		}
		dir = parent
	}
}

// GoBuild builds package pkg (relative to the module root) into out;
// static builds without cgo, as the libdir's binaries must be.
func GoBuild(out, pkg string, static bool) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Dir = root
	cmd.Env = os.Environ()
	if static {
		cmd.Env = append(cmd.Env, "CGO_ENABLED=0")
	}
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s: %v\n%s", pkg, err, b)
	}
	return nil
}

// Forge returns the forge binary to test: $FORGE_TEST_BIN, or one built
// into dir.
func Forge(dir string) (string, error) {
	if bin := os.Getenv(BinEnv); bin != "" {
		return bin, nil
	}
	bin := filepath.Join(dir, "forge")
	return bin, GoBuild(bin, "./cmd/forge", false)
}

// Libdir builds forge's libdir (osbuild-run, stages/, assemblers/) into
// dir, as `make` does into bin/libexec/forge.
func Libdir(dir string) error {
	bin := filepath.Join(dir, "forge-stages")
	if err := GoBuild(bin, "./cmd/forge-stages", true); err != nil {
		return err
	}
	if b, err := exec.Command(bin, "link", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("forge-stages link %s: %v\n%s", dir, err, b)
	}
	return nil
}

// StopDaemon stops the daemon of store, if one runs, with forge daemon
// stop (SIGKILL by PID when that fails).
func StopDaemon(t testing.TB, forge, store string) {
	t.Helper()
	c := daemon.NewClient(store)
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	info, err := c.Ping(ctx)
	if err != nil {
		return
	}
	if out, err := exec.Command(forge, "daemon", "stop", "--store", store).CombinedOutput(); err != nil {
		t.Errorf("forge daemon stop: %v\n%s", err, out)
		syscall.Kill(info.PID, syscall.SIGKILL)
	}
}

// MountsUnder lists this namespace's mountpoints at or under dir.
func MountsUnder(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return []string{"(cannot read /proc/self/mountinfo: " + err.Error() + ")"}
	}
	dir = filepath.Clean(dir)
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		f := strings.Fields(l)
		if len(f) < 5 {
			continue
		}
		if mp := fstree.UnescapeMountinfo(f[4]); mp == dir || strings.HasPrefix(mp, dir+"/") {
			out = append(out, mp)
		}
	}
	return out
}

// ProcessesWith lists the PIDs (other than this process) whose command
// line contains marker.
func ProcessesWith(marker string) []string {
	var pids []string
	self := strconv.Itoa(os.Getpid())
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && e.Name() != self && bytes.Contains(b, []byte(marker)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}
