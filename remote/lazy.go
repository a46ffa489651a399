package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/cas/pack"
	"github.com/forge-build/forge/remote/objstore"
)

// Lazy is a tree of the bucket read on demand: a fusefs.Source whose
// nodes come from the tree object (all of them, at once: a walk of the
// tree costs no more request) and whose chunks come from the store when
// it has them, else from the bucket by ranged GETs (growing for a
// sequential reader, see window), hashed before use and then stored, so
// that they are read once. It holds a lease on the tree in the bucket
// until Close, so that the bucket's GC keeps it.
type Lazy struct {
	r     *Remote
	st    *cas.Store
	tree  digest.Hash
	nodes map[digest.Hash]*node.Node
	idx   *chunkIndex

	mu       sync.Mutex
	w        *cas.Writer
	unstored map[digest.Hash][]byte // fetched, put, not yet flushed
	pending  int64                  // their bytes

	fetched, fetchedBytes atomic.Int64
	dropLease             func()

	// wanted is every chunk of the tree: what read-ahead keeps of a
	// window (a pack may hold other trees' chunks too).
	wanted map[digest.Hash]bool
	// reads are the read-ahead's state by pack (the map guarded by mu).
	reads map[digest.Hash]*packReads
}

// flushAt is how many fetched bytes are kept in memory before they are
// flushed to the store's packs.
const flushAt = 16 << 20

// OpenLazy prepares tree for reading: a lease, its tree object and the
// footers of its packs. Close it.
func (r *Remote) OpenLazy(ctx context.Context, st *cas.Store, tree digest.Hash) (*Lazy, error) {
	dropLease, err := r.holdLease(ctx, tree)
	if err != nil {
		return nil, err
	}
	l, err := r.openLazy(ctx, st, tree)
	if err != nil {
		dropLease()
		return nil, err
	}
	l.dropLease = dropLease
	return l, nil
}

func (r *Remote) openLazy(ctx context.Context, st *cas.Store, tree digest.Hash) (*Lazy, error) {
	raw, _, err := r.Bucket.Get(ctx, treeKey(tree))
	if err != nil {
		return nil, fmt.Errorf("tree %s: %w", tree.Short(), err)
	}
	obj, nodes, err := decodeTreeObject(tree, raw)
	if err != nil {
		return nil, err
	}
	idx := newChunkIndex(r.Bucket, r.Cache)
	if err := forEach(ctx, obj.Packs, 4, func(ctx context.Context, p packRef) error { return idx.addPack(ctx, p) }); err != nil {
		return nil, fmt.Errorf("tree %s: %w", tree.Short(), err)
	}
	w, err := st.NewWriter()
	if err != nil {
		return nil, err
	}
	wanted := map[digest.Hash]bool{}
	for _, n := range nodes {
		for _, c := range n.Chunks {
			if !c.IsHole() {
				wanted[c.Hash] = true
			}
		}
	}
	return &Lazy{r: r, st: st, tree: tree, nodes: nodes, idx: idx, w: w, unstored: map[digest.Hash][]byte{}, wanted: wanted,
		reads: map[digest.Hash]*packReads{}}, nil
}

// Node returns a node of the tree.
func (l *Lazy) Node(h digest.Hash) (*node.Node, error) {
	n, ok := l.nodes[h]
	if !ok {
		return nil, fmt.Errorf("node %s: %w", h.Short(), cas.ErrNotFound)
	}
	return n, nil
}

// ReadChunk appends chunk h to buf: from the store, or fetched.
func (l *Lazy) ReadChunk(h digest.Hash, buf []byte) ([]byte, error) {
	if out, ok, err := l.local(h, buf); ok {
		return out, err
	}
	at, ok := l.idx.lookup(h)
	if !ok {
		return buf, fmt.Errorf("chunk %s is in none of the packs tree object %s lists", h, treeKey(l.tree))
	}
	if at.flags&^pack.FlagZstd != 0 {
		return buf, fmt.Errorf("chunk %s in %s has flags %#x this forge cannot read", h, packKey(at.pack), at.flags)
	}
	// One fetch at a time per pack: a reader's parallel requests (the
	// kernel's readahead) wait for the window that holds their chunk
	// rather than fetch it again.
	unlock := l.lockPack(at.pack)
	defer unlock()
	if out, ok, err := l.local(h, buf); ok {
		return out, err // in the window another request fetched
	}
	off, end := l.window(at)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	data, err := l.r.Bucket.GetRange(ctx, packKey(at.pack), off, end-off)
	if err != nil {
		return buf, err
	}
	if int64(len(data)) != end-off {
		return buf, fmt.Errorf("%s: %d bytes at %d, want %d", packKey(at.pack), len(data), off, end-off)
	}
	start := len(buf)
	out, err := l.st.DecodeChunk(h, data[at.off-off:at.off-off+int64(at.length)], at.flags, at.raw, buf)
	if err != nil {
		l.idx.forget(at.pack)
		return buf, &ChunkError{Chunk: h, Object: packKey(at.pack), Offset: at.off, Err: err}
	}
	l.fetched.Add(1)
	l.fetchedBytes.Add(int64(at.length))
	l.keep(h, data[at.off-off:at.off-off+int64(at.length)], int(at.raw), at.flags, out[start:])
	// The window's other chunks that the tree needs, each checked: one
	// that is damaged is only not kept (reading it fails, naming it).
	var plain []byte
	for _, e := range l.idx.within(at.pack, off, end) {
		if e.Hash == h || !l.wanted[e.Hash] || l.has(e.Hash) {
			continue
		}
		stored := data[e.Offset-off : e.Offset-off+int64(e.Length)]
		if plain, err = l.st.DecodeChunk(e.Hash, stored, e.Flags, e.RawLength, plain[:0]); err != nil {
			continue
		}
		l.fetched.Add(1)
		l.fetchedBytes.Add(int64(e.Length))
		l.keep(e.Hash, stored, int(e.RawLength), e.Flags, plain)
	}
	return out, nil
}

// Read-ahead: a miss at or just past the furthest byte of its pack read so
// far reads a window twice as large as the last (from minWindow up to
// maxWindow), as the kernel's readahead grows; a miss behind it (a gap
// parallel reads left) reads a window of the current size; any other miss
// reads its chunk alone and starts over, so a lone read of a file costs
// one chunk. No window reads through a chunk held already. Packs hold chunks in the order they were pushed, a walk
// of the tree, so a reader of the whole tree (tar, a copy stage) reads on
// through them: one request per window, not per chunk (17,152 requests
// and 77 s for the Debian tree before).
const (
	minWindow = 256 << 10
	maxWindow = 8 << 20
)

// packReads is what Lazy knows of its reads of one pack.
type packReads struct {
	mu     sync.Mutex // held while a window of the pack is fetched
	hi     int64      // the furthest byte read
	window int64      // the size of the last window
}

// lockPack takes pack h's fetch lock.
func (l *Lazy) lockPack(h digest.Hash) (unlock func()) {
	l.mu.Lock()
	pr := l.reads[h]
	if pr == nil {
		pr = &packReads{}
		l.reads[h] = pr
	}
	l.mu.Unlock()
	pr.mu.Lock()
	return pr.mu.Unlock
}

// window returns the byte range of at's pack to read for chunk at: at
// least the chunk, at most to the end of the pack's blobs. The pack's
// fetch lock is held.
func (l *Lazy) window(at chunkAt) (off, end int64) {
	l.mu.Lock()
	pr := l.reads[at.pack]
	l.mu.Unlock()
	length := int64(at.length)
	size := length
	switch {
	case at.off < pr.hi:
		// Behind the furthest read: a gap that reads running in
		// parallel left (the kernel's readahead asks for a file's
		// next MiBs while its first are read), to be filled in the
		// window's size, up to what is held already.
		if pr.window > 0 {
			size = min(max(pr.window, minWindow), maxWindow)
		}
	case pr.hi > 0 && at.off <= pr.hi+maxWindow:
		// At or a little past it: sequential.
		size = min(max(2*pr.window, minWindow), maxWindow)
	default:
		pr.window = 0
	}
	end = l.idx.chunkEnd(at.pack, at.off+max(size, length))
	if p, ok := l.idx.pack(at.pack); ok && p.FooterSize > 0 {
		end = min(end, max(p.Size-p.FooterSize, at.off+length))
	}
	// Not through what is held already: it would be fetched again.
	for _, e := range l.idx.within(at.pack, at.off+length, end) {
		if l.has(e.Hash) {
			end = e.Offset
			break
		}
	}
	if at.off >= pr.hi {
		pr.window = size
	}
	pr.hi = max(pr.hi, end)
	return at.off, end
}

// local appends chunk h to buf when it was fetched already or is in the
// store; ok is false when it must be fetched.
func (l *Lazy) local(h digest.Hash, buf []byte) (out []byte, ok bool, err error) {
	l.mu.Lock()
	data, ok := l.unstored[h]
	l.mu.Unlock()
	if ok {
		return append(buf, data...), true, nil
	}
	if ok, err := l.st.HasChunk(h); err == nil && ok {
		// Stored by another writer, which the store's GC may have
		// freed since: then it is fetched like any other.
		if out, err := l.st.ReadChunk(h, buf); !errors.Is(err, cas.ErrNotFound) {
			return out, true, err
		}
	}
	return buf, false, nil
}

// has reports whether chunk h was fetched already or is in the store.
func (l *Lazy) has(h digest.Hash) bool {
	l.mu.Lock()
	_, ok := l.unstored[h]
	l.mu.Unlock()
	if ok {
		return true
	}
	ok, err := l.st.HasChunk(h)
	return err == nil && ok
}

// keep stores a fetched chunk as the bucket keeps it (stored, rawLength
// and flags), and its plain bytes until they can be read from the store;
// what cannot be stored is only not kept.
func (l *Lazy) keep(h digest.Hash, stored []byte, rawLength int, flags uint8, plain []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, ok := l.unstored[h]; ok {
		return
	}
	if _, err := l.w.PutStoredChunk(h, stored, rawLength, flags); err != nil {
		return
	}
	l.unstored[h] = bytes.Clone(plain) // plain is the caller's buffer
	l.pending += int64(len(stored))
	if l.pending >= flushAt {
		l.flushLocked()
	}
}

func (l *Lazy) flushLocked() {
	if l.w.Flush() == nil {
		clear(l.unstored)
		l.pending = 0
	}
}

// LazyStats count what a lazy tree fetched.
type LazyStats struct {
	Chunks   int64
	Bytes    int64
	Requests objstore.Stats
}

// Stats returns the counts so far.
func (l *Lazy) Stats() LazyStats {
	return LazyStats{Chunks: l.fetched.Load(), Bytes: l.fetchedBytes.Load(), Requests: l.r.Bucket.Stats()}
}

// Close keeps what was fetched in the store (until a GC finds no ref
// that needs it) and drops the lease.
func (l *Lazy) Close() error {
	l.mu.Lock()
	l.flushLocked()
	l.w.Close()
	l.mu.Unlock()
	l.dropLease()
	return nil
}
