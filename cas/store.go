package cas

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/codec"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/cas/pack"
	"github.com/forge-build/forge/internal/mountinfo"
)

// Options tune a Store. The zero value is usable.
type Options struct {
	// PackSize is the size at which a pack is finished and a new one
	// started. Default 64 MiB.
	PackSize int64
	// Logf receives messages worth a log line (pebble's errors, cleanup
	// done at open). Default: discard.
	Logf func(format string, args ...any)
	// Now returns the current time (for last-use stamps). Default time.Now.
	Now func() time.Time
}

const defaultPackSize = 64 << 20

// Store is an open content-addressed store.
type Store struct {
	dir  string
	lock *os.File
	opts Options

	// dbMu guards db: every index access holds it shared; replacing the
	// index with a rebuilt one holds it exclusively.
	dbMu sync.RWMutex
	db   *pebble.DB

	// refMu guards refs, the ref log and what it holds (the truth about
	// refs; the index keeps none).
	refMu sync.Mutex
	refs  *refLog

	// damageMu guards damage: what Open found the index to lack that the
	// ref log needs. GC refuses to run while it is not empty; fsck
	// reports it and fsck --repair rebuilds the index.
	damageMu sync.Mutex
	damage   []string

	// gcMu orders GC against writers: a Writer holds it shared while it
	// looks a hash up and records it as held, GC holds it exclusively
	// while it marks and sweeps, so GC never frees what a Writer relies on.
	gcMu sync.RWMutex

	// racyWindow: files changed this recently before an import began are
	// not stat-cached, as a change in the same clock tick could go unseen.
	racyWindow time.Duration

	// chunkers are PutFile's, with their buffers (a few MiB each): a
	// commit stores thousands of small files, and a new buffer per file
	// made the garbage collector the commit's largest cost.
	chunkers sync.Pool

	// codec compresses chunks (when the store's compression setting
	// says so) and decodes compressed ones (always: any store may hold
	// them, pulled from a bucket or written before the setting changed).
	codec *codec.Codec
	// scratch holds buffers for compressed bytes on their way to being
	// decoded.
	scratch sync.Pool

	mu      sync.Mutex
	writers map[*Writer]struct{}
	pins    map[digest.Hash]int   // trees in use by this process: mounts, exports
	packs   map[packID]packReader // open pack readers
	closed  bool
}

// packReader is an open pack and its size, which bounds what the index may
// ask of it.
type packReader struct {
	f    *os.File
	size int64
}

// Layout of a store directory.
const (
	indexDir   = "index"
	packsDir   = "packs"
	tmpDir     = "tmp"
	lockFile   = "store.lock"
	packExt    = ".pack"
	formatFile = "format"
)

// Open opens the store at dir, creating it if needed. It fails with
// ErrInUse, naming the process, when another process has it open.
func Open(dir string, opts Options) (*Store, error) {
	if opts.PackSize <= 0 {
		opts.PackSize = defaultPackSize
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	dir = abs
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("create store %s: %w", dir, err)
	}
	lock, err := lockStore(dir)
	if err != nil {
		return nil, err
	}
	s := &Store{dir: dir, lock: lock, opts: opts, racyWindow: 2 * time.Second, writers: map[*Writer]struct{}{}, pins: map[digest.Hash]int{}, packs: map[packID]packReader{}}
	s.scratch.New = func() any { b := make([]byte, 0, 256<<10); return &b }
	if s.codec, err = codec.New(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("store %s: %w", dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			s.codec.Close()
			lock.Close()
		}
	}()
	for _, sub := range []string{packsDir, tmpDir} {
		if err := os.MkdirAll(filepath.Join(dir, sub), 0o700); err != nil {
			return nil, fmt.Errorf("create store %s: %w", dir, err)
		}
	}
	// We hold the lock, so nothing in tmp/ belongs to a live writer: it is
	// what a killed process left behind.
	if err := s.cleanTmp(); err != nil {
		return nil, err
	}
	if err := s.checkFormat(); err != nil {
		return nil, err
	}
	if s.refs, err = openRefLog(dir, true, opts.Logf); err != nil {
		return nil, err
	}
	if err := s.openIndex(); err != nil {
		s.refs.close()
		return nil, err
	}
	s.checkIndex()
	ok = true
	return s, nil
}

// Pin keeps tree h, and everything it reaches, from GC until release is
// called. Pins live in memory: they end with the process, as the mounts and
// reads they protect do.
func (s *Store) Pin(h digest.Hash) (release func(), err error) {
	// Under gcMu, so no GC runs between the check and the pin.
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	ok, err := s.HasNode(h)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, fmt.Errorf("tree %s: %w", h, ErrNotFound)
	}
	s.mu.Lock()
	s.pins[h]++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			if s.pins[h]--; s.pins[h] == 0 {
				delete(s.pins, h)
			}
			s.mu.Unlock()
		})
	}, nil
}

// Dir is the store's directory.
func (s *Store) Dir() string { return s.dir }

// Close closes the index and pack files. Open Writers are aborted.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	writers := make([]*Writer, 0, len(s.writers))
	for w := range s.writers {
		writers = append(writers, w)
	}
	s.mu.Unlock()
	for _, w := range writers {
		w.Abort()
	}
	s.mu.Lock()
	for id, p := range s.packs {
		p.f.Close()
		delete(s.packs, id)
	}
	s.mu.Unlock()
	s.dbMu.Lock()
	err := s.db.Close()
	s.db = nil
	s.dbMu.Unlock()
	s.refMu.Lock()
	if rerr := s.refs.close(); err == nil {
		err = rerr
	}
	s.refMu.Unlock()
	if lerr := s.lock.Close(); err == nil {
		err = lerr
	}
	if err != nil {
		return fmt.Errorf("close store %s: %w", s.dir, err)
	}
	return nil
}

// lockStore takes an exclusive flock on <dir>/store.lock and writes who holds
// it into the file, so that a second process can say who is in the way.
func lockStore(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock store %s: %w", dir, err)
	}
	if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
		holder, _ := io.ReadAll(io.LimitReader(f, 4096))
		f.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, &InUseError{Dir: dir, Holder: describeHolder(holder)}
		}
		return nil, fmt.Errorf("lock store %s: %w", dir, err)
	}
	cmdline, _ := os.ReadFile("/proc/self/cmdline")
	info := fmt.Sprintf("%d\n%d\n%s\n", os.Getpid(), time.Now().Unix(), bytes.ReplaceAll(bytes.TrimRight(cmdline, "\x00"), []byte{0}, []byte{' '}))
	if err := f.Truncate(0); err == nil {
		_, err = f.WriteAt([]byte(info), 0)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("lock store %s: %w", dir, err)
		}
	} else {
		f.Close()
		return nil, fmt.Errorf("lock store %s: %w", dir, err)
	}
	return f, nil
}

func describeHolder(info []byte) string {
	lines := strings.SplitN(string(info), "\n", 3)
	if len(lines) < 3 {
		return "another process"
	}
	pid, since := lines[0], lines[1]
	desc := "process " + pid
	if cmd := strings.TrimSpace(lines[2]); cmd != "" {
		desc += " (" + cmd + ")"
	}
	if sec, err := strconv.ParseInt(since, 10, 64); err == nil {
		desc += fmt.Sprintf(", open for %s", time.Since(time.Unix(sec, 0)).Round(time.Second))
	}
	return desc
}

// InUseError says which process holds a store open.
type InUseError struct{ Dir, Holder string }

func (e *InUseError) Error() string { return fmt.Sprintf("store %s is in use by %s", e.Dir, e.Holder) }

// Is makes errors.Is(err, ErrInUse) true.
func (e *InUseError) Is(target error) bool { return target == ErrInUse }

func (s *Store) cleanTmp() error {
	dir := filepath.Join(s.dir, tmpDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("clean %s: %w", dir, err)
	}
	// A killed daemon leaves the read-only mounts below its writable
	// mounts in their scratch directories here: detach them (deepest
	// first), or removing the directories fails with EBUSY.
	if ms, err := mountinfo.Read(); err == nil {
		points := mountinfo.Under(ms, dir)
		sort.Sort(sort.Reverse(sort.StringSlice(points)))
		for _, p := range points {
			if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("clean %s: detach %s: %w", dir, p, err)
			}
			s.opts.Logf("detached %s left mounted by an earlier process", p)
		}
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		if err := os.RemoveAll(p); err != nil {
			return fmt.Errorf("clean %s: %w", p, err)
		}
		s.opts.Logf("removed %s left by an earlier process", p)
	}
	return nil
}

func (s *Store) packPath(id packID) string {
	return filepath.Join(s.dir, packsDir, id.String()+packExt)
}

// get reads one index value, copied out of pebble's buffer.
func (s *Store) get(key []byte) ([]byte, error) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return nil, ErrClosed
	}
	v, closer, err := s.db.Get(key)
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, s.indexError(err)
	}
	out := bytes.Clone(v)
	closer.Close()
	return out, nil
}

func (s *Store) has(key []byte) (bool, error) {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return false, ErrClosed
	}
	_, closer, err := s.db.Get(key)
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return false, nil
		}
		return false, s.indexError(err)
	}
	closer.Close()
	return true, nil
}

// Node reads and verifies the node named h from its pack.
func (s *Store) Node(h digest.Hash) (*node.Node, error) {
	b, err := s.readNode(h, nil)
	if err != nil {
		return nil, err
	}
	n, err := node.Decode(b)
	if err != nil {
		return nil, fmt.Errorf("node %s: %w: %w", h, ErrCorrupt, err)
	}
	return n, nil
}

// readNode appends node h's encoding, verified against h, to buf.
func (s *Store) readNode(h digest.Hash, buf []byte) ([]byte, error) {
	loc, cp, err := s.nodeRecord(h)
	if err == nil && cp != nil {
		return append(buf, cp...), nil
	}
	if err == nil {
		// No copy, or a damaged one (fsck reports it): the pack has it.
		out, err := s.readBlob(h, loc, pack.FlagNode, buf)
		if !errors.Is(err, os.ErrNotExist) && !errors.Is(err, os.ErrClosed) {
			return out, err
		}
	}
	// A damaged record, or a pack GC moved the node out of meanwhile:
	// readIndexed looks it up again and names what is wrong.
	return s.readIndexed(prefixNode, h, buf)
}

// nodeRecord reads node h's index record: where the node is, and the
// record's copy of it when that verifies (else nil).
func (s *Store) nodeRecord(h digest.Hash) (chunkLoc, []byte, error) {
	rec, err := s.get(hashKey(prefixNode, h))
	if err != nil {
		return chunkLoc{}, nil, fmt.Errorf("node %s: %w", h, err)
	}
	loc, cp, err := decodeBlobRecord(rec)
	if err != nil {
		return loc, nil, fmt.Errorf("node %s: %w", h, err)
	}
	if cp != nil && digest.Sum(cp) != h {
		cp = nil
	}
	return loc, cp, nil
}

// nodeCopy is the index's copy of node h when it verifies, else nil. A
// node whose bytes in its pack are damaged or lost is rescued from it.
func (s *Store) nodeCopy(h digest.Hash) []byte {
	_, cp, _ := s.nodeRecord(h)
	return cp
}

// HasNode reports whether the index holds node h.
func (s *Store) HasNode(h digest.Hash) (bool, error) { return s.has(hashKey(prefixNode, h)) }

// HasChunk reports whether chunk h is stored.
func (s *Store) HasChunk(h digest.Hash) (bool, error) { return s.has(hashKey(prefixChunk, h)) }

// location reads where the blob (chunk or node) h is stored.
func (s *Store) location(prefix byte, h digest.Hash) (chunkLoc, error) {
	b, err := s.get(hashKey(prefix, h))
	if err != nil {
		return chunkLoc{}, fmt.Errorf("%s %s: %w", blobKind(prefix), h, err)
	}
	loc, err := decodeChunkLoc(b)
	if err != nil {
		return chunkLoc{}, fmt.Errorf("%s %s: %w", blobKind(prefix), h, err)
	}
	return loc, nil
}

func blobKind(prefix byte) string {
	if prefix == prefixNode {
		return "node"
	}
	return "chunk"
}

// blobFlags is what a pack entry's flags must be for a blob of the kind
// the prefix names.
func blobFlags(prefix byte) uint8 {
	if prefix == prefixNode {
		return pack.FlagNode
	}
	return 0
}

// ChunkError is a chunk (or node) that cannot be read, with the pack it
// lives in.
type ChunkError struct {
	Chunk digest.Hash
	Pack  string
	Err   error
	Node  bool // a tree node, not file content
}

func (e *ChunkError) Error() string {
	kind := "chunk"
	if e.Node {
		kind = "node"
	}
	return fmt.Sprintf("%s %s in pack %s: %v", kind, e.Chunk, e.Pack, e.Err)
}

func (e *ChunkError) Unwrap() error { return e.Err }

// ReadChunk appends chunk h's content to buf and returns it. The content is
// verified against h: corruption is an error, never wrong data.
func (s *Store) ReadChunk(h digest.Hash, buf []byte) ([]byte, error) {
	return s.readIndexed(prefixChunk, h, buf)
}

// ReadStoredChunk appends chunk h as its pack stores it (zstd-compressed
// when flags has pack.FlagZstd) to buf, verified against h all the same,
// with its length once decoded: what a push sends, so that a bucket keeps
// what the store keeps.
func (s *Store) ReadStoredChunk(h digest.Hash, buf []byte) (stored []byte, rawLength int, flags uint8, err error) {
	var loc chunkLoc
	stored, err = s.readLocated(prefixChunk, h, buf, func(l chunkLoc, buf []byte) ([]byte, error) {
		loc = l
		return s.readStoredBlob(h, l, buf)
	})
	return stored, int(loc.RawLength), loc.Flags, err
}

// DecodeChunk appends to buf the plain bytes of chunk h given as a pack
// stores it (stored, flags, rawLength from a pack's footer, perhaps a
// bucket's), checked against h: ErrCorrupt, wrapped, when they do not
// decode or hash to h. Flags other than a chunk's are refused.
func (s *Store) DecodeChunk(h digest.Hash, stored []byte, flags uint8, rawLength uint32, buf []byte) ([]byte, error) {
	if flags&^pack.FlagZstd != 0 {
		return buf, fmt.Errorf("chunk %s: flags %#x are not a chunk's: %w", h, flags, ErrCorrupt)
	}
	start := len(buf)
	out, err := s.codec.Decode(stored, flags, rawLength, buf)
	if err != nil {
		return buf, fmt.Errorf("chunk %s: %w: %w", h, ErrCorrupt, err)
	}
	if got := digest.Sum(out[start:]); got != h {
		return out[:start], fmt.Errorf("chunk %s: its bytes hash to %s: %w", h, got.Short(), ErrCorrupt)
	}
	return out, nil
}

// readIndexed reads the blob the index locates under prefix and h.
func (s *Store) readIndexed(prefix byte, h digest.Hash, buf []byte) ([]byte, error) {
	return s.readLocated(prefix, h, buf, func(loc chunkLoc, buf []byte) ([]byte, error) {
		return s.readBlob(h, loc, blobFlags(prefix), buf)
	})
}

// readLocated looks up where the index locates the blob under prefix and
// h, and reads it there with read.
func (s *Store) readLocated(prefix byte, h digest.Hash, buf []byte, read func(loc chunkLoc, buf []byte) ([]byte, error)) ([]byte, error) {
	for attempt := 0; ; attempt++ {
		loc, err := s.location(prefix, h)
		if err != nil {
			return buf, err
		}
		out, err := read(loc, buf)
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, os.ErrClosed) {
			// GC may have moved the blob to a new pack and removed the
			// old one after we read the location: look it up again, once.
			if attempt == 0 {
				continue
			}
			// A pack the index never knew is a damaged location.
			if known, kerr := s.has(hashKeyPack(loc.Pack)); kerr == nil && !known {
				err = &ChunkError{Chunk: h, Pack: loc.Pack.String(), Node: prefix == prefixNode,
					Err: fmt.Errorf("the index locates it in a pack it does not know: %w", ErrCorrupt)}
			}
		}
		return out, err
	}
}

// readBlob appends the plain bytes of the blob at loc to buf, after
// checking that loc is one the pack can hold (a damaged index must not
// make us allocate gigabytes or read past the blobs) and that its flags
// are those of the kind wanted (0 for a chunk, pack.FlagNode), and
// verifies them against h. A chunk stored compressed (pack.FlagZstd) is
// decoded first: its hash is of the plain bytes.
func (s *Store) readBlob(h digest.Hash, loc chunkLoc, kind uint8, buf []byte) ([]byte, error) {
	if loc.Flags&pack.FlagZstd == 0 {
		return s.readStored(h, loc, kind, buf)
	}
	scratch := s.scratch.Get().(*[]byte)
	defer s.scratch.Put(scratch)
	stored, err := s.readStored(h, loc, kind, (*scratch)[:0])
	*scratch = stored
	if err != nil {
		return buf, err
	}
	return s.decodeVerified(h, loc, stored, buf)
}

// readStoredBlob appends the blob at loc as its pack stores it (compressed
// or not) to buf, verified against h all the same: what GC copies into a
// new pack.
func (s *Store) readStoredBlob(h digest.Hash, loc chunkLoc, buf []byte) ([]byte, error) {
	out, err := s.readStored(h, loc, loc.Flags&^pack.FlagZstd, buf)
	if err != nil || loc.Flags&pack.FlagZstd == 0 {
		return out, err
	}
	scratch := s.scratch.Get().(*[]byte)
	defer s.scratch.Put(scratch)
	plain, err := s.decodeVerified(h, loc, out[len(buf):], (*scratch)[:0])
	*scratch = plain
	if err != nil {
		return buf, err
	}
	return out, nil
}

// decodeVerified appends the decoding of a compressed blob's stored bytes
// to buf, checked against h.
func (s *Store) decodeVerified(h digest.Hash, loc chunkLoc, stored, buf []byte) ([]byte, error) {
	start := len(buf)
	out, err := s.codec.Decode(stored, loc.Flags, loc.RawLength, buf)
	if err != nil {
		return buf, &ChunkError{Chunk: h, Pack: loc.Pack.String(), Err: fmt.Errorf("at offset %d: %w: %w", loc.Offset, ErrCorrupt, err)}
	}
	if got := digest.Sum(out[start:]); got != h {
		return out[:start], &ChunkError{Chunk: h, Pack: loc.Pack.String(),
			Err: fmt.Errorf("content at offset %d decodes to bytes hashing to %s: %w", loc.Offset, got.Short(), ErrCorrupt)}
	}
	return out, nil
}

// readStored appends the stored bytes of the blob at loc to buf, checked
// as readBlob says; a blob stored as it is is verified against h too (a
// compressed one is verified once decoded).
func (s *Store) readStored(h digest.Hash, loc chunkLoc, kind uint8, buf []byte) ([]byte, error) {
	isNode := kind == pack.FlagNode
	fail := func(err error) ([]byte, error) {
		return buf, &ChunkError{Chunk: h, Pack: loc.Pack.String(), Err: err, Node: isNode}
	}
	// Only chunks are ever compressed: a node is read by the FUSE server
	// on every lookup and is small.
	if loc.Flags != kind && !(kind == 0 && loc.Flags == pack.FlagZstd) {
		return fail(fmt.Errorf("flags %#x where %#x belong: %w", loc.Flags, kind, ErrCorrupt))
	}
	p, err := s.packFile(loc.Pack)
	if err != nil {
		return fail(err)
	}
	if loc.Length > pack.MaxBlob || loc.Offset < pack.HeaderSize || loc.Offset+int64(loc.Length) > p.size {
		return fail(fmt.Errorf("index says offset %d+%d, outside a pack of %d bytes: %w", loc.Offset, loc.Length, p.size, ErrCorrupt))
	}
	start := len(buf)
	// Grow without a zeroed temporary: chunks are read on every cold
	// FUSE read, and each extra pass over the bytes shows.
	buf = slices.Grow(buf, int(loc.Length))[:start+int(loc.Length)]
	if _, err := p.f.ReadAt(buf[start:], loc.Offset); err != nil {
		if errors.Is(err, io.EOF) {
			err = fmt.Errorf("pack is shorter than offset %d+%d: %w", loc.Offset, loc.Length, ErrCorrupt)
		}
		return buf[:start], &ChunkError{Chunk: h, Pack: loc.Pack.String(), Err: err, Node: isNode}
	}
	if loc.Flags&pack.FlagZstd != 0 {
		return buf, nil
	}
	if got := digest.Sum(buf[start:]); got != h {
		return buf[:start], &ChunkError{Chunk: h, Pack: loc.Pack.String(), Node: isNode,
			Err: fmt.Errorf("content at offset %d hashes to %s: %w", loc.Offset, got.Short(), ErrCorrupt)}
	}
	return buf, nil
}

// packFile returns an open reader for a pack, opening it once.
func (s *Store) packFile(id packID) (packReader, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return packReader{}, ErrClosed
	}
	if p, ok := s.packs[id]; ok {
		return p, nil
	}
	f, err := os.Open(s.packPath(id))
	if err != nil {
		return packReader{}, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return packReader{}, err
	}
	p := packReader{f: f, size: st.Size()}
	s.packs[id] = p
	return p, nil
}

// forgetPack closes the cached reader of a pack about to be deleted.
func (s *Store) forgetPack(id packID) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if p, ok := s.packs[id]; ok {
		p.f.Close()
		delete(s.packs, id)
	}
}

// pebbleLogger passes pebble's errors to Logf and drops its chatter.
type pebbleLogger struct{ logf func(string, ...any) }

func (l pebbleLogger) Infof(string, ...any) {}
func (l pebbleLogger) Errorf(format string, args ...any) {
	l.logf("index: "+format, args...)
}
func (l pebbleLogger) Fatalf(format string, args ...any) {
	// Pebble calls Fatalf when it cannot go on (a failed WAL sync, a full
	// disk). Say so plainly and stop: the WAL replays on the next open.
	fmt.Fprintf(os.Stderr, "forge: store index failed: "+format+"\n", args...)
	os.Exit(1)
}
