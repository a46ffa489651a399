package fusefs

import (
	"context"
	"sort"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/node"
)

// ops returns the cowNode of an Inode of this mount.
func ops(in *fs.Inode) *cowNode {
	if in == nil {
		return nil
	}
	n, _ := in.Operations().(*cowNode)
	return n
}

// child returns directory d's entry name, looking a stored entry up (and
// making its node) the first time; nil when there is none. fsys.mu is
// held.
func (d *cowNode) child(ctx context.Context, name string) (*cowNode, error) {
	if c := ops(d.GetChild(name)); c != nil {
		return c, nil
	}
	if d.base == nil || d.dir.removed[name] {
		return nil, nil
	}
	i, ok := d.base.node.Lookup(name)
	if !ok {
		return nil, nil
	}
	e := &d.base.node.Entries[i]
	fsys := d.fsys
	var key linkKey
	if e.Link != 0 {
		key = linkKey{e.Hash, e.Link}
		if n := fsys.links[key]; n != nil {
			n.seen++
			d.AddChild(name, n.EmbeddedInode(), false)
			return n, nil
		}
	}
	info, err := fsys.cache.info(e.Hash)
	if err != nil {
		return nil, err
	}
	n := fsys.baseCowNode(info)
	n.link = e.Link
	n.ino = childIno(d.StableAttr().Ino, e)
	in := d.NewPersistentInode(ctx, n, fs.StableAttr{Mode: uint32(info.node.Type), Ino: n.ino})
	if got := ops(in); got != nil {
		n = got
	}
	d.AddChild(name, in, false)
	if e.Link != 0 {
		n.seen = 1
		fsys.links[key] = n
	}
	return n, nil
}

// has reports whether directory d holds name.
func (d *cowNode) has(ctx context.Context, name string) bool {
	if len(name) > node.MaxNameLen {
		return false
	}
	if d.GetChild(name) != nil {
		return true
	}
	if d.base == nil || d.dir.removed[name] {
		return false
	}
	_, ok := d.base.node.Lookup(name)
	return ok
}

// empty reports whether directory d has no entries.
func (d *cowNode) empty() bool {
	children := d.Children()
	if len(children) > 0 {
		return false
	}
	if d.base == nil {
		return true
	}
	for _, e := range d.base.node.Entries {
		if !d.dir.removed[e.Name] {
			return false
		}
	}
	return true
}

var _ = (fs.NodeLookuper)((*cowNode)(nil))

func (d *cowNode) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	fsys := d.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if d.dir == nil {
		return nil, syscall.ENOTDIR
	}
	if len(name) > node.MaxNameLen {
		return nil, syscall.ENAMETOOLONG
	}
	c, err := d.child(ctx, name)
	if err != nil {
		return nil, fsys.errno(joinPath(d.path(), name)+": lookup", err)
	}
	if c == nil {
		return nil, syscall.ENOENT
	}
	if errno := c.fillAttr(&out.Attr); errno != 0 {
		return nil, errno
	}
	return c.EmbeddedInode(), 0
}

var _ = (fs.NodeReaddirer)((*cowNode)(nil))

// Readdir lists the directory as it is now: its children merged with the
// stored entries still there, in name order.
func (d *cowNode) Readdir(ctx context.Context) (fs.DirStream, syscall.Errno) {
	fsys := d.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	parentIno := uint64(rootIno)
	if _, p := d.Parent(); p != nil {
		parentIno = p.StableAttr().Ino
	}
	list := []fuse.DirEntry{
		{Name: ".", Mode: fuse.S_IFDIR, Ino: d.StableAttr().Ino},
		{Name: "..", Mode: fuse.S_IFDIR, Ino: parentIno},
	}
	children := d.Children()
	var entries []fuse.DirEntry
	for name, in := range children {
		entries = append(entries, fuse.DirEntry{Name: name, Mode: in.StableAttr().Mode, Ino: in.StableAttr().Ino})
	}
	if d.base != nil {
		for i := range d.base.node.Entries {
			e := &d.base.node.Entries[i]
			if d.dir.removed[e.Name] || children[e.Name] != nil {
				continue
			}
			info, err := fsys.cache.info(e.Hash)
			if err != nil {
				return nil, fsys.errno(joinPath(d.path(), e.Name)+": readdir", err)
			}
			entries = append(entries, fuse.DirEntry{Name: e.Name, Mode: uint32(info.node.Type), Ino: childIno(d.StableAttr().Ino, e)})
		}
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return fs.NewListDirStream(append(list, entries...)), 0
}

// callerOf returns who makes a request.
func callerOf(ctx context.Context) (uid, gid uint32) {
	if c, ok := ctx.(*fuse.Context); ok {
		return c.Caller.Uid, c.Caller.Gid
	}
	return 0, 0
}

// newChild makes a node for a new entry of d (type typ, mode as the
// request gives it, umask in it) and adds it under name. It is owned by the
// caller, or by d's group in a setgid directory, which new directories
// inherit; d's default ACL applies. fill completes the node before its
// Inode exists, so that a failure leaves nothing. fsys.mu is held.
func (d *cowNode) newChild(ctx context.Context, name string, typ node.Type, mode uint32, fill func(*cowNode) error) (*cowNode, error) {
	n, in, err := d.newNode(ctx, typ, mode, fill)
	if err != nil {
		return nil, err
	}
	d.AddChild(name, in, true)
	d.dir.removed[name] = true
	d.touchDir(n.ctime)
	if typ == node.TypeDir {
		d.dir.subdirsDelta++
	}
	return n, nil
}

// newNode makes a node as newChild does, without a name.
func (d *cowNode) newNode(ctx context.Context, typ node.Type, mode uint32, fill func(*cowNode) error) (*cowNode, *fs.Inode, error) {
	fsys := d.fsys
	uid, gid := callerOf(ctx)
	perm, umask, _ := splitUmask(mode)
	perm &= 0o7777
	n := fsys.newCowNode(&node.Node{Type: typ, UID: uid, GID: gid}, time.Now())
	if typ != node.TypeSymlink {
		perm = inheritACL(d, n, perm, umask, typ == node.TypeDir)
	}
	if d.meta.Perm&unix.S_ISGID != 0 {
		n.meta.GID = d.meta.GID
		if typ == node.TypeDir {
			perm |= unix.S_ISGID
		}
	}
	n.meta.Perm = perm
	n.ino = fsys.newIno()
	if fill != nil {
		if err := fill(n); err != nil {
			return nil, nil, err
		}
	}
	in := d.NewPersistentInode(ctx, n, fs.StableAttr{Mode: uint32(typ), Ino: n.ino})
	return n, in, nil
}

var _ = (fs.NodeTmpfiler)((*cowNode)(nil))

// Tmpfile makes a file with no name (O_TMPFILE). It is given up when its
// last handle is closed, unless linkat gave it a name. Its content starts
// in a scratch file, not in memory: a file with no name is scratch space
// (as an unlinked open file is, see drop).
func (d *cowNode) Tmpfile(ctx context.Context, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	fsys := d.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	n, in, err := d.newNode(ctx, node.TypeRegular, mode&^unix.S_IFMT, (*cowNode).startInScratch)
	if err != nil {
		return nil, nil, 0, fsys.errno(d.path()+": O_TMPFILE", err)
	}
	n.nlink = 0
	h, err := n.openHandle()
	if err != nil {
		return nil, nil, 0, fsys.errno(d.path()+": O_TMPFILE", err)
	}
	if errno := n.fillAttr(&out.Attr); errno != 0 {
		return nil, nil, 0, errno
	}
	return in, h, 0, 0
}

var _ = (fs.NodeMkdirer)((*cowNode)(nil))

func (d *cowNode) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	fsys := d.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if len(name) > node.MaxNameLen {
		return nil, syscall.ENAMETOOLONG
	}
	if d.has(ctx, name) {
		return nil, syscall.EEXIST
	}
	n, err := d.newChild(ctx, name, node.TypeDir, mode, nil)
	if err != nil {
		return nil, fsys.errno(joinPath(d.path(), name)+": mkdir", err)
	}
	if errno := n.fillAttr(&out.Attr); errno != 0 {
		return nil, errno
	}
	return n.EmbeddedInode(), 0
}

var _ = (fs.NodeMknoder)((*cowNode)(nil))

func (d *cowNode) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	fsys := d.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if len(name) > node.MaxNameLen {
		return nil, syscall.ENAMETOOLONG
	}
	if d.has(ctx, name) {
		return nil, syscall.EEXIST
	}
	typ := node.Type(mode & unix.S_IFMT)
	var fill func(*cowNode) error
	switch typ {
	case node.TypeChar, node.TypeBlock:
		rdev := unix.Mkdev(unix.Major(uint64(dev)), unix.Minor(uint64(dev)))
		fill = func(n *cowNode) error { n.meta.Rdev = rdev; return nil }
	case node.TypeFIFO, node.TypeSocket:
	case node.TypeRegular, 0:
		typ = node.TypeRegular
	default:
		return nil, syscall.EINVAL
	}
	n, err := d.newChild(ctx, name, typ, mode&^unix.S_IFMT, fill)
	if err != nil {
		return nil, fsys.errno(joinPath(d.path(), name)+": mknod", err)
	}
	if errno := n.fillAttr(&out.Attr); errno != 0 {
		return nil, errno
	}
	return n.EmbeddedInode(), 0
}

var _ = (fs.NodeSymlinker)((*cowNode)(nil))

func (d *cowNode) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	fsys := d.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if len(name) > node.MaxNameLen {
		return nil, syscall.ENAMETOOLONG
	}
	if d.has(ctx, name) {
		return nil, syscall.EEXIST
	}
	n, err := d.newChild(ctx, name, node.TypeSymlink, 0o777, func(n *cowNode) error {
		n.meta.Target = target
		return nil
	})
	if err != nil {
		return nil, fsys.errno(joinPath(d.path(), name)+": symlink", err)
	}
	if errno := n.fillAttr(&out.Attr); errno != 0 {
		return nil, errno
	}
	return n.EmbeddedInode(), 0
}

var _ = (fs.NodeCreater)((*cowNode)(nil))

func (d *cowNode) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	fsys := d.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if len(name) > node.MaxNameLen {
		return nil, nil, 0, syscall.ENAMETOOLONG
	}
	if d.has(ctx, name) {
		return nil, nil, 0, syscall.EEXIST
	}
	// In memory, or in a scratch file passed through at once when the
	// file comes alone (cowscratch.go).
	n, err := d.newChild(ctx, name, node.TypeRegular, mode&^unix.S_IFMT, func(n *cowNode) error {
		if !fsys.wantScratch(time.Now()) {
			return nil
		}
		return n.startInScratch()
	})
	if err != nil {
		return nil, nil, 0, fsys.errno(joinPath(d.path(), name)+": create", err)
	}
	h, err := n.openHandle()
	if err != nil {
		return nil, nil, 0, fsys.errno(joinPath(d.path(), name)+": create", err)
	}
	if errno := n.fillAttr(&out.Attr); errno != 0 {
		return nil, nil, 0, errno
	}
	return n.EmbeddedInode(), h, n.openFlags(), 0
}

var _ = (fs.NodeLinker)((*cowNode)(nil))

func (d *cowNode) Link(ctx context.Context, target fs.InodeEmbedder, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	fsys := d.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	t, ok := target.(*cowNode)
	if !ok || t.dir != nil {
		return nil, syscall.EPERM
	}
	if len(name) > node.MaxNameLen {
		return nil, syscall.ENAMETOOLONG
	}
	if d.has(ctx, name) {
		return nil, syscall.EEXIST
	}
	now := tsNow(time.Now())
	t.nlink++
	t.touch(now)
	d.AddChild(name, t.EmbeddedInode(), true)
	d.dir.removed[name] = true
	d.touchDir(now)
	if errno := t.fillAttr(&out.Attr); errno != 0 {
		return nil, errno
	}
	return t.EmbeddedInode(), 0
}

// drop removes one name of n; when n has none left its Inode is given up
// (after fsys.mu is released: go-fuse may call OnForget at once), and its
// scratch file goes with it once no handle holds it. fsys.mu is held.
func (n *cowNode) drop(now unix.Timespec, forget *[]*cowNode) {
	if n.dir != nil {
		n.nlink = 0
	} else if n.nlink > 0 {
		n.nlink--
	}
	n.touch(now)
	if f := n.file; n.nlink == 0 && f != nil && f.memHas() && f.opens > 0 {
		// Open with no name left, it has become scratch space, which
		// belongs on the scratch disk rather than in memory.
		if err := n.spill(); err != nil {
			n.fsys.logf("%s: %s: %v", n.fsys.name, n.path(), err)
		}
	}
	if n.nlink == 0 && !n.forgotten {
		n.forgotten = true
		*forget = append(*forget, n)
		if n.link != 0 && n.base != nil {
			delete(n.fsys.links, linkKey{n.base.hash, n.link})
		}
	}
}

func forgetAll(nodes []*cowNode) {
	for _, n := range nodes {
		n.ForgetPersistent()
	}
}

var _ = (fs.NodeUnlinker)((*cowNode)(nil))

func (d *cowNode) Unlink(ctx context.Context, name string) syscall.Errno {
	fsys := d.fsys
	var forget []*cowNode
	defer func() { forgetAll(forget) }()
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	c, err := d.child(ctx, name)
	if err != nil {
		return fsys.errno(joinPath(d.path(), name)+": unlink", err)
	}
	if c == nil {
		return syscall.ENOENT
	}
	if c.dir != nil {
		return syscall.EISDIR
	}
	now := tsNow(time.Now())
	c.drop(now, &forget)
	d.dir.removed[name] = true
	d.touchDir(now)
	return 0
}

var _ = (fs.NodeRmdirer)((*cowNode)(nil))

func (d *cowNode) Rmdir(ctx context.Context, name string) syscall.Errno {
	fsys := d.fsys
	var forget []*cowNode
	defer func() { forgetAll(forget) }()
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	c, err := d.child(ctx, name)
	if err != nil {
		return fsys.errno(joinPath(d.path(), name)+": rmdir", err)
	}
	if c == nil {
		return syscall.ENOENT
	}
	if c.dir == nil {
		return syscall.ENOTDIR
	}
	if !c.empty() {
		return syscall.ENOTEMPTY
	}
	now := tsNow(time.Now())
	c.drop(now, &forget)
	d.dir.subdirsDelta--
	d.dir.removed[name] = true
	d.touchDir(now)
	return 0
}

var _ = (fs.NodeRenamer)((*cowNode)(nil))

func (d *cowNode) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	fsys := d.fsys
	np, ok := newParent.(*cowNode)
	if !ok || np.dir == nil {
		return syscall.EXDEV
	}
	if flags&^(unix.RENAME_NOREPLACE|unix.RENAME_EXCHANGE) != 0 {
		return syscall.EINVAL
	}
	var forget []*cowNode
	defer func() { forgetAll(forget) }()
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	src, err := d.child(ctx, name)
	if err != nil {
		return fsys.errno(joinPath(d.path(), name)+": rename", err)
	}
	if src == nil {
		return syscall.ENOENT
	}
	dst, err := np.child(ctx, newName)
	if err != nil {
		return fsys.errno(joinPath(np.path(), newName)+": rename", err)
	}
	now := tsNow(time.Now())
	if flags&unix.RENAME_EXCHANGE != 0 {
		if dst == nil {
			return syscall.ENOENT
		}
		if d != np {
			if src.dir != nil {
				d.dir.subdirsDelta--
				np.dir.subdirsDelta++
			}
			if dst.dir != nil {
				np.dir.subdirsDelta--
				d.dir.subdirsDelta++
			}
		}
		src.ctime, dst.ctime = now, now
	} else {
		if dst != nil {
			if flags&unix.RENAME_NOREPLACE != 0 {
				return syscall.EEXIST
			}
			if dst == src {
				return 0
			}
			switch {
			case src.dir != nil && dst.dir == nil:
				return syscall.ENOTDIR
			case src.dir == nil && dst.dir != nil:
				return syscall.EISDIR
			case dst.dir != nil && !dst.empty():
				return syscall.ENOTEMPTY
			}
			if dst.dir != nil {
				np.dir.subdirsDelta--
			}
			dst.drop(now, &forget)
		}
		if src.dir != nil && d != np {
			d.dir.subdirsDelta--
			np.dir.subdirsDelta++
		}
		src.ctime = now
	}
	d.dir.removed[name] = true
	np.dir.removed[newName] = true
	d.touchDir(now)
	np.touchDir(now)
	return 0
}
