// Package stages_test runs forge's simple stages as the builder does: one
// multi-call binary, linked into a libdir, started as
// `LIBDIR/osbuild-run LIBDIR/stages/NAME` with the arguments as JSON on
// stdin, against small real trees built by hand (passwd files, zoneinfo,
// systemd units, kernels, a shell and its libraries copied from the
// host). It needs root (useradd --root, chroot, files owned by other
// users); as anyone else it skips.
package stages_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// libDir holds the multi-call binary's links: osbuild-run and
// stages/NAME.
var libDir string

// stageMain is the binary's main until cmd/forge-stages lists these
// stages: it is compiled into a package of this directory through an
// overlay, so nothing is written into the repository.
const stageMain = `package main

import (
	"github.com/forge-build/forge/stages/fstab"
	"github.com/forge-build/forge/stages/grub2"
	"github.com/forge-build/forge/stages/hostname"
	"github.com/forge-build/forge/stages/locale"
	"github.com/forge-build/forge/stages/script"
	"github.com/forge-build/forge/stages/stage"
	"github.com/forge-build/forge/stages/systemd"
	"github.com/forge-build/forge/stages/timezone"
	"github.com/forge-build/forge/stages/users"
)

func main() {
	stage.Main([]stage.Stage{
		{Name: "org.osbuild.fstab", Kind: stage.KindStage, Run: fstab.Run},
		{Name: "org.osbuild.grub2", Kind: stage.KindStage, Run: grub2.Run},
		{Name: "org.osbuild.hostname", Kind: stage.KindStage, Run: hostname.Run},
		{Name: "org.osbuild.locale", Kind: stage.KindStage, Run: locale.Run},
		{Name: "org.osbuild.script", Kind: stage.KindStage, Run: script.Run},
		{Name: "org.osbuild.systemd", Kind: stage.KindStage, Run: systemd.Run},
		{Name: "org.osbuild.timezone", Kind: stage.KindStage, Run: timezone.Run},
		{Name: "org.osbuild.users", Kind: stage.KindStage, Run: users.Run},
	})
}
`

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		fmt.Println("skipping integration/stages: needs root (useradd --root, chroot, chown)")
		return 0
	}
	dir, err := os.MkdirTemp("", "forge-stages-itest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := buildLibDir(dir); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return m.Run()
}

// buildLibDir builds the static multi-call binary and links the libdir.
func buildLibDir(dir string) error {
	here, err := os.Getwd()
	if err != nil {
		return err
	}
	mainFile := filepath.Join(dir, "main.go")
	if err := os.WriteFile(mainFile, []byte(stageMain), 0o644); err != nil {
		return err
	}
	overlay, err := json.Marshal(map[string]map[string]string{
		"Replace": {filepath.Join(here, "forgestages", "main.go"): mainFile},
	})
	if err != nil {
		return err
	}
	overlayFile := filepath.Join(dir, "overlay.json")
	if err := os.WriteFile(overlayFile, overlay, 0o644); err != nil {
		return err
	}
	bin := filepath.Join(dir, "forge-stages")
	build := exec.Command("go", "build", "-overlay", overlayFile, "-o", bin, "./forgestages")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build the stages binary: %v\n%s", err, out)
	}
	libDir = filepath.Join(dir, "lib")
	if out, err := exec.Command(bin, "link", libDir).CombinedOutput(); err != nil {
		return fmt.Errorf("forge-stages link: %v\n%s", err, out)
	}
	return nil
}

// runStage runs a stage on tree the builder's way and returns its output
// (stdout and stderr) and error. Afterwards nothing may be mounted below
// the tree.
func runStage(t *testing.T, name, tree, options string) (string, error) {
	t.Helper()
	args, err := json.Marshal(map[string]any{"tree": tree, "options": json.RawMessage(options)})
	if err != nil {
		t.Fatalf("options of %s: %v", name, err)
	}
	cmd := exec.Command(filepath.Join(libDir, "osbuild-run"), filepath.Join(libDir, "stages", name))
	cmd.Stdin = bytes.NewReader(args)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s: %v", name, err)
	}
	if m := mountsBelow(tree); len(m) > 0 {
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

func mountsBelow(dir string) []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return []string{err.Error()}
	}
	var m []string
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == dir || strings.HasPrefix(f[4], dir+"/")) {
			m = append(m, f[4])
		}
	}
	return m
}
