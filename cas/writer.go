package cas

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/chunker"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/cas/pack"
)

// Writer adds chunks and nodes to a store. Chunks go into a pack file of
// the Writer's own; index entries pointing into a pack are committed only
// after the pack is fsynced and renamed into place, and refs only by Commit,
// which syncs the index. A process killed at any moment so leaves either
// nothing or garbage that GC frees, never an index entry without its data.
//
// A Writer may be used by several goroutines at once. Until Close, GC treats
// everything the Writer wrote or found already stored as live.
type Writer struct {
	s *Store

	mu   sync.Mutex
	pack *packOutput // nil between packs
	// pending are the index entries of blobs in finished packs and of
	// the current pack, committed by the next flush. They are kept here,
	// not in a pebble batch, so that a Writer outlives an index rebuilt
	// under it.
	pending []indexEntry
	stats   WriteStats
	err     error // first error; the Writer refuses work after it
	closed  bool

	// held is what GC must keep while the Writer is open. It has its own
	// lock because GC reads it while holding Store.gcMu, and writers take
	// gcMu while holding mu: one lock for both would deadlock.
	heldMu sync.Mutex
	held   map[digest.Hash]struct{}

	// compress is the store's compression setting when the Writer
	// started: chunks that zstd shrinks by an eighth or more are stored
	// compressed.
	compress bool
}

// WriteStats count a Writer's work.
type WriteStats struct {
	Chunks     int   // chunks put
	ChunkBytes int64 // their bytes
	NewChunks  int   // chunks not stored before
	NewBytes   int64 // their bytes
	// StoredBytes is what the new chunks take in packs: NewBytes, less
	// what compression saved.
	StoredBytes int64
	Nodes       int // nodes put
	NewNodes    int // nodes not stored before
	Packs       int // packs written
}

// NewWriter starts a Writer. Close it when done, whether or not it
// committed.
func (s *Store) NewWriter() (*Writer, error) {
	c, err := s.Compression()
	if err != nil {
		return nil, err
	}
	w := &Writer{s: s, held: map[digest.Hash]struct{}{}, compress: c == CompressionZstd}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, ErrClosed
	}
	s.writers[w] = struct{}{}
	return w, nil
}

func (w *Writer) fail(err error) error {
	if w.err == nil {
		w.err = err
	}
	return err
}

func (w *Writer) usable() error {
	if w.closed {
		return ErrClosed
	}
	if w.err != nil {
		return fmt.Errorf("writer failed earlier: %w", w.err)
	}
	return nil
}

func (w *Writer) isHeld(h digest.Hash) bool {
	w.heldMu.Lock()
	defer w.heldMu.Unlock()
	_, ok := w.held[h]
	return ok
}

func (w *Writer) hold(h digest.Hash) {
	w.heldMu.Lock()
	w.held[h] = struct{}{}
	w.heldMu.Unlock()
}

// heldSnapshot adds what the Writer holds to live; GC calls it.
func (w *Writer) addHeld(live map[digest.Hash]struct{}) {
	w.heldMu.Lock()
	defer w.heldMu.Unlock()
	for h := range w.held {
		live[h] = struct{}{}
	}
}

// storedOrHold reports whether key is in the index and, if so, holds h
// before GC can run, so that what the caller dedups against stays.
func (w *Writer) storedOrHold(key []byte, h digest.Hash) (bool, error) {
	w.s.gcMu.RLock()
	defer w.s.gcMu.RUnlock()
	ok, err := w.s.has(key)
	if ok {
		w.hold(h)
	}
	return ok, err
}

// HasChunk reports whether chunk h is stored and, if so, keeps it from GC
// until the Writer closes: a caller that will not put a chunk it found
// stored (a pull) still gets a tree whose chunks are all there.
func (w *Writer) HasChunk(h digest.Hash) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return false, err
	}
	if w.isHeld(h) {
		return true, nil
	}
	return w.storedOrHold(hashKey(prefixChunk, h), h)
}

// PutChunk stores data as the chunk h (its SHA-256, which the caller has
// computed). It reports whether the chunk was new to the store.
func (w *Writer) PutChunk(h digest.Hash, data []byte) (bool, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	key, have, err := w.claimChunk(h, len(data))
	if err != nil || have {
		return false, err
	}
	stored, flags := data, uint8(0)
	if w.compress {
		// Outside the lock: the callers that hash and chunk in
		// parallel compress in parallel too.
		w.mu.Unlock()
		stored, flags = w.s.codec.Compress(data, nil)
		w.mu.Lock()
		if err := w.usable(); err != nil {
			return false, err
		}
		if w.isHeld(h) {
			return false, nil // put by another goroutine meanwhile
		}
	}
	if err := w.addChunk(key, h, stored, len(data), flags); err != nil {
		return false, err
	}
	return true, nil
}

// PutStoredChunk stores chunk h as a pack holds it: stored (zstd when
// flags has pack.FlagZstd, rawLength bytes once decoded), which the caller
// has checked decodes to bytes hashing to h. A pull keeps chunks as the
// bucket sends them, compressed or not, whatever the store's setting: any
// store reads both. It reports whether the chunk was new to the store.
func (w *Writer) PutStoredChunk(h digest.Hash, stored []byte, rawLength int, flags uint8) (bool, error) {
	if flags&^pack.FlagZstd != 0 {
		return false, fmt.Errorf("chunk %s: flags %#x are not a chunk's", h, flags)
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	key, have, err := w.claimChunk(h, rawLength)
	if err != nil || have {
		return false, err
	}
	if err := w.addChunk(key, h, stored, rawLength, flags); err != nil {
		return false, err
	}
	return true, nil
}

// claimChunk counts a chunk put and reports whether the store has it
// already (which it then holds for the Writer); otherwise key is its index
// key. w.mu is held.
func (w *Writer) claimChunk(h digest.Hash, rawLength int) (key []byte, have bool, err error) {
	if err := w.usable(); err != nil {
		return nil, false, err
	}
	w.stats.Chunks++
	w.stats.ChunkBytes += int64(rawLength)
	if w.isHeld(h) {
		return nil, true, nil
	}
	key = hashKey(prefixChunk, h)
	have, err = w.storedOrHold(key, h)
	if err != nil {
		return nil, false, w.fail(err)
	}
	return key, have, nil
}

// addChunk appends a new chunk, as stored, and counts it. w.mu is held.
func (w *Writer) addChunk(key []byte, h digest.Hash, stored []byte, rawLength int, flags uint8) error {
	if err := w.addBlob(key, h, stored, rawLength, flags); err != nil {
		return err
	}
	w.stats.NewChunks++
	w.stats.NewBytes += int64(rawLength)
	w.stats.StoredBytes += int64(len(stored))
	return nil
}

// addBlob appends a blob to the Writer's pack, starting one if needed, and
// queues its index entry.
func (w *Writer) addBlob(key []byte, h digest.Hash, data []byte, rawLength int, flags uint8) error {
	var err error
	if w.pack == nil {
		if w.pack, err = w.s.newPackOutput(); err != nil {
			return w.fail(err)
		}
		w.stats.Packs++
	}
	loc, err := w.pack.add(h, data, rawLength, flags)
	if err != nil {
		return w.fail(err)
	}
	w.pending = append(w.pending, indexEntry{key: key, value: encodeBlobRecord(loc, data)})
	w.hold(h)
	if w.pack.size() >= w.s.opts.PackSize {
		return w.flushLocked(pebble.NoSync)
	}
	return nil
}

// PutNode stores n and returns its hash. The chunks and child nodes it
// names must have been put (or be stored) before.
func (w *Writer) PutNode(n *node.Node) (digest.Hash, error) {
	h, enc, err := n.Hash()
	if err != nil {
		return h, err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return h, err
	}
	w.stats.Nodes++
	if w.isHeld(h) {
		return h, nil
	}
	key := hashKey(prefixNode, h)
	stored, err := w.storedOrHold(key, h)
	if err != nil {
		return h, w.fail(err)
	}
	if stored {
		return h, nil
	}
	// Into the pack, beside the chunks it names: the index only locates
	// it, and can be rebuilt from the pack's footer.
	if err := w.addBlob(key, h, enc, len(enc), pack.FlagNode); err != nil {
		return h, err
	}
	w.stats.NewNodes++
	return h, nil
}

// putStat records an import's stat-cache entry with the Writer's next
// commit.
func (w *Writer) putStat(key []byte, e statEntry) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	w.pending = append(w.pending, indexEntry{key: key, value: e.encode()})
	return nil
}

// Commit makes everything put so far durable and points each of refs at
// tree. The Writer stays usable for more puts and commits.
func (w *Writer) Commit(tree digest.Hash, refs ...string) error {
	changes := make([]refChange, len(refs))
	for i, r := range refs {
		changes[i] = refChange{Name: r, Tree: tree}
	}
	return w.commit([]digest.Hash{tree}, changes)
}

// commit checks that every tree is held or stored, makes everything put
// so far durable, and then sets the refs, each to its own tree (Import's
// SubRefs point refs at trees inside the one it commits).
func (w *Writer) commit(trees []digest.Hash, changes []refChange) error {
	for _, r := range changes {
		if err := ValidRefName(r.Name); err != nil {
			return err
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	for _, tree := range trees {
		if w.isHeld(tree) {
			continue
		}
		ok, err := w.storedOrHold(hashKey(prefixNode, tree), tree)
		if err != nil {
			return w.fail(err)
		}
		if !ok {
			return fmt.Errorf("commit tree %s: %w", tree, ErrNotFound)
		}
	}
	// The ref log is the truth about refs and the index a cache of the
	// packs: the packs and the index entries go first (synced; pebble's
	// log is sequential, so this makes every batch the Writer committed
	// before durable too), then the ref log record that makes the refs
	// exist. A crash in between leaves garbage, never a ref to data the
	// index lacks. GC is held off throughout.
	w.s.gcMu.RLock()
	defer w.s.gcMu.RUnlock()
	if err := w.flushHeld(pebble.Sync); err != nil {
		return err
	}
	if len(changes) == 0 {
		return nil
	}
	if err := w.s.setRefs(changes); err != nil {
		return w.fail(err)
	}
	return nil
}

// Flush makes what the Writer put so far durable and known to the index,
// without a ref: it stays until a GC finds nothing that needs it. For
// content worth keeping while no tree of the store names it yet (chunks a
// lazy mount fetched).
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.usable(); err != nil {
		return err
	}
	return w.flushLocked(pebble.NoSync)
}

// Stats returns the Writer's counters.
func (w *Writer) Stats() WriteStats {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stats
}

// Close releases the Writer. What it did not commit is discarded (chunks in
// packs already renamed become garbage for GC).
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return nil
	}
	w.closed = true
	w.discardPack()
	w.pending = nil
	w.s.mu.Lock()
	delete(w.s.writers, w)
	w.s.mu.Unlock()
	w.heldMu.Lock()
	w.held = nil
	w.heldMu.Unlock()
	return nil
}

// Abort is Close; the name says the intent at call sites that give up.
func (w *Writer) Abort() { w.Close() }

func (w *Writer) discardPack() {
	if w.pack != nil {
		w.pack.abort()
		w.pack = nil
	}
}

// flushLocked finishes the current pack, makes it durable under its final
// name, and only then commits the index entries that point into it.
func (w *Writer) flushLocked(sync *pebble.WriteOptions) error {
	// GC deletes pack files the index does not know: hold it off from the
	// rename until the index knows the pack.
	w.s.gcMu.RLock()
	defer w.s.gcMu.RUnlock()
	return w.flushHeld(sync)
}

// flushHeld is flushLocked with gcMu already held shared.
func (w *Writer) flushHeld(sync *pebble.WriteOptions) error {
	if w.pack != nil {
		meta, err := w.pack.finish()
		if err != nil {
			w.discardPack()
			return w.fail(err)
		}
		w.pending = append(w.pending, indexEntry{key: hashKeyPack(w.pack.id), value: meta.encode()})
		w.pack = nil
	}
	w.s.dbMu.RLock()
	defer w.s.dbMu.RUnlock()
	if w.s.db == nil {
		return w.fail(ErrClosed)
	}
	switch {
	case len(w.pending) > 0:
		b := w.s.db.NewBatch()
		defer b.Close()
		for _, e := range w.pending {
			b.Set(e.key, e.value, nil)
		}
		if err := b.Commit(sync); err != nil {
			return w.fail(fmt.Errorf("store %s: commit index: %w", w.s.dir, w.s.indexError(err)))
		}
		w.pending = w.pending[:0]
	case sync == pebble.Sync:
		// Nothing new, but the caller wants what was committed before
		// made durable: a synced log record does that.
		if err := w.s.db.LogData([]byte("sync"), pebble.Sync); err != nil {
			return w.fail(fmt.Errorf("store %s: sync index: %w", w.s.dir, w.s.indexError(err)))
		}
	}
	return nil
}

// indexEntry is one key and value a Writer will commit to the index.
type indexEntry struct{ key, value []byte }

func hashKeyPack(id packID) []byte {
	return append([]byte{prefixPack}, id[:]...)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil && !errors.Is(err, os.ErrInvalid) {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// PutFile stores the content of f (its first size bytes) and returns its
// chunk list and length: what a regular file's node needs. Holes the
// filesystem reports, and all-zero chunks, become holes.
func (w *Writer) PutFile(ctx context.Context, f *os.File, size int64) ([]node.Chunk, uint64, error) {
	ck, _ := w.s.chunkers.Get().(*chunker.Chunker)
	if ck == nil {
		ck = chunker.New(nil, chunker.DefaultParams)
	}
	defer func() {
		ck.Reset(nil) // drop f
		w.s.chunkers.Put(ck)
	}()
	return w.putContent(ctx, ck, f, size, nil)
}

// putContent is PutFile with a chunker to reuse and a byte counter.
func (w *Writer) putContent(ctx context.Context, ck *chunker.Chunker, f *os.File, size int64, counted func(int)) ([]node.Chunk, uint64, error) {
	var chunks []node.Chunk
	var total uint64
	addHole := func(n int64) {
		if k := len(chunks); k > 0 && chunks[k-1].IsHole() {
			chunks[k-1].Size += uint64(n)
		} else {
			chunks = append(chunks, node.Chunk{Size: uint64(n)})
		}
		total += uint64(n)
	}
	addData := func(start, end int64) error {
		ck.Reset(io.NewSectionReader(f, start, end-start))
		if workers := runtime.GOMAXPROCS(0); end-start >= parallelHashMin && workers > 1 {
			hashed, err := w.putChunksParallel(ctx, ck, workers, counted)
			for _, c := range hashed {
				if c.IsHole() {
					addHole(int64(c.Size))
				} else {
					chunks = append(chunks, c)
					total += c.Size
				}
			}
			return err
		}
		for {
			data, err := ck.Next()
			if err == io.EOF {
				return nil
			}
			if err != nil {
				return err
			}
			if counted != nil {
				counted(len(data))
			}
			if isZero(data) {
				addHole(int64(len(data)))
				continue
			}
			h := digest.Hash(sha256.Sum256(data))
			if _, err := w.PutChunk(h, data); err != nil {
				return err
			}
			chunks = append(chunks, node.Chunk{Hash: h, Size: uint64(len(data))})
			total += uint64(len(data))
		}
	}
	if size <= smallFile {
		err := addData(0, size)
		return chunks, total, err
	}
	fd := int(f.Fd())
	for off := int64(0); off < size; {
		if err := ctx.Err(); err != nil {
			return nil, 0, err
		}
		data, err := unix.Seek(fd, off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			addHole(size - off)
			break
		}
		if err != nil {
			// No SEEK_DATA here (EINVAL): read everything as data.
			err := addData(off, size)
			return chunks, total, err
		}
		hole, err := unix.Seek(fd, data, unix.SEEK_HOLE)
		if err != nil || hole > size {
			hole = size
		}
		if data > size {
			data = size
		}
		if data > off {
			addHole(data - off)
		}
		if err := addData(data, hole); err != nil {
			return nil, 0, err
		}
		off = hole
	}
	return chunks, total, nil
}

// parallelHashMin is the length of data from which putContent hashes
// chunks on several goroutines: the chunker finds boundaries alone (it
// must, in order), and hashing is most of the rest. A disk image of a
// 700 MB tree, which every image stage commits anew, is one such range.
const parallelHashMin = 8 << 20

// putChunksParallel stores the chunks ck yields, hashing and putting them
// on workers goroutines, and returns them in order, all-zero chunks as
// holes. Each chunk is copied out of the chunker's buffer, and at most
// 4 per worker are in flight.
func (w *Writer) putChunksParallel(ctx context.Context, ck *chunker.Chunker, workers int, counted func(int)) ([]node.Chunk, error) {
	type job struct {
		i    int
		data *[]byte
	}
	var (
		out      []node.Chunk
		outMu    sync.Mutex
		errOnce  sync.Once
		firstErr error
		wg       sync.WaitGroup
	)
	jobs := make(chan job, 4*workers)
	failed := make(chan struct{})
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err; close(failed) })
	}
	var bufs sync.Pool
	for range workers {
		wg.Go(func() {
			for j := range jobs {
				data := *j.data
				c := node.Chunk{Size: uint64(len(data))}
				if !isZero(data) {
					c.Hash = digest.Hash(sha256.Sum256(data))
					if _, err := w.PutChunk(c.Hash, data); err != nil {
						fail(err)
					}
				}
				bufs.Put(j.data)
				outMu.Lock()
				out[j.i] = c
				outMu.Unlock()
			}
		})
	}
	var err error
	for i := 0; ; i++ {
		var data []byte
		data, err = ck.Next()
		if err != nil {
			break
		}
		if counted != nil {
			counted(len(data))
		}
		buf, _ := bufs.Get().(*[]byte)
		if buf == nil {
			buf = new([]byte)
		}
		*buf = append((*buf)[:0], data...)
		outMu.Lock()
		out = append(out, node.Chunk{})
		outMu.Unlock()
		select {
		case jobs <- job{i, buf}:
			continue
		case <-failed:
		case <-ctx.Done():
			err = ctx.Err()
		}
		break
	}
	close(jobs)
	wg.Wait()
	if err == io.EOF {
		err = nil
	}
	if firstErr != nil {
		err = firstErr
	}
	return out, err
}

var zeroBlock [64 << 10]byte

func isZero(b []byte) bool {
	for len(b) > 0 {
		n := min(len(b), len(zeroBlock))
		if !bytes.Equal(b[:n], zeroBlock[:n]) {
			return false
		}
		b = b[n:]
	}
	return true
}
