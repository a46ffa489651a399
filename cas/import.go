package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/chunker"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// ImportOptions tune Import.
type ImportOptions struct {
	// Refs are pointed at the imported tree, in the same durable commit.
	Refs []string
	// SubRefs point refs (the keys) at directories inside the tree (the
	// values: relative slash paths, "a/b"), in the same commit: one
	// import, one pack and one commit store many trees that each have a
	// ref of their own.
	SubRefs map[string]string
	// Workers read and hash file content in parallel. Default GOMAXPROCS.
	Workers int
	// Progress, if set, is called about twice a second while the import
	// runs, and once at the end.
	Progress func(Progress)
}

// Progress counts work done so far.
type Progress struct {
	Entries  int64 // names scanned
	Bytes    int64 // file content read (or written, for export)
	NewBytes int64 // content the store did not have
}

// ImportResult describes a finished import.
type ImportResult struct {
	Tree    digest.Hash
	Entries int64 // names in the tree, the root included
	Bytes   int64 // file content, hard-linked files counted once
	// ReusedBytes is content not read at all: files unchanged since an
	// earlier import into this store (same inode, size, mtime and ctime).
	ReusedBytes int64
	Stats       WriteStats
	Elapsed     time.Duration
}

// smallFile is the size under which a file is read in one go, without
// asking the filesystem where its holes are: a hole that small would not
// be worth the two extra system calls per file.
const smallFile = 64 << 10

// scanned is one name of the tree being imported.
type scanned struct {
	parent   *scanned
	name     string
	st       unix.Stat_t
	xattrs   []node.Xattr
	target   string
	children []*scanned
	group    *linkGroup // every inode but directories
}

// linkGroup is one regular-file inode: its content is read once however
// many names it has in the tree.
type linkGroup struct {
	// cacheKey and cache, when set, are recorded once the node's hash is
	// known, for the next import of the same file.
	cacheKey []byte
	cache    *statEntry

	chunks []node.Chunk
	size   uint64
	names  uint32
	built  bool
	hash   digest.Hash
	link   uint32
}

type inodeKey struct{ dev, ino uint64 }

type fileJob struct {
	f     *os.File
	entry *scanned
}

type importer struct {
	s      *Store
	w      *Writer
	ctx    context.Context
	cancel context.CancelCauseFunc
	root   string

	inodesMu sync.Mutex
	inodes   map[inodeKey]*linkGroup
	jobs     chan fileJob
	// Directories are scanned by up to cap(scanSlots) goroutines: on a
	// re-import that reads no content, listing, stat and xattr calls are
	// the work.
	scanSlots chan struct{}
	scanning  sync.WaitGroup

	entries, bytes, reused atomic.Int64
	start                  time.Time

	nextLink map[digest.Hash]uint32
	// want are the directories whose hashes SubRefs need, filled in by
	// build.
	want map[*scanned]*digest.Hash
}

func (e *scanned) path() string {
	var parts []string
	for p := e; p != nil && p.parent != nil; p = p.parent {
		parts = append(parts, p.name)
	}
	for i, j := 0, len(parts)-1; i < j; i, j = i+1, j-1 {
		parts[i], parts[j] = parts[j], parts[i]
	}
	return filepath.Join(parts...)
}

func (im *importer) where(e *scanned) string {
	return QuotePath(filepath.Join(im.root, e.path()))
}

// Import stores the directory tree at root and returns its hash. It reads
// file content in parallel, skips the holes of sparse files, stores each
// chunk once, and commits durably (with the refs in opts) before returning.
func (s *Store) Import(ctx context.Context, root string, opts ImportOptions) (ImportResult, error) {
	start := time.Now()
	for _, r := range opts.Refs {
		if err := ValidRefName(r); err != nil {
			return ImportResult{}, err
		}
	}
	for r, p := range opts.SubRefs {
		if err := ValidRefName(r); err != nil {
			return ImportResult{}, err
		}
		if _, err := splitRelPath(p); err != nil {
			return ImportResult{}, fmt.Errorf("import %s: ref %q: %w", root, r, err)
		}
	}
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	rootFile, err := os.Open(root)
	if err != nil {
		return ImportResult{}, fmt.Errorf("import %s: %w", root, err)
	}
	defer rootFile.Close()
	top := &scanned{}
	if err := unix.Fstat(int(rootFile.Fd()), &top.st); err != nil {
		return ImportResult{}, fmt.Errorf("import %s: %w", root, err)
	}
	if top.st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return ImportResult{}, fmt.Errorf("import %s: %w: not a directory", root, ErrInvalidArgument)
	}
	if top.xattrs, err = ReadPathXattrs(selfFdPath(int(rootFile.Fd())), true); err != nil {
		return ImportResult{}, fmt.Errorf("import %s: %w", root, err)
	}

	w, err := s.NewWriter()
	if err != nil {
		return ImportResult{}, err
	}
	defer w.Close()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	im := &importer{
		s: s, w: w, ctx: ctx, cancel: cancel, root: root,
		inodes:    map[inodeKey]*linkGroup{},
		jobs:      make(chan fileJob, 4*opts.Workers),
		scanSlots: make(chan struct{}, 2*opts.Workers),
		nextLink:  map[digest.Hash]uint32{},
		start:     start,
	}
	im.entries.Store(1)

	var workers sync.WaitGroup
	for range opts.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			im.worker()
		}()
	}
	stopProgress := reportProgress(opts.Progress, func() Progress {
		return Progress{Entries: im.entries.Load(), Bytes: im.bytes.Load(), NewBytes: im.w.Stats().NewBytes}
	})
	scanErr := im.scanDir(int(rootFile.Fd()), top)
	im.scanning.Wait()
	close(im.jobs)
	workers.Wait()
	stopProgress()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return ImportResult{}, err
	}
	if scanErr != nil {
		return ImportResult{}, scanErr
	}
	if err := ctx.Err(); err != nil {
		return ImportResult{}, err
	}

	subs, err := im.subRefs(top, opts.SubRefs)
	if err != nil {
		return ImportResult{}, err
	}
	tree, _, err := im.build(top)
	if err != nil {
		return ImportResult{}, err
	}
	refs := make([]refChange, 0, len(opts.Refs)+len(subs))
	for _, r := range opts.Refs {
		refs = append(refs, refChange{Name: r, Tree: tree})
	}
	names := make([]string, 0, len(subs))
	for r := range subs {
		names = append(names, r)
	}
	sort.Strings(names)
	for _, r := range names {
		refs = append(refs, refChange{Name: r, Tree: *subs[r]})
	}
	if err := w.commit([]digest.Hash{tree}, refs); err != nil {
		return ImportResult{}, fmt.Errorf("import %s: %w", root, err)
	}
	res := ImportResult{Tree: tree, Entries: im.entries.Load(), Bytes: im.bytes.Load(), ReusedBytes: im.reused.Load(), Stats: w.Stats(), Elapsed: time.Since(start)}
	if opts.Progress != nil {
		opts.Progress(Progress{Entries: res.Entries, Bytes: res.Bytes, NewBytes: res.Stats.NewBytes})
	}
	return res, nil
}

// subRefs finds the directories that SubRefs name in the scanned tree and
// asks build to record their hashes.
func (im *importer) subRefs(top *scanned, subRefs map[string]string) (map[string]*digest.Hash, error) {
	out := make(map[string]*digest.Hash, len(subRefs))
	for r, p := range subRefs {
		parts, _ := splitRelPath(p)
		e := top
		for _, name := range parts {
			i := sort.Search(len(e.children), func(i int) bool { return e.children[i].name >= name })
			if i == len(e.children) || e.children[i].name != name {
				return nil, fmt.Errorf("import %s: ref %q: no %s in the tree: %w", im.root, r, QuotePath(p), ErrNotFound)
			}
			e = e.children[i]
		}
		if e.st.Mode&unix.S_IFMT != unix.S_IFDIR {
			return nil, fmt.Errorf("import %s: ref %q: %s is not a directory: %w", im.root, r, QuotePath(p), ErrInvalidArgument)
		}
		if im.want == nil {
			im.want = map[*scanned]*digest.Hash{}
		}
		h := im.want[e]
		if h == nil {
			h = new(digest.Hash)
			im.want[e] = h
		}
		out[r] = h
	}
	return out, nil
}

// splitRelPath splits a relative slash path of plain names.
func splitRelPath(p string) ([]string, error) {
	parts := strings.Split(p, "/")
	for _, name := range parts {
		if !node.ValidName(name) {
			return nil, fmt.Errorf("%w: path %s: want a relative path of names, without empty, \".\" or \"..\" parts", ErrInvalidArgument, QuotePath(p))
		}
	}
	return parts, nil
}

// reportProgress calls fn with sample() about twice a second until stop is
// called; with no fn it does nothing.
func reportProgress(fn func(Progress), sample func() Progress) (stop func()) {
	if fn == nil {
		return func() {}
	}
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-t.C:
				fn(sample())
			}
		}
	}()
	return func() { close(done); wg.Wait() }
}

// scanDir lists the directory dirfd (described by e), records every
// entry's metadata, queues regular files for hashing and recurses into
// subdirectories.
func (im *importer) scanDir(dirfd int, e *scanned) error {
	if err := im.ctx.Err(); err != nil {
		return err
	}
	names, err := readDirNames(dirfd)
	if err != nil {
		return fmt.Errorf("import %s: %w", im.where(e), err)
	}
	sort.Strings(names)
	e.children = make([]*scanned, 0, len(names))
	for _, name := range names {
		c := &scanned{parent: e, name: name}
		if err := unix.Fstatat(dirfd, name, &c.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("import %s: %w", im.where(c), err)
		}
		if len(name) > node.MaxNameLen {
			return fmt.Errorf("import %s: name longer than %d bytes", im.where(c), node.MaxNameLen)
		}
		if c.xattrs, err = ReadPathXattrs(fdPath(dirfd, name), false); err != nil {
			return fmt.Errorf("import %s: %w", im.where(c), err)
		}
		e.children = append(e.children, c)
		im.entries.Add(1)
		typ := c.st.Mode & unix.S_IFMT
		first := true
		if typ != unix.S_IFDIR {
			first = im.group(c)
		}
		switch typ {
		case unix.S_IFREG:
			if first {
				if err := im.queueFile(dirfd, c); err != nil {
					return err
				}
			}
		case unix.S_IFLNK:
			if c.target, err = readlinkat(dirfd, name); err != nil {
				return fmt.Errorf("import %s: %w", im.where(c), err)
			}
		case unix.S_IFDIR:
			fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("import %s: %w", im.where(c), err)
			}
			select {
			case im.scanSlots <- struct{}{}:
				im.scanning.Add(1)
				go func() {
					defer im.scanning.Done()
					defer func() { <-im.scanSlots }()
					if err := im.scanDir(fd, c); err != nil {
						im.cancel(err)
					}
					unix.Close(fd)
				}()
			default:
				err = im.scanDir(fd, c)
				unix.Close(fd)
				if err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// group puts c, which is not a directory, in its inode's link group and
// reports whether it is the inode's first name in the tree (whose content
// is read; the others only count).
func (im *importer) group(c *scanned) bool {
	if c.st.Nlink <= 1 {
		c.group = &linkGroup{names: 1}
		return true
	}
	key := inodeKey{dev: c.st.Dev, ino: c.st.Ino}
	im.inodesMu.Lock()
	defer im.inodesMu.Unlock()
	if g, ok := im.inodes[key]; ok {
		g.names++
		c.group = g
		return false
	}
	c.group = &linkGroup{names: 1}
	im.inodes[key] = c.group
	return true
}

// queueFile opens regular file c and queues it for the workers.
func (im *importer) queueFile(dirfd int, c *scanned) error {
	fd, err := unix.Openat(dirfd, c.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("import %s: %w", im.where(c), err)
	}
	// The os.File owns the descriptor from here on: closing it any other
	// way would leave its finalizer to close the number again later, by
	// then perhaps someone else's file.
	f := os.NewFile(uintptr(fd), c.name)
	select {
	case im.jobs <- fileJob{f: f, entry: c}:
		return nil
	case <-im.ctx.Done():
		f.Close()
		return context.Cause(im.ctx)
	}
}

func (im *importer) worker() {
	ck := chunker.New(nil, chunker.DefaultParams)
	for job := range im.jobs {
		if im.ctx.Err() != nil {
			job.f.Close()
			continue
		}
		err := im.hashFile(ck, job.f, job.entry)
		job.f.Close()
		if err != nil {
			im.cancel(fmt.Errorf("import %s: %w", im.where(job.entry), err))
		}
	}
}

// hashFile chunks and stores one file's content. The holes the filesystem
// reports, and chunks that are all zeros, become holes in the node.
func (im *importer) hashFile(ck *chunker.Chunker, f *os.File, e *scanned) error {
	g := e.group
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return err
	}
	key := statKey(st.Dev, st.Ino)
	if ok, err := im.reuseCached(key, &st, g); ok || err != nil {
		return err
	}
	defer func() {
		// Remember the file for the next import, unless it changed while
		// we read it or so recently that a change in the same clock tick
		// could go unseen (git's "racy" entries).
		var after unix.Stat_t
		if unix.Fstat(int(f.Fd()), &after) != nil || !sameStat(&st, &after) ||
			time.Unix(st.Ctim.Sec, st.Ctim.Nsec).After(im.start.Add(-im.s.racyWindow)) {
			return
		}
		g.cacheKey = key
		g.cache = &statEntry{Size: st.Size, MtimeSec: st.Mtim.Sec, MtimeNsec: st.Mtim.Nsec, CtimeSec: st.Ctim.Sec, CtimeNsec: st.Ctim.Nsec}
	}()
	chunks, size, err := im.w.putContent(im.ctx, ck, f, st.Size, func(n int) { im.bytes.Add(int64(n)) })
	g.chunks, g.size = chunks, size
	return err
}

// reuseCached fills g from the stat cache when the file is unchanged since
// an earlier import and its chunks are all still stored.
func (im *importer) reuseCached(key []byte, st *unix.Stat_t, g *linkGroup) (bool, error) {
	v, err := im.s.get(key)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			err = nil
		}
		return false, err
	}
	e, ok := decodeStatEntry(v)
	if !ok || e.Size != st.Size || e.MtimeSec != st.Mtim.Sec || e.MtimeNsec != st.Mtim.Nsec ||
		e.CtimeSec != st.Ctim.Sec || e.CtimeNsec != st.Ctim.Nsec {
		return false, nil
	}
	// Holding the node holds its chunks: GC marks what held nodes reach.
	if ok, err := im.w.storedOrHold(hashKey(prefixNode, e.Node), e.Node); !ok || err != nil {
		return false, err
	}
	n, err := im.s.Node(e.Node)
	if err != nil || n.Type != node.TypeRegular || int64(n.Size) != st.Size {
		return false, nil // not what it was: read the file
	}
	g.chunks, g.size = n.Chunks, n.Size
	im.bytes.Add(st.Size)
	im.reused.Add(st.Size)
	return true, nil
}

func sameStat(a, b *unix.Stat_t) bool {
	return a.Size == b.Size && a.Mtim == b.Mtim && a.Ctim == b.Ctim && a.Ino == b.Ino && a.Dev == b.Dev
}

// build stores the nodes of e's subtree, children first, and returns e's
// hash and link number. Entries are visited in name order, so link numbers
// are handed out in the same order for the same tree.
func (im *importer) build(e *scanned) (digest.Hash, uint32, error) {
	n, err := NodeFromStat(&e.st, e.xattrs)
	if err != nil {
		return digest.Hash{}, 0, fmt.Errorf("import %s: %w", im.where(e), err)
	}
	if n.Type != node.TypeDir {
		// One node per inode, however many names it has.
		g := e.group
		if g.built {
			return g.hash, g.link, nil
		}
		n.Nlink = g.names
		switch n.Type {
		case node.TypeRegular:
			n.Size, n.Chunks = g.size, g.chunks
		case node.TypeSymlink:
			n.Target = e.target
		}
		if g.hash, err = im.w.PutNode(n); err != nil {
			return g.hash, 0, fmt.Errorf("import %s: %w", im.where(e), err)
		}
		if g.names > 1 {
			im.nextLink[g.hash]++
			g.link = im.nextLink[g.hash]
		}
		if g.cache != nil {
			g.cache.Node = g.hash
			if err := im.w.putStat(g.cacheKey, *g.cache); err != nil {
				return g.hash, 0, err
			}
		}
		g.built, g.chunks = true, nil
		return g.hash, g.link, nil
	}
	switch n.Type {
	case node.TypeDir:
		n.Entries = make([]node.Entry, len(e.children))
		for i, c := range e.children {
			h, link, err := im.build(c)
			if err != nil {
				return h, 0, err
			}
			n.Entries[i] = node.Entry{Name: c.name, Hash: h, Link: link}
		}
		e.children = nil
	}
	h, err := im.w.PutNode(n)
	if err != nil {
		return h, 0, fmt.Errorf("import %s: %w", im.where(e), err)
	}
	if p := im.want[e]; p != nil {
		*p = h
	}
	return h, 0, nil
}

func readDirNames(dirfd int) ([]string, error) {
	// Dup, because the os.File takes the descriptor and closes it.
	fd, err := unix.FcntlInt(uintptr(dirfd), unix.F_DUPFD_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "")
	defer f.Close()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	return f.Readdirnames(-1)
}

func readlinkat(dirfd int, name string) (string, error) {
	for size := 256; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", err
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
