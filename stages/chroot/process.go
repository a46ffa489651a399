package chroot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stopGrace is how long a cancelled command's process group has between
// SIGTERM (tools like mmdebstrap clean up their mounts on it) and SIGKILL.
const stopGrace = 10 * time.Second

// RunInGroup runs cmd, made by exec.CommandContext, in a process group of
// its own. When the context ends, the whole group gets SIGTERM and, if
// the command has not ended stopGrace later, SIGKILL; whatever of the
// group is still alive when the command has ended is killed too. The
// error names the command, and says so when the context ended it.
func RunInGroup(ctx context.Context, cmd *exec.Cmd) error {
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	// Should the stage itself be killed, its commands go with it.
	cmd.SysProcAttr.Pdeathsig = syscall.SIGKILL
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM) }
	cmd.WaitDelay = stopGrace
	err := cmd.Run()
	if cmd.Process != nil {
		// Leftovers of the group (a daemon that did not setsid). No other
		// process can take the group's ID while a member lives; with none
		// left, the kill finds nothing.
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	name := strings.Join(cmd.Args, " ")
	switch {
	case ctx.Err() != nil:
		return fmt.Errorf("%s: stopped: %w", name, context.Cause(ctx))
	case err != nil:
		return fmt.Errorf("%s: %w", name, err)
	}
	return nil
}

// Command is a command to run chrooted into the tree.
type Command struct {
	// Args[0] is an absolute path inside the tree: the tree's program
	// runs, whatever the caller's PATH has.
	Args []string
	Env  []string
	// Stdout and Stderr are where its output goes; nil discards it.
	Stdout, Stderr io.Writer
}

// Run runs cmd chrooted into the tree, in /, with stdin /dev/null, in a
// process group of its own that is killed when ctx ends (see
// RunInGroup).
func (c *Chroot) Run(ctx context.Context, cmd Command) error {
	if len(cmd.Args) == 0 || !strings.HasPrefix(cmd.Args[0], "/") {
		return fmt.Errorf("chroot %s: command %q: want an absolute path inside the tree", c.root, cmd.Args)
	}
	// The path is resolved by execve after the chroot, so no LookPath on
	// the caller's side (exec.Command skips it for a path with a slash).
	ec := exec.CommandContext(ctx, cmd.Args[0], cmd.Args[1:]...)
	ec.Env = cmd.Env
	if ec.Env == nil {
		ec.Env = []string{}
	}
	ec.Dir = "/"
	ec.Stdout, ec.Stderr = cmd.Stdout, cmd.Stderr
	ec.SysProcAttr = &syscall.SysProcAttr{Chroot: c.root}
	if err := RunInGroup(ctx, ec); err != nil {
		return fmt.Errorf("in chroot %s: %w", c.root, err)
	}
	return nil
}

// killWait bounds how long Teardown waits for killed processes to go.
const killWait = 10 * time.Second

// killProcesses SIGKILLs every process whose root directory is the tree
// — a daemon a maintainer script started despite policy-rc.d, or what is
// left of a tool killed midway — and waits for them to be gone: they
// would keep the tree's mounts busy.
func (c *Chroot) killProcesses() error {
	rootSt, err := os.Stat(c.root)
	if err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	killed := map[int]string{}
	deadline := time.Now().Add(killWait)
	for {
		pids, err := processesRootedAt(rootSt)
		if err != nil {
			return err
		}
		if len(pids) == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			var names []string
			for _, pid := range pids {
				names = append(names, fmt.Sprintf("%d (%s)", pid, comm(pid)))
			}
			return fmt.Errorf("chroot %s: processes still running in it after SIGKILL: %s", c.root, strings.Join(names, ", "))
		}
		for _, pid := range pids {
			if _, seen := killed[pid]; !seen {
				killed[pid] = comm(pid)
				fmt.Fprintf(c.log, "chroot: killing process %d (%s), left running in %s\n", pid, killed[pid], c.root)
			}
			if err := unix.Kill(pid, unix.SIGKILL); err != nil && !errors.Is(err, unix.ESRCH) {
				return fmt.Errorf("chroot: kill process %d: %w", pid, err)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// processesRootedAt lists the processes whose root directory is root.
// Zombies have none, so they do not count: they hold nothing.
func processesRootedAt(root os.FileInfo) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, fmt.Errorf("list processes: %w", err)
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		st, err := os.Stat("/proc/" + e.Name() + "/root")
		if err != nil {
			continue // gone, a zombie, or not ours to see
		}
		if os.SameFile(st, root) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func comm(pid int) string {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(b))
}
