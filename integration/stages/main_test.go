// Package stages_test runs forge's simple stages as the builder does:
// cmd/forge-stages, linked into a libdir, started as
// `LIBDIR/osbuild-run LIBDIR/stages/NAME` with the arguments as JSON on
// stdin, against small real trees built by hand (passwd files, zoneinfo,
// systemd units, kernels, a shell and its libraries copied from the
// host). It needs root (useradd --root, chroot, files owned by other
// users); as anyone else it skips.
package stages_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/forge-build/forge/integration/itest"
)

// libDir is forge's libdir, built for this run: osbuild-run and
// stages/NAME, links of cmd/forge-stages.
var libDir string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping integration/stages: needs root (useradd --root, chroot, chown)")
		os.Exit(0)
	}
	os.Exit(itest.RunWithLibdir(m, &libDir))
}

// runStage runs a stage on tree the builder's way and returns its output
// (stdout and stderr) and error. Afterwards nothing may be mounted below
// the tree.
func runStage(t *testing.T, name, tree, options string) (string, error) {
	t.Helper()
	cmd, err := itest.StageCommand(context.Background(), libDir, "stages/"+name,
		map[string]any{"tree": tree, "options": json.RawMessage(options)})
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s: %v", name, err)
	}
	if m := itest.MountsUnder(tree); len(m) > 0 {
		t.Errorf("%s left mounts below the tree: %q", name, m)
	}
	return out.String(), err
}

// mustRun runs a stage and fails the test unless it succeeds.
func mustRun(t *testing.T, name, tree, options string) string {
	t.Helper()
	out, err := runStage(t, name, tree, options)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, options, err, out)
	}
	return out
}

// mustFail runs a stage that must exit 1 with a message that names the
// stage and contains want.
func mustFail(t *testing.T, name, tree, options, want string) {
	t.Helper()
	out, err := runStage(t, name, tree, options)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("%s %s: %v, want exit status 1\n%s", name, options, err, out)
	}
	if !strings.Contains(out, name+": ") || !strings.Contains(out, want) {
		t.Errorf("%s %s: output %q, want %q from %s", name, options, out, want, name)
	}
}
