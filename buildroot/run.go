package buildroot

import (
	"context"
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
//
// It runs in three phases: start init (startInit), supervise it until it
// exits (supervise), and turn what was seen into the result (exitStatus).
func Run(ctx context.Context, cfg Config) (int, error) {
	if err := cfg.check(); err != nil {
		return -1, err
	}
	newRoot, cleanup, err := makeNewRoot(cfg.StateDir)
	if err != nil {
		return -1, err
	}
	defer cleanup()
	p, err := startInit(cfg, newRoot)
	if err != nil {
		return -1, err
	}
	// Only after init is gone: the life pipe must stay open until then.
	defer p.release()
	return exitStatus(p.supervise(ctx, cfg.Timeout))
}

// makeNewRoot makes the new root's mountpoint in stateDir, or in a
// temporary state directory when stateDir is empty. cleanup removes what
// it made.
func makeNewRoot(stateDir string) (newRoot string, cleanup func(), err error) {
	removeState := func() {}
	if stateDir == "" {
		dir, err := os.MkdirTemp("", "forge-buildroot-")
		if err != nil {
			return "", nil, fmt.Errorf("buildroot: state directory: %w", err)
		}
		stateDir, removeState = dir, func() { os.RemoveAll(dir) }
	}
	// Only ever mounted on inside init's private mount namespace, so in
	// the host's it stays an empty dir.
	newRoot, err = os.MkdirTemp(stateDir, "root-")
	if err != nil {
		removeState()
		return "", nil, fmt.Errorf("buildroot: %w", err)
	}
	return newRoot, func() { os.Remove(newRoot); removeState() }, nil
}

// Phase 1: start.

// initPipes are the pipes Run shares with init, which gets the child's
// ends as fds 3, 4 and 5 (configFd, syncFd, lifeFd).
type initPipes struct {
	confR, confW *os.File // the initConfig, then EOF
	syncR, syncW *os.File // init's initReport, or EOF once the command runs
	// init watches lifeR: when this process dies, however, the write end
	// closes and init kills the buildroot (Pdeathsig too, but that one
	// follows a thread, not the process).
	lifeR, lifeW *os.File
}

func newInitPipes() (*initPipes, error) {
	p := &initPipes{}
	var err error
	if p.confR, p.confW, err = os.Pipe(); err != nil {
		return nil, err
	}
	if p.syncR, p.syncW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	if p.lifeR, p.lifeW, err = os.Pipe(); err != nil {
		p.close()
		return nil, err
	}
	return p, nil
}

// childEnds are init's ExtraFiles, in the order of their fd numbers.
func (p *initPipes) childEnds() []*os.File {
	return []*os.File{p.confR, p.syncW, p.lifeR} // fds 3, 4, 5
}

// closeChildEnds drops Run's copies of init's ends once init has them,
// so that Run sees EOF on the sync pipe when init closes its end.
func (p *initPipes) closeChildEnds() {
	p.confR.Close()
	p.syncW.Close()
	p.lifeR.Close()
}

// close closes every end; closing one twice is harmless.
func (p *initPipes) close() {
	for _, f := range []*os.File{p.confR, p.confW, p.syncR, p.syncW, p.lifeR, p.lifeW} {
		f.Close() // nil-safe: a pipe not made yet
	}
}

// initProcess is a started init and what Run holds of it.
type initProcess struct {
	cmd   *exec.Cmd
	pipes *initPipes
	sigs  chan os.Signal // nil unless Config.ForwardSignals
}

// startInit starts init in its new namespaces and sends it its config.
func startInit(cfg Config, newRoot string) (_ *initProcess, err error) {
	pipes, err := newInitPipes()
	if err != nil {
		return nil, err
	}
	p := &initProcess{pipes: pipes}
	defer func() {
		if err != nil {
			p.release()
		}
	}()
	initPath := initExecutable(cfg.InitPath)
	p.cmd = initCommand(cfg, initPath, pipes.childEnds())
	if cfg.ForwardSignals {
		// Catch before starting, so that a signal arriving meanwhile is
		// forwarded rather than killing forge with the buildroot alive.
		p.sigs = make(chan os.Signal, 8)
		signal.Notify(p.sigs, forwarded...)
	}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("buildroot: start init %s: %w", initPath, err)
	}
	pipes.closeChildEnds()
	if err := writeInitConfig(pipes.confW, newInitConfig(cfg, newRoot)); err != nil {
		p.cmd.Process.Kill()
		p.cmd.Wait()
		return nil, fmt.Errorf("buildroot: send config to init: %w", err)
	}
	pipes.confW.Close()
	return p, nil
}

// release stops catching signals and closes Run's ends of the pipes.
func (p *initProcess) release() {
	if p.sigs != nil {
		signal.Stop(p.sigs)
	}
	p.pipes.close()
}

// initExecutable is the program re-executed as init: initPath, or this
// executable by name, so that ps shows PID 1 as forge.
func initExecutable(initPath string) string {
	if initPath != "" {
		return initPath
	}
	if exe, err := os.Executable(); err == nil {
		return exe
	}
	return "/proc/self/exe"
}

// initCommand is init's command line and process attributes: fds are
// its ExtraFiles (initPipes.childEnds).
func initCommand(cfg Config, initPath string, fds []*os.File) *exec.Cmd {
	cmd := exec.Command(initPath, InitArg)
	// Not nil, which would pass on the host's environment: init needs
	// none, and the command gets its own through the config.
	cmd.Env = []string{}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	cmd.ExtraFiles = fds
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: cloneFlags(cfg.Network), Pdeathsig: syscall.SIGKILL}
	return cmd
}

// cloneFlags are the namespaces init starts in.
func cloneFlags(network Network) uintptr {
	flags := uintptr(unix.CLONE_NEWNS | unix.CLONE_NEWPID | unix.CLONE_NEWIPC | unix.CLONE_NEWUTS)
	if network == NetworkPrivate {
		flags |= unix.CLONE_NEWNET
	}
	return flags
}

// Phase 2: supervise.

// outcome is what supervision saw of init.
type outcome struct {
	waitErr   error  // cmd.Wait's
	report    []byte // init's initReport; empty when the command ran
	killedFor error  // why Run killed the buildroot, if it did
}

// supervise waits for init to exit, forwarding signals once the command
// runs, and kills the buildroot when ctx ends or the timeout passes.
func (p *initProcess) supervise(ctx context.Context, timeout time.Duration) outcome {
	reportc, waitc := p.watch()
	var expired <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(timeout)
		defer t.Stop()
		expired = t.C
	}
	done := ctx.Done()
	fwd := signalForwarder{to: p.cmd.Process}
	var o outcome
	for {
		select {
		case o.waitErr = <-waitc:
			if reportc != nil {
				// init's exit closes its end: this does not block.
				o.report = <-reportc
			}
			return o
		case o.report = <-reportc:
			reportc = nil
			fwd.start()
		case s := <-p.sigs:
			fwd.forward(s)
		case <-expired:
			// The timeout wins over ctx, even if ctx ended first.
			o.killedFor = fmt.Errorf("%w after %s", ErrTimeout, timeout)
			p.kill()
			expired = nil
		case <-done:
			if o.killedFor == nil {
				o.killedFor = ctx.Err()
			}
			p.kill()
			done = nil
		}
	}
}

// watch reads init's report (all of the sync pipe, up to EOF) and waits
// for init, each in the background.
func (p *initProcess) watch() (<-chan []byte, <-chan error) {
	reportc := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(p.pipes.syncR)
		reportc <- b
	}()
	waitc := make(chan error, 1)
	go func() { waitc <- p.cmd.Wait() }()
	return reportc, waitc
}

// kill kills init, and with it its PID namespace: every process in it.
func (p *initProcess) kill() {
	p.cmd.Process.Kill()
}

// signaler is what signalForwarder signals: init's *os.Process.
type signaler interface {
	Signal(os.Signal) error
}

// signalForwarder passes signals on to init once init has started the
// command (it closes the sync pipe then) and holds them back until then:
// until init has its handlers, one would end it.
type signalForwarder struct {
	to      signaler
	started bool
	pending []os.Signal
}

func (f *signalForwarder) forward(s os.Signal) {
	if !f.started {
		f.pending = append(f.pending, s)
		return
	}
	f.to.Signal(s)
}

// start passes on the signals held back, in order, and every later one
// at once.
func (f *signalForwarder) start() {
	f.started = true
	for _, s := range f.pending {
		f.to.Signal(s)
	}
	f.pending = nil
}

// Phase 3: exit status.

// exitStatus is Run's result from what supervision saw: Run's own reason
// to kill the buildroot comes first, then a setup failure init reported,
// then the command's status, which init exits with.
func exitStatus(o outcome) (int, error) {
	if o.killedFor != nil {
		return -1, o.killedFor
	}
	if len(o.report) > 0 {
		return -1, readInitReport(o.report)
	}
	return initExitStatus(o.waitErr)
}

// initExitStatus turns init's wait result into the command's status.
func initExitStatus(waitErr error) (int, error) {
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
