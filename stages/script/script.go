// Package script is org.osbuild.script: it runs a script inside the tree.
// As osbuild's stage, it writes the script to /osbuild-script (mode
// 0550), runs it chrooted into the tree, and removes it afterwards,
// whether it succeeded or not. Nothing is mounted in the chroot (no
// /proc, /dev or /sys), as in osbuild. A script without a "#!" line runs
// under the tree's /bin/sh, as coreutils' chroot would run it.
//
// The script runs in a process group of its own; when it exits, whatever
// it left running in that group is killed, so the stage leaves no
// processes behind even outside a buildroot.
//
// Running the tree's code is unsafe and only works for the build root's
// architecture; osbuild discourages the stage for those reasons, and so
// does forge.
package script

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/stages/stage"
)

// options are osbuild's, unchanged.
type options struct {
	Script *string `json:"script"`
}

// scriptName is where the script is written, relative to the tree.
const scriptName = "osbuild-script"

// defaultPath is the script's PATH when the stage has none.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Run writes, runs and removes the script. Its output is the stage's.
func Run(ctx context.Context, a stage.Args) (err error) {
	var o options
	if err := stage.DecodeOptions(a.Options, &o); err != nil {
		return err
	}
	if o.Script == nil {
		return stage.OptionError("script", "is required")
	}
	root, err := os.OpenRoot(a.Tree)
	if err != nil {
		return fmt.Errorf("open tree: %w", err)
	}
	defer root.Close()
	if err := writeScript(root, *o.Script); err != nil {
		return err
	}
	defer func() {
		if rerr := root.Remove(scriptName); rerr != nil && !errors.Is(rerr, fs.ErrNotExist) && err == nil {
			err = fmt.Errorf("remove /%s: %w", scriptName, rerr)
		}
	}()
	argv := []string{"/" + scriptName}
	if !strings.HasPrefix(*o.Script, "#!") {
		argv = []string{"/bin/sh", "/" + scriptName}
	}
	return runChrooted(ctx, a.Tree, argv)
}

// writeScript writes the script as a new file, 0550: whatever was at
// /osbuild-script before (a leftover, a symlink) is removed first, so the
// write cannot land elsewhere.
func writeScript(root *os.Root, script string) error {
	if err := root.Remove(scriptName); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove old /%s: %w", scriptName, err)
	}
	f, err := root.OpenFile(scriptName, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o550)
	if err != nil {
		return fmt.Errorf("write /%s: %w", scriptName, err)
	}
	_, err = f.WriteString(script)
	if err == nil {
		err = f.Chmod(0o550)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		root.Remove(scriptName)
		return fmt.Errorf("write /%s: %w", scriptName, err)
	}
	return nil
}

// runChrooted runs argv chrooted into tree, in a new process group, with
// the stage's environment, stdout and stderr and no stdin. When the
// script has exited (or ctx is done), its process group is killed before
// the script is reaped: until then its PID, which is the group's ID,
// cannot be reused, so the kill reaches only the script's processes.
func runChrooted(ctx context.Context, tree string, argv []string) error {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = "/"
	cmd.Env = os.Environ()
	if os.Getenv("PATH") == "" {
		cmd.Env = append(cmd.Env, "PATH="+defaultPath)
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Chroot: tree, Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("run %s in the tree: %w", strings.Join(argv, " "), err)
	}
	pid := cmd.Process.Pid
	exited := make(chan struct{})
	go func() {
		select {
		case <-ctx.Done():
			unix.Kill(-pid, unix.SIGKILL)
		case <-exited:
		}
	}()
	var info unix.Siginfo
	for {
		err := unix.Waitid(unix.P_PID, pid, &info, unix.WEXITED|unix.WNOWAIT, nil)
		if err != unix.EINTR {
			break
		}
	}
	close(exited)
	unix.Kill(-pid, unix.SIGKILL)
	err := cmd.Wait()
	if ctx.Err() != nil {
		return fmt.Errorf("script: %w", ctx.Err())
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
			return fmt.Errorf("script killed by signal %v", ws.Signal())
		}
		return fmt.Errorf("script failed with exit status %d", ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("script: %w", err)
	}
	return nil
}
