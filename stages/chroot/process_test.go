package chroot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"
)

// gone waits until process pid has ended (gone or a zombie), for at most
// a minute: what is killed ends at once, so only a bug waits that long.
func gone(t *testing.T, pid int) bool {
	t.Helper()
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			return true
		}
		// Fields after the command name in parentheses: the state first.
		if s := string(b); strings.HasPrefix(strings.TrimSpace(s[strings.LastIndexByte(s, ')')+1:]), "Z") {
			return true
		}
	}
	return false
}

// The group's leftovers die with the command: a background child of a
// shell that has ended.
func TestRunInGroupKillsLeftovers(t *testing.T) {
	var out bytes.Buffer
	cmd := exec.CommandContext(context.Background(), "/bin/sh", "-c", "sleep 600 >/dev/null 2>&1 & echo $!")
	cmd.Stdout = &out
	if err := RunInGroup(context.Background(), cmd); err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(out.String()))
	if err != nil {
		t.Fatalf("the shell printed %q, want the background PID", out.String())
	}
	if !gone(t, pid) {
		t.Errorf("sleep %d, left in the command's process group, still runs", pid)
	}
}

// Cancelling the context stops the whole group and says so.
func TestRunInGroupCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	cmd := exec.CommandContext(ctx, "/bin/sh", "-c", "sleep 600 & echo $!; wait")
	cmd.Stdout = w
	done := make(chan error, 1)
	go func() { done <- RunInGroup(ctx, cmd) }()
	line := make([]byte, 32)
	n, err := r.Read(line)
	w.Close()
	if err != nil {
		t.Fatalf("read the background PID: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(line[:n])))
	if err != nil {
		t.Fatalf("the shell printed %q, want the background PID", line[:n])
	}
	cancel()
	err = <-done
	if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "/bin/sh") {
		t.Errorf("RunInGroup after cancel: %v, want an error naming the command and context.Canceled", err)
	}
	if !gone(t, pid) {
		t.Errorf("sleep %d still runs after the cancel", pid)
	}
}

func TestRunInGroupFailure(t *testing.T) {
	cmd := exec.CommandContext(context.Background(), "/bin/sh", "-c", "exit 3")
	err := RunInGroup(context.Background(), cmd)
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 3 {
		t.Errorf("RunInGroup(exit 3) = %v, want an exit error with status 3", err)
	}
}

func TestRunNeedsAbsolutePath(t *testing.T) {
	c, _ := watched(t)
	for _, args := range [][]string{nil, {"apt-get", "update"}} {
		if err := c.Run(context.Background(), Command{Args: args}); err == nil {
			t.Errorf("Run(%q): no error", args)
		}
	}
}
