package stage

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Tool is one run of a program of the build root (mkfs.ext4, sfdisk,
// cp), found in its PATH as osbuild's stages find theirs.
type Tool struct {
	Name string
	Args []string
	// Env is added to the stage's environment.
	Env []string
	// Stdin is the program's input; nil is none (/dev/null), so a tool
	// that asks a question gets EOF rather than waiting.
	Stdin io.Reader
	// Stdout receives the program's standard output; nil is the stage's
	// (its log).
	Stdout io.Writer
}

// String is the command line, with the added environment first.
func (t Tool) String() string {
	return strings.Join(append(append(append([]string(nil), t.Env...), t.Name), t.Args...), " ")
}

// Run prints the command line to the log and runs the program, its
// output going to the stage's. Ending ctx stops it with SIGTERM, then
// SIGKILL; Run returns once it has exited. The error names the command
// line.
func (t Tool) Run(ctx context.Context) error {
	path, err := exec.LookPath(t.Name)
	if err != nil {
		return fmt.Errorf("%s is not in the build root (PATH=%s): %w", t.Name, os.Getenv("PATH"), err)
	}
	fmt.Fprintf(os.Stderr, "+ %s\n", t)
	cmd := exec.CommandContext(ctx, path, t.Args...)
	cmd.Args[0] = t.Name
	cmd.Stdin = t.Stdin
	cmd.Stdout = os.Stdout
	if t.Stdout != nil {
		cmd.Stdout = t.Stdout
	}
	cmd.Stderr = os.Stderr
	cmd.Env = append(os.Environ(), t.Env...)
	cmd.Cancel = func() error { return cmd.Process.Signal(syscall.SIGTERM) }
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Run(); err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return fmt.Errorf("%s: %w", t, err)
	}
	return nil
}
