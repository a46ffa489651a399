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
// it has them, else from the bucket, one ranged GET each, hashed before
// use and then stored, so that they are read once. It holds a lease on
// the tree in the bucket until Close, so that the bucket's GC keeps it.
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
	return &Lazy{r: r, st: st, tree: tree, nodes: nodes, idx: idx, w: w, unstored: map[digest.Hash][]byte{}}, nil
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
	l.mu.Lock()
	if data, ok := l.unstored[h]; ok {
		l.mu.Unlock()
		return append(buf, data...), nil
	}
	l.mu.Unlock()
	if ok, err := l.st.HasChunk(h); err == nil && ok {
		// Stored by another writer, which the store's GC may have
		// freed since: then it is fetched like any other.
		if out, err := l.st.ReadChunk(h, buf); !errors.Is(err, cas.ErrNotFound) {
			return out, err
		}
	}
	at, ok := l.idx.lookup(h)
	if !ok {
		return buf, fmt.Errorf("chunk %s is in none of the packs tree object %s lists", h, treeKey(l.tree))
	}
	if at.flags&^pack.FlagZstd != 0 {
		return buf, fmt.Errorf("chunk %s in %s has flags %#x this forge cannot read", h, packKey(at.pack), at.flags)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	data, err := l.r.Bucket.GetRange(ctx, packKey(at.pack), at.off, int64(at.length))
	if err != nil {
		return buf, err
	}
	if int64(len(data)) != int64(at.length) {
		return buf, fmt.Errorf("%s: %d bytes at %d, want %d", packKey(at.pack), len(data), at.off, at.length)
	}
	start := len(buf)
	out, err := l.st.DecodeChunk(h, data, at.flags, at.raw, buf)
	if err != nil {
		return buf, &ChunkError{Chunk: h, Object: packKey(at.pack), Offset: at.off, Err: err}
	}
	l.fetched.Add(1)
	l.fetchedBytes.Add(int64(len(data)))
	l.keep(h, data, int(at.raw), at.flags, out[start:])
	return out, nil
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
