package buildroot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// forwarded are the signals Run passes on to the command when asked to.
var forwarded = []os.Signal{unix.SIGINT, unix.SIGTERM, unix.SIGHUP, unix.SIGQUIT, unix.SIGUSR1, unix.SIGUSR2, unix.SIGWINCH}

// Run runs cfg.Args in a new buildroot and returns the command's exit
// status (128+N when a signal N ended it). When ctx ends or the timeout
// passes, the whole buildroot is killed. An error means the command did
// not run to its end: setup failed (*SetupError), it was not found
// (ErrCommandNotFound), or it timed out (ErrTimeout).
func Run(ctx context.Context, cfg Config) (int, error) {
	if err := cfg.check(); err != nil {
		return -1, err
	}
	state := cfg.StateDir
	if state == "" {
		dir, err := os.MkdirTemp("", "forge-buildroot-")
		if err != nil {
			return -1, fmt.Errorf("buildroot: state directory: %w", err)
		}
		defer os.RemoveAll(dir)
		state = dir
	}
	// The new root's mountpoint: only ever mounted on inside init's
	// private mount namespace, so in the host's it stays an empty dir.
	newRoot, err := os.MkdirTemp(state, "root-")
	if err != nil {
		return -1, fmt.Errorf("buildroot: %w", err)
	}
	defer os.Remove(newRoot)

	ic := initConfig{
		BuildTree: cfg.BuildTree, Chroot: cfg.Chroot, Binds: cfg.Binds, Network: cfg.Network,
		Hostname: cfg.Hostname, Env: cfg.Env, Args: cfg.Args, Dir: cfg.Dir, NewRoot: newRoot,
	}
	confR, confW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	defer confR.Close()
	defer confW.Close()
	syncR, syncW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	defer syncR.Close()
	defer syncW.Close()
	// init watches lifeR: when this process dies, however, the write end
	// closes and init kills the buildroot (Pdeathsig too, but that one
	// follows a thread, not the process).
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return -1, err
	}
	defer lifeR.Close()
	defer lifeW.Close()

	initPath := cfg.InitPath
	if initPath == "" {
		// The executable by name, so that ps shows PID 1 as forge.
		if initPath, err = os.Executable(); err != nil {
			initPath = "/proc/self/exe"
		}
	}
	cmd := exec.Command(initPath, InitArg)
	cmd.Env = []string{}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	cmd.ExtraFiles = []*os.File{confR, syncW, lifeR} // fds 3, 4, 5
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	if cfg.Network == NetworkPrivate {
		flags |= unix.CLONE_NEWNET
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: flags, Pdeathsig: syscall.SIGKILL}

	var sigs chan os.Signal
	if cfg.ForwardSignals {
		// Catch before starting, so that a signal arriving meanwhile is
		// forwarded rather than killing forge with the buildroot alive.
		sigs = make(chan os.Signal, 8)
		signal.Notify(sigs, forwarded...)
		defer signal.Stop(sigs)
	}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("buildroot: start init %s: %w", initPath, err)
	}
	confR.Close()
	syncW.Close()
	lifeR.Close()

	if err := json.NewEncoder(confW).Encode(ic); err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		return -1, fmt.Errorf("buildroot: send config to init: %w", err)
	}
	confW.Close()

	reportc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(syncR)
		reportc <- b
	}()
	waitc := make(chan error, 1)
	go func() { waitc <- cmd.Wait() }()

	var timeout <-chan time.Time
	if cfg.Timeout > 0 {
		t := time.NewTimer(cfg.Timeout)
		defer t.Stop()
		timeout = t.C
	}
	var killedFor error
	var waitErr error
	// Signals are passed on once init has started the command (it closes
	// the sync pipe then): until init has its handlers, one would end it.
	var report []byte
	started := false
	var pending []os.Signal
loop:
	for {
		select {
		case waitErr = <-waitc:
			break loop
		case report = <-reportc:
			reportc, started = nil, true
			for _, s := range pending {
				cmd.Process.Signal(s)
			}
			pending = nil
		case s := <-sigs:
			if !started {
				pending = append(pending, s)
				continue
			}
			cmd.Process.Signal(s)
		case <-timeout:
			// Killing init kills its PID namespace: every process in it.
			killedFor = fmt.Errorf("%w after %s", ErrTimeout, cfg.Timeout)
			cmd.Process.Kill()
			timeout = nil
		case <-ctx.Done():
			if killedFor == nil {
				killedFor = ctx.Err()
			}
			cmd.Process.Kill()
			ctx = context.Background()
		}
	}
	if !started {
		report = <-reportc
	}
	if killedFor != nil {
		return -1, killedFor
	}
	if len(report) > 0 {
		var r initReport
		if err := json.Unmarshal(report, &r); err != nil {
			return -1, fmt.Errorf("buildroot: init reported %q: %w", report, err)
		}
		return -1, &SetupError{Phase: r.Phase, Message: r.Message, kind: r.Kind}
	}
	var ee *exec.ExitError
	if errors.As(waitErr, &ee) {
		ws := ee.Sys().(syscall.WaitStatus)
		if ws.Signaled() {
			// init itself was killed from outside (SIGKILL); so was the
			// command, with it.
			return 128 + int(ws.Signal()), nil
		}
		return ws.ExitStatus(), nil
	}
	if waitErr != nil {
		return -1, fmt.Errorf("buildroot: wait for init: %w", waitErr)
	}
	return 0, nil
}
