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
	var repro *reproducible
	if cfg.ReproducibleExt4 != nil {
		if repro, err = prepareReproducible(&cfg); err != nil {
			return report("exec", err)
		}
	}
	pid, err := startCommand(&cfg)
	if err != nil {
		return report("exec", err)
	}
	syncPipe.Close()
	status := reapUntil(pid, sigs)
	if status == 0 && repro != nil {
		if err := repro.finish(); err != nil {
			fmt.Fprintf(os.Stderr, "forge buildroot: %v\n", err)
			return 1
		}
	}
	return status
}

// reproducible is what init needs to make the command's ext4 mounts
// reproducible (Config.ReproducibleExt4), found before the command runs:
// the tools (a build root without e2fsprogs fails at once, not after a
// long stage), and each writable ext4 mount's device, opened now, so that
// what the command does to /dev cannot point the tools elsewhere.
type reproducible struct {
	cfg     *initConfig
	tools   ext4repro.Tools
	devices map[int]*os.File // by index in cfg.Mounts
}

func prepareReproducible(cfg *initConfig) (*reproducible, error) {
	r := &reproducible{cfg: cfg, devices: map[int]*os.File{}}
	for name, p := range map[string]*string{"debugfs": &r.tools.Debugfs, "e2fsck": &r.tools.E2fsck, "tune2fs": &r.tools.Tune2fs} {
		path, err := lookPath(name, cfg.Env)
		if err != nil {
			return nil, fmt.Errorf("reproducible ext4: %w (the build root needs e2fsprogs)", err)
		}
		*p = path
	}
	for i, m := range cfg.Mounts {
		if !isWritableExt4(m) {
			continue
		}
		f, err := os.OpenFile(m.Source, os.O_RDWR, 0)
		if err != nil {
			return nil, fmt.Errorf("reproducible ext4: %w", err)
		}
		r.devices[i] = f
	}
	return r, nil
}

// finish unmounts the command's filesystems, the last mounted first, and
// normalizes each writable ext4 one. Nothing of the command runs any more
// (reapUntil killed what was left). Each ext4 filesystem's inodes are
// listed once the mounts on it are gone, so the directories under them
// are listed too.
func (r *reproducible) finish() error {
	type todo struct {
		m      FSMount
		dev    *os.File
		inodes []ext4repro.Inode
	}
	var normalize []todo
	for i := len(r.cfg.Mounts) - 1; i >= 0; i-- {
		m := r.cfg.Mounts[i]
		if dev, ok := r.devices[i]; ok {
			if err := sameDevice(dev, m.Target); err != nil {
				fmt.Fprintf(os.Stderr, "forge buildroot: %v: its filesystem is not made reproducible\n", err)
				continue
			}
			inodes, err := ext4repro.Inodes(m.Target)
			if err != nil {
				return fmt.Errorf("reproducible ext4 %s: %w", m.Target, err)
			}
			normalize = append(normalize, todo{m, dev, inodes})
		}
		if err := unix.Unmount(m.Target, 0); err != nil && !errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("reproducible ext4: unmount %s: %w", m.Target, err)
		}
	}
	for _, n := range normalize {
		if err := ext4repro.Normalize(context.Background(), n.dev, n.inodes, *r.cfg.ReproducibleExt4, r.tools); err != nil {
			return fmt.Errorf("reproducible ext4 %s on %s: %w", n.m.Source, n.m.Target, err)
		}
	}
	return nil
}

// sameDevice checks that target is still the mount of dev: a command may
// have unmounted it, or mounted something else there.
func sameDevice(dev *os.File, target string) error {
	var d, t unix.Stat_t
	if err := unix.Fstat(int(dev.Fd()), &d); err != nil {
		return err
	}
	if err := unix.Stat(target, &t); err != nil {
		return err
	}
	if t.Dev != d.Rdev {
		return fmt.Errorf("%s is no longer the mount of %s", target, dev.Name())
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
