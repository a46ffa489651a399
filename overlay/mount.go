package overlay

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/mountinfo"
)

// Options tune a writable mount.
type Options struct {
	// Lower tunes the read-only FUSE mount of the tree below the overlay
	// (Logf, Statfs, Debug). It is always mounted allow_other, and suid
	// and dev as the overlay is (Suid, Dev): its mountpoint is in Scratch,
	// which only root may traverse.
	Lower fusefs.Options
	// Suid and Dev honour set-id bits and device nodes, as a build root
	// needs; without them the overlay is nosuid,nodev, as read-only
	// mounts are: anyone who can reach a writable mount can put files
	// there, and a set-id program copied in must not run as its owner.
	Suid, Dev bool
	// Name is the overlay's source in /proc/self/mountinfo; default
	// "forge-rw:<first 12 hex of the tree>".
	Name string
	// Scratch is an empty directory that holds the mount's changes (upper/
	// and work/) and the lower mount's mountpoint; its mode must give
	// nobody but its owner access (0700). overlayfs needs a
	// filesystem with trusted xattrs, d_type and file handles there (ext4,
	// xfs, btrfs). The mount never removes it: its owner does, after Wait.
	Scratch string
	// Logf receives what goes wrong in the background; nil discards it.
	Logf func(format string, args ...any)
}

// Mount is a writable overlay of a stored tree.
type Mount struct {
	mountpoint string
	scratch    string
	upper      string
	base       digest.Hash // the tree below: it never changes while mounted
	cache      *fusefs.Cache
	lower      *fusefs.Mount // nil over an empty tree
	logf       func(format string, args ...any)

	mntID    uint64
	stopOnce sync.Once
	stop     chan struct{} // closed by Unmount: the watcher need not poll any more
	done     chan struct{} // closed once the overlay and the lower mount are gone

	mu        sync.Mutex // guards what follows, up to commitMu
	unmounted bool
	// wakeFd is an eventfd Unmount writes to so that the watcher, waiting
	// in poll(2), learns at once: the mount table's notification alone
	// left every unmount of a writable tree waiting out the watcher's
	// one-second poll. -1 once the watcher has closed it.
	wakeFd    int
	tree      digest.Hash                 // the last commit, or base
	files     map[fileKey]storedFile      // file contents stored by earlier commits
	committed map[upperKey]committedEntry // upper inodes the last commit stored

	commitMu sync.Mutex            // one commit at a time; guards what follows
	links    map[linkKey][]string  // the base tree's hard-link groups, once a commit needed them
	dirs     map[string]*node.Node // base directories by path, resolved for commits
}

// lowerName, upperName and workName are the scratch directory's parts.
const (
	lowerName = "lower"
	upperName = "upper"
	workName  = "work"
)

// New mounts a writable view of tree (digest.Zero: an empty tree) at
// mountpoint: the kernel's overlayfs, with the tree mounted read-only by
// FUSE as its lower layer and the scratch directory as its upper layer.
// Reads of unchanged files go to the store; the first write to a file
// copies it up; chmod, chown, xattrs and times copy no data (metacopy);
// hard links keep their identity when one name changes (index). Creating,
// writing and renaming run at the speed of the scratch filesystem. It
// returns once the mount is in place.
func New(mountpoint string, cache *fusefs.Cache, tree digest.Hash, opts Options) (*Mount, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("mount %s read-write: %w", tree.Short(), err)
	}
	mountpoint = abs
	what := fmt.Sprintf("mount %s read-write at %s", tree.Short(), mountpoint)
	if opts.Scratch == "" {
		return nil, fmt.Errorf("%s: no scratch directory", what)
	}
	if st, err := os.Stat(opts.Scratch); err != nil {
		return nil, fmt.Errorf("%s: scratch: %w", what, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%s: scratch %s is not a directory", what, opts.Scratch)
	} else if st.Mode().Perm()&0o077 != 0 {
		// The upper layer holds the mount's files as they are, set-id
		// programs and device nodes included, on a filesystem that
		// honours both; the lower mount is there too.
		return nil, fmt.Errorf("%s: scratch %s has mode %#o: only its owner may have access to it", what, opts.Scratch, st.Mode().Perm())
	}
	if st, err := os.Stat(mountpoint); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("%s: %w", what, &os.PathError{Op: "mount", Path: mountpoint, Err: unix.ENOTDIR})
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	m := &Mount{
		mountpoint: mountpoint,
		scratch:    opts.Scratch,
		upper:      filepath.Join(opts.Scratch, upperName),
		base:       tree,
		tree:       tree,
		cache:      cache,
		logf:       logf,
		stop:       make(chan struct{}),
		done:       make(chan struct{}),
		wakeFd:     -1,
		files:      map[fileKey]storedFile{},
		dirs:       map[string]*node.Node{},
	}
	for _, d := range []string{lowerName, upperName, workName} {
		if err := os.Mkdir(filepath.Join(opts.Scratch, d), 0o700); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	}
	root := &node.Node{Type: node.TypeDir, Perm: 0o755}
	if now := time.Now(); tree.IsZero() {
		root.MtimeSec, root.MtimeNsec = now.Unix(), uint32(now.Nanosecond())
	} else {
		if root, err = cache.Node(tree); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		if root.Type != node.TypeDir {
			return nil, fmt.Errorf("%s: the tree's root is a %s, not a directory", what, root.Type)
		}
		lopts := opts.Lower
		lopts.AllowOther, lopts.Suid, lopts.Dev, lopts.OverlayLower = true, opts.Suid, opts.Dev, true
		lopts.Name = "forge-lower:" + tree.Short()
		if m.lower, err = fusefs.MountReadOnly(filepath.Join(opts.Scratch, lowerName), cache, tree, lopts); err != nil {
			return nil, fmt.Errorf("%s: lower layer: %w", what, err)
		}
	}
	ok := false
	defer func() {
		if !ok && m.lower != nil {
			m.lower.Unmount(true)
			m.lower.Wait()
		}
	}()
	// The overlay's root is the upper directory itself: it must look
	// like the tree's root.
	if err := setMeta(m.upper, root); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	name := opts.Name
	if name == "" {
		name = "forge-rw:" + tree.Short()
	}
	if err := m.mountOverlay(name, mountAttrs(opts)); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	var stx unix.Statx_t
	if err := unix.Statx(unix.AT_FDCWD, mountpoint, unix.AT_SYMLINK_NOFOLLOW, unix.STATX_MNT_ID, &stx); err != nil {
		unix.Unmount(mountpoint, unix.MNT_DETACH)
		return nil, fmt.Errorf("%s: %w", what, &os.PathError{Op: "statx", Path: mountpoint, Err: err})
	}
	m.mntID = stx.Mnt_id
	if fd, err := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK); err == nil {
		m.wakeFd = fd
	} else {
		logf("%s: no eventfd (%v): unmounting waits for the mount table's notice", mountpoint, err)
	}
	ok = true
	go m.watch()
	return m, nil
}

// mountAttrs are the overlay's mount attributes (fsmount(2)): nosuid and
// nodev unless opts asks for set-id programs or device nodes.
func mountAttrs(opts Options) int {
	attrs := 0
	if !opts.Suid {
		attrs |= unix.MOUNT_ATTR_NOSUID
	}
	if !opts.Dev {
		attrs |= unix.MOUNT_ATTR_NODEV
	}
	return attrs
}

// mountOverlay mounts the overlay with the new mount API, with mount
// attributes attrs: each layer is a parameter of its own, so no path needs
// escaping, and the kernel's reason for a refusal can be read back.
func (m *Mount) mountOverlay(source string, attrs int) error {
	fsfd, err := unix.Fsopen("overlay", unix.FSOPEN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("fsopen overlay: %w", err)
	}
	defer unix.Close(fsfd)
	lower := filepath.Join(m.scratch, lowerName)
	params := []struct{ key, value string }{
		{"source", source},
		{"lowerdir+", lower},
		{"upperdir", m.upper},
		{"workdir", filepath.Join(m.scratch, workName)},
		// metacopy: chmod, chown, xattrs and times copy no data.
		// redirect_dir: a renamed directory is not copied. index: a
		// change through one name of a hard-linked file shows through
		// all. All three are trusted here: forge made both layers.
		{"metacopy", "on"},
		{"redirect_dir", "on"},
		{"index", "on"},
		// One st_dev for every file, as on one filesystem: the lower
		// mount's inode numbers leave overlayfs the top bits to tell
		// the layers apart (fusefs.Options.OverlayLower).
		{"xino", "on"},
	}
	for _, p := range params {
		if err := unix.FsconfigSetString(fsfd, p.key, p.value); err != nil {
			return fmt.Errorf("overlay option %s=%s: %w%s", p.key, p.value, err, fsLog(fsfd))
		}
	}
	// volatile: no sync of the overlay reaches the store's filesystem.
	// The upper layer is scratch: a commit reads it through the page
	// cache and writes what it keeps into the store's own durable packs,
	// and after a crash the next daemon deletes it unread. Without it,
	// every fsync in a stage (qemu-img's, ext4's journal on a loop device
	// over a file of the tree) and the unmount itself (overlayfs syncs
	// its upper filesystem) waited for the disk: 1.5 s to unmount a tree
	// holding a 780 MB image here.
	if err := unix.FsconfigSetFlag(fsfd, "volatile"); err != nil {
		return fmt.Errorf("overlay option volatile: %w%s", err, fsLog(fsfd))
	}
	if err := unix.FsconfigCreate(fsfd); err != nil {
		return fmt.Errorf("create overlay: %w%s", err, fsLog(fsfd))
	}
	mfd, err := unix.Fsmount(fsfd, unix.FSMOUNT_CLOEXEC, attrs)
	if err != nil {
		return fmt.Errorf("fsmount overlay (attributes %s): %w%s", describeAttrs(attrs), err, fsLog(fsfd))
	}
	defer unix.Close(mfd)
	if err := unix.MoveMount(mfd, "", unix.AT_FDCWD, m.mountpoint, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
		return &os.PathError{Op: "move_mount overlay", Path: m.mountpoint, Err: err}
	}
	return nil
}

// describeAttrs names mount attributes, for messages.
func describeAttrs(attrs int) string {
	names := []string{"rw"}
	if attrs&unix.MOUNT_ATTR_NOSUID != 0 {
		names = append(names, "nosuid")
	}
	if attrs&unix.MOUNT_ATTR_NODEV != 0 {
		names = append(names, "nodev")
	}
	return strings.Join(names, ",")
}

// fsLog reads what the kernel said while a filesystem context was set up
// ("e overlayfs: ..."), for error messages.
func fsLog(fsfd int) string {
	var msgs []string
	buf := make([]byte, 1024)
	for {
		n, err := unix.Read(fsfd, buf)
		if err != nil || n <= 0 {
			break
		}
		msgs = append(msgs, strings.TrimSpace(string(buf[:n])))
	}
	if len(msgs) == 0 {
		return ""
	}
	return " (" + strings.Join(msgs, "; ") + ")"
}

// Mountpoint is the absolute path the tree is mounted at.
func (m *Mount) Mountpoint() string { return m.mountpoint }

// Tree is the hash of the tree last committed, or of the tree mounted
// before any commit.
func (m *Mount) Tree() digest.Hash {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.tree
}

// Unmount detaches the overlay. With files open (or a process inside) it
// fails with an error wrapping syscall.EBUSY unless lazy is set: then the
// mount leaves the namespace at once, and Wait returns when the last file
// is closed. Unmounting again after success does nothing.
func (m *Mount) Unmount(lazy bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.unmounted {
		return nil
	}
	flags := 0
	if lazy {
		flags = unix.MNT_DETACH
	}
	if err := unix.Unmount(m.mountpoint, flags); err != nil {
		if !errors.Is(err, unix.EINVAL) || m.mounted() {
			return &os.PathError{Op: "unmount", Path: m.mountpoint, Err: err}
		}
		// Someone else unmounted it.
	}
	m.unmounted = true
	m.stopOnce.Do(func() {
		close(m.stop)
		if m.wakeFd >= 0 {
			var one [8]byte
			one[0] = 1 // the eventfd's counter is a native-endian uint64
			unix.Write(m.wakeFd, one[:])
		}
	})
	return nil
}

// Wait blocks until the overlay has left the mount namespace and, over a
// stored tree, until the kernel has let go of it (the last file open on it
// closed), however it was unmounted.
func (m *Mount) Wait() { <-m.done }

// unmountedByUs reports whether Unmount succeeded: the overlay has left
// the mount table then, even when lazily detached with files still open.
func (m *Mount) unmountedByUs() bool {
	select {
	case <-m.stop:
		return true
	default:
		return false
	}
}

// mounted reports whether the overlay is still in the mount table.
func (m *Mount) mounted() bool {
	ms, err := mountinfo.Read()
	if err != nil {
		return true // cannot tell: assume the worst
	}
	for _, x := range ms {
		if uint64(x.ID) == m.mntID {
			return true
		}
	}
	return false
}

// watch waits for the overlay to leave the mount table (Unmount, or a
// plain umount by anyone), then takes the lower mount down. A change of
// the mount table wakes it (POLLPRI on /proc/self/mountinfo); it also looks
// once a second, should a wake-up be missed.
func (m *Mount) watch() {
	defer close(m.done)
	table, err := os.Open(mountinfo.Self)
	if err == nil {
		defer table.Close()
	}
	// Only the watcher closes the eventfd, under mu, so Unmount never
	// writes to a descriptor that has since been reused.
	m.mu.Lock()
	wake := m.wakeFd
	m.mu.Unlock()
	defer func() {
		m.mu.Lock()
		if m.wakeFd >= 0 {
			unix.Close(m.wakeFd)
			m.wakeFd = -1
		}
		m.mu.Unlock()
	}()
	buf := make([]byte, 4096)
	for !m.unmountedByUs() && m.mounted() {
		if table == nil {
			time.Sleep(time.Second)
			continue
		}
		fds := []unix.PollFd{{Fd: int32(table.Fd()), Events: unix.POLLPRI}}
		if wake >= 0 {
			fds = append(fds, unix.PollFd{Fd: int32(wake), Events: unix.POLLIN})
		}
		unix.Poll(fds, 1000)
		// Reading the table to its end rearms the notification.
		table.Seek(0, 0)
		for {
			if n, err := table.Read(buf); n == 0 || err != nil {
				break
			}
		}
	}
	if m.lower != nil {
		if err := m.lower.Unmount(true); err != nil {
			m.logf("unmount lower layer of %s: %v", m.mountpoint, err)
		}
		// Returns once the overlay's superblock, which holds the lower
		// mount, is gone: when the last file open on it is closed.
		m.lower.Wait()
	}
}

// setMeta gives directory path the metadata of dir n: mode, owner,
// xattrs, then mtime (which setting the others would not change anyway).
func setMeta(path string, n *node.Node) error {
	if err := os.Lchown(path, int(n.UID), int(n.GID)); err != nil {
		return err
	}
	if err := unix.Chmod(path, n.Perm); err != nil {
		return &os.PathError{Op: "chmod", Path: path, Err: err}
	}
	for _, x := range n.Xattrs {
		// The tree's own trusted.overlay.* xattrs, escaped as overlayfs
		// stores what a process sets under those names.
		name := x.Name
		if strings.HasPrefix(name, "trusted.overlay.") {
			name = "trusted.overlay.overlay." + strings.TrimPrefix(name, "trusted.overlay.")
		}
		if err := unix.Lsetxattr(path, name, x.Value, 0); err != nil {
			return &os.PathError{Op: "setxattr " + x.Name, Path: path, Err: err}
		}
	}
	ts := []unix.Timespec{{Sec: n.MtimeSec, Nsec: int64(n.MtimeNsec)}, {Sec: n.MtimeSec, Nsec: int64(n.MtimeNsec)}}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &os.PathError{Op: "utimensat", Path: path, Err: err}
	}
	return nil
}
