package fusefs

import (
	"context"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// cowNode is one inode of a copy-on-write mount: a stored node as it was
// looked up, or a node the mount made, with the changes made to it since.
// Every field after Inode is guarded by fsys.mu.
type cowNode struct {
	fs.Inode
	fsys *cowFS

	// meta is the node's own record without Entries, Chunks and Size:
	// type, mode, owner, mtime, xattrs, target, rdev.
	meta         node.Node
	atime, ctime unix.Timespec
	nlink        uint32 // names in the mount (not directories)
	// forgotten is set once the node lost its last name (or, made by
	// O_TMPFILE, its last handle) and its Inode was given up.
	forgotten bool
	// seen counts the names of a stored hard-linked inode looked up so far.
	seen uint32

	base  *nodeInfo   // stored node it started as; nil when new
	hash  digest.Hash // stored node it equals while !dirty
	dirty bool        // meta, entries or nlink changed since hash
	// link is the hard-link number its names carry in the stored tree
	// (the base, then each commit's), kept while the node stays as it was.
	link uint32
	ino  uint64 // its inode number

	dir  *cowDir  // directories
	file *cowFile // regular files
}

// cowDir is a directory's state beyond its Inode children.
type cowDir struct {
	// removed holds the stored entries that are no longer there (or are
	// covered by a child of the same name).
	removed map[string]bool
	// subdirsDelta is how many more subdirectories it holds than base.
	subdirsDelta int64
}

// cowFile is a regular file's content: its stored chunks until the first
// change, then the mount's own copy, in memory while it is small (see
// cowmem.go) and in a scratch file once it is not.
type cowFile struct {
	content *nodeInfo // stored content, while !copied
	ra      readahead

	copied bool // the content is the mount's own: in memory or in the scratch file
	// In memory (inMem): the written bytes, then a hole up to memSize.
	inMem      bool
	mem        []byte
	memSize    uint64
	memChanged bool // since the last commit

	fd    int // the scratch file, open while opens > 0; -1 when closed
	opens int
	// cachedOpens counts the handles not passed through.
	cachedOpens int

	// What the last commit stored of a copied file: its chunks and size,
	// and the scratch file's ctime then, which tells whether it changed.
	chunks       []node.Chunk
	size         uint64
	storedCtime  unix.Timespec
	storedCopied bool // chunks and size describe the copied content
}

// tsNow converts t; UnixNano would overflow past 2262, and ext4 takes
// times up to 2446.
func tsNow(t time.Time) unix.Timespec {
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}

// newCowNode makes a node the mount creates (not yet attached).
func (fsys *cowFS) newCowNode(meta *node.Node, now time.Time) *cowNode {
	n := &cowNode{fsys: fsys, meta: *meta, dirty: true, nlink: 1}
	ts := tsNow(now)
	n.meta.MtimeSec, n.meta.MtimeNsec = ts.Sec, uint32(ts.Nsec)
	n.atime, n.ctime = ts, ts
	switch meta.Type {
	case node.TypeDir:
		n.dir = &cowDir{removed: map[string]bool{}}
	case node.TypeRegular:
		n.file = &cowFile{copied: true, inMem: true, fd: -1}
	}
	return n
}

// baseCowNode makes the node for a stored one.
func (fsys *cowFS) baseCowNode(info *nodeInfo) *cowNode {
	sn := info.node
	n := &cowNode{fsys: fsys, base: info, hash: info.hash}
	n.meta = node.Node{
		Type: sn.Type, Perm: sn.Perm, UID: sn.UID, GID: sn.GID,
		MtimeSec: sn.MtimeSec, MtimeNsec: sn.MtimeNsec,
		Xattrs: sn.Xattrs, Target: sn.Target, Rdev: sn.Rdev,
	}
	ts := unix.Timespec{Sec: sn.MtimeSec, Nsec: int64(sn.MtimeNsec)}
	n.atime, n.ctime = ts, ts
	n.nlink = max(sn.Nlink, 1)
	switch sn.Type {
	case node.TypeDir:
		n.nlink = 1
		n.dir = &cowDir{removed: map[string]bool{}}
	case node.TypeRegular:
		n.file = &cowFile{content: info, fd: -1}
	}
	return n
}

// touch marks a metadata change: ctime now, node dirty.
func (n *cowNode) touch(now unix.Timespec) {
	n.ctime = now
	n.dirty = true
}

// touchDir marks an entry change in directory n.
func (n *cowNode) touchDir(now unix.Timespec) {
	n.meta.MtimeSec, n.meta.MtimeNsec = now.Sec, uint32(now.Nsec)
	n.ctime = now
	n.dirty = true
}

// path names n for messages, relative to the mount's root.
func (n *cowNode) path() string { return "/" + n.Path(nil) }

// fillAttr sets out from n; fsys.mu is held.
func (n *cowNode) fillAttr(out *fuse.Attr) syscall.Errno {
	m := &n.meta
	*out = fuse.Attr{
		Ino:   n.StableAttr().Ino,
		Mode:  m.Mode(),
		Nlink: n.nlink,
		Owner: fuse.Owner{Uid: m.UID, Gid: m.GID},
		Mtime: uint64(m.MtimeSec), Mtimensec: m.MtimeNsec,
		Atime: uint64(n.atime.Sec), Atimensec: uint32(n.atime.Nsec),
		Ctime: uint64(n.ctime.Sec), Ctimensec: uint32(n.ctime.Nsec),
		Blksize: 4096,
	}
	switch m.Type {
	case node.TypeRegular:
		f := n.file
		if !f.copied {
			out.Size = f.content.node.Size
			out.Blocks = f.content.blocks
			break
		}
		if f.inMem {
			out.Size = f.memSize
			out.Blocks = f.memBlocks()
			break
		}
		var st unix.Stat_t
		if err := n.scratchStat(&st); err != nil {
			return n.fsys.errno(n.path()+": stat scratch", err)
		}
		out.Size = uint64(st.Size)
		out.Blocks = uint64(st.Blocks)
		// The kernel writes passed-through files itself: the scratch
		// file's times are the file's.
		out.Mtime, out.Mtimensec = uint64(st.Mtim.Sec), uint32(st.Mtim.Nsec)
		if tsAfter(st.Ctim, n.ctime) {
			out.Ctime, out.Ctimensec = uint64(st.Ctim.Sec), uint32(st.Ctim.Nsec)
		}
	case node.TypeDir:
		out.Size = 4096
		out.Blocks = 8
		out.Nlink = 2
		subdirs := n.dir.subdirsDelta
		if n.base != nil {
			c, err := n.fsys.cache.subdirs(n.base)
			if err != nil {
				return n.fsys.errno(n.path()+": counting subdirectories", err)
			}
			subdirs += c
		}
		if subdirs > 0 {
			out.Nlink += uint32(subdirs)
		}
	case node.TypeSymlink:
		out.Size = uint64(len(m.Target))
	case node.TypeChar, node.TypeBlock:
		out.Rdev = uint32(unix.Mkdev(unix.Major(m.Rdev), unix.Minor(m.Rdev)))
	}
	return 0
}

func tsAfter(a, b unix.Timespec) bool {
	return a.Sec > b.Sec || a.Sec == b.Sec && a.Nsec > b.Nsec
}

// scratchStat stats n's scratch file.
func (n *cowNode) scratchStat(st *unix.Stat_t) error {
	if f := n.file; f.fd >= 0 {
		return unix.Fstat(f.fd, st)
	}
	return unix.Stat(n.scratchName(), st)
}

var _ = (fs.NodeGetattrer)((*cowNode)(nil))

func (n *cowNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	return n.fillAttr(&out.Attr)
}

var _ = (fs.NodeSetattrer)((*cowNode)(nil))

// Setattr changes metadata without copying data, except for a size change,
// which copies up what stays of the content.
func (n *cowNode) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	fsys := n.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	now := tsNow(time.Now())
	if size, ok := in.GetSize(); ok {
		if n.file == nil {
			return syscall.EINVAL
		}
		if err := n.truncate(size); err != nil {
			return fsys.errno(n.path()+": truncate", err)
		}
		n.killPrivs(ctx, in.Valid&fuse.FATTR_KILL_SUIDGID != 0)
		n.touch(now)
		n.setMtime(now)
	}
	uid, setU := in.GetUID()
	gid, setG := in.GetGID()
	if (setU || setG) && n.dir == nil {
		// chown(2) clears them, and HANDLE_KILLPRIV_V2 leaves that to
		// the server (cowfile.go).
		n.killSetid()
	}
	if setU {
		n.meta.UID = uid
		n.touch(now)
	}
	if setG {
		n.meta.GID = gid
		n.touch(now)
	}
	if in.Valid&^(fuse.FATTR_FH|fuse.FATTR_LOCKOWNER) == 0 && n.file != nil && unprivileged(ctx) {
		// An empty SETATTR is what is left of the kernel's attempt to
		// remove privileges (file_remove_privs) before a write or
		// fallocate by a caller without CAP_FSETID, through a handle
		// passed through (the server sees no write).
		n.killPrivs(ctx, true)
	}
	if mode, ok := in.GetMode(); ok {
		n.meta.Perm = mode & 0o7777
		n.chmodACL()
		n.touch(now)
	}
	mt, setM := in.GetMTime()
	at, setA := in.GetATime()
	if setA {
		n.atime = tsNow(at)
		n.touch(now)
	}
	if setM {
		n.setMtime(tsNow(mt))
		n.touch(now)
	}
	if ct, ok := in.GetCTime(); ok {
		n.ctime = tsNow(ct)
	}
	// go-fuse leaves the reply's timeout at zero, which would make the
	// kernel ask again (GETATTR) at the next permission check: the
	// attributes are as good as a GETATTR's.
	out.SetTimeout(cacheTimeout)
	return n.fillAttr(&out.Attr)
}

// setMtime sets n's mtime, on its scratch file too when it has one.
func (n *cowNode) setMtime(ts unix.Timespec) {
	n.meta.MtimeSec, n.meta.MtimeNsec = ts.Sec, uint32(ts.Nsec)
	if f := n.file; f != nil && f.copied && !f.inMem {
		n.setScratchMtime(ts)
	}
}

func (n *cowNode) setScratchMtime(ts unix.Timespec) {
	times := []unix.Timespec{{Nsec: unix.UTIME_OMIT}, ts}
	var err error
	if n.file.fd >= 0 {
		err = futimens(n.file.fd, times)
	} else {
		err = unix.UtimesNanoAt(unix.AT_FDCWD, n.scratchName(), times, 0)
	}
	if err != nil {
		n.fsys.logf("%s: %s: setting the scratch file's mtime: %v", n.fsys.name, n.path(), err)
	}
}

// futimens sets the times of the file open as fd (utimensat(2) with no
// path).
func futimens(fd int, times []unix.Timespec) error {
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&times[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

var _ = (fs.NodeGetxattrer)((*cowNode)(nil))

func (n *cowNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	v, ok := n.meta.Xattr(attr)
	if !ok {
		return 0, fs.ENOATTR
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

var _ = (fs.NodeListxattrer)((*cowNode)(nil))

// Listxattr lists the names; like ext4 it leaves trusted.* out for callers
// other than root.
func (n *cowNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	privileged := true
	if c, ok := ctx.(*fuse.Context); ok {
		privileged = c.Caller.Uid == 0
	}
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	var b []byte
	for _, x := range n.meta.Xattrs {
		if !privileged && strings.HasPrefix(x.Name, "trusted.") {
			continue
		}
		b = append(b, x.Name...)
		b = append(b, 0)
	}
	if len(dest) < len(b) {
		return uint32(len(b)), syscall.ERANGE
	}
	return uint32(copy(dest, b)), 0
}

var _ = (fs.NodeSetxattrer)((*cowNode)(nil))

func (n *cowNode) Setxattr(ctx context.Context, attr string, data []byte, flags uint32) syscall.Errno {
	if attr == "" || len(attr) > 255 {
		return syscall.ERANGE
	}
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	_, exists := n.meta.Xattr(attr)
	if flags&unix.XATTR_CREATE != 0 && exists {
		return syscall.EEXIST
	}
	if flags&unix.XATTR_REPLACE != 0 && !exists {
		return fs.ENOATTR
	}
	if attr == aclAccess {
		// As ext4 (posix_acl_update_mode): the mode follows the ACL,
		// and an ACL the mode says all of is not kept.
		es, ok := parseACL(data)
		if !ok {
			return syscall.EINVAL
		}
		perm, extended := aclMode(es)
		n.meta.Perm = n.meta.Perm&0o7000 | perm
		if !extended {
			n.removeXattr(attr)
			n.touch(tsNow(time.Now()))
			return 0
		}
	}
	n.setXattr(attr, append([]byte(nil), data...))
	n.touch(tsNow(time.Now()))
	return 0
}

// setXattr sets or replaces one xattr, keeping them sorted; the slice is
// copied first since the stored node's is shared.
func (n *cowNode) setXattr(name string, value []byte) {
	xs := make([]node.Xattr, 0, len(n.meta.Xattrs)+1)
	done := false
	for _, x := range n.meta.Xattrs {
		if !done && x.Name >= name {
			xs = append(xs, node.Xattr{Name: name, Value: value})
			done = true
			if x.Name == name {
				continue
			}
		}
		xs = append(xs, x)
	}
	if !done {
		xs = append(xs, node.Xattr{Name: name, Value: value})
	}
	n.meta.Xattrs = xs
}

func (n *cowNode) removeXattr(name string) bool {
	xs := make([]node.Xattr, 0, len(n.meta.Xattrs))
	found := false
	for _, x := range n.meta.Xattrs {
		if x.Name == name {
			found = true
			continue
		}
		xs = append(xs, x)
	}
	if found {
		n.meta.Xattrs = xs
	}
	return found
}

var _ = (fs.NodeRemovexattrer)((*cowNode)(nil))

func (n *cowNode) Removexattr(ctx context.Context, attr string) syscall.Errno {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if !n.removeXattr(attr) {
		return fs.ENOATTR
	}
	n.touch(tsNow(time.Now()))
	return 0
}

var _ = (fs.NodeStatfser)((*cowNode)(nil))

// Statfs reports the space of the scratch directory's filesystem, where
// the mount's writes go, unless Options.Statfs says otherwise.
func (n *cowNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	fsys := n.fsys
	if fsys.statfsFn != nil {
		blocks, bfree, files := fsys.statfsFn()
		// The mount may add as many inodes as the scratch space takes.
		var ffree uint64
		var st syscall.Statfs_t
		if err := syscall.Statfs(fsys.scratch, &st); err == nil {
			ffree = st.Ffree
		}
		*out = fuse.StatfsOut{
			Blocks: blocks, Bfree: bfree, Bavail: bfree,
			Files: files + ffree, Ffree: ffree,
			Bsize: 4096, Frsize: 4096, NameLen: node.MaxNameLen,
		}
		return 0
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(fsys.scratch, &st); err != nil {
		return fsys.errno("statfs "+fsys.scratch, err)
	}
	out.FromStatfsT(&st)
	out.NameLen = node.MaxNameLen
	return 0
}

var _ = (fs.NodeReadlinker)((*cowNode)(nil))

func (n *cowNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if n.meta.Type != node.TypeSymlink {
		return nil, syscall.EINVAL
	}
	return []byte(n.meta.Target), 0
}

// scratchName is where n's content lives once copied up.
func (n *cowNode) scratchName() string { return n.fsys.scratchPath(n.ino) }
