// Package debstages_test runs org.osbuild.mmdebstrap and org.osbuild.apt
// as the builder does — cmd/forge-stages linked into a libdir, started
// as `LIBDIR/osbuild-run LIBDIR/stages/NAME` with the arguments as JSON
// on stdin — directly on the host (the lead's builder tests run them in
// a buildroot). One mmdebstrap of a minimal bookworm, from the host's
// own apt mirror, is shared by every test of the package; the apt tests
// install into it in turn.
//
// It needs root (mmdebstrap's root mode, mounts, chroot), mmdebstrap,
// debian-archive-keyring and a reachable Debian mirror in the host's apt
// sources; as anyone else it skips.
package debstages_test

import (
	"bytes"
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

	"github.com/forge-build/forge/integration/itest"
)

// suite is the Debian release the tests bootstrap.
const suite = "bookworm"

// keyring is the archive keyring the stage uses by default.
const keyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

var (
	// workDir holds the libdir, the shared tree and logs.
	workDir string
	// libDir is forge's libdir, built for this run: osbuild-run and
	// stages/NAME, links of cmd/forge-stages.
	libDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("skipping integration/debstages: needs root (mmdebstrap --mode=root, mounts, chroot)")
		return 0
	}
	dir, err := os.MkdirTemp("", "forge-debstages-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	workDir = dir
	libDir = filepath.Join(dir, "lib")
	if err := itest.Libdir(libDir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.RemoveAll(dir)
		return 1
	}
	code := m.Run()
	// A test that left a mount behind has failed already; never remove
	// through a mount.
	if left := mountsBelow(dir); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "not removing %s: still mounted below it: %s\n", dir, strings.Join(left, ", "))
		return 1
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
	}
	return code
}

// stageCmd is a stage run the builder's way, not started yet: in a
// process group of its own, its output in out.
func stageCmd(t *testing.T, name, tree string, options any) (*exec.Cmd, *bytes.Buffer) {
	t.Helper()
	cmd, err := itest.StageCommand(context.Background(), libDir, "stages/"+name, map[string]any{"tree": tree, "options": options})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	// Should the test end first, the stage goes with it (by its PID; its
	// own cleanup kills what it started).
	t.Cleanup(func() {
		if cmd.Process != nil && cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	return cmd, &out
}

// runStage runs a stage to its end and returns its output and error. It
// writes the output to a log in the work directory too.
func runStage(t *testing.T, name, tree string, options any) (string, error) {
	t.Helper()
	cmd, out := stageCmd(t, name, tree, options)
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s: %v after %s", name, errOrOK(err), time.Since(start).Round(100*time.Millisecond))
	logFile := filepath.Join(workDir, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())+".log")
	if werr := os.WriteFile(logFile, out.Bytes(), 0o644); werr != nil {
		t.Log(werr)
	}
	return out.String(), err
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-n):], "\n")
}

// The shared bootstrap.
var boot struct {
	once   sync.Once
	tree   string
	mirror string
	from   string // the host file that names the mirror
	took   time.Duration
	err    error
}

// bootstrapped returns the tree org.osbuild.mmdebstrap made of a minimal
// bookworm, making it on the first call, and the mirror it came from.
func bootstrapped(t *testing.T) (tree, mirror string) {
	t.Helper()
	boot.once.Do(func() {
		for _, tool := range []string{"mmdebstrap", "chroot"} {
			if _, err := exec.LookPath(tool); err != nil {
				boot.err = fmt.Errorf("needs %s (apt-get install mmdebstrap): %w", tool, err)
				return
			}
		}
		if _, err := os.Stat(keyring); err != nil {
			boot.err = fmt.Errorf("needs the archive keyring (apt-get install debian-archive-keyring): %w", err)
			return
		}
		boot.mirror, boot.from, boot.err = aptMirror()
		if boot.err != nil {
			return
		}
		if boot.err = checkMirror(boot.mirror, boot.from); boot.err != nil {
			return
		}
		boot.tree = filepath.Join(workDir, "tree")
		if boot.err = os.Mkdir(boot.tree, 0o755); boot.err != nil {
			return
		}
		cmd, out := stageCmd(t, "org.osbuild.mmdebstrap", boot.tree, map[string]any{
			"suite": suite, "variant": "minbase", "mirror": boot.mirror,
		})
		start := time.Now()
		err := cmd.Run()
		boot.took = time.Since(start)
		os.WriteFile(filepath.Join(workDir, "mmdebstrap.log"), out.Bytes(), 0o644)
		if err != nil {
			boot.err = fmt.Errorf("org.osbuild.mmdebstrap of %s from %s: %v after %s; last lines:\n%s",
				suite, boot.mirror, err, boot.took.Round(time.Second), tail(out.String(), 30))
		}
	})
	if boot.err != nil {
		t.Fatal(boot.err)
	}
	return boot.tree, boot.mirror
}

// chrootOutput runs a command in a chroot of root (no mounts needed) and
// returns its output and exit status; only a failure to run it fails t.
func chrootOutput(t *testing.T, root string, args ...string) (string, int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: root}
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL=C"}
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		return string(out), exit.ExitCode()
	case err != nil:
		t.Fatalf("chroot %s %s: %v", root, strings.Join(args, " "), err)
	}
	return string(out), 0
}

// packageStatus is what dpkg says of a package in the tree.
func packageStatus(t *testing.T, tree, pkg string) string {
	t.Helper()
	out, _ := chrootOutput(t, tree, "/usr/bin/dpkg-query", "-W", "-f=${Status}", pkg)
	return strings.TrimSpace(out)
}

const installed = "install ok installed"
