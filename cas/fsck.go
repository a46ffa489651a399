package cas

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/cas/pack"
	"github.com/forge-build/forge/internal/mountinfo"
)

// FsckOptions tune Fsck.
type FsckOptions struct {
	// Repair rebuilds the index from the packs and the ref log when it
	// lacks what they hold or cannot be read; drops the index entries of
	// corrupt chunks and nodes (so that a later import stores them anew)
	// and the refs whose trees cannot be read; salvages damaged packs;
	// and rewrites a damaged ref log. It changes nothing when a pack
	// cannot be read for a reason that may pass (permissions, I/O errors,
	// a packs directory that is not the store's own).
	Repair bool
}

// FsckResult is what Fsck checked and found.
type FsckResult struct {
	Problems []string // one line each; empty when the store is clean
	Chunks   int
	Nodes    int
	Packs    int
	Refs     int
	// Garbage is what GC would free, which is not a problem: a killed
	// import leaves some.
	GarbagePacks int
	GarbageNodes int
	Repaired     []string // what Repair changed
}

// Fsck checks the store: the ref log, every pack's footer against the
// index, every chunk and node re-hashed, every ref's tree present and
// readable. An index that lacks what the packs and the ref log hold is a
// problem, never a smaller store.
func (s *Store) Fsck(ctx context.Context, opts FsckOptions) (FsckResult, error) {
	c, err := s.check(ctx)
	if err != nil {
		return FsckResult{}, err
	}
	if !opts.Repair || len(c.res.Problems) == 0 {
		return c.res, nil
	}
	if c.hold != "" {
		c.res.Problems = append(c.res.Problems, "not repairing: "+c.hold)
		return c.res, nil
	}
	var repaired []string
	if c.staleIndex {
		rr, err := s.rebuildIndex(ctx)
		if err != nil {
			return c.res, err
		}
		s.checkIndex()
		repaired = append(repaired, fmt.Sprintf("rebuilt the index from %d packs (%d chunks, %d nodes) and the ref log", rr.Packs, rr.Chunks, rr.Nodes))
		for _, p := range rr.Problems {
			repaired = append(repaired, "rebuilding the index left out "+p)
		}
		// Check again against the new index, and mend what is left; the
		// problems reported are those found first and those found after.
		found := c.res.Problems
		if c, err = s.check(ctx); err != nil {
			return FsckResult{Problems: found, Repaired: repaired}, err
		}
		c.res.Problems = mergeProblems(found, c.res.Problems)
		if c.hold != "" || c.staleIndex {
			c.res.Problems = append(c.res.Problems, "the rebuilt index still disagrees with the packs and the ref log: not repairing further")
			c.res.Repaired = repaired
			return c.res, nil
		}
	}
	more, err := c.repair(ctx)
	c.res.Repaired = append(repaired, more...)
	sort.Strings(c.res.Repaired)
	return c.res, err
}

// checker is one run of fsck's checks over one snapshot of the index.
type checker struct {
	s    *Store
	snap *pebble.Snapshot
	res  FsckResult

	mu sync.Mutex

	packs   map[packID]packMeta                   // the index's pack records
	onDisk  map[packID]int64                      // pack files and sizes
	footers map[packID]map[digest.Hash]pack.Entry // footers of every readable pack on disk
	damaged map[packID]bool                       // indexed packs not as written
	missing map[packID]bool                       // indexed packs whose files are gone
	locs    map[byte]map[digest.Hash]chunkLoc     // the index's chunk and node entries
	nodes   map[digest.Hash]*node.Node            // nodes that verified
	bad     map[digest.Hash]bool                  // blobs that cannot be read
	// rescue: nodes whose bytes in their pack cannot be read but whose
	// copy in the index verifies; repair writes them into a new pack.
	rescue   map[digest.Hash]chunkLoc
	dropRefs []string

	refs         map[string]refEntry // the ref log's refs, read before the snapshot
	refLogDamage []string

	// staleIndex: the index lacks what the packs and the ref log hold, or
	// cannot be read: a rebuild is the repair.
	staleIndex bool
	// hold: why nothing may be repaired (a reason that may pass).
	hold string
}

func (c *checker) problem(format string, args ...any) {
	c.mu.Lock()
	c.res.Problems = append(c.res.Problems, fmt.Sprintf(format, args...))
	c.mu.Unlock()
}

// check runs every phase and returns what it found.
func (s *Store) check(ctx context.Context) (*checker, error) {
	c := &checker{s: s, footers: map[packID]map[digest.Hash]pack.Entry{}, damaged: map[packID]bool{},
		missing: map[packID]bool{}, locs: map[byte]map[digest.Hash]chunkLoc{}, nodes: map[digest.Hash]*node.Node{}, bad: map[digest.Hash]bool{}, rescue: map[digest.Hash]chunkLoc{}}
	// Hold GC off: it must not delete what is being checked.
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	// The refs first, then the snapshot: a Writer commits to the index
	// before the ref log, so every ref read here has its tree in the
	// snapshot.
	s.refMu.Lock()
	c.refs = make(map[string]refEntry, len(s.refs.refs))
	for name, e := range s.refs.refs {
		c.refs[name] = e
	}
	c.refLogDamage = append([]string(nil), s.refs.damage...)
	s.refMu.Unlock()
	// Everything is read from one snapshot of the index: imports and
	// commits go on meanwhile, and a ref committed after the chunks were
	// listed must not look like a ref to missing chunks.
	s.dbMu.RLock()
	if s.db == nil {
		s.dbMu.RUnlock()
		return nil, ErrClosed
	}
	c.snap = s.db.NewSnapshot()
	s.dbMu.RUnlock()
	defer c.snap.Close()

	for _, d := range s.indexDamage() {
		c.problem("%s", d)
		c.staleIndex = true
	}
	for _, phase := range []func(context.Context) error{c.checkPacksDir, c.checkPacks, c.checkBlobs, c.checkRefs} {
		if err := phase(ctx); err != nil {
			if !errors.Is(err, ErrCorrupt) {
				return nil, err
			}
			// The index itself cannot be read: that is a finding.
			c.problem("%v", err)
			c.staleIndex = true
			break
		}
	}
	sort.Strings(c.res.Problems)
	return c, nil
}

// checkPacksDir makes sure packs/ is the store's own directory: a mount
// over it (or a symlink elsewhere) would make every pack look missing.
func (c *checker) checkPacksDir(context.Context) error {
	if why := c.s.packsDirProblem(); why != "" {
		c.problem("%s", why)
		c.hold = why
	}
	return nil
}

// packsDirProblem says why packs/ cannot be trusted to list the store's
// packs, or "".
func (s *Store) packsDirProblem() string {
	dir := filepath.Join(s.dir, packsDir)
	var st, pst unix.Stat_t
	if err := unix.Stat(s.dir, &st); err != nil {
		return fmt.Sprintf("store %s: %v", s.dir, err)
	}
	if err := unix.Lstat(dir, &pst); err != nil {
		return fmt.Sprintf("packs directory %s: %v", dir, err)
	}
	if pst.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Sprintf("packs directory %s is not a directory", dir)
	}
	if pst.Dev != st.Dev {
		return fmt.Sprintf("packs directory %s is on another filesystem than the store", dir)
	}
	if ms, err := mountinfo.Read(); err == nil {
		for _, m := range ms {
			if m.Point == dir {
				return fmt.Sprintf("packs directory %s is a mountpoint", dir)
			}
		}
	}
	return ""
}

// checkPacks compares the index's pack records with the pack files and
// reads every pack's footer.
func (c *checker) checkPacks(context.Context) error {
	s := c.s
	c.packs = map[packID]packMeta{}
	if err := s.scanIn(c.snap, prefixPack, func(k, v []byte) error {
		var id packID
		copy(id[:], k)
		m, err := decodePackMeta(v)
		if err != nil {
			c.problem("pack %s: index record: %v", id, err)
			c.staleIndex = true
			return nil
		}
		c.packs[id] = m
		return nil
	}); err != nil {
		return err
	}
	c.res.Packs = len(c.packs)
	var err error
	if c.onDisk, err = s.packFiles(); err != nil {
		c.problem("packs directory: %v", err)
		c.hold = fmt.Sprintf("cannot list the packs: %v", err)
		return nil
	}
	for id, size := range c.onDisk {
		m, indexed := c.packs[id]
		if !indexed {
			c.res.GarbagePacks++
		}
		entries, _, err := s.readFooter(id, size)
		if err != nil {
			var inv *pack.InvalidError
			if !errors.As(err, &inv) {
				// EACCES, EIO: may pass; never a reason to drop anything.
				c.problem("pack %s: %v", id, err)
				c.hold = fmt.Sprintf("pack %s cannot be read: %v", id, err)
				continue
			}
			if indexed {
				c.problem("pack %s: %v", id, err)
				c.damaged[id] = true
			}
			continue
		}
		if indexed && size != m.Size {
			c.problem("pack %s: %d bytes on disk, index says %d", id, size, m.Size)
			c.damaged[id] = true
		}
		fm := make(map[digest.Hash]pack.Entry, len(entries))
		for _, e := range entries {
			fm[e.Hash] = e
		}
		c.footers[id] = fm
	}
	for id := range c.packs {
		if _, ok := c.onDisk[id]; !ok {
			c.problem("pack %s: missing from %s", id, filepath.Join(s.dir, packsDir))
			c.missing[id] = true
		}
	}
	return nil
}

// checkBlobs re-hashes every chunk and node the index locates, pack by
// pack, in parallel, and checks each against its pack's footer.
func (c *checker) checkBlobs(ctx context.Context) error {
	s := c.s
	type blob struct {
		prefix byte
		h      digest.Hash
		loc    chunkLoc
	}
	byPack := map[packID][]blob{}
	for _, prefix := range []byte{prefixChunk, prefixNode} {
		locs := map[digest.Hash]chunkLoc{}
		c.locs[prefix] = locs
		if err := s.scanIn(c.snap, prefix, func(k, v []byte) error {
			h, _ := digest.FromBytes(k)
			loc, inline, err := decodeBlobRecord(v)
			if err != nil {
				c.problem("%s %s: index record: %v", blobKind(prefix), h, err)
				c.staleIndex = true
				return nil
			}
			if inline != nil && digest.Sum(inline) != h {
				// Readers fall back to the pack, but the index is damaged.
				c.problem("node %s: the index's copy of it is damaged", h)
				c.staleIndex = true
			}
			locs[h] = loc
			byPack[loc.Pack] = append(byPack[loc.Pack], blob{prefix, h, loc})
			return nil
		}); err != nil {
			return err
		}
	}
	c.res.Chunks = len(c.locs[prefixChunk])
	c.res.Nodes = len(c.locs[prefixNode])
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for id, blobs := range byPack {
		if _, ok := c.packs[id]; !ok {
			for _, b := range blobs {
				c.problem("%s %s in pack %s: the index has no such pack", blobKind(b.prefix), b.h, id)
				c.staleIndex = true
			}
			continue
		}
		if c.missing[id] {
			for _, b := range blobs {
				if b.prefix != prefixNode || !c.rescueNode(b.h, b.loc, "its pack is missing") {
					c.bad[b.h] = true
				}
			}
			continue
		}
		sort.Slice(blobs, func(i, j int) bool { return blobs[i].loc.Offset < blobs[j].loc.Offset })
		wg.Add(1)
		sem <- struct{}{}
		go func(id packID, blobs []blob) {
			defer wg.Done()
			defer func() { <-sem }()
			var buf []byte
			footer := c.footers[id]
			for _, b := range blobs {
				if ctx.Err() != nil {
					return
				}
				if footer != nil {
					if fe, ok := footer[b.h]; !ok || fe.Offset != b.loc.Offset || fe.Length != b.loc.Length || fe.Flags != b.loc.Flags {
						c.problem("%s %s in pack %s: the pack's footer does not list it at offset %d", blobKind(b.prefix), b.h, id, b.loc.Offset)
						c.mu.Lock()
						c.staleIndex = true
						c.mu.Unlock()
						continue
					}
				}
				var err error
				buf, err = s.readBlob(b.h, b.loc, blobFlags(b.prefix), buf[:0])
				if err != nil {
					if b.prefix == prefixNode && c.rescueNode(b.h, b.loc, err.Error()) {
						continue
					}
					c.problem("%s %v", blobKind(b.prefix), err)
					c.markBad(b.h)
					continue
				}
				if b.prefix != prefixNode {
					continue
				}
				n, err := node.Decode(buf)
				if err != nil {
					c.problem("node %s: %v", b.h, err)
					c.markBad(b.h)
					continue
				}
				// Keep only what reachability needs.
				c.mu.Lock()
				c.nodes[b.h] = &node.Node{Type: n.Type, Chunks: n.Chunks, Entries: n.Entries}
				c.mu.Unlock()
			}
		}(id, blobs)
	}
	wg.Wait()
	return ctx.Err()
}

// rescueNode takes node h from the index's copy when its bytes in the
// pack cannot be read (why) and the copy verifies: a problem, which
// repair mends by writing the copy into a new pack, not a lost tree.
func (c *checker) rescueNode(h digest.Hash, loc chunkLoc, why string) bool {
	cp := c.s.nodeCopy(h)
	if cp == nil {
		return false
	}
	n, err := node.Decode(cp)
	if err != nil {
		return false
	}
	c.problem("node %s in pack %s: %s; the index has a sound copy of it", h, loc.Pack, why)
	c.mu.Lock()
	c.nodes[h] = &node.Node{Type: n.Type, Chunks: n.Chunks, Entries: n.Entries}
	c.rescue[h] = loc
	c.mu.Unlock()
	return true
}

func (c *checker) markBad(h digest.Hash) {
	c.mu.Lock()
	c.bad[h] = true
	c.mu.Unlock()
}

// inSomeFooter reports whether a readable pack holds blob h: what the index
// lacks but a pack holds is index damage, not data loss.
func (c *checker) inSomeFooter(h digest.Hash) bool {
	for _, fm := range c.footers {
		if _, ok := fm[h]; ok {
			return true
		}
	}
	return false
}

// checkRefs walks every ref's tree (the ref log's refs) through the nodes
// that verified.
func (c *checker) checkRefs(context.Context) error {
	refs := c.refs
	for _, d := range c.refLogDamage {
		c.problem("%s", d)
	}
	c.res.Refs = len(refs)
	broken := map[digest.Hash]string{} // node → why it cannot be read ("" = sound)
	var walk func(h digest.Hash) string
	walk = func(h digest.Hash) string {
		if why, ok := broken[h]; ok {
			return why
		}
		broken[h] = "" // a cycle cannot occur in a hash tree; this just stops loops on forged data
		n, ok := c.nodes[h]
		var why string
		switch {
		case c.bad[h]:
			why = fmt.Sprintf("node %s is corrupt", h)
		case !ok && c.inSomeFooter(h):
			why = fmt.Sprintf("node %s is in a pack but not in the index", h)
			c.staleIndex = true
		case !ok:
			why = fmt.Sprintf("node %s is missing", h)
		default:
			for _, ch := range n.Chunks {
				if ch.IsHole() {
					continue
				}
				loc, ok := c.locs[prefixChunk][ch.Hash]
				switch {
				case !ok && c.inSomeFooter(ch.Hash):
					why = fmt.Sprintf("chunk %s is in a pack but not in the index", ch.Hash)
					c.staleIndex = true
				case !ok:
					why = fmt.Sprintf("chunk %s is missing", ch.Hash)
				case c.bad[ch.Hash]:
					why = fmt.Sprintf("chunk %s in pack %s is corrupt", ch.Hash, loc.Pack)
				}
				if why != "" {
					break
				}
			}
			for _, e := range n.Entries {
				if why != "" {
					break
				}
				why = walk(e.Hash)
			}
		}
		broken[h] = why
		return why
	}
	names := make([]string, 0, len(refs))
	for name := range refs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		tree := refs[name].Tree
		if why := walk(tree); why != "" {
			c.problem("ref %s (tree %s): cannot be read: %s", name, tree, why)
			c.dropRefs = append(c.dropRefs, name)
		}
	}
	for h := range c.nodes {
		if _, reached := broken[h]; !reached {
			c.res.GarbageNodes++
		}
	}
	return nil
}

// repair mends what check found, with an index that has what the packs
// hold: drops unreadable blobs and the refs that need them, salvages
// damaged packs, forgets missing ones, rewrites a damaged ref log.
func (c *checker) repair(ctx context.Context) ([]string, error) {
	s := c.s
	var repaired []string
	if len(c.rescue) > 0 {
		// First, before the packs they were in are dropped.
		s.gcMu.Lock()
		_, err := s.copyBlobs(c.rescue, packID{}, fmt.Sprintf("store %s: fsck: rescue nodes", s.dir))
		s.gcMu.Unlock()
		if err != nil {
			return repaired, err
		}
		repaired = append(repaired, fmt.Sprintf("wrote %d nodes from the index's copies into a new pack", len(c.rescue)))
	}
	s.gcMu.Lock()
	batch := s.db.NewBatch()
	for h := range c.bad {
		prefix := byte(prefixChunk)
		if _, isNode := c.locs[prefixNode][h]; isNode {
			prefix = prefixNode
		}
		batch.Delete(hashKey(prefix, h), nil)
		repaired = append(repaired, fmt.Sprintf("dropped %s %s from the index", blobKind(prefix), h))
	}
	if len(c.bad) > 0 {
		// Imports reuse chunk lists through the stat cache without reading
		// the chunks: forget it all, rather than work out which entries
		// reach dropped chunks.
		if err := s.scan(prefixStat, func(k, _ []byte) error {
			return batch.Delete(append([]byte{prefixStat}, k...), nil)
		}); err != nil {
			s.gcMu.Unlock()
			batch.Close()
			return repaired, err
		}
		repaired = append(repaired, "forgot the import stat cache")
	}
	for id := range c.missing {
		// The blobs pointing into it were dropped above as bad.
		batch.Delete(hashKeyPack(id), nil)
		repaired = append(repaired, fmt.Sprintf("dropped missing pack %s from the index", id))
	}
	err := batch.Commit(pebble.Sync)
	batch.Close()
	if err != nil {
		s.gcMu.Unlock()
		return repaired, fmt.Errorf("store %s: fsck: commit repair: %w", s.dir, s.indexError(err))
	}
	if len(c.dropRefs) > 0 {
		changes := make([]refChange, len(c.dropRefs))
		for i, r := range c.dropRefs {
			changes[i] = refChange{Name: r, Delete: true}
			repaired = append(repaired, "dropped ref "+r)
		}
		if err := s.setRefs(changes); err != nil {
			s.gcMu.Unlock()
			return repaired, err
		}
	}
	s.gcMu.Unlock()
	s.refMu.Lock()
	if len(s.refs.damage) > 0 {
		if err := s.refs.compact(); err != nil {
			s.refMu.Unlock()
			return repaired, err
		}
		repaired = append(repaired, "rewrote the ref log without its damaged records")
	}
	s.refMu.Unlock()
	// A damaged pack (truncated, or its footer unreadable) keeps failing
	// checks even with its bad blobs dropped: move the blobs that still
	// verify into a new pack, and drop the old one.
	for id := range c.damaged {
		good := map[digest.Hash]chunkLoc{}
		for _, locs := range c.locs {
			for h, loc := range locs {
				if _, rescued := c.rescue[h]; loc.Pack == id && !c.bad[h] && !rescued {
					good[h] = loc
				}
			}
		}
		s.gcMu.Lock()
		_, err := s.rewritePack(id, good)
		s.gcMu.Unlock()
		if err != nil {
			return repaired, fmt.Errorf("store %s: fsck: %w", s.dir, err)
		}
		repaired = append(repaired, fmt.Sprintf("moved %d sound blobs out of damaged pack %s and dropped it", len(good), id))
	}
	s.checkIndex()
	return repaired, ctx.Err()
}

func mergeProblems(a, b []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range append(append([]string(nil), a...), b...) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	sort.Strings(out)
	return out
}
