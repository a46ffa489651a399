package buildroot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/ext4repro"
)

// Fds init inherits from Run (ExtraFiles).
const (
	configFd = 3 // JSON initConfig, then EOF
	syncFd   = 4 // an initReport if a phase fails; closed once the command runs
	lifeFd   = 5 // EOF when the parent dies
)

// phaseError carries the phase's kind of failure to the report.
type phaseError struct {
	kind string
	err  error
}

func (e *phaseError) Error() string { return e.err.Error() }
func (e *phaseError) Unwrap() error { return e.err }

// Init is the buildroot's PID 1: forge re-executed with InitArg inside the
// new namespaces. It never returns.
func Init() {
	// Namespace and mount work stays on this thread; Go must not move
	// main's goroutine under us mid-phase.
	runtime.LockOSThread()
	os.Exit(initMain())
}

func initMain() int {
	for _, fd := range []int{configFd, syncFd, lifeFd} {
		unix.CloseOnExec(fd)
	}
	syncPipe := os.NewFile(syncFd, "sync")
	report := func(phase string, err error) int {
		writeInitReport(syncPipe, phase, err)
		return 255
	}
	// Pdeathsig is set by Run already; set it again in case the thread
	// that forked us is gone, and die with the parent from here on.
	unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
	go watchParent(os.NewFile(lifeFd, "life"))
	// Catch the signals Run forwards from the first moment: without a
	// handler Go's runtime answers SIGINT by exiting with status 2 (as
	// PID 1 of the namespace, dying from the signal is not possible), so
	// a ^C that came while the root was being set up, or just after the
	// command started, ended the run with 2. They are passed on to the
	// command once it runs.
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, forwarded...)

	cfg, err := readInitConfig(os.NewFile(configFd, "config"))
	if err != nil {
		return report("config", err)
	}
	r := newRootfs(&cfg)
	for _, p := range r.phases() {
		if err := p.run(); err != nil {
			return report(p.name, err)
		}
	}
	pid, err := startCommand(&cfg)
	if err != nil {
		return report("exec", err)
	}
	syncPipe.Close()
	status := reapUntil(pid, sigs)
	if status == 0 && cfg.ReproducibleExt4 != nil {
		if err := reproducibleExt4(&cfg); err != nil {
			fmt.Fprintf(os.Stderr, "forge buildroot: %v\n", err)
			return 1
		}
	}
	return status
}

// reproducibleExt4 unmounts the command's ext4 filesystems and normalizes
// each (Config.ReproducibleExt4), the last mounted first. Nothing of the
// command runs any more (reapUntil killed what was left).
func reproducibleExt4(cfg *initConfig) error {
	var t ext4repro.Tools
	for name, p := range map[string]*string{"debugfs": &t.Debugfs, "e2fsck": &t.E2fsck, "tune2fs": &t.Tune2fs} {
		path, err := lookPath(name, cfg.Env)
		if err != nil {
			return fmt.Errorf("reproducible ext4: %w (the build root needs e2fsprogs)", err)
		}
		*p = path
	}
	for i := len(cfg.Mounts) - 1; i >= 0; i-- {
		m := cfg.Mounts[i]
		if !isExt4(m) || m.ReadOnly {
			continue
		}
		inodes, err := ext4repro.Inodes(m.Target)
		if err != nil {
			return fmt.Errorf("reproducible ext4 %s: %w", m.Target, err)
		}
		if err := unix.Unmount(m.Target, 0); err != nil {
			return fmt.Errorf("reproducible ext4: unmount %s: %w", m.Target, err)
		}
		if err := ext4repro.Normalize(context.Background(), m.Source, inodes, *cfg.ReproducibleExt4, t); err != nil {
			return fmt.Errorf("reproducible ext4 %s on %s: %w", m.Source, m.Target, err)
		}
	}
	return nil
}

// pinToOneCPU runs this thread, and so the command it forks, on the
// first CPU it may run on: mballoc's per-CPU preallocation makes where
// ext4 puts small files depend on which CPU wrote them.
func pinToOneCPU() error {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil {
		return err
	}
	for cpu := 0; cpu < len(set)*64; cpu++ {
		if set.IsSet(cpu) {
			var one unix.CPUSet
			one.Set(cpu)
			return unix.SchedSetaffinity(0, &one)
		}
	}
	return errors.New("no CPU in the affinity mask")
}

// watchParent kills the buildroot when Run's process dies: its end of the
// life pipe closes.
func watchParent(life *os.File) {
	io.Copy(io.Discard, life)
	unix.Kill(-1, unix.SIGKILL)
	os.Exit(137)
}

// lookPath finds args[0] in the PATH of env, inside the new root.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		if err := executable(name); err != nil {
			return "", &phaseError{kindNotFound, fmt.Errorf("command %s: %w: %v", name, ErrCommandNotFound, err)}
		}
		return name, nil
	}
	pathVar := ""
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			pathVar = v
		}
	}
	for _, dir := range strings.Split(pathVar, ":") {
		if dir == "" {
			continue
		}
		p := dir + "/" + name
		if executable(p) == nil {
			return p, nil
		}
	}
	return "", &phaseError{kindNotFound, fmt.Errorf("command %q: %w in the buildroot (PATH=%s)", name, ErrCommandNotFound, pathVar)}
}

func executable(p string) error {
	fi, err := os.Stat(p)
	if err != nil {
		return err
	}
	if fi.IsDir() || fi.Mode()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", p)
	}
	return nil
}

func startCommand(cfg *initConfig) (int, error) {
	path, err := lookPath(cfg.Args[0], cfg.Env)
	if err != nil {
		return 0, err
	}
	if cfg.DropCaps {
		// On this thread (Init locked it), which forks the command.
		if err := dropCaps(cfg.Caps); err != nil {
			return 0, err
		}
	}
	if cfg.ReproducibleExt4 != nil {
		if err := pinToOneCPU(); err != nil {
			return 0, fmt.Errorf("reproducible ext4: run on one CPU: %w", err)
		}
	}
	p, err := os.StartProcess(path, cfg.Args, &os.ProcAttr{
		Dir:   cfg.Dir,
		Env:   cfg.Env,
		Files: []*os.File{os.Stdin, os.Stdout, os.Stderr},
	})
	if err != nil {
		return 0, fmt.Errorf("start %s: %w", path, err)
	}
	return p.Pid, nil
}

// reapUntil forwards signals to the command, reaps every process of the
// namespace, and once the command exits kills what is left and returns
// the command's status.
func reapUntil(pid int, sigs chan os.Signal) int {
	go func() {
		for s := range sigs {
			unix.Kill(pid, s.(unix.Signal))
		}
	}()
	status := -1
	for {
		var ws unix.WaitStatus
		got, err := unix.Wait4(-1, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil { // ECHILD: everyone is gone
			break
		}
		if got == pid {
			switch {
			case ws.Exited():
				status = ws.ExitStatus()
			case ws.Signaled():
				status = 128 + int(ws.Signal())
			}
			// The command is done: whatever it left behind dies now, so
			// no daemon outlives its stage.
			unix.Kill(-1, unix.SIGKILL)
		}
	}
	return status
}
