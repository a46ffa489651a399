package fusefs

import (
	"container/list"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// Source is what a mount reads; *cas.Store satisfies it.
type Source interface {
	// Node returns the verified node named h. Callers must not modify it.
	Node(h digest.Hash) (*node.Node, error)
	// ReadChunk appends chunk h's verified content to buf.
	ReadChunk(h digest.Hash, buf []byte) ([]byte, error)
}

// Cache sizes used by MountReadOnly when it is given a Source that is not a
// *Cache, and by NewCache for a maxNodes of zero or less.
const (
	// DefaultCacheNodes decoded nodes: a few tens of MB for typical trees.
	DefaultCacheNodes = 1 << 16
	// DefaultCacheChunkBytes of chunk content: enough for the chunks that
	// straddle the kernel's read requests of every file being read at once,
	// so that no chunk is read and hashed twice in a row.
	DefaultCacheChunkBytes = 32 << 20
)

// Cache is a Source that keeps decoded nodes and recently read chunks in
// memory. Make one per Source and give it to every mount of that Source:
// the mounts then share what it holds. It is safe for concurrent use.
//
// Concurrent misses for one hash wait for a single read of the Source.
// Errors are not cached: a failed read is tried again next time.
type Cache struct {
	src    Source
	nodes  *lru[*nodeInfo]
	chunks *lru[[]byte]

	// prefetching holds a token per chunk being read ahead of the reader,
	// which bounds how many such reads run at once.
	prefetching chan struct{}
}

var _ Source = (*Cache)(nil)

// NewCache wraps src in a cache of at most maxNodes decoded nodes
// (DefaultCacheNodes if maxNodes ≤ 0) and DefaultCacheChunkBytes of chunks.
func NewCache(src Source, maxNodes int) *Cache {
	if maxNodes <= 0 {
		maxNodes = DefaultCacheNodes
	}
	return &Cache{
		src:         src,
		nodes:       newLRU(int64(maxNodes), func(*nodeInfo) int64 { return 1 }),
		chunks:      newLRU(DefaultCacheChunkBytes, func(b []byte) int64 { return int64(len(b)) }),
		prefetching: make(chan struct{}, 2*runtime.GOMAXPROCS(0)),
	}
}

// Node returns the decoded node named h, from memory when it can.
func (c *Cache) Node(h digest.Hash) (*node.Node, error) {
	info, err := c.info(h)
	if err != nil {
		return nil, err
	}
	return info.node, nil
}

// ReadChunk appends chunk h's content to buf, from memory when it can.
func (c *Cache) ReadChunk(h digest.Hash, buf []byte) ([]byte, error) {
	data, err := c.chunk(h)
	if err != nil {
		return buf, err
	}
	return append(buf, data...), nil
}

// CacheStats counts what a Cache answered from memory and what it read.
type CacheStats struct {
	NodeHits, NodeMisses   int64
	ChunkHits, ChunkMisses int64
	Nodes                  int64 // decoded nodes held
	ChunkBytes             int64 // chunk content held
}

// Stats returns the counts so far.
func (c *Cache) Stats() CacheStats {
	var s CacheStats
	s.NodeHits, s.NodeMisses, s.Nodes = c.nodes.stats()
	s.ChunkHits, s.ChunkMisses, s.ChunkBytes = c.chunks.stats()
	return s
}

// nodeInfo is a decoded node and what mounts derive from it, computed once
// per decode rather than once per request.
type nodeInfo struct {
	hash digest.Hash
	node *node.Node

	// Regular files: offsets[i] is where chunk i starts and
	// offsets[len(Chunks)] is the size, so that a read finds its first
	// chunk by binary search. blocks is the allocation stat reports, in
	// 512-byte units: the stored (non-hole) bytes in 4 KiB blocks.
	offsets []uint64
	blocks  uint64

	// Directories: how many entries are directories, or -1 until counted
	// (a directory's st_nlink is 2 plus that).
	subdirs atomic.Int64
}

func newNodeInfo(h digest.Hash, n *node.Node) *nodeInfo {
	info := &nodeInfo{hash: h, node: n}
	info.subdirs.Store(-1)
	if n.Type == node.TypeRegular {
		info.offsets = make([]uint64, len(n.Chunks)+1)
		var off, data uint64
		for i, ch := range n.Chunks {
			info.offsets[i] = off
			off += ch.Size
			if !ch.IsHole() {
				data += ch.Size
			}
		}
		info.offsets[len(n.Chunks)] = off
		info.blocks = (data + 4095) / 4096 * 8
	}
	return info
}

// info returns the decoded node h with its derived data.
func (c *Cache) info(h digest.Hash) (*nodeInfo, error) {
	return c.nodes.get(h, func() (*nodeInfo, error) {
		n, err := c.src.Node(h)
		if err != nil {
			return nil, err
		}
		return newNodeInfo(h, n), nil
	})
}

// chunk returns chunk h's content. The slice is shared: never modify it.
func (c *Cache) chunk(h digest.Hash) ([]byte, error) {
	return c.chunks.get(h, func() ([]byte, error) {
		return c.src.ReadChunk(h, nil)
	})
}

// prefetch starts reading chunk h into the cache in the background. It
// reports false, doing nothing, when as many prefetches as allowed are
// running. A failed prefetch is dropped: the read that needs the chunk
// meets the error itself.
func (c *Cache) prefetch(h digest.Hash) bool {
	if c.chunks.has(h) {
		return true
	}
	select {
	case c.prefetching <- struct{}{}:
	default:
		return false
	}
	go func() {
		defer func() { <-c.prefetching }()
		c.chunk(h)
	}()
	return true
}

// subdirs returns how many of directory info's entries are directories,
// reading each entry's node (through the cache) the first time.
func (c *Cache) subdirs(info *nodeInfo) (int64, error) {
	if n := info.subdirs.Load(); n >= 0 {
		return n, nil
	}
	var n int64
	for _, e := range info.node.Entries {
		child, err := c.info(e.Hash)
		if err != nil {
			return 0, fmt.Errorf("entry %q: %w", e.Name, err)
		}
		if child.node.Type == node.TypeDir {
			n++
		}
	}
	info.subdirs.Store(n)
	return n, nil
}

// lru is a map from hashes to values bounded by the values' total cost,
// dropping the least recently used first, with one load in flight per key.
type lru[V any] struct {
	max  int64
	cost func(V) int64

	mu      sync.Mutex
	used    int64
	items   map[digest.Hash]*list.Element // of *lruItem[V]
	order   list.List                     // most recently used first
	loading map[digest.Hash]*lruLoad[V]
	hits    int64
	misses  int64
}

type lruItem[V any] struct {
	key  digest.Hash
	val  V
	cost int64
}

type lruLoad[V any] struct {
	done chan struct{}
	val  V
	err  error
}

func newLRU[V any](max int64, cost func(V) int64) *lru[V] {
	return &lru[V]{
		max:     max,
		cost:    cost,
		items:   map[digest.Hash]*list.Element{},
		loading: map[digest.Hash]*lruLoad[V]{},
	}
}

// get returns the value of key, calling load (once, however many callers
// ask at the same time) when it is not held.
func (c *lru[V]) get(key digest.Hash, load func() (V, error)) (V, error) {
	c.mu.Lock()
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		c.hits++
		v := el.Value.(*lruItem[V]).val
		c.mu.Unlock()
		return v, nil
	}
	if l, ok := c.loading[key]; ok {
		c.hits++
		c.mu.Unlock()
		<-l.done
		return l.val, l.err
	}
	l := &lruLoad[V]{done: make(chan struct{})}
	c.loading[key] = l
	c.misses++
	c.mu.Unlock()

	l.val, l.err = load()

	c.mu.Lock()
	delete(c.loading, key)
	if l.err == nil {
		c.add(key, l.val)
	}
	c.mu.Unlock()
	close(l.done)
	return l.val, l.err
}

// add inserts a value; c.mu is held.
func (c *lru[V]) add(key digest.Hash, v V) {
	cost := c.cost(v)
	if cost > c.max {
		return
	}
	if el, ok := c.items[key]; ok {
		c.order.MoveToFront(el)
		return
	}
	c.items[key] = c.order.PushFront(&lruItem[V]{key: key, val: v, cost: cost})
	c.used += cost
	for c.used > c.max {
		el := c.order.Back()
		it := el.Value.(*lruItem[V])
		c.order.Remove(el)
		delete(c.items, it.key)
		c.used -= it.cost
	}
}

// has reports whether key is held or being loaded.
func (c *lru[V]) has(key digest.Hash) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	_, held := c.items[key]
	_, loading := c.loading[key]
	return held || loading
}

func (c *lru[V]) stats() (hits, misses, used int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.hits, c.misses, c.used
}
