package fusefs

import (
	"context"
	"fmt"
	"os"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// Commit stores what the mount holds now through a Writer from newWriter
// (whose Commit it calls with refs) and returns the tree's hash. Only
// nodes changed since the previous commit are stored: unchanged subtrees,
// looked up or not, keep their hashes. Nothing of the mount changes until
// the Writer's Commit succeeded, so a failed commit leaves the mount as it
// was (and the store's refs; what was put is garbage for GC). The mount
// is frozen while Commit runs.
func (m *CowMount) Commit(ctx context.Context, newWriter func() (Writer, error), refs ...string) (digest.Hash, error) {
	fsys := m.fsys
	m.flushKernel()
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	w, err := newWriter()
	if err != nil {
		return digest.Hash{}, fmt.Errorf("commit %s: %w", m.mountpoint, err)
	}
	defer w.Close()
	c := &committer{ctx: ctx, w: w, fsys: fsys, done: map[*cowNode]*committed{}}
	defer c.close()
	if err := c.findHiddenLinks(); err != nil {
		return digest.Hash{}, fmt.Errorf("commit %s: %w", m.mountpoint, err)
	}
	tree, err := c.node(fsys.root)
	if err != nil {
		return digest.Hash{}, fmt.Errorf("commit %s: %w", m.mountpoint, err)
	}
	if err := w.Commit(tree, refs...); err != nil {
		return digest.Hash{}, fmt.Errorf("commit %s: tree %s: %w", m.mountpoint, tree.Short(), err)
	}
	for n, r := range c.done {
		n.hash, n.link, n.dirty = r.hash, r.link, false
		f := n.file
		switch {
		case f == nil || !r.copied:
		case r.mem && f.opens == 0:
			n.memStored(r.hash, r.stored)
		case r.mem:
			f.chunks, f.size, f.storedCopied, f.memChanged = r.chunks, r.size, true, false
		default:
			f.chunks, f.size, f.storedCtime, f.storedCopied = r.chunks, r.size, r.ctime, true
		}
	}
	fsys.tree = tree
	return tree, nil
}

// flushKernel makes the kernel write back what it holds dirty on the mount
// (pages written through shared mappings of files it caches, such as files
// in memory), so that the commit sees them as a reader of the mount would:
// the WRITE requests this sends must be served before the mount freezes.
// A failure only means such pages wait for the next commit; it is logged.
func (m *CowMount) flushKernel() {
	fd, err := unix.Open(m.mountpoint, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		m.fsys.logf("%s: commit: flushing the kernel's dirty pages: %v", m.fsys.name, err)
		return
	}
	defer unix.Close(fd)
	// Only if this is still the mount, not what an unmount uncovered.
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil || st.Type != unix.FUSE_SUPER_MAGIC {
		return
	}
	if err := unix.Syncfs(fd); err != nil {
		m.fsys.logf("%s: commit: flushing the kernel's dirty pages: %v", m.fsys.name, err)
	}
	// syncfs can return while the WRITEs of a shared mapping's pages are
	// still on their way to us (a commit then missed them about once in
	// fifteen runs of TestCowCommitReadsMemory). fsync of the file waits
	// for them (FUSE's fsync waits for the inode's writeback before it
	// asks us), so every file open through the page cache is fsynced,
	// by a path of its own: no lock is held here.
	m.fsys.mu.Lock()
	paths := make([]string, 0, len(m.fsys.cachedFiles))
	for n := range m.fsys.cachedFiles {
		if n.nlink > 0 && !n.forgotten {
			paths = append(paths, n.path())
		}
	}
	m.fsys.mu.Unlock()
	for _, p := range paths {
		f, err := unix.Openat(fd, "."+p, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_NONBLOCK|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
		if err != nil {
			continue // renamed or removed meanwhile: its pages went with it, or to another name
		}
		if err := unix.Fsync(f); err != nil {
			m.fsys.logf("%s: commit: flushing the kernel's dirty pages of %s: %v", m.fsys.name, p, err)
		}
		unix.Close(f)
	}
}

// committer is one commit's walk. Its results stay in done until the
// Writer has committed.
type committer struct {
	ctx  context.Context
	w    Writer
	fsys *cowFS
	done map[*cowNode]*committed
	// memfd hands the Writer the content of in-memory files as a file.
	memfd *os.File
}

func (c *committer) close() {
	if c.memfd != nil {
		c.memfd.Close()
	}
}

// committed is what a commit stored for one node.
type committed struct {
	hash digest.Hash
	link uint32 // for the entries naming a hard-linked file
	// Copied-up files: the content stored and the scratch file's ctime.
	copied bool
	chunks []node.Chunk
	size   uint64
	ctime  unix.Timespec
	// In-memory files: the node stored.
	mem    bool
	stored *node.Node
}

// node stores n (and what it holds) if it changed, and returns its hash.
func (c *committer) node(n *cowNode) (digest.Hash, error) {
	if r := c.done[n]; r != nil {
		return r.hash, nil
	}
	if err := c.ctx.Err(); err != nil {
		return digest.Hash{}, err
	}
	r := &committed{hash: n.hash}
	var rec *node.Node
	switch n.meta.Type {
	case node.TypeDir:
		entries, changed, err := c.entries(n)
		if err != nil {
			return digest.Hash{}, err
		}
		if changed || n.dirty || n.base == nil {
			rec = n.record()
			rec.Entries = entries
		}
	case node.TypeRegular:
		f := n.file
		if f.memHas() {
			r.copied, r.mem = true, true
			if f.storedCopied && !f.memChanged {
				r.chunks, r.size = f.chunks, f.size
			} else {
				chunks, size, err := c.putMem(n)
				if err != nil {
					return digest.Hash{}, err
				}
				r.chunks, r.size = chunks, size
			}
			rec = n.record()
			rec.Chunks, rec.Size = r.chunks, r.size
			r.stored = rec
		} else if f.copied {
			var st unix.Stat_t
			if err := n.scratchStat(&st); err != nil {
				return digest.Hash{}, fmt.Errorf("%s: %w", n.path(), err)
			}
			r.copied, r.ctime = true, st.Ctim
			if f.storedCopied && st.Ctim == f.storedCtime {
				r.chunks, r.size = f.chunks, f.size
			} else {
				chunks, size, err := c.putScratch(n, st.Size)
				if err != nil {
					return digest.Hash{}, err
				}
				r.chunks, r.size = chunks, size
			}
			rec = n.record()
			rec.MtimeSec, rec.MtimeNsec = st.Mtim.Sec, uint32(st.Mtim.Nsec)
			rec.Chunks, rec.Size = r.chunks, r.size
		} else if n.dirty || n.base == nil {
			rec = n.record()
			rec.Chunks, rec.Size = f.content.node.Chunks, f.content.node.Size
		}
		if rec != nil {
			rec.Nlink = max(n.nlink, 1)
		}
	default:
		if n.dirty || n.base == nil {
			rec = n.record()
			rec.Nlink = max(n.nlink, 1)
		}
	}
	if rec != nil {
		h, _, err := rec.Hash()
		if err != nil {
			return digest.Hash{}, fmt.Errorf("%s: %w", n.path(), err)
		}
		if h != n.hash {
			if h, err = c.w.PutNode(rec); err != nil {
				return digest.Hash{}, fmt.Errorf("%s: %w", n.path(), err)
			}
		}
		r.hash = h
	}
	r.link = 0
	if n.meta.Type != node.TypeDir && n.nlink > 1 {
		r.link = n.link
		if r.hash != n.hash || r.link == 0 {
			// A new inode, or one whose node changed: a number that
			// no other inode with this node has, as far as 32 bits of
			// its inode number can tell.
			r.link = uint32(mix64(n.ino))
			if r.link == 0 {
				r.link = 1
			}
		}
	}
	c.done[n] = r
	return r.hash, nil
}

// record is n's own record, without entries or content.
func (n *cowNode) record() *node.Node {
	rec := n.meta
	rec.Xattrs = append([]node.Xattr(nil), n.meta.Xattrs...)
	rec.Entries, rec.Chunks, rec.Size, rec.Nlink = nil, nil, 0, 0
	return &rec
}

// entries returns directory n's entries, storing the children that
// changed, and whether any entry differs from the stored directory's.
func (c *committer) entries(n *cowNode) ([]node.Entry, bool, error) {
	children := n.Children()
	entries := make([]node.Entry, 0, len(children))
	changed := false
	for name, in := range children {
		ch := ops(in)
		if ch == nil {
			continue
		}
		h, err := c.node(ch)
		if err != nil {
			return nil, false, err
		}
		link := c.done[ch].link
		e := node.Entry{Name: name, Hash: h, Link: link}
		if !changed {
			changed = !n.sameAsBase(e)
		}
		entries = append(entries, e)
	}
	if n.base != nil {
		for _, e := range n.base.node.Entries {
			if n.dir.removed[e.Name] || children[e.Name] != nil {
				continue
			}
			if e.Link != 0 {
				// A name of a hard-linked inode that was looked up
				// through another name: it carries that inode's node.
				if g := c.fsys.links[linkKey{e.Hash, e.Link}]; g != nil {
					h, err := c.node(g)
					if err != nil {
						return nil, false, err
					}
					if link := c.done[g].link; h != e.Hash || link != e.Link {
						e.Hash, e.Link = h, link
						changed = true
					}
				}
			}
			entries = append(entries, e)
		}
	}
	if n.base == nil || len(entries) != len(n.base.node.Entries) {
		changed = true
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].Name < entries[j].Name })
	return entries, changed, nil
}

// sameAsBase reports whether directory n's stored node has entry e.
func (n *cowNode) sameAsBase(e node.Entry) bool {
	if n.base == nil {
		return false
	}
	i, ok := n.base.node.Lookup(e.Name)
	return ok && n.base.node.Entries[i] == e
}

// putScratch stores the content of n's scratch file.
func (c *committer) putScratch(n *cowNode, size int64) ([]node.Chunk, uint64, error) {
	f, err := os.Open(n.scratchName())
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", n.path(), err)
	}
	defer f.Close()
	chunks, total, err := c.w.PutFile(c.ctx, f, size)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: storing its content: %w", n.path(), err)
	}
	return chunks, total, nil
}

// putMem stores the content of in-memory file n, through a memfd: the
// Writer stores files.
func (c *committer) putMem(n *cowNode) ([]node.Chunk, uint64, error) {
	f := n.file
	if c.memfd == nil {
		fd, err := unix.MemfdCreate("forge-commit", unix.MFD_CLOEXEC)
		if err != nil {
			return nil, 0, fmt.Errorf("%s: memfd_create: %w", n.path(), err)
		}
		c.memfd = os.NewFile(uintptr(fd), "memfd:forge-commit")
	}
	fd := int(c.memfd.Fd())
	if err := unix.Ftruncate(fd, 0); err != nil {
		return nil, 0, fmt.Errorf("%s: truncating the memfd: %w", n.path(), err)
	}
	for done := 0; done < len(f.mem); {
		w, err := unix.Pwrite(fd, f.mem[done:], int64(done))
		if err != nil {
			return nil, 0, fmt.Errorf("%s: writing to the memfd: %w", n.path(), err)
		}
		done += w
	}
	if err := unix.Ftruncate(fd, int64(f.memSize)); err != nil {
		return nil, 0, fmt.Errorf("%s: sizing the memfd: %w", n.path(), err)
	}
	chunks, total, err := c.w.PutFile(c.ctx, c.memfd, int64(f.memSize))
	if err != nil {
		return nil, 0, fmt.Errorf("%s: storing its content: %w", n.path(), err)
	}
	return chunks, total, nil
}

// findHiddenLinks looks up the stored names of hard-linked inodes that may
// have changed through another name. Every name of an inode must carry its
// new node, and a name in a directory never looked up would keep the old
// one. This walks the stored directories below the looked-up ones, which
// costs as much as the tree, but only when such an inode exists: a change
// to a hard-linked file not all of whose names were looked up.
func (c *committer) findHiddenLinks() error {
	want := map[linkKey]bool{}
	for key, g := range c.fsys.links {
		if g.base.node.Type != node.TypeDir && g.seen < g.base.node.Nlink && (g.dirty || (g.file != nil && g.file.copied)) {
			want[key] = true
		}
	}
	if len(want) == 0 {
		return nil
	}
	holds := map[digest.Hash]bool{} // stored directories, by whether they hold a wanted name
	var scan func(h digest.Hash) (bool, error)
	scan = func(h digest.Hash) (bool, error) {
		if v, ok := holds[h]; ok {
			return v, nil
		}
		info, err := c.fsys.cache.info(h)
		if err != nil {
			return false, err
		}
		found := false
		for _, e := range info.node.Entries {
			if e.Link != 0 && want[linkKey{e.Hash, e.Link}] {
				found = true
				break
			}
		}
		if !found {
			for _, e := range info.node.Entries {
				ch, err := c.fsys.cache.info(e.Hash)
				if err != nil {
					return false, err
				}
				if ch.node.Type == node.TypeDir {
					if found, err = scan(e.Hash); err != nil || found {
						break
					}
				}
			}
		}
		holds[h] = found
		return found, nil
	}
	var walk func(d *cowNode) error
	walk = func(d *cowNode) error {
		if d.base != nil {
			for _, e := range d.base.node.Entries {
				if d.dir.removed[e.Name] || d.GetChild(e.Name) != nil {
					continue
				}
				lookup := e.Link != 0 && want[linkKey{e.Hash, e.Link}]
				if !lookup {
					info, err := c.fsys.cache.info(e.Hash)
					if err != nil {
						return err
					}
					if info.node.Type == node.TypeDir {
						if lookup, err = scan(e.Hash); err != nil {
							return err
						}
					}
				}
				if lookup {
					if _, err := d.child(c.ctx, e.Name); err != nil {
						return err
					}
				}
			}
		}
		for _, in := range d.Children() {
			if ch := ops(in); ch != nil && ch.dir != nil {
				if err := walk(ch); err != nil {
					return err
				}
			}
		}
		return nil
	}
	return walk(c.fsys.root)
}
