package fusefs

import (
	"fmt"
	"sort"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/node"
)

// ChunkSizeError is a chunk whose stored content is not as long as the node
// that lists it says: the store and the tree disagree.
type ChunkSizeError struct {
	Chunk     string
	Got, Want int
}

func (e *ChunkSizeError) Error() string {
	return fmt.Sprintf("chunk %s holds %d bytes, the file lists it with %d", e.Chunk, e.Got, e.Want)
}

// chunkAt returns the index of the chunk of file info holding byte off,
// which must be below the file's size.
func (info *nodeInfo) chunkAt(off uint64) int {
	chunks := info.node.Chunks
	return sort.Search(len(chunks), func(i int) bool { return info.offsets[i+1] > off })
}

// read returns the file's content from off, up to len(dest) bytes: fewer
// only at the end of the file. The bytes are dest's, or, when the range
// lies within one stored chunk, the cached chunk's own, which saves a copy
// (callers must not modify them). It reads only the chunks the range
// touches, and none for holes.
func (c *Cache) read(info *nodeInfo, dest []byte, off int64) ([]byte, error) {
	n := info.node
	if off < 0 {
		return nil, fmt.Errorf("negative offset %d", off)
	}
	start := uint64(off)
	if start >= n.Size {
		return dest[:0], nil
	}
	end := min(start+uint64(len(dest)), n.Size)
	first := info.chunkAt(start)
	if ch := n.Chunks[first]; !ch.IsHole() && end <= info.offsets[first+1] {
		data, err := c.chunkData(ch)
		if err != nil {
			return nil, err
		}
		lo := start - info.offsets[first]
		return data[lo : lo+end-start], nil
	}
	pos := start
	for i := first; pos < end; i++ {
		ch := n.Chunks[i]
		chStart, chEnd := info.offsets[i], info.offsets[i+1]
		lo, hi := pos-chStart, min(end, chEnd)-chStart
		out := dest[pos-start : pos-start+(hi-lo)]
		if ch.IsHole() {
			clear(out)
		} else {
			data, err := c.chunkData(ch)
			if err != nil {
				return nil, err
			}
			copy(out, data[lo:hi])
		}
		pos += hi - lo
	}
	return dest[:end-start], nil
}

// chunkData returns a data chunk's content, checked against the size the
// file lists for it.
func (c *Cache) chunkData(ch node.Chunk) ([]byte, error) {
	data, err := c.chunk(ch.Hash)
	if err != nil {
		return nil, err
	}
	if uint64(len(data)) != ch.Size {
		return nil, &ChunkSizeError{Chunk: ch.Hash.String(), Got: len(data), Want: int(ch.Size)}
	}
	return data, nil
}

// readaheadWindow is how far past the furthest byte read so far a
// sequential reader's chunks are read ahead, in parallel with its reads.
// The kernel's own readahead on a FUSE file is 128 KiB, too little to keep
// the store's disk and both hashing cores busy.
const readaheadWindow = 8 << 20

// readahead tracks one file's reads, to read ahead of a reader that
// streams through it.
type readahead struct {
	mu      sync.Mutex
	lastEnd uint64 // where the last read ended
	next    int    // first chunk not yet read ahead
}

// advance records a read of [off, end) of file info. When the read lies
// near the previous one (the kernel sends a streaming reader's requests a
// few at a time, not always in order), it starts reading ahead the chunks
// after it, up to readaheadWindow past its end, as far as the cache allows
// prefetches. Reads that jump elsewhere read nothing ahead: random access
// to a large file reads only what it asks for.
func (ra *readahead) advance(c *Cache, info *nodeInfo, off, end uint64) {
	n := info.node
	end = min(end, n.Size)
	if end <= off {
		return
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	streaming := off <= ra.lastEnd+readaheadWindow && ra.lastEnd <= end+readaheadWindow
	ra.lastEnd = end
	after := info.chunkAt(end-1) + 1
	if !streaming {
		ra.next = after
		return
	}
	i := max(ra.next, after)
	for limit := end + readaheadWindow; i < len(n.Chunks) && info.offsets[i] < limit; i++ {
		if ch := n.Chunks[i]; !ch.IsHole() && !c.prefetch(ch.Hash) {
			break
		}
	}
	ra.next = i
}

// seekData answers lseek(SEEK_DATA) and lseek(SEEK_HOLE) from the file's
// chunk list: holes are the hole chunks, plus the implicit hole at the end
// of the file. Offsets at or beyond the end fail with ENXIO, as on ext4.
func seekData(info *nodeInfo, off uint64, whence int) (uint64, error) {
	n := info.node
	if off >= n.Size {
		return 0, unix.ENXIO
	}
	i := info.chunkAt(off)
	switch whence {
	case unix.SEEK_DATA:
		for ; i < len(n.Chunks); i++ {
			if !n.Chunks[i].IsHole() {
				return max(off, info.offsets[i]), nil
			}
		}
		return 0, unix.ENXIO
	case unix.SEEK_HOLE:
		for ; i < len(n.Chunks); i++ {
			if n.Chunks[i].IsHole() {
				return max(off, info.offsets[i]), nil
			}
		}
		return n.Size, nil
	}
	return 0, unix.EINVAL
}
