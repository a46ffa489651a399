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

// readAt fills dest with the file's content from off and returns how many
// bytes it filled: fewer than len(dest) only at the end of the file. It
// reads only the chunks the range touches, and none for holes.
func (c *Cache) readAt(info *nodeInfo, dest []byte, off int64) (int, error) {
	n := info.node
	if off < 0 {
		return 0, fmt.Errorf("negative offset %d", off)
	}
	start := uint64(off)
	if start >= n.Size {
		return 0, nil
	}
	end := min(start+uint64(len(dest)), n.Size)
	pos := start
	for i := info.chunkAt(start); pos < end; i++ {
		ch := n.Chunks[i]
		chStart, chEnd := info.offsets[i], info.offsets[i+1]
		lo, hi := pos-chStart, min(end, chEnd)-chStart
		out := dest[pos-start : pos-start+(hi-lo)]
		if ch.IsHole() {
			clear(out)
		} else {
			data, err := c.chunk(ch.Hash)
			if err != nil {
				return int(pos - start), err
			}
			if uint64(len(data)) != ch.Size {
				return int(pos - start), &ChunkSizeError{Chunk: ch.Hash.String(), Got: len(data), Want: int(ch.Size)}
			}
			copy(out, data[lo:hi])
		}
		pos += hi - lo
	}
	return int(end - start), nil
}

// readaheadWindow is how far past the furthest byte read so far a
// sequential reader's chunks are read ahead, in parallel with its reads.
// The kernel's own readahead on a FUSE file is 128 KiB, too little to keep
// the store's disk and both hashing cores busy.
var readaheadWindow = uint64(envInt("FUSEFS_WIN", 8<<20))

// readahead tracks one file's sequential reading, to read ahead of it.
type readahead struct {
	mu       sync.Mutex
	frontier uint64 // end of the furthest read so far
	next     int    // first chunk not yet read ahead
}

// advance records a read of [off, end) of file info and starts reading
// ahead the chunks after it, up to readaheadWindow past the frontier, as
// far as the cache allows prefetches. Reads that land far beyond the
// frontier (seeks) move it without reading ahead.
func (ra *readahead) advance(c *Cache, info *nodeInfo, off, end uint64) {
	n := info.node
	end = min(end, n.Size)
	if end <= off {
		return
	}
	ra.mu.Lock()
	defer ra.mu.Unlock()
	sequential := off <= ra.frontier+readaheadWindow
	if end > ra.frontier {
		ra.frontier = end
	}
	if !sequential {
		return
	}
	i := max(ra.next, info.chunkAt(end-1)+1)
	limit := ra.frontier + readaheadWindow
	for ; i < len(n.Chunks) && info.offsets[i] < limit; i++ {
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

// isRegular reports whether info is a regular file's node.
func (info *nodeInfo) isRegular() bool { return info.node.Type == node.TypeRegular }
