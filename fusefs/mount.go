package fusefs

import (
	"errors"
	"fmt"
	"io"
	"log"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// Options tune a mount. The zero value mounts for the mounting user only,
// nosuid and nodev.
type Options struct {
	AllowOther bool   // let every user look (the daemon sets it); modes are checked by the kernel (default_permissions)
	Suid, Dev  bool   // honour setuid bits and device nodes (build roots); default nosuid,nodev
	Name       string // shown as the mount's source in /proc/self/mountinfo; default "forge:<first 12 hex of tree>"
	// Logf receives rich errors before they are turned into errnos; nil
	// discards them.
	Logf func(format string, args ...any)
	// Statfs, if set, answers statfs (blocks and free blocks of 4 KiB, and
	// inodes); nil reports the tree's own totals, counted on the first
	// statfs.
	Statfs func() (blocks, bfree, files uint64)
	Debug  bool // log every FUSE request through Logf
	// OverlayLower prepares a read-only mount to be an overlayfs lower
	// layer (package overlay). overlayfs names lower inodes by file
	// handle (their FUSE node ID) in the upper layer: the index that
	// keeps a hard-linked file one inode when one name changes is found
	// by it. Node IDs are then the inode numbers, which never change,
	// rather than go-fuse's counter, under which a file the kernel had
	// forgotten came back with another ID. And the tree's own
	// trusted.overlay.* xattrs are shown escaped, as
	// trusted.overlay.overlay.*, which overlayfs passes through under
	// their stored names instead of obeying them.
	//
	// The mount does not announce EXPORT_SUPPORT: decoding the handle of
	// an inode the kernel forgot would then give an anonymous dentry,
	// which FUSE (Linux 6.18 here) takes as stale at its next
	// revalidation without asking the server, and overlayfs answered
	// ESTALE for every later access to the copied-up file that dentry was
	// the origin of. Without it the decoding fails and overlayfs goes on
	// without the origin: the file keeps working, its st_ino becomes the
	// upper layer's.
	OverlayLower bool
}

// cacheTimeout is how long the kernel may trust entries, attributes and
// negative lookups. The tree never changes, so the limit only bounds how
// long the kernel holds on to what it learnt; go-fuse would not cache at
// all with nil timeouts.
const cacheTimeout = time.Hour

// FSType is the mount's filesystem type after "fuse.", as in
// /proc/self/mountinfo.
const FSType = "forge"

// Mount is a tree mounted read-only.
type Mount struct {
	mountpoint string
	tree       digest.Hash
	done       chan struct{} // closed when the FUSE server has stopped

	mu        sync.Mutex
	unmounted bool
}

// Mountpoint is the absolute path the tree is mounted at.
func (m *Mount) Mountpoint() string { return m.mountpoint }

// Tree is the hash of the mounted tree.
func (m *Mount) Tree() digest.Hash { return m.tree }

// MountReadOnly mounts tree at mountpoint and returns once the kernel has
// it mounted. It reads the root node only: the rest of the tree is read as
// the kernel asks for it, so mounting costs the same for any tree. A src
// that is not a *Cache is wrapped in a new one.
func MountReadOnly(mountpoint string, src Source, tree digest.Hash, opts Options) (*Mount, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", tree.Short(), err)
	}
	mountpoint = abs
	cache, ok := src.(*Cache)
	if !ok {
		cache = NewCache(src, 0)
	}
	root, err := cache.info(tree)
	if err != nil {
		return nil, fmt.Errorf("mount %s at %s: %w", tree.Short(), mountpoint, err)
	}
	if root.node.Type != node.TypeDir {
		return nil, fmt.Errorf("mount %s at %s: the tree's root is a %s, not a directory", tree.Short(), mountpoint, root.node.Type)
	}
	name := opts.Name
	if name == "" {
		name = "forge:" + tree.Short()
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	fsys := &roFS{cache: cache, tree: tree, name: name, logf: logf, statfsFn: opts.Statfs}
	rootNode := fsys.newNode(root, rootIno)
	logger := log.New(logWriter(logf), "", 0)

	fsOpts := nodeFSOptions(opts, name, unix.MS_RDONLY, logger)
	// The tree never changes: the kernel need not compare mtimes to drop
	// pages.
	fsOpts.ExplicitDataCacheControl = true
	if opts.OverlayLower {
		fsys.escapeOverlay = true
		fsOpts.ExternalNodeID = true
	}
	return startServer(noOpendir{fs.NewNodeFS(rootNode, fsOpts)}, mountpoint, tree, &fsOpts.MountOptions,
		fmt.Sprintf("mount %s", tree.Short()), describeFlags(fsOpts.MountOptions.DirectMountFlags), logf)
}

// startServer mounts raw at mountpoint and serves it until it is unmounted,
// returning once the kernel has the mount. what starts error messages;
// flags describes the mount flags for them.
func startServer(raw fuse.RawFileSystem, mountpoint string, tree digest.Hash, mopts *fuse.MountOptions, what, flags string, logf func(string, ...any)) (*Mount, error) {
	var before unix.Stat_t
	if err := unix.Stat(mountpoint, &before); err != nil {
		return nil, fmt.Errorf("%s: %w", what, &os.PathError{Op: "stat", Path: mountpoint, Err: err})
	}
	if before.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil, fmt.Errorf("%s: %w", what, &os.PathError{Op: "mount", Path: mountpoint, Err: unix.ENOTDIR})
	}
	server, err := fuse.NewServer(raw, mountpoint, mopts)
	if err != nil {
		// go-fuse leaves the mount in place when mount(2) worked and the
		// FUSE handshake after it failed: take down what is new there.
		var after unix.Stat_t
		if serr := unix.Stat(mountpoint, &after); serr != nil || after.Dev != before.Dev {
			unix.Unmount(mountpoint, unix.MNT_DETACH)
		}
		return nil, fmt.Errorf("%s at %s (%s): %w", what, mountpoint, flags, err)
	}
	m := &Mount{mountpoint: mountpoint, tree: tree, done: make(chan struct{})}
	go func() {
		server.Serve()
		close(m.done)
	}()
	if err := server.WaitMount(); err != nil {
		// Mounted but not answering as it should: take it down.
		unix.Unmount(mountpoint, unix.MNT_DETACH)
		<-m.done
		return nil, fmt.Errorf("%s at %s: %w", what, mountpoint, err)
	}
	setReadahead(mountpoint, readaheadKiB, logf)
	return m, nil
}

// Unmount detaches the mount. With files open (or a process inside) it
// fails with an error wrapping syscall.EBUSY unless lazy is set: then the
// mount leaves the namespace at once and the server stops when the last
// file is closed. Unmounting again after success does nothing.
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
		if errors.Is(err, unix.EINVAL) && m.stopped() {
			// Someone else unmounted it, and the server is gone.
			m.unmounted = true
			return nil
		}
		return &os.PathError{Op: "unmount", Path: m.mountpoint, Err: err}
	}
	m.unmounted = true
	return nil
}

// Wait blocks until the FUSE server has stopped: after an unmount (for a
// lazy one, once nothing uses the mount any more), or when the kernel
// aborts the connection.
func (m *Mount) Wait() { <-m.done }

func (m *Mount) stopped() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// describeFlags names the mount(2) flags of a mount, for messages.
func describeFlags(flags uintptr) string {
	names := []string{"rw"}
	if flags&unix.MS_RDONLY != 0 {
		names[0] = "ro"
	}
	if flags&unix.MS_NOSUID != 0 {
		names = append(names, "nosuid")
	}
	if flags&unix.MS_NODEV != 0 {
		names = append(names, "nodev")
	}
	return strings.Join(names, ",")
}

// roFS is what the nodes of one read-only mount share.
type roFS struct {
	cache    *Cache
	tree     digest.Hash
	name     string
	logf     func(format string, args ...any)
	statfsFn func() (blocks, bfree, files uint64)

	totalsOnce sync.Once
	blocks     uint64 // 4 KiB blocks the tree's content and directories take
	files      uint64 // inodes in the tree

	// escapeOverlay shows trusted.overlay.* xattrs escaped
	// (Options.OverlayLower).
	escapeOverlay bool
}

// statfs returns the totals statfs reports.
func (r *roFS) statfs() (blocks, bfree, files uint64) {
	if r.statfsFn != nil {
		return r.statfsFn()
	}
	r.totalsOnce.Do(r.countTree)
	return r.blocks, 0, r.files
}

// countTree walks the whole tree once, through the cache, counting each
// inode once (hard-linked names too).
func (r *roFS) countTree() {
	type linkKey struct {
		h    digest.Hash
		link uint32
	}
	seen := map[linkKey]bool{}
	stack := []digest.Hash{r.tree}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		info, err := r.cache.info(h)
		if err != nil {
			r.logf("%s: statfs: counting the tree: %v", r.name, err)
			continue
		}
		r.files++
		switch info.node.Type {
		case node.TypeDir:
			r.blocks++
			for _, e := range info.node.Entries {
				if e.Link != 0 {
					k := linkKey{e.Hash, e.Link}
					if seen[k] {
						continue
					}
					seen[k] = true
				}
				stack = append(stack, e.Hash)
			}
		case node.TypeRegular:
			r.blocks += info.blocks / 8
		}
	}
}

// logWriter turns go-fuse's log lines into Logf calls.
type logWriter func(format string, args ...any)

var _ io.Writer = logWriter(nil)

func (w logWriter) Write(p []byte) (int, error) {
	w("%s", trimNewline(p))
	return len(p), nil
}

func trimNewline(p []byte) []byte {
	if n := len(p); n > 0 && p[n-1] == '\n' {
		return p[:n-1]
	}
	return p
}

// readaheadKiB is the kernel's readahead on a mount. FUSE's default of
// 128 KiB makes a sequential reader wait on one 128 KiB request at a time,
// each a round trip; 4 MiB keeps four requests of MaxWrite (1 MiB) in flight,
// which the server answers from chunks it has read ahead itself.
const readaheadKiB = 4096

// setReadahead sets the kernel's readahead for the mount (its backing
// device, named by the mount's device number under /sys/class/bdi). It only
// logs a failure: the mount works without.
func setReadahead(mountpoint string, kib int, logf func(string, ...any)) {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		logf("%s: setting readahead: %v", mountpoint, err)
		return
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(st.Dev), unix.Minor(st.Dev))
	if err := os.WriteFile(p, []byte(strconv.Itoa(kib)), 0); err != nil {
		logf("%s: setting readahead: %v", mountpoint, err)
	}
}

// nodeFSOptions are the go-fuse options both kinds of mount share, with
// the mount(2) flags base plus what opts asks.
func nodeFSOptions(opts Options, name string, base uintptr, logger *log.Logger) *fs.Options {
	flags := base
	if !opts.Suid {
		flags |= unix.MS_NOSUID
	}
	if !opts.Dev {
		flags |= unix.MS_NODEV
	}
	if flags == 0 {
		// go-fuse reads zero as "nosuid,nodev"; MS_MGC_VAL is ignored by
		// the kernel and means no flags.
		flags = unix.MS_MGC_VAL
	}
	// A read-only tree never changes; a copy-on-write one changes only
	// through this server, and the kernel drops what it cached of the
	// entries and inodes a request changes: it may trust the rest for as
	// long as it likes.
	timeout := cacheTimeout
	return &fs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther: opts.AllowOther,
			// The kernel checks modes and POSIX ACLs (EnableAcl): the
			// server never looks at who asks.
			Options:  []string{"default_permissions"},
			FsName:   name,
			Name:     FSType,
			MaxWrite: 1 << 20,
			// mount(2) directly, and fail if it fails: the fusermount
			// fallback hides the error.
			DirectMountStrict:    true,
			DirectMountFlags:     flags,
			EnableSymlinkCaching: true,
			EnableAcl:            true,
			// Every read answers with bytes in memory (ReadResultData),
			// never a file descriptor to splice from. With splice on,
			// go-fuse still takes a pipe, grows it and writes the reply's
			// header into it before it finds it cannot splice bytes, and
			// a reply over the pipe's maximum size (a 1 MiB read) fails
			// the grow and logs a line: three wasted system calls per
			// read, and a log line per MiB read.
			DisableSplice: true,
			Debug:         opts.Debug,
			Logger:        logger,
		},
		EntryTimeout:    &timeout,
		AttrTimeout:     &timeout,
		NegativeTimeout: &timeout,
		// Modes are shown as stored, 0000 included.
		NullPermissions: true,
		RootStableAttr:  &fs.StableAttr{Ino: rootIno},
		Logger:          logger,
	}
}
