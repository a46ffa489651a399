// Package runs gives each forge run or build a directory for the host
// mounts it asks the store daemon for, and makes sure those mounts go away
// when the run ends, however it ends.
//
// Each run mounts its trees (through the daemon, so on the host) at
// mountpoints under <store>/buildroots/run-XXXX/, a directory whose lock
// file it holds an flock on. Those mounts outlive a run killed with
// SIGKILL; two things clean them:
//   - a reaper process, started first, in its own session, waits for EOF
//     on a pipe from the run: when the run dies, however, it asks the
//     daemon to detach the run's mounts and removes the directory;
//   - every run first sweeps run directories whose flock nobody holds (a
//     reaper that died too).
package runs

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/internal/mountinfo"
)

// DirName is the directory under the store that holds run directories:
// the daemon mounts trees inside the store there only.
const DirName = client.RunsDirName

// ReaperArg is os.Args[1] of the reaper process: the program's main must
// call ReaperMain with the arguments after it when it sees it.
const ReaperArg = "__run-reaper"

// scratchName is a run's directory for plain (not mounted) scratch data,
// such as an assembler's output: the cleanup removes it recursively.
const scratchName = "scratch"

// Run is one run's directory.
type Run struct {
	Dir    string
	lock   *os.File
	reaper func()
	client *client.Client
}

// Start sweeps the run directories of dead runs, makes a new one and
// starts its reaper.
func Start(ctx context.Context, c *client.Client, store string) (*Run, error) {
	runs := filepath.Join(store, DirName)
	Sweep(ctx, c, runs)
	dir, lock, err := newRunDir(runs)
	if err != nil {
		return nil, err
	}
	done, err := startReaper(store, dir)
	if err != nil {
		lock.Close()
		cleanup(ctx, c, dir)
		return nil, err
	}
	return &Run{Dir: dir, lock: lock, reaper: done, client: c}, nil
}

// Mount asks the daemon to mount req at Dir/name, a new directory. A
// writable tree is where stages run (debootstrap makes device nodes,
// packages install set-id programs that run in the build root): it is
// mounted suid and dev (BuildRoot), which only root can reach here.
func (r *Run) Mount(ctx context.Context, name string, req client.MountRequest) (string, error) {
	if req.Writable {
		req.BuildRoot = true
	}
	mp := filepath.Join(r.Dir, name)
	if err := os.Mkdir(mp, 0o755); err != nil {
		return "", err
	}
	req.Mountpoint = client.Path(mp)
	if _, err := r.client.Mount(ctx, req); err != nil {
		os.Remove(mp)
		tree := req.Tree
		if tree == "" {
			tree = "an empty tree"
		}
		return "", fmt.Errorf("mount %s at %s: %w", tree, mp, err)
	}
	return mp, nil
}

// Unmount detaches the daemon's mount at mp (made by Mount) and removes
// the directory.
func (r *Run) Unmount(ctx context.Context, mp string) error {
	if _, err := r.client.Unmount(ctx, client.UnmountRequest{Mountpoint: client.Path(mp)}); err != nil {
		if _, lerr := r.client.Unmount(ctx, client.UnmountRequest{Mountpoint: client.Path(mp), Lazy: true}); lerr != nil {
			return fmt.Errorf("unmount %s: %w", mp, err)
		}
	}
	return os.Remove(mp)
}

// ScratchDir makes and returns Dir/scratch/name, a plain directory that
// goes with the run.
func (r *Run) ScratchDir(name string) (string, error) {
	p := filepath.Join(r.Dir, scratchName, name)
	if err := os.MkdirAll(p, 0o755); err != nil {
		return "", err
	}
	return p, nil
}

// Close detaches every mount of the run, removes its directory and lets
// the reaper go.
func (r *Run) Close(ctx context.Context) {
	cleanup(context.WithoutCancel(ctx), r.client, r.Dir)
	r.lock.Close()
	r.reaper()
}

// lockRuns serializes creating run directories with sweeping them, so a
// sweep never takes a directory whose run has not locked it yet. It makes
// runs private first.
func lockRuns(runs string) (*os.File, error) {
	if err := os.MkdirAll(runs, 0o700); err != nil {
		return nil, err
	}
	if err := privateDir(runs); err != nil {
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

// privateDir makes sure that only its owner, this process's user, can
// traverse dir: the run directories in it hold mounts that honour set-id
// bits and device nodes. A directory that a store made before this check
// may have another mode; one owned by another user, or a symlink, is
// refused.
func privateDir(dir string) error {
	var st unix.Stat_t
	if err := unix.Lstat(dir, &st); err != nil {
		return &os.PathError{Op: "lstat", Path: dir, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("%s is not a directory (a symlink?): it must be a directory only root can traverse", dir)
	}
	if int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not %d: it must be a directory only root can traverse", dir, st.Uid, os.Geteuid())
	}
	if st.Mode&0o077 != 0 {
		if err := unix.Chmod(dir, 0o700); err != nil {
			return &os.PathError{Op: "chmod 0700", Path: dir, Err: err}
		}
	}
	return nil
}

// newRunDir makes a run's directory and holds its lock.
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

// Sweep cleans the directories of runs that died with their reaper.
func Sweep(ctx context.Context, c *client.Client, runs string) {
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
			cleanup(ctx, c, dir)
		}
		f.Close()
	}
}

// cleanup detaches the daemon's mounts under dir and removes dir. Only
// the scratch directory is removed recursively (nothing is ever mounted
// in it on the host); a mountpoint that is still mounted (or not empty)
// stays, for the next sweep.
func cleanup(ctx context.Context, c *client.Client, dir string) {
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
			if _, err := c.Unmount(ctx, client.UnmountRequest{Mountpoint: m.Mountpoint}); err != nil {
				c.Unmount(ctx, client.UnmountRequest{Mountpoint: m.Mountpoint, Lazy: true})
			}
		}
	}
	if !mounted(dir) {
		os.RemoveAll(filepath.Join(dir, scratchName))
	}
	entries, _ := os.ReadDir(dir)
	for _, ent := range entries {
		os.Remove(filepath.Join(dir, ent.Name()))
	}
	os.Remove(dir)
}

// mounted says whether anything is mounted at or under dir in this mount
// namespace (or whether that cannot be told): then nothing is removed
// recursively.
func mounted(dir string) bool {
	ms, err := mountinfo.Read()
	return err != nil || len(mountinfo.Under(ms, dir)) > 0
}

// startReaper starts the process that cleans dir if this one dies. The
// returned func, called at the normal end, lets it go and waits for it.
func startReaper(store, dir string) (func(), error) {
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	cmd := exec.Command("/proc/self/exe", ReaperArg, store, dir)
	cmd.Stdin = r
	// Its own session: a terminal's ^C or a kill of the run's process
	// group must not take it down with the run.
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

// ReaperMain is the reaper's main: args are STORE DIR. It returns the
// exit status.
func ReaperMain(args []string) int {
	if len(args) != 2 {
		return 2
	}
	io.Copy(io.Discard, os.Stdin)
	// The run has ended. If it cleaned up, dir is gone.
	if _, err := os.Stat(args[1]); err != nil {
		return 0
	}
	c := client.NewClient(args[0])
	defer c.Close()
	cleanup(context.Background(), c, args[1])
	return 0
}
