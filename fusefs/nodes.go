package fusefs

import (
	"context"
	"encoding/binary"
	"strings"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// rootIno is the root directory's inode number, FUSE's root node ID.
const rootIno = 1

// linkIno is the inode number of the hard-linked names that carry node h and
// link number link.
func linkIno(h digest.Hash, link uint32) uint64 {
	x := binary.LittleEndian.Uint64(h[0:8]) ^ binary.LittleEndian.Uint64(h[8:16])
	return validIno(mix64(x ^ mix64(uint64(link)|1<<40)))
}

// nameIno is the inode number of name in the directory numbered parent.
// Numbers are unique in the tree as long as the 64-bit hash does not
// collide (about one chance in 10^7 for a tree of a million names).
func nameIno(parent uint64, name string) uint64 {
	// FNV-1a over the parent's number and the name, then a mixer to spread
	// FNV's weak high bits.
	const prime = 1099511628211
	h := uint64(14695981039346656037)
	for i := range 8 {
		h ^= parent >> (8 * i) & 0xff
		h *= prime
	}
	for i := 0; i < len(name); i++ {
		h ^= uint64(name[i])
		h *= prime
	}
	return validIno(mix64(h))
}

// mix64 is splitmix64's finalizer: every input bit affects every output bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

// validIno keeps numbers below 2^62, and off the ones FUSE and go-fuse
// reserve: 0 (none) and 1 (the root). Below 2^62: overlayfs over a
// read-only mount then gives every file one st_dev (xino, which takes the
// top two bits), and copy-on-write mounts number their new nodes from
// 2^62 on.
func validIno(x uint64) uint64 {
	x &= 1<<62 - 1
	if x <= rootIno {
		return 2
	}
	return x
}

// childIno is the inode number of entry e of the directory numbered parent.
func childIno(parent uint64, e *node.Entry) uint64 {
	if e.Link != 0 {
		return linkIno(e.Hash, e.Link)
	}
	return nameIno(parent, e.Name)
}

// treeNode is one inode of a stored tree: a device, FIFO or socket as it
// is, and the part every other node type shares (attributes, xattrs,
// statfs). The copy-on-write mount will add node types that embed it.
type treeNode struct {
	fs.Inode
	fsys *roFS
	info *nodeInfo
}

// tree returns the treeNode inside any node type of this package.
func (t *treeNode) tree() *treeNode { return t }

// treeNoder is every node type of this package.
type treeNoder interface{ tree() *treeNode }

// newNode returns the FUSE node type for info.
func (r *roFS) newNode(info *nodeInfo, parentIno uint64) fs.InodeEmbedder {
	switch info.node.Type {
	case node.TypeDir:
		return &dirNode{treeNode: treeNode{fsys: r, info: info}, parentIno: parentIno}
	case node.TypeRegular:
		return &fileNode{treeNode: treeNode{fsys: r, info: info}}
	case node.TypeSymlink:
		return &symlinkNode{treeNode: treeNode{fsys: r, info: info}}
	}
	return &treeNode{fsys: r, info: info}
}

// path names t for messages, relative to the mount's root.
func (t *treeNode) path() string {
	return "/" + t.Path(nil)
}

var _ = (fs.NodeGetattrer)((*treeNode)(nil))

// Getattr answers stat from the node; the kernel asks rarely, since
// lookups carry the attributes and they stay valid for AttrTimeout.
func (t *treeNode) Getattr(ctx context.Context, f fs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	t.fsys.fillAttr(t.info, t.StableAttr().Ino, &out.Attr, t.path)
	return 0
}

var _ = (fs.NodeGetxattrer)((*treeNode)(nil))

// Getxattr returns a stored xattr. The kernel has already refused what the
// caller may not read (trusted.* without CAP_SYS_ADMIN).
func (t *treeNode) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	stored, ok := t.fsys.storedXattrName(attr)
	if !ok {
		return 0, fs.ENOATTR
	}
	v, ok := t.info.node.Xattr(stored)
	if !ok {
		return 0, fs.ENOATTR
	}
	if len(dest) < len(v) {
		return uint32(len(v)), syscall.ERANGE
	}
	return uint32(copy(dest, v)), 0
}

var _ = (fs.NodeListxattrer)((*treeNode)(nil))

// Listxattr lists the stored xattr names. Like ext4, it leaves trusted.*
// out for callers without privilege (here: not uid 0), who could not read
// them anyway.
func (t *treeNode) Listxattr(ctx context.Context, dest []byte) (uint32, syscall.Errno) {
	privileged := true
	if c, ok := ctx.(*fuse.Context); ok {
		privileged = c.Caller.Uid == 0
	}
	size := 0
	for _, x := range t.info.node.Xattrs {
		if !privileged && strings.HasPrefix(x.Name, "trusted.") {
			continue
		}
		size += len(t.fsys.shownXattrName(x.Name)) + 1
	}
	if len(dest) < size {
		return uint32(size), syscall.ERANGE
	}
	b := dest[:0]
	for _, x := range t.info.node.Xattrs {
		if !privileged && strings.HasPrefix(x.Name, "trusted.") {
			continue
		}
		b = append(b, t.fsys.shownXattrName(x.Name)...)
		b = append(b, 0)
	}
	return uint32(len(b)), 0
}

// overlayXattr is the prefix of overlayfs's own xattrs; overlayEscaped
// that of a stored xattr of that prefix, escaped (Options.OverlayLower).
const (
	overlayXattr   = "trusted.overlay."
	overlayEscaped = "trusted.overlay.overlay."
)

// shownXattrName is the name stored xattr name is listed by.
func (r *roFS) shownXattrName(name string) string {
	if r.escapeOverlay && strings.HasPrefix(name, overlayXattr) {
		return overlayEscaped + strings.TrimPrefix(name, overlayXattr)
	}
	return name
}

// storedXattrName is the stored name of the xattr asked for as attr; ok is
// false for a name no stored xattr is shown by.
func (r *roFS) storedXattrName(attr string) (string, bool) {
	if !r.escapeOverlay || !strings.HasPrefix(attr, overlayXattr) {
		return attr, true
	}
	if !strings.HasPrefix(attr, overlayEscaped) {
		return "", false
	}
	return overlayXattr + strings.TrimPrefix(attr, overlayEscaped), true
}

var _ = (fs.NodeStatfser)((*treeNode)(nil))

// Statfs reports a full, read-only filesystem of 4 KiB blocks; the
// read-only flag itself comes from the mount.
func (t *treeNode) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	blocks, bfree, files := t.fsys.statfs()
	*out = fuse.StatfsOut{
		Blocks: blocks, Bfree: bfree, Bavail: bfree,
		Files: files, Ffree: 0,
		Bsize: 4096, Frsize: 4096, NameLen: node.MaxNameLen,
	}
	return 0
}

// fillAttr sets out from info. path names the node if something must be
// logged; it is a function so that the common case does not build it.
func (r *roFS) fillAttr(info *nodeInfo, ino uint64, out *fuse.Attr, path func() string) {
	n := info.node
	*out = fuse.Attr{
		Ino:   ino,
		Mode:  n.Mode(),
		Nlink: 1,
		Owner: fuse.Owner{Uid: n.UID, Gid: n.GID},
		// The tree keeps one time: mtime stands for atime and ctime too.
		Mtime: uint64(n.MtimeSec), Mtimensec: n.MtimeNsec,
		Atime: uint64(n.MtimeSec), Atimensec: n.MtimeNsec,
		Ctime: uint64(n.MtimeSec), Ctimensec: n.MtimeNsec,
		Blksize: 4096,
	}
	if n.Nlink > 1 {
		out.Nlink = n.Nlink // every inode but a directory counts its names
	}
	switch n.Type {
	case node.TypeRegular:
		out.Size = n.Size
		out.Blocks = info.blocks
	case node.TypeDir:
		out.Size = 4096
		out.Blocks = 8
		subdirs, err := r.cache.subdirs(info)
		if err != nil {
			// Leave st_nlink at 1, which tools read as "not counted".
			r.logf("%s: %s: counting subdirectories: %v", r.name, path(), err)
		} else {
			out.Nlink = uint32(2 + subdirs)
		}
	case node.TypeSymlink:
		out.Size = uint64(len(n.Target))
	case node.TypeChar, node.TypeBlock:
		// FUSE carries st_rdev in the kernel's 32-bit encoding (12 bits of
		// major, 20 of minor), the same as Mkdev's for numbers that fit.
		major, minor := unix.Major(n.Rdev), unix.Minor(n.Rdev)
		if major >= 1<<12 || minor >= 1<<20 {
			r.logf("%s: %s: device %d:%d does not fit FUSE's 32 bits", r.name, path(), major, minor)
		}
		out.Rdev = uint32(unix.Mkdev(major, minor))
	}
}

// dirNode is a directory of a stored tree.
type dirNode struct {
	treeNode
	parentIno uint64 // for ".." in listings
}

var _ = (fs.NodeLookuper)((*dirNode)(nil))

// Lookup finds name by binary search in the directory node and returns its
// inode, reusing the one go-fuse already holds for it.
func (d *dirNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	i, ok := d.info.node.Lookup(name)
	if !ok {
		return nil, syscall.ENOENT
	}
	return d.lookupEntry(ctx, i, out)
}

// lookupEntry returns the inode of entry i and fills out with its
// attributes.
func (d *dirNode) lookupEntry(ctx context.Context, i int, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	e := &d.info.node.Entries[i]
	ino := childIno(d.StableAttr().Ino, e)
	if ch := d.GetChild(e.Name); ch != nil && ch.StableAttr().Ino == ino {
		if t, ok := ch.Operations().(treeNoder); ok {
			tn := t.tree()
			d.fsys.fillAttr(tn.info, ino, &out.Attr, tn.path)
			return ch, 0
		}
	}
	info, err := d.fsys.cache.info(e.Hash)
	if err != nil {
		d.fsys.logf("%s: %s: reading node %s of %q: %v", d.fsys.name, d.path(), e.Hash, e.Name, err)
		return nil, syscall.EIO
	}
	ops := d.fsys.newNode(info, d.StableAttr().Ino)
	d.fsys.fillAttr(info, ino, &out.Attr, func() string { return joinPath(d.path(), e.Name) })
	return d.NewInode(ctx, ops, fs.StableAttr{Mode: uint32(info.node.Type), Ino: ino}), 0
}

func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

var _ = (fs.NodeOpendirHandler)((*dirNode)(nil))

// OpendirHandle lets the kernel cache the listing (FOPEN_CACHE_DIR) and
// keep it across opens (FOPEN_KEEP_CACHE): the directory never changes.
func (d *dirNode) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return &dirHandle{d: d}, fuse.FOPEN_CACHE_DIR | fuse.FOPEN_KEEP_CACHE, 0
}

// dirHandle lists a directory: ".", "..", then the entries in the node's
// (sorted) order. Offsets are positions in that list, so seekdir is exact.
type dirHandle struct {
	d    *dirNode
	pos  uint64 // 0 ".", 1 "..", 2+i Entries[i]
	last int    // index of the entry Readdirent returned last, or -1
}

var _ = (fs.FileReaddirenter)((*dirHandle)(nil))

// Readdirent returns the next entry, with its type, which takes reading the
// entry's node (through the cache; readdirplus needs it next anyway).
func (h *dirHandle) Readdirent(ctx context.Context) (*fuse.DirEntry, syscall.Errno) {
	d := h.d
	h.last = -1
	switch h.pos {
	case 0:
		h.pos++
		return &fuse.DirEntry{Name: ".", Mode: fuse.S_IFDIR, Ino: d.StableAttr().Ino, Off: h.pos}, 0
	case 1:
		h.pos++
		return &fuse.DirEntry{Name: "..", Mode: fuse.S_IFDIR, Ino: d.parentIno, Off: h.pos}, 0
	}
	i := int(h.pos - 2)
	if i >= len(d.info.node.Entries) {
		return nil, 0
	}
	e := &d.info.node.Entries[i]
	info, err := d.fsys.cache.info(e.Hash)
	if err != nil {
		d.fsys.logf("%s: %s: reading node %s of %q: %v", d.fsys.name, d.path(), e.Hash, e.Name, err)
		return nil, syscall.EIO
	}
	h.pos++
	h.last = i
	return &fuse.DirEntry{Name: e.Name, Mode: uint32(info.node.Type), Ino: childIno(d.StableAttr().Ino, e), Off: h.pos}, 0
}

var _ = (fs.FileLookuper)((*dirHandle)(nil))

// Lookup serves readdirplus: the name is the one Readdirent just returned,
// so no search is needed.
func (h *dirHandle) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if h.last >= 0 && h.d.info.node.Entries[h.last].Name == name {
		return h.d.lookupEntry(ctx, h.last, out)
	}
	return h.d.Lookup(ctx, name, out)
}

var _ = (fs.FileSeekdirer)((*dirHandle)(nil))

// Seekdir moves to a position an earlier entry's Off named.
func (h *dirHandle) Seekdir(ctx context.Context, off uint64) syscall.Errno {
	h.pos = off
	h.last = -1
	return 0
}

var _ = (fs.FileReleasedirer)((*dirHandle)(nil))

// Releasedir has nothing to free.
func (h *dirHandle) Releasedir(ctx context.Context, flags uint32) {}

// fileNode is a regular file of a stored tree.
type fileNode struct {
	treeNode
	ra readahead
}

var _ = (fs.NodeOpener)((*fileNode)(nil))

// Open answers ENOSYS: the kernel then stops sending OPEN and RELEASE for
// the whole mount and treats every open as FOPEN_KEEP_CACHE (FUSE's
// "no open" support), which is what an immutable file wants: a warm open
// costs no round trip and keeps the page cache. Reads arrive without a
// file handle.
func (f *fileNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	return nil, 0, syscall.ENOSYS
}

var _ = (fs.NodeFlusher)((*fileNode)(nil))

// Flush answers ENOSYS, so the kernel stops sending FLUSH on every close:
// a read-only file has nothing to flush.
func (f *fileNode) Flush(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	return syscall.ENOSYS
}

var _ = (fs.NodeReader)((*fileNode)(nil))

// Read fills dest from the chunks the range covers. A chunk that cannot be
// read fails this read with EIO, after the error (which names the chunk and
// its pack) is logged.
func (f *fileNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	if off >= 0 {
		f.ra.advance(f.fsys.cache, f.info, uint64(off), uint64(off)+uint64(len(dest)))
	}
	data, err := f.fsys.cache.read(f.info, dest, off)
	if err != nil {
		f.fsys.logf("%s: %s: read %d bytes at %d: %v", f.fsys.name, f.path(), len(dest), off, err)
		return nil, syscall.EIO
	}
	return fuse.ReadResultData(data), 0
}

var _ = (fs.NodeLseeker)((*fileNode)(nil))

// Lseek answers SEEK_DATA and SEEK_HOLE from the chunk list; the kernel
// handles the other whences itself.
func (f *fileNode) Lseek(ctx context.Context, fh fs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	pos, err := seekData(f.info, off, int(whence))
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	return pos, 0
}

// symlinkNode is a symbolic link of a stored tree.
type symlinkNode struct {
	treeNode
}

var _ = (fs.NodeReadlinker)((*symlinkNode)(nil))

// Readlink returns the stored target; the kernel caches it
// (EnableSymlinkCaching).
func (s *symlinkNode) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	return []byte(s.info.node.Target), 0
}
