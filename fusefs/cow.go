package fusefs

import (
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// CowOptions tune a copy-on-write mount.
type CowOptions struct {
	Options // as for read-only mounts
	// Scratch is an empty directory for copied-up and new files. The
	// mount never removes it: its owner does, after Wait.
	Scratch string
}

// CowMount is a writable view of a stored tree.
type CowMount struct {
	*Mount
	fsys *cowFS
}

// cowIno0 starts the inode numbers given to nodes the mount creates: stored
// nodes get numbers hashed below it (validIno), so the two never collide.
const cowIno0 = 1 << 62

// MountCopyOnWrite mounts a writable view of tree (digest.Zero: an empty
// tree) at mountpoint and returns once the kernel has it mounted. It reads
// the root node only: directories are merged with their stored entries as
// the kernel looks names up, so mounting costs the same for any tree.
func MountCopyOnWrite(mountpoint string, src *Cache, tree digest.Hash, opts CowOptions) (*CowMount, error) {
	abs, err := filepath.Abs(mountpoint)
	if err != nil {
		return nil, fmt.Errorf("mount %s read-write: %w", tree.Short(), err)
	}
	mountpoint = abs
	if opts.Scratch == "" {
		return nil, fmt.Errorf("mount %s read-write at %s: no scratch directory", tree.Short(), mountpoint)
	}
	if st, err := os.Stat(opts.Scratch); err != nil {
		return nil, fmt.Errorf("mount %s read-write at %s: scratch: %w", tree.Short(), mountpoint, err)
	} else if !st.IsDir() {
		return nil, fmt.Errorf("mount %s read-write at %s: scratch %s is not a directory", tree.Short(), mountpoint, opts.Scratch)
	}
	logf := opts.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	name := opts.Name
	if name == "" {
		name = "forge-rw:" + tree.Short()
	}
	fsys := &cowFS{
		cache:       src,
		scratch:     opts.Scratch,
		name:        name,
		logf:        logf,
		statfsFn:    opts.Statfs,
		nextIno:     cowIno0,
		links:       map[linkKey]*cowNode{},
		memMax:      memBudget(),
		createQuiet: createQuiet,
	}
	var root *cowNode
	if tree.IsZero() {
		root = fsys.newCowNode(&node.Node{Type: node.TypeDir, Perm: 0o755}, time.Now())
	} else {
		info, err := src.info(tree)
		if err != nil {
			return nil, fmt.Errorf("mount %s read-write at %s: %w", tree.Short(), mountpoint, err)
		}
		if info.node.Type != node.TypeDir {
			return nil, fmt.Errorf("mount %s read-write at %s: the tree's root is a %s, not a directory", tree.Short(), mountpoint, info.node.Type)
		}
		root = fsys.baseCowNode(info)
	}
	root.ino = rootIno
	fsys.root = root

	logger := log.New(logWriter(logf), "", 0)
	fsOpts := nodeFSOptions(opts.Options, name, 0, logger)
	// DONT_MASK: the server applies the umask itself (cowRaw): with a
	// default ACL on the parent the umask does not apply, and only the
	// server knows the ACL. HANDLE_KILLPRIV_V2: the server clears set-id
	// bits (cowfile.go), which spares a GETATTR per chown.
	fsOpts.ExtraCapabilities = fuse.CAP_DONT_MASK | fuse.CAP_HANDLE_KILLPRIV_V2
	m, err := startServer(cowRaw{fs.NewNodeFS(root, fsOpts)}, mountpoint, tree, &fsOpts.MountOptions,
		fmt.Sprintf("mount %s read-write", tree.Short()), describeFlags(fsOpts.MountOptions.DirectMountFlags), logf)
	if err != nil {
		return nil, err
	}
	return &CowMount{Mount: m, fsys: fsys}, nil
}

// Tree is the hash of the tree last committed, or of the tree mounted
// before any commit.
func (m *CowMount) Tree() digest.Hash {
	m.fsys.mu.Lock()
	defer m.fsys.mu.Unlock()
	return m.fsys.tree
}

// linkKey names one hard-linked inode of the stored tree.
type linkKey struct {
	hash digest.Hash
	link uint32
}

// cowFS is what the nodes of one copy-on-write mount share. Its mutex
// guards every node's state and the structure of the tree.
type cowFS struct {
	cache    *Cache
	scratch  string
	name     string
	logf     func(format string, args ...any)
	statfsFn func() (blocks, bfree, files uint64)
	root     *cowNode

	mu      sync.Mutex
	tree    digest.Hash          // last committed (or mounted) tree
	nextIno uint64               // for nodes the mount creates
	links   map[linkKey]*cowNode // stored hard-linked inodes looked up so far
	// cachedFiles are the regular files open through the page cache (not
	// passthrough): what the kernel may hold dirty pages of, written
	// through shared mappings, that a commit must make it write back.
	cachedFiles map[*cowNode]struct{}
	// Memory that file content holds (cowmem.go), and how much it may.
	memUsed, memMax int64
	lastCreate      time.Time     // of a regular file (cowscratch.go)
	createQuiet     time.Duration // after lastCreate, a new file comes alone
}

// newIno returns an inode number for a new node; fsys.mu is held.
func (fsys *cowFS) newIno() uint64 {
	fsys.nextIno++
	return fsys.nextIno
}

// scratchPath is where node ino keeps its content once copied up.
func (fsys *cowFS) scratchPath(ino uint64) string {
	return filepath.Join(fsys.scratch, fmt.Sprintf("%x", ino))
}

// cowRaw passes the umask of creating requests on to the nodes: with
// CAP_DONT_MASK the kernel leaves it to the server, and go-fuse's node API
// carries only the mode. The umask travels in the mode's bits above S_IFMT,
// which the kernel never sets.
type cowRaw struct {
	fuse.RawFileSystem
}

const (
	umaskFlag  = 1 << 31
	umaskShift = 16
)

func withUmask(mode, umask uint32) uint32 {
	return mode&0o177777 | umaskFlag | (umask&0o777)<<umaskShift
}

// splitUmask returns the mode without the umask, the umask, and whether
// there was one.
func splitUmask(mode uint32) (uint32, uint32, bool) {
	if mode&umaskFlag == 0 {
		return mode & 0o177777, 0, false
	}
	return mode & 0o177777, (mode >> umaskShift) & 0o777, true
}

func (r cowRaw) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	in.Mode = withUmask(in.Mode, in.Umask)
	return r.RawFileSystem.Create(cancel, in, name, out)
}

func (r cowRaw) Tmpfile(cancel <-chan struct{}, in *fuse.CreateIn, out *fuse.CreateOut) fuse.Status {
	in.Mode = withUmask(in.Mode, in.Umask)
	return r.RawFileSystem.Tmpfile(cancel, in, out)
}

func (r cowRaw) Mkdir(cancel <-chan struct{}, in *fuse.MkdirIn, name string, out *fuse.EntryOut) fuse.Status {
	in.Mode = withUmask(in.Mode, in.Umask)
	return r.RawFileSystem.Mkdir(cancel, in, name, out)
}

func (r cowRaw) Mknod(cancel <-chan struct{}, in *fuse.MknodIn, name string, out *fuse.EntryOut) fuse.Status {
	in.Mode = withUmask(in.Mode, in.Umask)
	return r.RawFileSystem.Mknod(cancel, in, name, out)
}

// Flush answers ENOSYS, after which the kernel sends no FLUSH again on this
// mount: a close then costs one request (RELEASE) instead of two. The
// server has nothing to do on a flush: fsync has nothing to make durable
// either (see Fsync), and locks are the kernel's.
func (r cowRaw) Flush(cancel <-chan struct{}, in *fuse.FlushIn) fuse.Status {
	return fuse.ENOSYS
}

// Fsync and Fsyncdir answer ENOSYS, after which the kernel sends neither
// again on this mount and fsync(2) succeeds at once (after writing dirty
// pages of a mapping, which it still does). There is nothing to make
// durable: a mount's content becomes durable by a commit, and the scratch
// space does not survive a crash anyway. Package managers fsync every file
// they unpack.
func (r cowRaw) Fsync(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return fuse.ENOSYS
}

func (r cowRaw) FsyncDir(cancel <-chan struct{}, in *fuse.FsyncIn) fuse.Status {
	return fuse.ENOSYS
}

// errno turns an error into the errno a request returns, logging it first
// when it is not a plain errno.
func (fsys *cowFS) errno(what string, err error) syscall.Errno {
	var e syscall.Errno
	if errors.As(err, &e) {
		return e
	}
	fsys.logf("%s: %s: %v", fsys.name, what, err)
	return syscall.EIO
}
