package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// SpawnOptions say how Connect starts a daemon when none answers.
type SpawnOptions struct {
	// Exe is the forge binary to run as `Exe daemon --store DIR`.
	// Default: the running executable.
	Exe string
	// Args are added to the daemon's command line (e.g. --idle-timeout).
	Args []string
	// Wait bounds how long Connect waits for a new daemon to answer.
	// Default 15 s.
	Wait time.Duration
}

// maxLog is the size past which daemon.log is rotated when a daemon starts.
const maxLog = 8 << 20

// Connect returns a client of the daemon of the store at dir, starting the
// daemon when none answers. An flock on <dir>/daemon.lock makes sure that
// clients racing to start one start exactly one.
func Connect(ctx context.Context, dir string, opts SpawnOptions) (*Client, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	c := NewClient(abs)
	_, err = c.Ping(ctx)
	switch {
	case err == nil:
		return c, nil
	case errors.Is(err, os.ErrPermission):
		// A daemon may well run; we may not talk to it. Starting another
		// would not help.
		return nil, fmt.Errorf("%w (only root and members of the daemon's --group may use it)", err)
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("store %s: %w", abs, err)
	}
	lock, err := os.OpenFile(filepath.Join(abs, lockName), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", abs, err)
	}
	defer lock.Close()
	if err := flockContext(ctx, int(lock.Fd())); err != nil {
		return nil, fmt.Errorf("store %s: wait for %s: %w", abs, lockName, err)
	}
	// Someone may have started it while we waited for the lock.
	if _, err := c.Ping(ctx); err == nil {
		return c, nil
	}
	if err := spawn(ctx, c, abs, opts); err != nil {
		return nil, err
	}
	return c, nil
}

// flockContext takes an exclusive flock, giving up when ctx ends.
func flockContext(ctx context.Context, fd int) error {
	for {
		err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EWOULDBLOCK) && !errors.Is(err, unix.EINTR) {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

func spawn(ctx context.Context, c *Client, dir string, opts SpawnOptions) error {
	exe := opts.Exe
	if exe == "" {
		var err error
		if exe, err = os.Executable(); err != nil {
			return fmt.Errorf("start store daemon: %w", err)
		}
	}
	if opts.Wait <= 0 {
		opts.Wait = 15 * time.Second
	}
	logPath := filepath.Join(dir, logName)
	if fi, err := os.Stat(logPath); err == nil && fi.Size() > maxLog {
		os.Rename(logPath, logPath+".1")
	}
	logFile, err := os.OpenFile(logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("start store daemon: %w", err)
	}
	defer logFile.Close()
	start, _ := logFile.Seek(0, 2)
	cmd := exec.Command(exe, append([]string{"daemon", "--store", dir}, opts.Args...)...)
	cmd.Dir = "/"
	cmd.Env = daemonEnv(os.Environ())
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// Its own session: the daemon outlives this command and ignores the
	// terminal's ^C.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start store daemon %s: %w", exe, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	deadline := time.NewTimer(opts.Wait)
	defer deadline.Stop()
	var exitErr error
	var grace <-chan time.Time
	for {
		if _, err := c.Ping(ctx); err == nil {
			return nil
		}
		select {
		case exitErr = <-exited:
			// Most often a daemon started by other means (systemd, a
			// foreground `forge daemon`) holds the store and is about to
			// answer: ours then exits saying the store is in use. Give
			// that one a moment before reporting our daemon's failure.
			exited = nil
			grace = time.After(2 * time.Second)
		case <-grace:
			return fmt.Errorf("store daemon for %s exited at start (%v): %s", dir, exitErr, logTail(logPath, start))
		case <-deadline.C:
			return fmt.Errorf("store daemon for %s (pid %d) did not answer within %s; see %s", dir, cmd.Process.Pid, opts.Wait, logPath)
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// logTail returns why a daemon that exited at start did so: the error line
// it printed last ("forge daemon: …"), or else the last few whole lines it
// logged since offset start, never a cut through a multi-line dump.
func logTail(path string, start int64) string {
	b, err := os.ReadFile(path)
	if err != nil || int64(len(b)) < start {
		return "see " + path
	}
	lines := strings.Split(strings.TrimSpace(string(b[start:])), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		if strings.HasPrefix(lines[i], "forge daemon: ") {
			return strings.TrimPrefix(lines[i], "forge daemon: ")
		}
	}
	if len(lines) > 5 {
		lines = lines[len(lines)-5:]
	}
	return strings.Join(lines, "\n") + " (see " + path + ")"
}

// daemonEnv is the environment a daemon is started with: the caller's,
// without its AWS_* variables. The daemon outlives the command that
// started it and serves every caller: credentials come with each request
// that needs them, not from whoever happened to start it.
func daemonEnv(env []string) []string {
	out := make([]string, 0, len(env))
	for _, e := range env {
		if !strings.HasPrefix(e, "AWS_") {
			out = append(out, e)
		}
	}
	return out
}
