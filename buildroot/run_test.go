package buildroot

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

func TestInitCommand(t *testing.T) {
	const namespaces = unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS
	tests := []struct {
		network   Network
		wantClone uintptr
	}{
		{NetworkHost, namespaces},
		{NetworkPrivate, namespaces | unix.CLONE_NEWNET},
	}
	for _, test := range tests {
		t.Run(string(test.network), func(t *testing.T) {
			pipes, err := newInitPipes()
			if err != nil {
				t.Fatal(err)
			}
			defer pipes.close()
			var stdout, stderr bytes.Buffer
			cfg := Config{Network: test.network, Stdin: strings.NewReader("in"), Stdout: &stdout, Stderr: &stderr}
			cmd := initCommand(cfg, "/opt/forge/bin/forge", pipes.childEnds())

			if cmd.Path != "/opt/forge/bin/forge" || !reflect.DeepEqual(cmd.Args, []string{"/opt/forge/bin/forge", InitArg}) {
				t.Errorf("init runs %s %q, want /opt/forge/bin/forge [forge %s]", cmd.Path, cmd.Args, InitArg)
			}
			// nil would hand init the host's environment.
			if cmd.Env == nil || len(cmd.Env) != 0 {
				t.Errorf("init's environment %q, want empty and not nil", cmd.Env)
			}
			if cmd.Stdin != cfg.Stdin || cmd.Stdout != cfg.Stdout || cmd.Stderr != cfg.Stderr {
				t.Error("init does not get the config's stdin, stdout and stderr")
			}
			// ExtraFiles[i] is fd 3+i in init, which reads them by number.
			for _, f := range []struct {
				fd   int
				want *os.File
			}{{configFd, pipes.confR}, {syncFd, pipes.syncW}, {lifeFd, pipes.lifeR}} {
				if got := cmd.ExtraFiles[f.fd-3]; got != f.want {
					t.Errorf("fd %d in init is %s, want %s", f.fd, got.Name(), f.want.Name())
				}
			}
			if len(cmd.ExtraFiles) != 3 {
				t.Errorf("init gets %d extra fds, want 3", len(cmd.ExtraFiles))
			}
			attr := cmd.SysProcAttr
			if attr.Cloneflags != test.wantClone {
				t.Errorf("clone flags %#x, want %#x", attr.Cloneflags, test.wantClone)
			}
			if attr.Pdeathsig != syscall.SIGKILL {
				t.Errorf("Pdeathsig %v, want SIGKILL", attr.Pdeathsig)
			}
		})
	}
}

func TestInitExecutable(t *testing.T) {
	if got := initExecutable("/usr/libexec/forge/forge"); got != "/usr/libexec/forge/forge" {
		t.Errorf("initExecutable with a path = %s", got)
	}
	self, err := os.Executable()
	if err != nil {
		t.Skip(err)
	}
	if got := initExecutable(""); got != self {
		t.Errorf("initExecutable() = %s, want this executable %s", got, self)
	}
}

func TestMakeNewRoot(t *testing.T) {
	t.Run("in the state directory", func(t *testing.T) {
		state := t.TempDir()
		root, cleanup, err := makeNewRoot(state)
		if err != nil {
			t.Fatal(err)
		}
		if filepath.Dir(root) != state {
			t.Fatalf("new root %s is not in %s", root, state)
		}
		cleanup()
		if _, err := os.Stat(root); !os.IsNotExist(err) {
			t.Errorf("new root left behind: %v", err)
		}
		if _, err := os.Stat(state); err != nil {
			t.Errorf("the caller's state directory was removed: %v", err)
		}
	})
	t.Run("in a temporary state directory", func(t *testing.T) {
		t.Setenv("TMPDIR", t.TempDir())
		root, cleanup, err := makeNewRoot("")
		if err != nil {
			t.Fatal(err)
		}
		state := filepath.Dir(root)
		if filepath.Dir(state) != os.Getenv("TMPDIR") {
			t.Fatalf("new root %s is not in a temporary directory", root)
		}
		cleanup()
		if _, err := os.Stat(state); !os.IsNotExist(err) {
			t.Errorf("temporary state directory left behind: %v", err)
		}
	})
	t.Run("state directory missing", func(t *testing.T) {
		if _, _, err := makeNewRoot(filepath.Join(t.TempDir(), "gone")); err == nil {
			t.Fatal("no error")
		}
	})
}

// recorder is a signaler that remembers what it was sent.
type recorder struct{ got []os.Signal }

func (r *recorder) Signal(s os.Signal) error { r.got = append(r.got, s); return nil }

func TestSignalForwarderHoldsBackUntilStart(t *testing.T) {
	var to recorder
	f := signalForwarder{to: &to}
	f.forward(unix.SIGINT)
	f.forward(unix.SIGWINCH)
	if len(to.got) != 0 {
		t.Fatalf("forwarded %v before the command started", to.got)
	}
	f.start()
	f.forward(unix.SIGTERM)
	want := []os.Signal{unix.SIGINT, unix.SIGWINCH, unix.SIGTERM}
	if !reflect.DeepEqual(to.got, want) {
		t.Fatalf("forwarded %v, want %v", to.got, want)
	}
}

// waitResult runs a shell script and returns cmd.Wait's error, as init's
// would be.
func waitResult(t *testing.T, script string) error {
	t.Helper()
	err := exec.Command("/bin/sh", "-c", script).Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return err
}

func TestExitStatus(t *testing.T) {
	var notFound bytes.Buffer
	writeInitReport(&notFound, "exec", &phaseError{kindNotFound, ErrCommandNotFound})
	boom := errors.New("boom")
	tests := []struct {
		name     string
		o        outcome
		wantCode int
		wantErr  error // errors.Is; nil: no error
	}{
		{name: "command exits 0", o: outcome{waitErr: waitResult(t, "exit 0")}, wantCode: 0},
		{name: "command exits 3", o: outcome{waitErr: waitResult(t, "exit 3")}, wantCode: 3},
		{name: "init killed", o: outcome{waitErr: waitResult(t, "kill -KILL $$")}, wantCode: 128 + 9},
		{name: "setup failed", o: outcome{waitErr: waitResult(t, "exit 255"), report: notFound.Bytes()},
			wantCode: -1, wantErr: ErrCommandNotFound},
		{name: "timed out", o: outcome{waitErr: waitResult(t, "kill -KILL $$"), killedFor: ErrTimeout},
			wantCode: -1, wantErr: ErrTimeout},
		// Killed mid-setup: the report may be cut short; the reason wins.
		{name: "cancelled", o: outcome{waitErr: waitResult(t, "kill -KILL $$"), report: []byte(`{"pha`), killedFor: context.Canceled},
			wantCode: -1, wantErr: context.Canceled},
		{name: "wait failed", o: outcome{waitErr: boom}, wantCode: -1, wantErr: boom},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			code, err := exitStatus(test.o)
			if code != test.wantCode {
				t.Errorf("code %d, want %d", code, test.wantCode)
			}
			switch {
			case test.wantErr == nil && err != nil:
				t.Errorf("error %v, want none", err)
			case test.wantErr != nil && !errors.Is(err, test.wantErr):
				t.Errorf("error %v, want %v", err, test.wantErr)
			}
		})
	}
}
