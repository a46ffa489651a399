package chroot

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Chroot is a tree set up for commands to run chrooted into it. Its
// Teardown undoes everything done to the tree since Setup or Watch.
type Chroot struct {
	root     string // absolute, symlink-free
	log      io.Writer
	baseline map[key]bool // the mounts below root before Setup or Watch
	created  []string     // mountpoints Setup made, relative to root, in order

	substituted []*substitution // by Substitute, in order
}

// Root is the tree's absolute, symlink-free path.
func (c *Chroot) Root() string { return c.root }

// Watch remembers what is mounted below root now, so that Teardown can
// undo whatever is mounted there later (by a tool that mounts /proc and
// /dev into the tree by itself) and kill what is left running in it.
// Notes on what Teardown had to clean up go to log.
func Watch(root string, log io.Writer) (*Chroot, error) {
	resolved, err := resolveRoot(root)
	if err != nil {
		return nil, err
	}
	mounts, err := readMounts()
	if err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	c := &Chroot{root: resolved, log: log, baseline: map[key]bool{}}
	for _, m := range mountsBelow(mounts, resolved) {
		c.baseline[m.key()] = true
	}
	return c, nil
}

// devNodes are the device nodes bound into the chroot's /dev: what
// maintainer scripts and apt use, nothing that reaches hardware.
var devNodes = []string{"null", "zero", "full", "random", "urandom", "tty"}

// devLinks are the symlinks every /dev has.
var devLinks = []struct{ name, target string }{
	{"ptmx", "pts/ptmx"},
	{"fd", "/proc/self/fd"},
	{"stdin", "/proc/self/fd/0"},
	{"stdout", "/proc/self/fd/1"},
	{"stderr", "/proc/self/fd/2"},
}

// Setup mounts /proc, /sys (read-only) and a minimal /dev into root, for
// commands to run chrooted there. The tree's own /dev is hidden, never
// changed. A mountpoint the tree lacks is created and removed again by
// Teardown; one that is a symlink is an error. On error, whatever Setup
// had done is undone.
func Setup(root string, log io.Writer) (c *Chroot, err error) {
	c, err = Watch(root, log)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			if terr := c.Teardown(); terr != nil {
				err = errors.Join(err, terr)
			}
			c = nil
		}
	}()
	rootFD, err := openRootDir(c.root)
	if err != nil {
		return c, err
	}
	defer unix.Close(rootFD)

	if err := c.mountAt(rootFD, "proc", "proc", "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return c, err
	}
	// A bind keeps whatever /sys the caller has (the buildroot's is
	// read-only); the remount makes this one read-only in any case.
	if err := c.mountAt(rootFD, "sys", "/sys", "", unix.MS_BIND, ""); err != nil {
		return c, err
	}
	if err := c.mountAt(rootFD, "sys", "", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return c, err
	}
	if err := c.mountAt(rootFD, "dev", "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755,size=1m"); err != nil {
		return c, err
	}
	return c, c.populateDev()
}

// populateDev fills the tmpfs Setup mounted on the tree's /dev. It is
// Setup's own, empty filesystem, so plain paths into it are safe.
func (c *Chroot) populateDev() error {
	dev := filepath.Join(c.root, "dev")
	for _, n := range devNodes {
		src, dst := "/dev/"+n, filepath.Join(dev, n)
		st, err := os.Stat(src)
		if err != nil {
			return fmt.Errorf("chroot /dev: %w", err)
		}
		if st.Mode()&os.ModeCharDevice == 0 {
			return fmt.Errorf("chroot /dev: %s is not a character device", src)
		}
		f, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o666)
		if err != nil {
			return fmt.Errorf("chroot /dev: %w", err)
		}
		f.Close()
		if err := mountPath(src, dst, "", unix.MS_BIND, ""); err != nil {
			return err
		}
	}
	pts := filepath.Join(dev, "pts")
	if err := os.Mkdir(pts, 0o755); err != nil {
		return fmt.Errorf("chroot /dev: %w", err)
	}
	// A new devpts instance: the chroot's ptys are its own. gid 5 is
	// Debian's (and most distributions') tty group.
	if err := mountPath("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=0620,gid=5"); err != nil {
		return err
	}
	for _, l := range devLinks {
		if err := os.Symlink(l.target, filepath.Join(dev, l.name)); err != nil {
			return fmt.Errorf("chroot /dev: %w", err)
		}
	}
	shm := filepath.Join(dev, "shm")
	if err := os.Mkdir(shm, 0o755); err != nil {
		return fmt.Errorf("chroot /dev: %w", err)
	}
	// Mkdir's mode goes through the umask; the sticky bit does not.
	if err := os.Chmod(shm, 0o777|os.ModeSticky); err != nil {
		return fmt.Errorf("chroot /dev: %w", err)
	}
	return nil
}

// mountAt mounts onto the directory rel of the tree, creating it when the
// tree lacks it. The mountpoint is resolved without following any
// symlink and mounted on through its file descriptor, so that a tree
// cannot point a mount elsewhere.
func (c *Chroot) mountAt(rootFD int, rel, source, fstype string, flags uintptr, data string) error {
	fd, err := c.mountpoint(rootFD, rel)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	target := filepath.Join(c.root, rel)
	if err := unix.Mount(source, fdPath(fd), fstype, flags, data); err != nil {
		return &MountError{Source: source, Target: target, FSType: fstype, Flags: flags, Data: data, Err: err}
	}
	return nil
}

// mountpoint opens the directory rel of the tree, making it first if it
// is missing (and remembering that, for Teardown to remove it).
func (c *Chroot) mountpoint(rootFD int, rel string) (int, error) {
	const flags = unix.O_PATH | unix.O_DIRECTORY | unix.O_NOFOLLOW
	fd, err := openInRoot(rootFD, rel, flags, 0, unix.RESOLVE_NO_SYMLINKS)
	if errors.Is(err, unix.ENOENT) && !strings.Contains(rel, "/") {
		if err := unix.Mkdirat(rootFD, rel, 0o755); err != nil {
			return -1, fmt.Errorf("chroot: create mountpoint %s: %w", filepath.Join(c.root, rel), err)
		}
		c.created = append(c.created, rel)
		fd, err = openInRoot(rootFD, rel, flags, 0, unix.RESOLVE_NO_SYMLINKS)
	}
	switch {
	case errors.Is(err, unix.ELOOP), errors.Is(err, unix.ENOTDIR):
		return -1, fmt.Errorf("chroot: mountpoint %s is not a directory (a symlink or a file in the tree)", filepath.Join(c.root, rel))
	case err != nil:
		return -1, fmt.Errorf("chroot: mountpoint %s: %w", filepath.Join(c.root, rel), err)
	}
	return fd, nil
}

func mountPath(source, target, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		return &MountError{Source: source, Target: target, FSType: fstype, Flags: flags, Data: data, Err: err}
	}
	return nil
}

// MountError is a failed mount(2), with everything it was asked to do.
type MountError struct {
	Source, Target, FSType string
	Flags                  uintptr
	Data                   string
	Err                    error
}

func (e *MountError) Error() string {
	s := fmt.Sprintf("mount %s on %s", e.Source, e.Target)
	if e.Source == "" {
		s = "remount " + e.Target
	}
	if e.FSType != "" {
		s += " (type " + e.FSType + ")"
	}
	s += fmt.Sprintf(" flags %#x", e.Flags)
	if e.Data != "" {
		s += " options " + e.Data
	}
	return s + ": " + e.Err.Error()
}

func (e *MountError) Unwrap() error { return e.Err }

// Teardown kills every process whose root directory is the tree, puts
// back what Substitute replaced, unmounts everything mounted below the
// tree since Setup or Watch, deepest first, and removes the mountpoints
// Setup created. A mount that
// stays busy is detached lazily (and noted in the log): it is gone from
// the tree, and freed when its last user closes it. The error lists what
// could not be undone. Teardown may be called again, after an error or
// not; with nothing left to do it does nothing.
func (c *Chroot) Teardown() error {
	var errs []error
	if err := c.killProcesses(); err != nil {
		errs = append(errs, err)
	}
	if err := c.restoreSubstituted(); err != nil {
		errs = append(errs, err)
	}
	if err := c.unmountNew(); err != nil {
		errs = append(errs, err)
	}
	if err := c.removeCreated(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// maxUnmountRounds bounds how often Teardown re-reads the mount table: a
// round unmounts everything it saw, so more than one is needed only when
// a mount propagates or a lazily detached parent takes children along.
const maxUnmountRounds = 8

func (c *Chroot) unmountNew() error {
	for round := 0; round < maxUnmountRounds; round++ {
		mounts, err := readMounts()
		if err != nil {
			return err
		}
		todo := newMountsBelow(mounts, c.root, c.baseline)
		if len(todo) == 0 {
			return nil
		}
		for _, m := range todo {
			c.unmount(m.Point)
		}
	}
	mounts, err := readMounts()
	if err != nil {
		return err
	}
	left := newMountsBelow(mounts, c.root, c.baseline)
	if len(left) == 0 {
		return nil
	}
	var names []string
	for _, m := range left {
		names = append(names, m.Point+" ("+m.FSType+")")
	}
	return fmt.Errorf("chroot %s: still mounted after teardown: %s", c.root, strings.Join(names, ", "))
}

// busyRetries is how often a busy mount is retried before it is detached
// lazily: processes that were just killed may still hold it for a moment.
const busyRetries = 20

// unmount unmounts the topmost mount at point; it is not an error that
// it is gone already. Busy mounts are retried, then detached lazily.
func (c *Chroot) unmount(point string) {
	for try := 0; ; try++ {
		err := unix.Unmount(point, unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil, errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return
		case errors.Is(err, unix.EBUSY) && try < busyRetries:
			time.Sleep(50 * time.Millisecond)
			continue
		case errors.Is(err, unix.EBUSY):
			if derr := unix.Unmount(point, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); derr == nil {
				fmt.Fprintf(c.log, "chroot: %s stayed busy; detached it lazily\n", point)
				return
			}
		}
		// The next round of unmountNew sees it again, and its error
		// names it if it stays.
		fmt.Fprintf(c.log, "chroot: unmount %s: %v\n", point, err)
		return
	}
}

func (c *Chroot) removeCreated() error {
	var errs []error
	var kept []string
	for i := len(c.created) - 1; i >= 0; i-- {
		p := filepath.Join(c.root, c.created[i])
		if err := os.Remove(p); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("chroot: remove the mountpoint it created: %w", err))
			kept = append([]string{c.created[i]}, kept...)
		}
	}
	c.created = kept
	return errors.Join(errs...)
}

// Env is the environment for Debian's tools in a chroot: no prompts
// (debconf, dpkg), the C locale (the only one a fresh tree has), a root
// PATH.
func Env() []string {
	env := []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"LC_ALL=C",
		"DEBIAN_FRONTEND=noninteractive",
		"DEBCONF_NONINTERACTIVE_SEEN=true",
	}
	// The pipeline's source-epoch: Debian's tools (mkinitramfs, shadow's
	// last-change days, man-db) make their output reproducible with it.
	if e, ok := os.LookupEnv("SOURCE_DATE_EPOCH"); ok {
		env = append(env, "SOURCE_DATE_EPOCH="+e)
	}
	return env
}

// PrivateDir mounts an empty tmpfs on the tree's top-level directory rel
// (like "run") until Teardown, hiding what the tree has there, and
// returns its path. It is the caller's own filesystem: plain paths below
// it are safe, whatever the tree holds.
func (c *Chroot) PrivateDir(rel string) (string, error) {
	if strings.Contains(rel, "/") {
		return "", fmt.Errorf("chroot: private directory %q: want a top-level directory of the tree", rel)
	}
	rootFD, err := openRootDir(c.root)
	if err != nil {
		return "", err
	}
	defer unix.Close(rootFD)
	if err := c.mountAt(rootFD, rel, "tmpfs", "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return "", err
	}
	return filepath.Join(c.root, rel), nil
}

// BindReadOnly mounts the directory source read-only on the tree's
// directory rel until Teardown. rel must exist; it is resolved without
// following symlinks.
func (c *Chroot) BindReadOnly(source, rel string) error {
	rootFD, err := openRootDir(c.root)
	if err != nil {
		return err
	}
	defer unix.Close(rootFD)
	if err := c.mountAt(rootFD, rel, source, "", unix.MS_BIND, ""); err != nil {
		return err
	}
	return c.mountAt(rootFD, rel, "", "", unix.MS_REMOUNT|unix.MS_BIND|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "")
}

// hostResolvConf is the caller's resolver configuration: in a buildroot,
// the host's.
const hostResolvConf = "/etc/resolv.conf"

// ProvideResolvConf copies the caller's /etc/resolv.conf into the tree
// until Teardown (see Substitute), so that commands in the chroot can
// resolve the mirror's name. Without one to copy, the tree's stays, and
// the log says so.
func (c *Chroot) ProvideResolvConf() error {
	b, err := os.ReadFile(hostResolvConf)
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(c.log, "chroot: no %s to copy into the tree; it keeps its own\n", hostResolvConf)
		return nil
	}
	if err != nil {
		return fmt.Errorf("chroot: %w", err)
	}
	return c.Substitute("etc/resolv.conf", b, 0o644)
}
