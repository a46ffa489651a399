package buildroot

import (
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// rootfs builds the new root. Mount targets are reached through O_PATH
// fds opened inside the root without following symlinks, so a tree's
// symlink (an image's /proc -> /etc) cannot redirect a mount.
type rootfs struct {
	cfg    *initConfig
	mounts mounts // what the phases mount
	root   int    // O_PATH fd of the new root, after phase "rootfs"
	// fromCache: /etc came from Config.EtcCache; cacheBound: the empty
	// cache is bound at etcCacheMount for the runner's steps to fill.
	fromCache, cacheBound bool
}

func newRootfs(cfg *initConfig) *rootfs {
	return &rootfs{cfg: cfg, mounts: mountsFor(cfg), root: -1}
}

type phase struct {
	name string
	run  func() error
}

// phases are the steps in order; each comment says why it is where it is.
func (r *rootfs) phases() []phase {
	ps := []phase{
		// Before anything is mounted: nothing we do may propagate to the
		// host, nor anything of the host's into us.
		{"private", r.makePrivate},
		{"rootfs", r.mountRoot},
	}
	if !r.cfg.Chroot {
		ps = append(ps,
			phase{"buildtree", r.bindBuildTree},
			// /etc is written while the host's files (resolv.conf, the
			// build tree's ld.so.conf) are still reachable.
			phase{"etc", r.writeEtc},
		)
		switch {
		case r.cfg.Plain:
			ps[len(ps)-1] = phase{"etc", r.plainEtc}
		case r.cfg.EtcCache != "" && etcCacheComplete(r.cfg.EtcCache):
			r.fromCache = true
			ps[len(ps)-1] = phase{"etc", r.etcFromCache}
		}
	}
	ps = append(ps,
		phase{"scratch", r.mountScratch},
		phase{"dev", r.makeDev},
		phase{"proc", r.mountProc},
		phase{"sys", r.mountSys},
		// Caller binds come after /run's tmpfs, which they live in.
		phase{"binds", r.bindCaller},
		// Filesystems on the devices, which may be under a bind's target.
		phase{"mounts", func() error { return r.mountAll(r.mounts.fs) }},
		phase{"etc-cache", r.bindEtcCache},
		phase{"pivot", r.pivot},
		phase{"network", r.network},
		phase{"hostname", func() error { return unix.Sethostname([]byte(r.cfg.Hostname)) }},
	)
	if !r.cfg.Chroot && !r.cfg.Plain {
		// The runner's steps run build-tree tools inside the new root.
		ps = append(ps, phase{"runner", r.runner})
	}
	return ps
}

func fdPath(fd int) string { return fmt.Sprintf("/proc/self/fd/%d", fd) }

// openDir opens rel (relative to the root) as O_PATH, creating missing
// directories with mode, refusing symlinks on the way.
func (r *rootfs) openDir(rel string, mode uint32) (int, error) {
	cur, err := unix.Dup(r.root)
	if err != nil {
		return -1, err
	}
	for _, comp := range strings.Split(strings.Trim(path.Clean("/"+rel), "/"), "/") {
		if comp == "" {
			continue
		}
		if err := unix.Mkdirat(cur, comp, mode); err != nil && err != unix.EEXIST {
			unix.Close(cur)
			return -1, fmt.Errorf("mkdir %s in the new root: %w", rel, err)
		}
		next, err := unix.Openat2(cur, comp, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_NO_SYMLINKS,
		})
		unix.Close(cur)
		if err != nil {
			return -1, fmt.Errorf("open %s in the new root (symlinks refused): %w", rel, err)
		}
		cur = next
	}
	return cur, nil
}

// openFile creates rel as an empty file (a bind target for a file or a
// socket) and opens it as O_PATH.
func (r *rootfs) openFile(rel string) (int, error) {
	dir, err := r.openDir(path.Dir(rel), 0o755)
	if err != nil {
		return -1, err
	}
	defer unix.Close(dir)
	// O_PATH dirfds cannot create files; reopen the directory for that.
	d, err := unix.Openat(dir, ".", unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	defer unix.Close(d)
	f, err := unix.Openat(d, path.Base(rel), unix.O_CREAT|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o644)
	if err != nil && err != unix.ETXTBSY {
		return -1, fmt.Errorf("create %s in the new root: %w", rel, err)
	}
	unix.Close(f)
	return unix.Openat(d, path.Base(rel), unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
}

// mountAt mounts onto the directory rel, creating it.
func (r *rootfs) mountAt(source, rel, fstype string, flags uintptr, data string) error {
	fd, err := r.openDir(rel, 0o755)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return mount(source, fdPath(fd), rel, fstype, flags, data)
}

// mountAll makes ms in the new root, in order.
func (r *rootfs) mountAll(ms []mountSpec) error {
	for _, m := range ms {
		if err := r.mountOne(m); err != nil {
			return err
		}
	}
	return nil
}

// mountOne makes m in the new root.
func (r *rootfs) mountOne(m mountSpec) error {
	if m.ifDir {
		fi, err := os.Lstat(m.source)
		switch {
		case err != nil:
			return nil
		case fi.Mode()&os.ModeSymlink != 0:
			return r.copySymlink(m.source, m.target)
		case !fi.IsDir():
			return nil
		}
	}
	if m.flags&unix.MS_BIND != 0 {
		return r.bind(m.source, m.target, m.flags&unix.MS_RDONLY != 0)
	}
	return r.mountAt(m.source, m.target, m.fstype, m.flags, m.data)
}

// copySymlink makes the host's symlink source again at rel.
func (r *rootfs) copySymlink(source, rel string) error {
	target, err := os.Readlink(source)
	if err != nil {
		return err
	}
	if err := unix.Symlinkat(target, r.root, rel); err != nil {
		return fmt.Errorf("symlink /%s -> %s: %w", rel, target, err)
	}
	return nil
}

// bind binds the host path source at rel, a directory or a file like
// source, read-only if asked.
func (r *rootfs) bind(source, rel string, readOnly bool) error {
	fi, err := os.Stat(source)
	if err != nil {
		return fmt.Errorf("bind source: %w", err)
	}
	open := func() (int, error) {
		if fi.IsDir() {
			return r.openDir(rel, 0o755)
		}
		return r.openFile(rel)
	}
	fd, err := open()
	if err != nil {
		return err
	}
	err = mount(source, fdPath(fd), rel, "", unix.MS_BIND|unix.MS_REC, "")
	unix.Close(fd)
	if err != nil || !readOnly {
		return err
	}
	// Reopen: the old fd names the directory under the new mount.
	if fd, err = open(); err != nil {
		return err
	}
	defer unix.Close(fd)
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return fmt.Errorf("statfs %s: %w", rel, err)
	}
	// A bind remount must repeat the flags the mount keeps (nosuid...).
	flags := uintptr(unix.MS_BIND | unix.MS_REMOUNT | unix.MS_RDONLY)
	for st2ms, ms := range map[int64]uintptr{
		unix.ST_NOSUID: unix.MS_NOSUID, unix.ST_NODEV: unix.MS_NODEV, unix.ST_NOEXEC: unix.MS_NOEXEC,
		unix.ST_NOATIME: unix.MS_NOATIME, unix.ST_NODIRATIME: unix.MS_NODIRATIME, unix.ST_RELATIME: unix.MS_RELATIME,
	} {
		if st.Flags&st2ms != 0 {
			flags |= ms
		}
	}
	return mount("", fdPath(fd), rel, "", flags, "")
}

func (r *rootfs) makePrivate() error {
	return mount("", "/", "/", "", unix.MS_REC|unix.MS_PRIVATE, "")
}

func (r *rootfs) mountRoot() error {
	// By path: there is no root fd to mount through yet.
	m := r.mounts.root
	if err := mount(m.source, m.target, m.target, m.fstype, m.flags, m.data); err != nil {
		return err
	}
	fd, err := unix.Open(r.cfg.NewRoot, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open new root %s: %w", r.cfg.NewRoot, err)
	}
	r.root = fd
	return nil
}

func (r *rootfs) bindBuildTree() error {
	bt := r.cfg.BuildTree
	fi, err := os.Lstat(filepath.Join(bt, "usr"))
	if err != nil || !fi.IsDir() {
		return &phaseError{kindNoUsr, fmt.Errorf("build tree %s: %w", bt, ErrNoUsr)}
	}
	return r.mountAll(r.mounts.buildTree)
}

func (r *rootfs) mountScratch() error {
	if err := r.mountAll(r.mounts.scratch); err != nil {
		return err
	}
	if !r.cfg.Chroot {
		// On the fresh /var tmpfs; a chroot keeps its own.
		if err := os.Mkdir(filepath.Join(r.cfg.NewRoot, "var/tmp"), 0o1777); err != nil {
			return err
		}
		os.Chmod(filepath.Join(r.cfg.NewRoot, "var/tmp"), 0o1777)
	}
	fd, err := r.openDir(APIDir, 0o755)
	if err != nil {
		return err
	}
	return unix.Close(fd)
}

// devices are the nodes of the minimal /dev.
var devices = []struct {
	name         string
	major, minor uint32
}{
	{"null", 1, 3}, {"zero", 1, 5}, {"full", 1, 7}, {"random", 1, 8}, {"urandom", 1, 9}, {"tty", 5, 0},
}

// makeDev mounts /dev and what is under it, then fills its tmpfs.
func (r *rootfs) makeDev() error {
	if err := r.mountAll(r.mounts.dev); err != nil {
		return err
	}
	dev := filepath.Join(r.cfg.NewRoot, "dev")
	old := unix.Umask(0)
	defer unix.Umask(old)
	for _, d := range devices {
		p := filepath.Join(dev, d.name)
		if err := unix.Mknod(p, unix.S_IFCHR|0o666, int(unix.Mkdev(d.major, d.minor))); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
	}
	for _, d := range r.cfg.Devices {
		p := filepath.Join(dev, d.Name)
		mode := uint32(unix.S_IFCHR)
		if d.Block {
			mode = unix.S_IFBLK
		}
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := unix.Mknod(p, mode|0o660, int(unix.Mkdev(d.Major, d.Minor))); err != nil {
			return fmt.Errorf("mknod %s: %w", p, err)
		}
	}
	for name, target := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1",
		"stderr": "/proc/self/fd/2", "ptmx": "pts/ptmx", "core": "/proc/kcore",
	} {
		if err := os.Symlink(target, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// procReadOnly are the files of /proc through which root changes the
// host's kernel, not the namespace's: read-only, as bwrap makes them.
var procReadOnly = []string{"proc/sys", "proc/sysrq-trigger", "proc/irq", "proc/bus"}

func (r *rootfs) mountProc() error {
	if err := r.mountOne(r.mounts.proc); err != nil {
		return err
	}
	for _, p := range procReadOnly {
		src := filepath.Join(r.cfg.NewRoot, p)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		if err := r.bind(src, p, true); err != nil {
			return err
		}
	}
	return nil
}

func (r *rootfs) mountSys() error {
	err := r.mountOne(r.mounts.sys)
	if err == nil {
		return nil
	}
	// Where a fresh sysfs is refused, bind the host's, read-only.
	if berr := r.mountOne(r.mounts.sysBind); berr != nil {
		return fmt.Errorf("%w; bind instead: %w", err, berr)
	}
	return nil
}

func (r *rootfs) bindCaller() error {
	return r.mountAll(r.mounts.binds)
}

func (r *rootfs) pivot() error {
	if err := unix.Fchdir(r.root); err != nil {
		return fmt.Errorf("fchdir new root: %w", err)
	}
	// pivot_root(".", "."): the old root ends up mounted over the new
	// one, where we detach it; no put_old directory needed.
	if err := unix.PivotRoot(".", "."); err != nil {
		return fmt.Errorf("pivot_root %s: %w", r.cfg.NewRoot, err)
	}
	// Slave first, so detaching the old root cannot propagate anywhere
	// even if something above was shared.
	if err := mount("", ".", "old root", "", unix.MS_SLAVE|unix.MS_REC, ""); err != nil {
		return err
	}
	if err := unix.Unmount(".", unix.MNT_DETACH); err != nil {
		return &mountError{op: "umount", target: "old root", flags: unix.MNT_DETACH, err: err}
	}
	unix.Close(r.root)
	return unix.Chdir("/")
}

func (r *rootfs) network() error {
	if r.cfg.Network != NetworkPrivate {
		return nil
	}
	// A new network namespace starts with lo down.
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(s)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(s, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo: get flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(s, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("lo: up: %w", err)
	}
	return nil
}
