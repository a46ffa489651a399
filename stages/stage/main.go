package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
)

// RunnerName is the libdir's format-1 runner: `osbuild-run STAGE` runs
// STAGE with the runner's stdin, as osbuild's does.
const RunnerName = "osbuild-run"

// Runners are the format-2 runners of the libdir, LIBDIR/runners/NAME:
// `RUNNER /run/osbuild/bin/STAGE` runs the stage as osbuild's
// org.osbuild.linux does. forge's buildroot has done any distribution's
// setup already, so one generic runner serves every runner name.
var Runners = []string{"org.osbuild.linux"}

// RunnerDir is where osbuild's buildroot binds the runner; a binary
// started from there is a runner, whatever the manifest called it.
const RunnerDir = "/run/osbuild/runner/"

// passwdPath is what a format-2 runner makes sure exists (osbuild's
// runners.minimal_passwd).
const passwdPath = "/etc/passwd"

// minimalPasswd is osbuild's minimal /etc/passwd, for tools that need a
// root user.
const minimalPasswd = "root:x:0:0:root:/root:/bin/bash"

// host is what main1 touches outside its arguments, replaced in tests.
type host struct {
	argsPath   string
	passwdPath string
	exec       func(path string, argv, env []string) error
}

func defaultHost() host {
	return host{argsPath: ArgumentsFile(), passwdPath: passwdPath, exec: syscall.Exec}
}

func main1(ctx context.Context, stages []Stage, argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return dispatch(ctx, defaultHost(), stages, argv, stdin, stdout, stderr)
}

func dispatch(ctx context.Context, h host, stages []Stage, argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := filepath.Base(argv[0])
	if name == RunnerName {
		return runner(h, RunnerName, argv, stderr)
	}
	if slices.Contains(Runners, name) || strings.HasPrefix(argv[0], RunnerDir) {
		ensurePasswd(h.passwdPath, stderr)
		return runner(h, name, argv, stderr)
	}
	if s, ok := find(stages, argv[0]); ok {
		return runStage(ctx, h, s, stdin, stderr)
	}
	if len(argv) == 3 && argv[1] == "link" {
		if err := Link(argv[2], stages); err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, err)
			return 1
		}
		return 0
	}
	if len(argv) == 2 && argv[1] == "list" {
		for _, s := range stages {
			fmt.Fprintf(stdout, "%s/%s\n", s.Kind, s.Name)
		}
		return 0
	}
	fmt.Fprintf(stderr, "%s: forge's stages and assemblers, one binary run under their names.\n"+
		"Usage:\n  %s link LIBDIR   make LIBDIR/osbuild-run, LIBDIR/runners/NAME, LIBDIR/stages/NAME,\n"+
		"                  LIBDIR/assemblers/NAME and their NAME.meta.json\n"+
		"  %s list          name every stage and assembler\n", name, name, name)
	return 2
}

// find is the stage or assembler argv0 runs as: the one of its base
// name. A stage and an assembler may share a name (org.osbuild.qemu is
// both, as in osbuild); then the directory tells: LIBDIR/assemblers/NAME
// is the assembler, anything else the stage (LIBDIR/stages/NAME, or
// format 2's /run/osbuild/bin/NAME: format 2 has no assemblers).
func find(stages []Stage, argv0 string) (Stage, bool) {
	name := filepath.Base(argv0)
	kind := KindStage
	if filepath.Base(filepath.Dir(argv0)) == string(KindAssembler) {
		kind = KindAssembler
	}
	var found []Stage
	for _, s := range stages {
		if s.Name == name {
			found = append(found, s)
		}
	}
	for _, s := range found {
		if len(found) == 1 || s.Kind == kind {
			return s, true
		}
	}
	return Stage{}, false
}

// runner is osbuild-run (format 1) or a format-2 runner: the buildroot's
// init already did osbuild's runner steps (ld.so.cache, sysusers, CA
// certificates, tmpfiles), so what is left is to become the stage,
// keeping stdin, stdout, stderr and the PID the builder waits for. The
// stage is argv[1] (`/run/osbuild/lib/stages/NAME` or
// `/run/osbuild/bin/NAME`), and its base name is the stage's name.
func runner(h host, name string, argv []string, stderr io.Writer) int {
	if len(argv) < 2 {
		fmt.Fprintf(stderr, "%s: usage: %s STAGE [ARGS...]\n", name, name)
		return 2
	}
	path := argv[1]
	err := h.exec(path, argv[1:], os.Environ())
	fmt.Fprintf(stderr, "%s: run %s: %v\n", name, path, err)
	return 127
}

// ensurePasswd writes osbuild's minimal /etc/passwd when there is none,
// as its org.osbuild.linux runner does. A failure is only reported: the
// stage may not need it.
func ensurePasswd(path string, stderr io.Writer) {
	_, err := os.Lstat(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err == nil {
		_, err = f.WriteString(minimalPasswd)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "runner: write a minimal %s: %v\n", path, err)
	}
}

func runStage(ctx context.Context, h host, s Stage, stdin io.Reader, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := LoadArgs(h.argsPath, stdin, s.Kind)
	if err == nil {
		err = s.Run(ctx, a)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", s.Name, err)
		return 1
	}
	return 0
}

// metaSuffix ends the name of a stage's description beside it, as in
// osbuild's libdir.
const metaSuffix = ".meta.json"

// Link makes dir a libdir: dir/osbuild-run, dir/runners/NAME,
// dir/stages/NAME and dir/assemblers/NAME, each a hard link of the
// running executable, and beside each stage and assembler with a
// MetaJSON its NAME.meta.json. Every file is replaced in one rename.
func Link(dir string, stages []Stage) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	names := []string{RunnerName}
	for _, r := range Runners {
		names = append(names, filepath.Join("runners", r))
	}
	for _, s := range stages {
		names = append(names, filepath.Join(string(s.Kind), s.Name))
	}
	sort.Strings(names)
	for _, n := range names {
		p := filepath.Join(dir, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if same(self, p) {
			continue
		}
		tmp := p + ".tmp"
		os.Remove(tmp)
		if err := os.Link(self, tmp); err != nil {
			return fmt.Errorf("link %s: %w", p, err)
		}
		if err := os.Rename(tmp, p); err != nil {
			os.Remove(tmp)
			return fmt.Errorf("link %s: %w", p, err)
		}
	}
	for _, s := range stages {
		if len(s.MetaJSON) == 0 {
			continue
		}
		p := filepath.Join(dir, string(s.Kind), s.Name+metaSuffix)
		if err := writeFileAtomic(p, s.MetaJSON, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// writeFileAtomic replaces p with data through a temporary file beside
// it.
func writeFileAtomic(p string, data []byte, perm os.FileMode) error {
	tmp := p + ".tmp"
	os.Remove(tmp)
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(perm)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", p, err)
	}
	return nil
}

func same(a, b string) bool {
	sa, err := os.Stat(a)
	if err != nil {
		return false
	}
	sb, err := os.Stat(b)
	if errors.Is(err, os.ErrNotExist) || err != nil {
		return false
	}
	return os.SameFile(sa, sb)
}
