// Package command runs the build root's tools (mkfs.ext4, sfdisk, tar,
// qemu-img, grub-mkimage) for the assemblers: their output goes to the
// stage's log, and a failure is an error that carries the command line and
// the end of that output.
package command

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// tailSize is how much of a failed command's output its error keeps.
const tailSize = 4 << 10

// Cmd is one tool invocation.
type Cmd struct {
	Name string
	Args []string
	// Stdin is the tool's input; nil means none (/dev/null), so that a
	// tool asking "Proceed anyway?" gets EOF instead of waiting.
	Stdin io.Reader
	// Stdout, if set, receives the tool's standard output instead of the
	// log (for tools whose output is the result, like sfdisk --json).
	Stdout io.Writer
	// Env is added to the environment.
	Env []string
	// Log receives the tool's output; nil means os.Stderr, the stage's log.
	Log io.Writer
}

// Run runs the command and waits for it. Ending ctx stops it with SIGTERM,
// then SIGKILL; Run returns only once it has exited.
func (c Cmd) Run(ctx context.Context) error {
	path, err := exec.LookPath(c.Name)
	if err != nil {
		return fmt.Errorf("%s: not found in the build root (PATH=%s): %w", c.Name, os.Getenv("PATH"), err)
	}
	log := c.Log
	if log == nil {
		log = os.Stderr
	}
	tail := &tailBuffer{max: tailSize}
	out := io.MultiWriter(log, tail)
	cmd := exec.CommandContext(ctx, path, c.Args...)
	cmd.Args[0] = c.Name
	cmd.Stdin = c.Stdin
	cmd.Stdout = out
	if c.Stdout != nil {
		cmd.Stdout = c.Stdout
	}
	cmd.Stderr = out
	cmd.Env = append(os.Environ(), c.Env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		msg := strings.TrimSpace(tail.String())
		if msg != "" {
			return fmt.Errorf("%s: %w:\n%s", c, err, msg)
		}
		return fmt.Errorf("%s: %w", c, err)
	}
	return nil
}

// String is the command line, for errors.
func (c Cmd) String() string {
	return strings.Join(append([]string{c.Name}, c.Args...), " ")
}

// Output runs the command and returns its standard output.
func (c Cmd) Output(ctx context.Context) ([]byte, error) {
	var stdout bytes.Buffer
	c.Stdout = &stdout
	err := c.Run(ctx)
	return stdout.Bytes(), err
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	buf []byte
	cut bool
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf = append(t.buf, p...)
	if over := len(t.buf) - t.max; over > 0 {
		t.buf = append(t.buf[:0], t.buf[over:]...)
		t.cut = true
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.cut {
		return "…" + string(t.buf)
	}
	return string(t.buf)
}
