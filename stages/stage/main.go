package stage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"sort"
	"syscall"
)

// RunnerName is the libdir's runner: `osbuild-run STAGE` runs STAGE with
// the runner's stdin, as osbuild's does.
const RunnerName = "osbuild-run"

func main1(ctx context.Context, stages []Stage, argv []string, stdin io.Reader, stdout, stderr io.Writer) int {
	name := filepath.Base(argv[0])
	if name == RunnerName {
		return runner(argv, stderr)
	}
	for _, s := range stages {
		if s.Name == name {
			return runStage(ctx, s, stdin, stderr)
		}
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
		"Usage:\n  %s link LIBDIR   make LIBDIR/osbuild-run, LIBDIR/stages/NAME, LIBDIR/assemblers/NAME\n"+
		"  %s list          name every stage and assembler\n", name, name, name)
	return 2
}

// runner is osbuild-run: the buildroot's init already did osbuild's
// runner steps (ld.so.cache, sysusers, CA certificates, tmpfiles), so
// what is left is to become the stage, keeping stdin, stdout, stderr and
// the PID the builder waits for.
func runner(argv []string, stderr io.Writer) int {
	if len(argv) < 2 {
		fmt.Fprintf(stderr, "%s: usage: %s STAGE [ARGS...]\n", RunnerName, RunnerName)
		return 2
	}
	path := argv[1]
	err := syscall.Exec(path, argv[1:], os.Environ())
	fmt.Fprintf(stderr, "%s: run %s: %v\n", RunnerName, path, err)
	return 127
}

func runStage(ctx context.Context, s Stage, stdin io.Reader, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	a, err := ReadArgs(stdin, s.Kind)
	if err == nil {
		err = s.Run(ctx, a)
	}
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", s.Name, err)
		return 1
	}
	return 0
}

// Link makes dir a libdir: dir/osbuild-run, dir/stages/NAME and
// dir/assemblers/NAME, each a hard link of the running executable.
func Link(dir string, stages []Stage) error {
	self, err := os.Executable()
	if err != nil {
		return err
	}
	names := []string{RunnerName}
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
