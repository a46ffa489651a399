// Package itest holds what forge's integration tests (integration/...)
// share: building forge and its libdir once per test binary, running a
// stage of the libdir, stopping a store's daemon, and finding mounts,
// processes and loop devices a test left behind.
package itest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/internal/aptmirror"
	"github.com/forge-build/forge/internal/mountinfo"
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

// goTool is the go command: on PATH, or the one that built this test (a
// test binary run directly, as root, may have a PATH without it).
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// GoBuild builds package pkg (relative to the module root) into out;
// static builds without cgo, as the libdir's binaries must be.
func GoBuild(out, pkg string, static bool) error {
	root, err := ModuleRoot()
	if err != nil {
		return err
	}
	cmd := exec.Command(goTool(), "build", "-o", out, pkg)
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

// RunWithForge is the body of a TestMain whose tests run forge: it sets
// *forge to $FORGE_TEST_BIN or to a forge built into a new temporary
// directory (which other users may traverse, so that tests can run forge
// as nobody), runs the tests and removes the directory.
func RunWithForge(m *testing.M, forge *string) int {
	return runInTempDir(m, "forge-bin-", func(dir string) error {
		if err := os.Chmod(dir, 0o755); err != nil {
			return err
		}
		var err error
		*forge, err = Forge(dir)
		return err
	})
}

// RunWithLibdir is the body of a TestMain whose tests run the libdir's
// stages and assemblers: it builds the libdir into a new temporary
// directory, sets *libdir to it, runs the tests and removes the
// directory.
func RunWithLibdir(m *testing.M, libdir *string) int {
	return runInTempDir(m, "forge-libdir-", func(dir string) error {
		*libdir = dir
		return Libdir(dir)
	})
}

// runInTempDir runs the tests once prepare has filled a new temporary
// directory, and removes the directory after them. A failed preparation
// fails the run (exit status 1) without running any test.
func runInTempDir(m *testing.M, pattern string, prepare func(dir string) error) int {
	dir, err := os.MkdirTemp("", pattern)
	if err == nil {
		defer os.RemoveAll(dir)
		err = prepare(dir)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// StageCommand is the command that runs the stage or assembler path of
// libdir ("stages/NAME", "assemblers/NAME") as the builder does: through
// libdir's osbuild-run, with args as JSON on stdin. The caller sets its
// output, environment and process attributes.
func StageCommand(ctx context.Context, libdir, path string, args any) (*exec.Cmd, error) {
	b, err := json.Marshal(args)
	if err != nil {
		return nil, fmt.Errorf("arguments of %s: %w", path, err)
	}
	cmd := exec.CommandContext(ctx, filepath.Join(libdir, "osbuild-run"), filepath.Join(libdir, path))
	cmd.Stdin = bytes.NewReader(b)
	return cmd, nil
}

// StopDaemon stops the daemon of store, if one runs, with forge daemon
// stop, which returns once the daemon has exited (SIGKILL by PID when
// that fails): the store can be removed then. It returns the daemon's
// PID, 0 when none answered.
func StopDaemon(t testing.TB, forge, store string) int {
	t.Helper()
	c := client.NewClient(store)
	defer c.Close()
	// Generous: on a loaded machine a ping that timed out left the
	// daemon running, and it wrote into the store while the test's
	// cleanup removed it ("directory not empty").
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	info, err := c.Ping(ctx)
	if err != nil {
		return 0
	}
	if out, err := exec.Command(forge, "daemon", "stop", "--store", store).CombinedOutput(); err != nil {
		t.Errorf("forge daemon stop: %v\n%s", err, out)
		syscall.Kill(info.PID, syscall.SIGKILL)
	}
	return info.PID
}

// MountsUnder lists this namespace's mountpoints at or under dir.
func MountsUnder(dir string) []string {
	ms, err := mountinfo.Read()
	if err != nil {
		return []string{"(" + err.Error() + ")"}
	}
	return mountinfo.Under(ms, dir)
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

// LoopsBackedUnder lists the loop devices (as "loopN=backing") whose
// backing file is below prefix, from sysfs: only the devices of a test
// whose files are there.
func LoopsBackedUnder(prefix string) []string {
	files, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // detached while we looked
		}
		backing := strings.TrimSpace(string(b))
		if strings.HasPrefix(backing, prefix+"/") {
			out = append(out, filepath.Base(filepath.Dir(filepath.Dir(f)))+"="+backing)
		}
	}
	sort.Strings(out)
	return out
}

// LockedBuffer collects a log that another goroutine writes (a daemon's
// stderr, a server's logger) while the test reads it.
type LockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *LockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *LockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// DebianMirror returns the host's apt mirror for suite, failing t unless
// the tools are on PATH (scripts/install-deps test installs them) and the
// mirror answers.
func DebianMirror(t testing.TB, suite string, tools ...string) string {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("needs %s (scripts/install-deps test installs it): %v", tool, err)
		}
	}
	mirror, from, err := aptmirror.Find("/", suite)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := aptmirror.Check(ctx, mirror, suite); err != nil {
		t.Fatalf("the host's Debian mirror (from %s) does not answer: %v", from, err)
	}
	return mirror
}
