package cas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/pack"
)

// The index (pebble, under <store>/index/) is a cache. What it says is
// written first to the packs (chunks and nodes, listed in each pack's
// footer) and to the ref log; rebuildIndex makes a new index from those
// alone. An index whose version key is missing or foreign (an empty
// directory, a store of format 1 being converted, a rebuild a crash cut
// short) is rebuilt when the store is opened; one that pebble cannot open
// as corrupt is moved aside to index.damaged and rebuilt. An index that
// opens but lacks what the ref log needs (pebble drops a damaged WAL's
// tail) is reported by Open, fsck and GC, and rebuilt by fsck --repair.

// StoreFormat is the version of the on-disk layout this code reads and
// writes: 3 may hold zstd-compressed chunks (pack.FlagZstd); 2 kept tree
// nodes in packs and refs in the ref log, as 3 does, but no compressed
// chunk, and is upgraded on open by rewriting the format file alone (a
// forge of format 2 then refuses the store, rather than take compressed
// chunks for damaged ones, which its fsck --repair would drop); format 1
// (no format file) kept nodes and refs only in the index and is
// converted on open.
const StoreFormat = 3

// upgradableFormat is the format whose stores this one is a superset of.
const upgradableFormat = 2

// indexVersion is the value of the index's version key: the index layout
// (node keys locate blobs in packs and copy small nodes; no ref keys).
var indexVersion = []byte("forge-index 3")

const damagedIndexDir = "index.damaged"

func (s *Store) indexPath() string { return filepath.Join(s.dir, indexDir) }

// checkFormat reads <store>/format. A store without one is new (nothing
// in it yet), or of format 1, which is converted here.
func (s *Store) checkFormat() error {
	path := filepath.Join(s.dir, formatFile)
	b, err := os.ReadFile(path)
	switch {
	case err == nil:
		var v int
		if _, err := fmt.Sscanf(string(b), "forge store format %d\n", &v); err != nil {
			return fmt.Errorf("store %s: %s says %q: %w", s.dir, path, bytes.TrimSpace(b), ErrCorrupt)
		}
		switch v {
		case StoreFormat:
			return nil
		case upgradableFormat:
			s.opts.Logf("store %s: format %d upgraded to %d (chunks may now be stored compressed)", s.dir, v, StoreFormat)
			return writeFileSync(path, []byte(fmt.Sprintf("forge store format %d\n", StoreFormat)))
		}
		return fmt.Errorf("store %s is of format %d; this forge reads formats %d and %d: use a forge of that format, or export its trees and import them here", s.dir, v, upgradableFormat, StoreFormat)
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("store %s: %w", s.dir, err)
	}
	if entries, _ := os.ReadDir(filepath.Join(s.dir, indexDir)); len(entries) > 0 {
		if err := s.convertFormat1(); err != nil {
			return fmt.Errorf("store %s: convert from format 1: %w", s.dir, err)
		}
	} else if _, err := os.Stat(filepath.Join(s.dir, refLogName)); err == nil {
		// A ref log but no format file: someone removed it.
		return fmt.Errorf("store %s has a ref log but no %s: %w", s.dir, path, ErrCorrupt)
	}
	return writeFileSync(path, []byte(fmt.Sprintf("forge store format %d\n", StoreFormat)))
}

// writeFileSync writes a small file whole (temp file, fsync, rename, fsync
// of the directory), so that a crash leaves the old one or the new one.
func writeFileSync(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func openPebble(dir string, logf func(string, ...any)) (*pebble.DB, error) {
	// A block cache that holds the index of a large store: lookups of
	// chunks and nodes are what imports and mounts wait on.
	cache := pebble.NewCache(128 << 20)
	defer cache.Unref()
	return pebble.Open(dir, &pebble.Options{
		FormatMajorVersion: pebble.FormatNewest,
		Logger:             pebbleLogger{logf: logf},
		Cache:              cache,
		EventListener: &pebble.EventListener{
			// pebble's default ends the process (Logger.Fatalf): a damaged
			// index file fails the reads that meet it, with an error
			// naming the file, and the daemon goes on serving the rest.
			DataCorruption: func(info pebble.DataCorruptionInfo) {
				logf("store index: %s", info)
			},
		},
	})
}

// openIndex opens the index, rebuilding it when it is not one of this
// format or pebble finds it corrupt.
func (s *Store) openIndex() error {
	path := s.indexPath()
	db, err := openPebble(path, s.opts.Logf)
	if err != nil {
		if !pebble.IsCorruptionError(err) {
			return fmt.Errorf("open store index %s: %w", path, err)
		}
		// Nothing lives only in the index: keep the damaged one for a
		// post-mortem (replacing an older one) and make a new one.
		aside := filepath.Join(s.dir, damagedIndexDir)
		s.opts.Logf("store index %s is corrupt (%v): moved to %s, rebuilding it from the packs and the ref log", path, err, aside)
		if err := os.RemoveAll(aside); err != nil {
			return fmt.Errorf("store %s: %w", s.dir, err)
		}
		if err := os.Rename(path, aside); err != nil {
			return fmt.Errorf("store %s: move damaged index aside: %w", s.dir, err)
		}
		if db, err = openPebble(path, s.opts.Logf); err != nil {
			return fmt.Errorf("open store index %s: %w", path, err)
		}
	}
	s.db = db
	v, err := s.get([]byte{prefixMeta})
	if err == nil && bytes.Equal(v, indexVersion) {
		return nil
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		s.opts.Logf("store index %s: version key unreadable (%v): rebuilding it", path, err)
	} else if err == nil {
		s.opts.Logf("store index %s is of version %q: rebuilding it", path, v)
	}
	_, err = s.rebuildIndex(context.Background())
	return err
}

// checkIndex notes what the ref log needs that the index lacks: the root
// of every ref's tree (a full walk is fsck's job), and damage the ref log
// itself reported.
func (s *Store) checkIndex() {
	var damage []string
	s.refMu.Lock()
	refs := make(map[string]refEntry, len(s.refs.refs))
	for name, e := range s.refs.refs {
		refs[name] = e
	}
	for _, d := range s.refs.damage {
		s.opts.Logf("store %s: %s: run forge store fsck --repair", s.dir, d)
	}
	s.refMu.Unlock()
	missing := 0
	var first string
	for name, e := range refs {
		ok, err := s.HasNode(e.Tree)
		if err != nil {
			damage = append(damage, fmt.Sprintf("ref %s: %v", name, err))
			continue
		}
		if !ok {
			if missing == 0 || name < first {
				first = name
			}
			missing++
		}
	}
	if missing > 0 {
		damage = append(damage, fmt.Sprintf("the index lacks the trees of %d refs the ref log names (%s first)", missing, first))
	}
	sort.Strings(damage)
	s.damageMu.Lock()
	s.damage = damage
	s.damageMu.Unlock()
	for _, d := range damage {
		s.opts.Logf("store %s: %s: run forge store fsck --repair", s.dir, d)
	}
}

// Damage lists what Open found wrong with the index or the ref log: refs
// the index cannot serve, or ref updates that could not be read, until
// fsck --repair rebuilds the index or rewrites the log.
func (s *Store) Damage() []string {
	d := s.indexDamage()
	s.refMu.Lock()
	d = append(d, s.refs.damage...)
	s.refMu.Unlock()
	return d
}

// indexDamage is what Open found the index to lack.
func (s *Store) indexDamage() []string {
	s.damageMu.Lock()
	defer s.damageMu.Unlock()
	return append([]string(nil), s.damage...)
}

// indexError wraps an error pebble returned, saying what to do about
// corruption.
func (s *Store) indexError(err error) error {
	if pebble.IsCorruptionError(err) {
		where := s.indexPath()
		if info := pebble.ExtractDataCorruptionInfo(err); info != nil && info.Path != "" {
			where = info.Path
		}
		return fmt.Errorf("store index file %s: %w: %w (forge store fsck --repair rebuilds the index)", where, ErrCorrupt, err)
	}
	return fmt.Errorf("store index %s: %w", s.indexPath(), err)
}

// RebuildResult says what a rebuild of the index found.
type RebuildResult struct {
	Packs    int
	Chunks   int
	Nodes    int
	Problems []string // packs whose footers could not be read
}

// rebuildIndex makes a new index from the pack footers, replaces the open
// one with it, and re-checks the refs. It holds GC and writers off while
// it reads the packs (a pack renamed in meanwhile would be missed), and
// readers only while it swaps the indexes. LRU times and the import stat
// cache are carried over from the old index where it can still be read.
func (s *Store) rebuildIndex(ctx context.Context) (RebuildResult, error) {
	var res RebuildResult
	if why := s.packsDirProblem(); why != "" {
		return res, fmt.Errorf("store %s: not rebuilding the index: %s", s.dir, why)
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	start := time.Now()
	path := s.indexPath()
	newPath := path + ".rebuild"
	if err := os.RemoveAll(newPath); err != nil {
		return res, fmt.Errorf("store %s: rebuild index: %w", s.dir, err)
	}
	db, err := openPebble(newPath, s.opts.Logf)
	if err != nil {
		return res, fmt.Errorf("store %s: rebuild index: %w", s.dir, err)
	}
	ok := false
	defer func() {
		if !ok {
			db.Close()
			os.RemoveAll(newPath)
		}
	}()
	onDisk, err := s.packFiles()
	if err != nil {
		return res, err
	}
	ids := make([]packID, 0, len(onDisk))
	for id := range onDisk {
		ids = append(ids, id)
	}
	// In name order, so that a blob stored in two packs is always found in
	// the same one.
	sort.Slice(ids, func(i, j int) bool { return bytes.Compare(ids[i][:], ids[j][:]) < 0 })
	batch := db.NewBatch()
	seen := map[digest.Hash]bool{}
	// unsound: nodes whose copies so far do not verify. A node can be in
	// two packs (fsck --repair rescues a rotted node into a new one): a
	// later pack's sound copy wins over an earlier unsound one.
	unsound := map[digest.Hash]bool{}
	var nodeBuf []byte
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			batch.Close()
			return res, err
		}
		entries, mtime, err := s.readFooter(id, onDisk[id])
		if err != nil {
			res.Problems = append(res.Problems, fmt.Sprintf("pack %s: %v", id, err))
			continue
		}
		res.Packs++
		for _, e := range entries {
			prefix := byte(prefixChunk)
			switch e.Flags {
			case 0, pack.FlagZstd:
				res.Chunks++
			case pack.FlagNode:
				prefix = prefixNode
				res.Nodes++
			default:
				res.Problems = append(res.Problems, fmt.Sprintf("pack %s: blob %s has unknown flags %#x", id, e.Hash, e.Flags))
				continue
			}
			key := hashKey(prefix, e.Hash)
			if seen[e.Hash] && !unsound[e.Hash] {
				continue
			}
			loc := chunkLoc{Pack: id, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength, Flags: e.Flags}
			var inline []byte
			if prefix == prefixNode && e.Length <= inlineNodeMax {
				blob, err := s.readBlob(e.Hash, loc, pack.FlagNode, nodeBuf[:0])
				switch {
				case err == nil:
					nodeBuf, inline = blob, blob
					delete(unsound, e.Hash)
				case seen[e.Hash]:
					continue // keep the first unsound one
				default:
					// Indexed without a copy unless a sound one turns
					// up; fsck finds it in the pack.
					unsound[e.Hash] = true
				}
			}
			seen[e.Hash] = true
			batch.Set(key, encodeBlobRecord(loc, inline), nil)
		}
		batch.Set(hashKeyPack(id), packMeta{Size: onDisk[id], Created: mtime}.encode(), nil)
		if batch.Len() > 64<<20 {
			if err := batch.Commit(pebble.NoSync); err != nil {
				return res, fmt.Errorf("store %s: rebuild index: %w", s.dir, err)
			}
			batch = db.NewBatch()
		}
	}
	// What only the old index knew and a rebuild may keep: when refs were
	// last used, and the import stat cache (entries whose nodes exist).
	if old := s.currentDB(); old != nil {
		kept := s.copyCaches(old, batch, seen)
		if kept > 0 {
			s.opts.Logf("store %s: kept %d last-use times and stat-cache entries from the old index", s.dir, kept)
		}
	}
	batch.Set([]byte{prefixMeta}, indexVersion, nil)
	if err := batch.Commit(pebble.Sync); err != nil {
		return res, fmt.Errorf("store %s: rebuild index: %w", s.dir, err)
	}
	batch.Close()
	if err := db.Close(); err != nil {
		return res, fmt.Errorf("store %s: rebuild index: %w", s.dir, err)
	}
	ok = true

	// Swap: readers wait here for the moment it takes.
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if s.db != nil {
		s.db.Close()
		s.db = nil
	}
	oldPath := path + ".old"
	os.RemoveAll(oldPath)
	if err := os.Rename(path, oldPath); err != nil && !errors.Is(err, os.ErrNotExist) {
		return res, fmt.Errorf("store %s: rebuild index: %w", s.dir, err)
	}
	if err := os.Rename(newPath, path); err != nil {
		return res, fmt.Errorf("store %s: rebuild index: %w", s.dir, err)
	}
	if err := syncDir(s.dir); err != nil {
		return res, err
	}
	os.RemoveAll(oldPath)
	if s.db, err = openPebble(path, s.opts.Logf); err != nil {
		return res, fmt.Errorf("open store index %s: %w", path, err)
	}
	// A new store has no packs: its first index is no news.
	if len(onDisk) > 0 {
		s.opts.Logf("store %s: rebuilt the index from %d packs (%d chunks, %d nodes) in %s", s.dir, res.Packs, res.Chunks, res.Nodes, time.Since(start).Round(time.Millisecond))
	}
	for _, p := range res.Problems {
		s.opts.Logf("store %s: rebuild index: %s", s.dir, p)
	}
	return res, nil
}

func (s *Store) currentDB() *pebble.DB {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	return s.db
}

// copyCaches copies the last-use times of refs the ref log has and the
// stat-cache entries whose nodes the new index has from old to batch, as
// far as old can be read. It returns how many it copied.
func (s *Store) copyCaches(old *pebble.DB, batch *pebble.Batch, stored map[digest.Hash]bool) (n int) {
	s.refMu.Lock()
	names := make(map[string]bool, len(s.refs.refs))
	for name := range s.refs.refs {
		names[name] = true
	}
	s.refMu.Unlock()
	// The old index may be damaged: take what reads, stop at the first
	// error, and never fail the rebuild for it.
	_ = s.scanIn(old, prefixUsed, func(k, v []byte) error {
		if names[string(k)] {
			batch.Set(nameKey(prefixUsed, string(k)), bytes.Clone(v), nil)
			n++
		}
		return nil
	})
	_ = s.scanIn(old, prefixStat, func(k, v []byte) error {
		if e, ok := decodeStatEntry(v); ok && stored[e.Node] {
			batch.Set(append([]byte{prefixStat}, k...), bytes.Clone(v), nil)
			n++
		}
		return nil
	})
	return n
}

// readFooter reads the entries of a pack's footer and the pack's mtime.
func (s *Store) readFooter(id packID, size int64) ([]pack.Entry, int64, error) {
	f, err := os.Open(s.packPath(id))
	if err != nil {
		return nil, 0, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	entries, err := pack.ReadIndex(f, st.Size())
	return entries, st.ModTime().UnixNano(), err
}

// convertFormat1 turns a store of format 1 (nodes and refs only in the
// index) into format 2: it writes every node into a new pack and every ref
// into a new ref log. The old index is left as it is; Open then finds no
// version key in it and rebuilds it. A crash part way leaves a store
// without a format file and the old index intact: the conversion runs
// again (the first attempt's pack is garbage for GC).
func (s *Store) convertFormat1() error {
	path := s.indexPath()
	db, err := openPebble(path, s.opts.Logf)
	if err != nil {
		return fmt.Errorf("open index %s: %w", path, err)
	}
	defer db.Close()
	start := time.Now()
	out, err := s.newPackOutput()
	if err != nil {
		return err
	}
	published := false
	defer func() {
		if !published {
			out.abort()
		}
	}()
	nodes := 0
	if err := s.scanIn(db, prefixNode, func(k, v []byte) error {
		h, err := digest.FromBytes(k)
		if err != nil || digest.Sum(v) != h {
			s.opts.Logf("store %s: convert: node %x does not match its hash: left out", s.dir, k)
			return nil
		}
		if out.size() >= s.opts.PackSize {
			if _, err := out.finish(); err != nil {
				return err
			}
			if out, err = s.newPackOutput(); err != nil {
				return err
			}
		}
		_, err = out.add(h, v, len(v), pack.FlagNode)
		nodes++
		return err
	}); err != nil {
		return err
	}
	if _, err := out.finish(); err != nil {
		return err
	}
	published = true
	var changes []refChange
	if err := s.scanIn(db, prefixRef, func(k, v []byte) error {
		h, err := digest.FromBytes(v)
		if err != nil || ValidRefName(string(k)) != nil {
			s.opts.Logf("store %s: convert: ref %q is unreadable: left out", s.dir, k)
			return nil
		}
		changes = append(changes, refChange{Name: string(k), Tree: h})
		return nil
	}); err != nil {
		return err
	}
	// A fresh ref log, whatever an earlier, interrupted conversion left.
	logPath := filepath.Join(s.dir, refLogName)
	var buf []byte
	buf = append(buf, refLogMagic[:]...)
	now := s.opts.Now().UnixNano()
	for len(changes) > 0 {
		n := min(len(changes), 1000)
		buf = append(buf, encodeRefRecord(now, changes[:n])...)
		changes = changes[n:]
	}
	if err := writeFileSync(logPath, buf); err != nil {
		return fmt.Errorf("write ref log %s: %w", logPath, err)
	}
	s.opts.Logf("store %s: converted from format 1 to %d: %d nodes into packs, refs into %s, in %s", s.dir, StoreFormat, nodes, logPath, time.Since(start).Round(time.Millisecond))
	return nil
}

// errIndexDamaged is what GC says while the index lacks what the ref log needs.
var errIndexDamaged = errors.New("the store's index disagrees with its ref log")

func damageError(dir string, damage []string) error {
	return fmt.Errorf("store %s: %w: %s; run forge store fsck --repair, which rebuilds the index", dir, errIndexDamaged, strings.Join(damage, "; "))
}
