package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/buildroot"
	"github.com/forge-build/forge/daemon"
)

// runReaperArg is os.Args[1] of the process that cleans up after a forge
// run that died (see runReaper).
const runReaperArg = "__run-reaper"

// Each forge run mounts its trees (through the daemon, so on the host) at
// mountpoints under <store>/buildroots/run-XXXX/, a directory it holds an
// flock on. Those mounts outlive a forge run killed with SIGKILL; two
// things clean them:
//   - a reaper process, started first, in its own session, waits for EOF
//     on a pipe from forge run: when forge run dies, however, it asks the
//     daemon to detach the run's mounts and removes the directory;
//   - every forge run first sweeps run directories whose flock nobody
//     holds (a reaper that died too).
const runsDirName = "buildroots"

func runCommands() []*command {
	return []*command{{
		name: "run",
		summary: "Run CMD in a buildroot: private namespaces, /usr from the build tree (--root, the host's\n" +
			"by default), a generated /etc, a stored tree copy-on-write at /run/osbuild/tree (--tree;\n" +
			"committed under --commit-ref NAME when CMD succeeds). With --chroot, the stored tree\n" +
			"itself, copy-on-write, is the root. The exit status is CMD's.",
		usage: "[--store DIR] [--root REF|HASH|host] [--tree REF|HASH] [--commit-ref NAME]\n" +
			"       [--network private|host] [--timeout DUR] -- CMD [ARGS...]\n" +
			"   or: forge run [--store DIR] --chroot REF|HASH [--commit-ref NAME] -- CMD [ARGS...]",
		example: "  forge run --store /var/cache/forge --root debian-build -- /bin/bash\n" +
			"  forge run --tree base --commit-ref base+hello -- sh -c 'echo hi > /run/osbuild/tree/hello'\n" +
			"  forge run --chroot my-image -- /bin/bash",
		flags: func(fs *pflag.FlagSet) {
			storeFlag(fs)
			fs.String("root", "host", "the build tree: a stored `REF|HASH`, or host")
			fs.String("tree", "", "mount stored tree `REF|HASH` copy-on-write at /run/osbuild/tree")
			fs.String("chroot", "", "use stored tree `REF|HASH` (copy-on-write) as the whole root")
			fs.String("commit-ref", "", "when CMD exits 0, commit the tree (or --chroot root) as ref `NAME`")
			fs.String("network", "host", "`host` or private (only lo)")
			fs.Duration("timeout", 0, "kill everything after `DUR` (exit 124)")
		},
		run: runRun,
	}}
}

func runRun(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	args := fs.Args()
	if len(args) == 0 {
		return usagef("run needs a command: forge run [FLAGS] -- CMD [ARGS...]")
	}
	root, _ := fs.GetString("root")
	tree, _ := fs.GetString("tree")
	chroot, _ := fs.GetString("chroot")
	commitRef, _ := fs.GetString("commit-ref")
	network, _ := fs.GetString("network")
	timeout, _ := fs.GetDuration("timeout")
	if chroot != "" && (fs.Changed("root") || tree != "") {
		return usagef("--chroot replaces --root and --tree")
	}
	if network != string(buildroot.NetworkHost) && network != string(buildroot.NetworkPrivate) {
		return usagef("--network %q: want host or private", network)
	}
	if root == "" {
		return usagef("--root is empty")
	}
	store, _ := fs.GetString("store")
	store, err := absArg(store)
	if err != nil {
		return err
	}
	c, err := connect(ctx, fs)
	if err != nil {
		return err
	}
	defer c.Close()

	runs := filepath.Join(store, runsDirName)
	sweepRuns(ctx, c, runs)
	dir, lock, err := newRunDir(runs)
	if err != nil {
		return err
	}
	defer lock.Close()
	reaperDone, err := startReaper(store, dir)
	if err != nil {
		cleanupRun(ctx, c, dir)
		return err
	}
	// Normal end: clean up ourselves, then let the reaper go (it finds
	// nothing left).
	defer reaperDone()
	defer cleanupRun(context.WithoutCancel(ctx), c, dir)

	cfg := buildroot.Config{
		BuildTree:      "/",
		Network:        buildroot.Network(network),
		Args:           args,
		Env:            buildroot.DefaultEnv(),
		Timeout:        timeout,
		Stdin:          os.Stdin,
		Stdout:         os.Stdout,
		Stderr:         os.Stderr,
		ForwardSignals: true,
		StateDir:       dir,
	}
	if term := os.Getenv("TERM"); term != "" {
		cfg.Env = append(cfg.Env, "TERM="+term)
	}
	var commitAt string
	switch {
	case chroot != "":
		mp, err := mountIn(ctx, c, dir, "root", daemon.MountRequest{Tree: chroot, Writable: true})
		if err != nil {
			return err
		}
		cfg.BuildTree, cfg.Chroot, commitAt = mp, true, mp
	case root != "host":
		mp, err := mountIn(ctx, c, dir, "buildtree", daemon.MountRequest{Tree: root, BuildRoot: true})
		if err != nil {
			return err
		}
		cfg.BuildTree = mp
	}
	if chroot == "" && (tree != "" || commitRef != "") {
		// Without --tree, --commit-ref builds a tree from an empty one.
		mp, err := mountIn(ctx, c, dir, "tree", daemon.MountRequest{Tree: tree, Writable: true})
		if err != nil {
			return err
		}
		cfg.Binds = append(cfg.Binds, buildroot.Bind{Source: mp, Target: buildroot.TreeDir})
		commitAt = mp
	}

	// SIGINT and SIGTERM go to CMD (Config.ForwardSignals), which decides;
	// they must not tear the buildroot down under it.
	code, err := buildroot.Run(context.WithoutCancel(ctx), cfg)
	switch {
	case errors.Is(err, buildroot.ErrTimeout):
		fmt.Fprintf(e.stderr, "forge run: %v: killed everything in the buildroot\n", err)
		return &exitError{124}
	case errors.Is(err, buildroot.ErrCommandNotFound):
		fmt.Fprintf(e.stderr, "forge run: %v\n", err)
		return &exitError{127}
	case err != nil:
		return err
	}
	if code == 0 && commitRef != "" {
		res, err := c.Commit(context.WithoutCancel(ctx), daemon.CommitRequest{Mountpoint: daemon.Path(commitAt), Refs: []string{commitRef}})
		if err != nil {
			return fmt.Errorf("commit %s as %s: %w", commitAt, commitRef, err)
		}
		fmt.Fprintf(e.stderr, "forge run: committed tree %s as %s\n", res.Tree, commitRef)
	}
	if code != 0 {
		return &exitError{code}
	}
	return nil
}

// mountIn asks the daemon to mount req at dir/name.
func mountIn(ctx context.Context, c *daemon.Client, dir, name string, req daemon.MountRequest) (string, error) {
	mp := filepath.Join(dir, name)
	if err := os.Mkdir(mp, 0o755); err != nil {
		return "", err
	}
	req.Mountpoint = daemon.Path(mp)
	if _, err := c.Mount(ctx, req); err != nil {
		return "", fmt.Errorf("mount %s at %s: %w", req.Tree, mp, err)
	}
	return mp, nil
}

// lockRuns serializes creating run directories with sweeping them, so a
// sweep never takes a directory whose run has not locked it yet.
func lockRuns(runs string) (*os.File, error) {
	if err := os.MkdirAll(runs, 0o700); err != nil {
		return nil, err
	}
	f, err := os.OpenFile(filepath.Join(runs, ".lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return f, nil
}

// newRunDir makes this run's directory and holds its lock.
func newRunDir(runs string) (string, *os.File, error) {
	l, err := lockRuns(runs)
	if err != nil {
		return "", nil, err
	}
	defer l.Close()
	dir, err := os.MkdirTemp(runs, "run-")
	if err != nil {
		return "", nil, err
	}
	f, err := os.OpenFile(filepath.Join(dir, "lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return "", nil, err
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		f.Close()
		return "", nil, fmt.Errorf("lock %s: %w", f.Name(), err)
	}
	return dir, f, nil
}

// sweepRuns cleans the directories of runs that died with their reaper.
func sweepRuns(ctx context.Context, c *daemon.Client, runs string) {
	l, err := lockRuns(runs)
	if err != nil {
		return
	}
	defer l.Close()
	entries, _ := os.ReadDir(runs)
	for _, ent := range entries {
		if !ent.IsDir() {
			continue
		}
		dir := filepath.Join(runs, ent.Name())
		f, err := os.Open(filepath.Join(dir, "lock"))
		if err != nil {
			continue
		}
		if unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB) == nil {
			cleanupRun(ctx, c, dir)
		}
		f.Close()
	}
}

// cleanupRun detaches the daemon's mounts under dir and removes dir. It
// never removes recursively: a directory that is still a mountpoint (or
// not empty) stays, for the next sweep.
func cleanupRun(ctx context.Context, c *daemon.Client, dir string) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	if mounts, err := c.Mounts(ctx); err == nil {
		for _, m := range mounts {
			mp := string(m.Mountpoint)
			if !strings.HasPrefix(mp, dir+"/") {
				continue
			}
			// Normally the buildroot is gone and nothing holds the mount;
			// lazily otherwise (a dying buildroot still tearing down).
			if _, err := c.Unmount(ctx, daemon.UnmountRequest{Mountpoint: m.Mountpoint}); err != nil {
				c.Unmount(ctx, daemon.UnmountRequest{Mountpoint: m.Mountpoint, Lazy: true})
			}
		}
	}
	entries, _ := os.ReadDir(dir)
	for _, ent := range entries {
		os.Remove(filepath.Join(dir, ent.Name()))
	}
	os.Remove(dir)
}

// startReaper starts the process that cleans dir if this one dies. The
// returned func, called at the normal end, lets it go and waits for it.
func startReaper(store, dir string) (func(), error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe", runReaperArg, store, dir)
	cmd.Stdin = r
	// Its own session: a terminal's ^C or a kill of forge run's process
	// group must not take it down with forge run.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		w.Close()
		return nil, fmt.Errorf("start reaper for %s: %w", dir, err)
	}
	return func() {
		w.Close()
		cmd.Wait()
	}, nil
}

// runReaper is the reaper's main: args are STORE DIR.
func runReaper(args []string) int {
	if len(args) != 2 {
		return 2
	}
	io.Copy(io.Discard, os.Stdin)
	// forge run has ended. If it cleaned up, dir is gone.
	if _, err := os.Stat(args[1]); err != nil {
		return 0
	}
	c := daemon.NewClient(args[0])
	defer c.Close()
	cleanupRun(context.Background(), c, args[1])
	return 0
}
