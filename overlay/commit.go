package overlay

import (
	"context"
	"fmt"
	"os"
	"path"
	"runtime"
	"sort"
	"strings"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/fusefs"
)

// fileKey names an inode of the merged view.
type fileKey struct{ dev, ino uint64 }

// storedFile is a file content an earlier commit stored, valid while the
// inode's size, mtime and ctime stay as they were.
type storedFile struct {
	size         int64
	mtime, ctime unix.Timespec
	chunks       []node.Chunk
}

func (s storedFile) matches(st *unix.Stat_t) bool {
	return s.size == st.Size && s.mtime == st.Mtim && s.ctime == st.Ctim
}

// Commit stores what the mount holds now through w (the writer newWriter
// returns; Commit calls its Commit with refs) and returns the tree's hash.
//
// It reads the upper layer to learn what changed since the mount: only
// those names are read back (through the merged view, which resolves
// whiteouts, renames, metadata-only copies and hard links as every process
// sees them), and only the directories above them are stored anew; the
// rest of the tree keeps its stored hashes. File content an earlier commit
// of this mount stored is not read again while the file's size, mtime and
// ctime stay the same. If it fails, nothing of the mount changes.
//
// Commit does not stop writers: a file written while the commit runs is
// stored as the commit reads it. Commit between the stages that write.
func (m *Mount) Commit(ctx context.Context, newWriter func() (fusefs.Writer, error), refs ...string) (digest.Hash, error) {
	m.commitMu.Lock()
	defer m.commitMu.Unlock()
	h, err := m.commit(ctx, newWriter, refs)
	if err != nil {
		return digest.Hash{}, fmt.Errorf("commit %s: %w", m.mountpoint, err)
	}
	return h, nil
}

func (m *Mount) commit(ctx context.Context, newWriter func() (fusefs.Writer, error), refs []string) (digest.Hash, error) {
	ufd, err := unix.Open(m.upper, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return digest.Hash{}, &os.PathError{Op: "open", Path: m.upper, Err: err}
	}
	c, up, err := m.survey(ctx, ufd)
	unix.Close(ufd)
	if err != nil {
		return digest.Hash{}, err
	}

	w, err := newWriter()
	if err != nil {
		return digest.Hash{}, err
	}
	defer w.Close()
	c.w = w
	var cctx context.Context
	cctx, c.cancel = context.WithCancelCause(ctx)
	defer c.cancel(nil)
	c.ctx = cctx
	c.jobs = make(chan fileJob, 2*runtime.GOMAXPROCS(0))
	var workers sync.WaitGroup
	for range runtime.GOMAXPROCS(0) {
		workers.Add(1)
		go func() {
			defer workers.Done()
			c.work()
		}()
	}
	mfd, err := unix.Open(m.mountpoint, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		close(c.jobs)
		workers.Wait()
		return digest.Hash{}, &os.PathError{Op: "open", Path: m.mountpoint, Err: err}
	}
	root, err := c.walkDir(mfd, "", up, up.lower, up.lowerPath)
	unix.Close(mfd)
	close(c.jobs)
	workers.Wait()
	if err != nil {
		return digest.Hash{}, err
	}
	if err := context.Cause(cctx); err != nil {
		return digest.Hash{}, err
	}
	h, _, err := c.build(root)
	if err != nil {
		return digest.Hash{}, err
	}
	if err := w.Commit(h, refs...); err != nil {
		return digest.Hash{}, err
	}
	m.mu.Lock()
	m.tree, m.files, m.committed = h, c.files, c.committed
	m.mu.Unlock()
	return h, nil
}

// survey reads the upper layer open at ufd and decides what the commit
// reads back: the base directory below every upper directory, and the
// base's hard-linked inodes it reads again by all their names (links.go).
// It reads nothing of the merged view.
func (m *Mount) survey(ctx context.Context, ufd int) (*committer, *upperDir, error) {
	m.mu.Lock()
	committed := m.committed
	m.mu.Unlock()
	up, err := scanUpper(ufd, "", committed)
	if err != nil {
		return nil, nil, err
	}
	c := &committer{
		m:         m,
		ctx:       ctx,
		touched:   map[linkKey]bool{},
		groups:    map[fileKey]*group{},
		files:     map[fileKey]storedFile{},
		used:      map[linkKey]bool{},
		committed: map[upperKey]committedEntry{},
	}
	rootPath := noLower
	var rootLower *node.Node
	if !m.base.IsZero() {
		if rootLower, err = m.cache.Node(m.base); err != nil {
			return nil, nil, err
		}
		rootPath = ""
	}
	if err := c.resolve(up, rootLower, rootPath); err != nil {
		return nil, nil, err
	}
	if len(c.touched) > 0 {
		if err := c.findMembers(); err != nil {
			return nil, nil, err
		}
	}
	return c, up, nil
}

// committer is one commit's state.
type committer struct {
	m      *Mount
	ctx    context.Context
	cancel context.CancelCauseFunc
	w      fusefs.Writer

	// touched are the base tree's hard-linked inodes the upper layer
	// changed through one of their names, or dropped a name of; every
	// name of theirs is read back. memberDirs holds the base paths of the
	// directories on the way to those names.
	touched    map[linkKey]bool
	memberDirs map[string]bool

	jobs chan fileJob

	mu        sync.Mutex
	groups    map[fileKey]*group     // inodes of the merged view with more than one name
	files     map[fileKey]storedFile // file contents this commit stored or kept
	used      map[linkKey]bool       // link numbers given to the mount's new hard links, per node hash
	committed map[upperKey]committedEntry
	kept      map[linkKey]bool // keptLinks, once asked for
}

// item is one name of the merged tree.
type item struct {
	name  string
	path  string      // in the merged view, for messages
	reuse *node.Entry // unchanged since the base: its entry as it was

	meta     *node.Node // changed: metadata from the merged view
	children []*item    // directories
	g        *group     // everything else
	// upper, for an upper inode with one name, is remembered with its
	// node for the next commit.
	upper *upperEntry
}

type fileJob struct {
	f    *os.File
	size int64
	st   unix.Stat_t
	g    *group
	path string
}

// resolve finds the base directory below every upper directory, and the
// hard-linked base inodes the upper layer touches.
func (c *committer) resolve(u *upperDir, lower *node.Node, lowerPath string) error {
	u.lower, u.lowerPath = lower, lowerPath
	for name, e := range u.entries {
		if err := c.touch(e, lower, lowerPath, name); err != nil {
			return err
		}
		if e.dir == nil {
			continue
		}
		var dl *node.Node
		p, ok := lowerOf(e, lowerPath, name)
		if ok {
			var err error
			if dl, err = c.m.baseDir(p); err != nil {
				return err
			}
		}
		if dl == nil {
			p = noLower
		}
		if err := c.resolve(e.dir, dl, p); err != nil {
			return err
		}
	}
	return nil
}

// walkDir reads the merged directory open at dirfd (at p) for the commit:
// the names the upper layer has, and the base's other names, which are
// kept as they are unless they name a touched inode.
func (c *committer) walkDir(dirfd int, p string, u *upperDir, lower *node.Node, lowerPath string) (*item, error) {
	if err := context.Cause(c.ctx); err != nil {
		return nil, err
	}
	it := &item{path: p}
	var st unix.Stat_t
	if err := unix.Fstat(dirfd, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", show(p), err)
	}
	xs, err := cas.ReadXattrs(func(buf []byte) (int, error) { return unix.Flistxattr(dirfd, buf) },
		func(name string, buf []byte) (int, error) { return unix.Fgetxattr(dirfd, name, buf) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", show(p), err)
	}
	if it.meta, err = cas.NodeFromStat(&st, xs); err != nil {
		return nil, fmt.Errorf("%s: %w", show(p), err)
	}

	for _, s := range c.plan(lower, lowerPath, u) {
		cp := join(p, s.name)
		switch s.change {
		case readLink:
			child, err := c.readEntry(dirfd, cp, s.name, nil)
			if err != nil {
				return nil, err
			}
			it.children = append(it.children, child)
		case walkBase:
			n, err := c.m.cache.Node(s.base.Hash)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", show(cp), err)
			}
			child, err := c.walkChild(dirfd, cp, s.name, nil, n, join(lowerPath, s.name))
			if err != nil {
				return nil, err
			}
			it.children = append(it.children, child)
		case keepBase:
			// (If hard-linked, its number is among keptLinks.)
			it.children = append(it.children, &item{name: s.name, path: cp, reuse: s.base})
		case walkUpper:
			child, err := c.walkChild(dirfd, cp, s.name, s.upper.dir, s.upper.dir.lower, s.upper.dir.lowerPath)
			if err != nil {
				return nil, err
			}
			it.children = append(it.children, child)
		case keepCommitted:
			c.remember(s.upper, s.upper.committed.hash)
			it.children = append(it.children, &item{name: s.name, path: cp, reuse: &node.Entry{Name: s.name, Hash: s.upper.committed.hash}})
		case readUpper:
			var dataFrom *node.Node
			if s.upper.metacopy {
				var err error
				if dataFrom, err = c.dataOf(s.upper, s.base, lowerPath, s.name); err != nil {
					return nil, fmt.Errorf("%s: %w", show(cp), err)
				}
			}
			child, err := c.readEntry(dirfd, cp, s.name, dataFrom)
			if err != nil {
				return nil, err
			}
			if s.remember {
				child.upper = s.upper
			}
			it.children = append(it.children, child)
		}
	}
	return it, nil
}

// change is what a commit does with one name of a merged directory.
type change int

const (
	keepBase      change = iota + 1 // unchanged since the base: its entry as it was
	readLink                        // a base name of a touched hard-linked inode: read again
	walkBase                        // a base directory that holds such a name: walked
	walkUpper                       // a directory of the upper layer: walked
	keepCommitted                   // unchanged since the last commit (scanUpper checked): the node it stored
	readUpper                       // new or changed: read through the merged view
)

// step is one name of a merged directory and what the commit does with it.
type step struct {
	name  string
	base  *node.Entry // the base's entry, if it has the name
	upper *upperEntry // the upper layer's, if it has the name
	change
	// remember (readUpper) keeps the node the commit stores for the upper
	// inode for the next commit: the inode has this one name, in the upper
	// layer and in the base.
	remember bool
}

// plan lists, sorted by name, what the commit does with each name of a
// merged directory: the base's names (lower, at lowerPath; nil if none)
// and the upper layer's (u; nil if none), less those a whiteout hides.
// It reads nothing.
func (c *committer) plan(lower *node.Node, lowerPath string, u *upperDir) []step {
	names := map[string]*step{}
	if lower != nil {
		for i := range lower.Entries {
			names[lower.Entries[i].Name] = &step{name: lower.Entries[i].Name, base: &lower.Entries[i]}
		}
	}
	if u != nil {
		for name, e := range u.entries {
			if e.whiteout {
				delete(names, name)
				continue
			}
			s := names[name]
			if s == nil {
				s = &step{name: name}
				names[name] = s
			}
			s.upper = e
		}
	}
	steps := make([]step, 0, len(names))
	for _, s := range names {
		linked := s.base != nil && s.base.Link != 0
		switch {
		case s.upper == nil && linked && c.touched[linkKey{s.base.Hash, s.base.Link}]:
			s.change = readLink
		case s.upper == nil && c.memberDirs[join(lowerPath, s.name)] && lowerPath != noLower:
			s.change = walkBase
		case s.upper == nil:
			s.change = keepBase
		case s.upper.dir != nil:
			s.change = walkUpper
		case s.upper.committed != nil && !linked:
			s.change = keepCommitted
		default:
			s.change = readUpper
			s.remember = s.upper.st.Nlink == 1 && !linked
		}
		steps = append(steps, *s)
	}
	sort.Slice(steps, func(i, j int) bool { return steps[i].name < steps[j].name })
	return steps
}

// remember records what this commit stored for upper inode e.
func (c *committer) remember(e *upperEntry, h digest.Hash) {
	c.mu.Lock()
	c.committed[upperKey{e.st.Dev, e.st.Ino}] = committedEntry{
		ctime: e.st.Ctim, mtime: e.st.Mtim, size: e.st.Size,
		metacopy: e.metacopy, redirect: e.redirect, hash: h,
	}
	c.mu.Unlock()
}

func (c *committer) walkChild(dirfd int, p, name string, u *upperDir, lower *node.Node, lowerPath string) (*item, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", show(p), err)
	}
	defer unix.Close(fd)
	it, err := c.walkDir(fd, p, u, lower, lowerPath)
	if err != nil {
		return nil, err
	}
	it.name = name
	return it, nil
}

// dataOf is the base file whose data a metacopy file of the upper layer
// still has: the one its redirect names, else the one below its name.
func (c *committer) dataOf(e *upperEntry, below *node.Entry, lowerPath, name string) (*node.Node, error) {
	if e.redirect != "" {
		p, ok := lowerOf(e, lowerPath, name)
		if !ok {
			return nil, nil
		}
		be, err := c.m.baseEntry(p)
		if err != nil || be == nil {
			return nil, err
		}
		below = be
	}
	if below == nil {
		return nil, nil
	}
	n, err := c.m.cache.Node(below.Hash)
	if err != nil || n.Type != node.TypeRegular {
		return nil, err
	}
	return n, nil
}

// readEntry reads a name that is not a directory from the merged view. A
// regular file's content comes from dataFrom (a metacopy file's base
// file) when its size agrees, from an earlier commit when unchanged since,
// else from the file itself, read by the workers.
func (c *committer) readEntry(dirfd int, p, name string, dataFrom *node.Node) (*item, error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return nil, fmt.Errorf("stat %s: %w", show(p), err)
	}
	fp := fdPath(dirfd, name)
	xs, err := cas.ReadXattrs(func(buf []byte) (int, error) { return unix.Llistxattr(fp, buf) },
		func(name string, buf []byte) (int, error) { return unix.Lgetxattr(fp, name, buf) })
	if err != nil {
		return nil, fmt.Errorf("%s: %w", show(p), err)
	}
	meta, err := cas.NodeFromStat(&st, xs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", show(p), err)
	}
	it := &item{name: name, path: p, meta: meta}
	if meta.Type == node.TypeDir {
		return nil, fmt.Errorf("%s: a directory where the upper layer has none", show(p))
	}
	if meta.Type == node.TypeSymlink {
		buf := make([]byte, unix.PathMax)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return nil, fmt.Errorf("readlink %s: %w", show(p), err)
		}
		meta.Target = string(buf[:n])
	}
	g, first := c.addName(&st)
	it.g = g
	if !first || meta.Type != node.TypeRegular {
		return it, nil
	}
	if dataFrom != nil && int64(dataFrom.Size) == st.Size {
		g.size, g.chunks = dataFrom.Size, dataFrom.Chunks
		return it, nil
	}
	c.m.mu.Lock()
	old, ok := c.m.files[g.key]
	c.m.mu.Unlock()
	if ok && old.matches(&st) {
		g.size, g.chunks = uint64(old.size), old.chunks
		c.mu.Lock()
		c.files[g.key] = old
		c.mu.Unlock()
		return it, nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", show(p), err)
	}
	select {
	case c.jobs <- fileJob{f: os.NewFile(uintptr(fd), p), size: st.Size, st: st, g: g, path: p}:
	case <-c.ctx.Done():
		unix.Close(fd)
		return nil, context.Cause(c.ctx)
	}
	return it, nil
}

// work stores the files queued for it.
func (c *committer) work() {
	for job := range c.jobs {
		if c.ctx.Err() != nil {
			job.f.Close()
			continue
		}
		chunks, size, err := c.w.PutFile(c.ctx, job.f, job.size)
		job.f.Close()
		if err != nil {
			c.cancel(fmt.Errorf("store %s: %w", show(job.path), err))
			continue
		}
		job.g.chunks, job.g.size = chunks, size
		c.mu.Lock()
		c.files[job.g.key] = storedFile{size: int64(size), mtime: job.st.Mtim, ctime: job.st.Ctim, chunks: chunks}
		c.mu.Unlock()
	}
}

// build stores the nodes of it and below, and returns its entry's hash
// and link number.
func (c *committer) build(it *item) (digest.Hash, uint32, error) {
	if it.reuse != nil {
		return it.reuse.Hash, it.reuse.Link, nil
	}
	if it.meta.Type == node.TypeDir {
		n := *it.meta
		n.Entries = make([]node.Entry, len(it.children))
		for i, ch := range it.children {
			h, link, err := c.build(ch)
			if err != nil {
				return h, 0, err
			}
			n.Entries[i] = node.Entry{Name: ch.name, Hash: h, Link: link}
		}
		h, err := c.w.PutNode(&n)
		if err != nil {
			return h, 0, fmt.Errorf("store %s: %w", show(it.path), err)
		}
		return h, 0, nil
	}
	g := it.g
	if g.built {
		return g.hash, g.link, nil
	}
	n := *it.meta
	n.Nlink = g.names
	if n.Type == node.TypeRegular {
		n.Size, n.Chunks = g.size, g.chunks
	}
	h, err := c.w.PutNode(&n)
	if err != nil {
		return h, 0, fmt.Errorf("store %s: %w", show(it.path), err)
	}
	g.built, g.hash = true, h
	if it.upper != nil && g.names == 1 {
		c.remember(it.upper, h)
	}
	if g.names > 1 {
		if g.link, err = c.linkNumber(h); err != nil {
			return h, 0, err
		}
	}
	return g.hash, g.link, nil
}

// findEntry is dir's entry called name, or nil.
func findEntry(dir *node.Node, name string) *node.Entry {
	i := sort.Search(len(dir.Entries), func(i int) bool { return dir.Entries[i].Name >= name })
	if i < len(dir.Entries) && dir.Entries[i].Name == name {
		return &dir.Entries[i]
	}
	return nil
}

// baseEntry is the entry at relative path p of the base tree, or nil.
func (m *Mount) baseEntry(p string) (*node.Entry, error) {
	dir, name := path.Split(p)
	d, err := m.baseDir(strings.TrimSuffix(dir, "/"))
	if err != nil || d == nil {
		return nil, err
	}
	return findEntry(d, name), nil
}

// baseDir is the directory at relative path p of the base tree ("" the
// root), or nil when there is none. The base never changes while mounted,
// so what it finds is kept for later commits.
func (m *Mount) baseDir(p string) (*node.Node, error) {
	if m.base.IsZero() {
		return nil, nil
	}
	if d, ok := m.dirs[p]; ok {
		return d, nil
	}
	var d *node.Node
	var err error
	if p == "" {
		d, err = m.cache.Node(m.base)
	} else {
		parent, name := path.Split(p)
		var pd *node.Node
		if pd, err = m.baseDir(strings.TrimSuffix(parent, "/")); err != nil || pd == nil {
			return nil, err
		}
		if e := findEntry(pd, name); e != nil {
			if d, err = m.cache.Node(e.Hash); err == nil && d.Type != node.TypeDir {
				d = nil
			}
		}
	}
	if err != nil {
		return nil, fmt.Errorf("base %s: %w", show(p), err)
	}
	m.dirs[p] = d
	return d, nil
}

// show is a relative path for messages.
func show(p string) string { return "/" + p }
