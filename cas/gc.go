package cas

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/cockroachdb/pebble/v2"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/pack"
)

// GCOptions tune GC.
type GCOptions struct {
	// MaxSize, if positive, drops least-recently-used refs until what the
	// remaining refs and leases reach fits in MaxSize bytes of chunks.
	MaxSize int64
	// DryRun reports what GC would do and changes nothing.
	DryRun bool
	// RepackBelow is the live fraction under which a pack with dead
	// chunks is rewritten with only its live ones. Default 0.8: at most a
	// fifth of what packs hold stays garbage, and GC does not copy a
	// nearly full pack to free a little.
	RepackBelow float64
}

// GCResult reports what GC did (or, with DryRun, would do).
type GCResult struct {
	DroppedRefs    []string
	Nodes          int   // nodes freed
	Chunks         int   // chunks freed
	ChunkBytes     int64 // their bytes
	PacksDeleted   int   // packs that held nothing live
	PacksRewritten int   // packs rewritten with only their live chunks
	OrphanPacks    int   // pack files the index never knew (left by a killed writer)
	FreedBytes     int64 // pack bytes removed from disk, net of rewrites
}

// GC frees what no ref or open Writer reaches, and what no mount or read
// in progress has pinned. It marks from those roots, deletes unreachable
// nodes and chunks from the index, and then rewrites or deletes packs,
// deleting old pack files only after the index no longer points into
// them, so a GC interrupted at any point leaves a consistent store (and
// garbage the next GC frees).
//
// The ref log, not the index, says what is live: GC refuses to run while
// the index lacks any node or chunk a ref reaches, and before it deletes a
// pack it reads the pack's footer and keeps the pack if it holds a live
// blob the index does not locate in a pack that stays.
func (s *Store) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	var res GCResult
	if opts.RepackBelow <= 0 {
		opts.RepackBelow = 0.8
	}
	if d := s.Damage(); len(d) > 0 {
		return res, damageError(s.dir, d)
	}
	if why := s.packsDirProblem(); why != "" {
		return res, fmt.Errorf("store %s: gc: %s: not collecting", s.dir, why)
	}
	if opts.MaxSize > 0 {
		dropped, err := s.lruVictims(ctx, opts.MaxSize)
		if err != nil {
			return res, err
		}
		res.DroppedRefs = dropped
		if !opts.DryRun && len(dropped) > 0 {
			if err := s.DeleteRefs(dropped...); err != nil {
				return res, err
			}
		}
	}

	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	skipRefs := map[string]bool{}
	if opts.DryRun {
		for _, r := range res.DroppedRefs {
			skipRefs[r] = true
		}
	}
	live, err := s.mark(ctx, skipRefs)
	if err != nil {
		return res, err
	}

	// Sweep the index: chunks and nodes alike are blobs in packs.
	batch := s.db.NewBatch()
	defer batch.Close()
	// Stat-cache entries of files whose nodes are going.
	if err := s.scan(prefixStat, func(k, v []byte) error {
		if e, ok := decodeStatEntry(v); ok {
			if _, live := live[e.Node]; live {
				return nil
			}
		}
		batch.Delete(append([]byte{prefixStat}, k...), nil)
		return nil
	}); err != nil {
		return res, err
	}
	use := map[packID]*packUse{}
	where := map[digest.Hash]packID{} // live blob → the pack the index locates it in
	for _, prefix := range []byte{prefixChunk, prefixNode} {
		if err := s.scan(prefix, func(k, v []byte) error {
			h, _ := digest.FromBytes(k)
			loc, err := decodeChunkLoc(v)
			if err != nil {
				return fmt.Errorf("gc: %s %s: %w (run forge store fsck --repair)", blobKind(prefix), h, err)
			}
			u := use[loc.Pack]
			if u == nil {
				u = &packUse{liveLocs: map[digest.Hash]chunkLoc{}}
				use[loc.Pack] = u
			}
			if _, ok := live[h]; ok {
				u.live += int64(loc.Length)
				u.liveLocs[h] = loc
				where[h] = loc.Pack
				return nil
			}
			if prefix == prefixNode {
				res.Nodes++
			} else {
				res.Chunks++
				res.ChunkBytes += int64(loc.Length)
			}
			u.deadBytes += int64(loc.Length)
			batch.Delete(hashKey(prefix, h), nil)
			return nil
		}); err != nil {
			return res, err
		}
	}

	// Decide per pack.
	known := map[packID]packMeta{}
	if err := s.scan(prefixPack, func(k, v []byte) error {
		var id packID
		copy(id[:], k)
		m, err := decodePackMeta(v)
		if err != nil {
			return fmt.Errorf("gc: pack %s: %w (run forge store fsck --repair)", id, err)
		}
		known[id] = m
		return nil
	}); err != nil {
		return res, err
	}
	var toDelete, toRewrite []packID
	for id, m := range known {
		u := use[id]
		switch {
		case u == nil || u.live == 0:
			toDelete = append(toDelete, id)
		case u.deadBytes > 0 && float64(u.live) < opts.RepackBelow*float64(m.Size):
			toRewrite = append(toRewrite, id)
		}
	}
	sort.Slice(toRewrite, func(i, j int) bool { return toRewrite[i].String() < toRewrite[j].String() })
	onDisk, err := s.packFiles()
	if err != nil {
		return res, err
	}
	var orphans []packID
	for id := range onDisk {
		if _, ok := known[id]; !ok {
			orphans = append(orphans, id)
		}
	}
	// The last word before a pack goes: its own footer. A pack the index
	// lost track of may hold what a ref needs.
	going := map[packID]bool{}
	for _, id := range append(toDelete, orphans...) {
		going[id] = true
	}
	for _, id := range append(toDelete, orphans...) {
		if _, ok := onDisk[id]; !ok {
			continue
		}
		if err := s.safeToDelete(id, onDisk[id], live, where, going); err != nil {
			return res, err
		}
	}
	res.PacksDeleted, res.PacksRewritten, res.OrphanPacks = len(toDelete), len(toRewrite), len(orphans)
	for _, id := range toDelete {
		res.FreedBytes += onDisk[id]
	}
	for _, id := range orphans {
		res.FreedBytes += onDisk[id]
	}
	if opts.DryRun {
		for _, id := range toRewrite {
			res.FreedBytes += onDisk[id] - use[id].live
		}
		return res, nil
	}

	for _, id := range toDelete {
		batch.Delete(hashKeyPack(id), nil)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return res, fmt.Errorf("store %s: gc: commit index: %w", s.dir, s.indexError(err))
	}
	// Only now that the index no longer points into them.
	for _, id := range append(toDelete, orphans...) {
		if err := s.removePack(id); err != nil {
			return res, err
		}
	}
	for _, id := range toRewrite {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		newSize, err := s.rewritePack(id, use[id].liveLocs)
		if err != nil {
			return res, err
		}
		res.FreedBytes += onDisk[id] - newSize
	}
	return res, nil
}

// packUse is how much of a pack is live, by the index.
type packUse struct {
	live      int64
	liveLocs  map[digest.Hash]chunkLoc
	deadBytes int64
}

// safeToDelete reads the footer of pack id and fails if the pack holds a
// live blob that the index does not locate in a pack that stays, or if the
// footer cannot be read (a damaged pack is fsck's to salvage).
func (s *Store) safeToDelete(id packID, size int64, live map[digest.Hash]struct{}, where map[digest.Hash]packID, going map[packID]bool) error {
	entries, _, err := s.readFooter(id, size)
	if err != nil {
		return fmt.Errorf("store %s: gc: pack %s has no readable footer (%w): not deleting it; run forge store fsck", s.dir, id, err)
	}
	for _, e := range entries {
		if _, ok := live[e.Hash]; !ok {
			continue
		}
		if p, ok := where[e.Hash]; !ok || going[p] {
			return fmt.Errorf("store %s: gc: pack %s holds %s, which a ref needs and the index does not locate elsewhere: %w; run forge store fsck --repair, which rebuilds the index", s.dir, id, e.Hash, errIndexDamaged)
		}
	}
	return nil
}

// mark returns every node and chunk reachable from refs (but those in
// skip), pins and open Writers. A ref's tree that reaches a node or chunk
// the index does not have is damage, and an error: what the index lost
// cannot be told from garbage.
func (s *Store) mark(ctx context.Context, skip map[string]bool) (map[digest.Hash]struct{}, error) {
	live := map[digest.Hash]struct{}{}
	refs, err := s.Refs()
	if err != nil {
		return nil, err
	}
	var roots []digest.Hash
	for _, r := range refs {
		if !skip[r.Name] {
			roots = append(roots, r.Tree)
		}
	}
	// Roots that may be missing: what Writers hold (chunks, nodes not
	// committed yet) and pinned trees.
	var soft []digest.Hash
	held := map[digest.Hash]struct{}{}
	s.mu.Lock()
	for w := range s.writers {
		w.addHeld(held)
	}
	for h := range s.pins {
		soft = append(soft, h)
	}
	s.mu.Unlock()
	for h := range held {
		live[h] = struct{}{}
		soft = append(soft, h)
	}
	visited := map[digest.Hash]bool{}
	var walk func(h digest.Hash, required bool) error
	walk = func(h digest.Hash, required bool) error {
		if visited[h] {
			return nil
		}
		visited[h] = true
		live[h] = struct{}{}
		n, err := s.Node(h)
		if errors.Is(err, ErrNotFound) {
			if required {
				return damageError(s.dir, []string{fmt.Sprintf("node %s, which a ref reaches, is not in the index", h)})
			}
			return nil // a chunk, or a node a Writer has not committed yet
		}
		if err != nil {
			return fmt.Errorf("gc: %w (run forge store fsck)", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, c := range n.Chunks {
			if c.IsHole() {
				continue
			}
			live[c.Hash] = struct{}{}
			if required {
				ok, err := s.has(hashKey(prefixChunk, c.Hash))
				if err != nil {
					return err
				}
				if !ok {
					return damageError(s.dir, []string{fmt.Sprintf("chunk %s, which a ref reaches, is not in the index", c.Hash)})
				}
			}
		}
		for _, e := range n.Entries {
			if err := walk(e.Hash, required); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range roots {
		if err := walk(r, true); err != nil {
			return nil, err
		}
	}
	for _, r := range soft {
		if err := walk(r, false); err != nil {
			return nil, err
		}
	}
	return live, nil
}

// lruVictims picks the refs to drop, least recently used first, until the
// chunks the rest reach fit in maxSize bytes.
func (s *Store) lruVictims(ctx context.Context, maxSize int64) ([]string, error) {
	refs, err := s.Refs()
	if err != nil {
		return nil, err
	}
	infos := map[digest.Hash]treeInfo{}
	count := map[digest.Hash]int{} // chunk → refs reaching it
	var total int64
	for _, r := range refs {
		info, ok := infos[r.Tree]
		if !ok {
			if info, err = s.analyze(ctx, r.Tree); err != nil {
				return nil, err
			}
			infos[r.Tree] = info
		}
		for c, size := range info.chunks {
			if count[c] == 0 {
				total += size
			}
			count[c]++
		}
	}
	sort.SliceStable(refs, func(i, j int) bool { return refs[i].LastUsed.Before(refs[j].LastUsed) })
	var victims []string
	for _, r := range refs {
		if total <= maxSize {
			break
		}
		victims = append(victims, r.Name)
		for c, size := range infos[r.Tree].chunks {
			if count[c]--; count[c] == 0 {
				total -= size
			}
		}
	}
	return victims, nil
}

func (s *Store) removePack(id packID) error {
	s.forgetPack(id)
	if err := os.Remove(s.packPath(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store %s: gc: %w", s.dir, err)
	}
	return nil
}

// rewritePack copies a pack's live chunks into a new pack, points the index
// at the new one, and only then deletes the old one.
func (s *Store) rewritePack(old packID, liveLocs map[digest.Hash]chunkLoc) (int64, error) {
	where := fmt.Sprintf("store %s: gc: rewrite pack %s", s.dir, old)
	out, err := s.newPackOutput()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", where, err)
	}
	published := false
	defer func() {
		if !published {
			out.abort()
		}
	}()
	hashes := make([]digest.Hash, 0, len(liveLocs))
	for h := range liveLocs {
		hashes = append(hashes, h)
	}
	// In the old pack's order: sequential reads.
	sort.Slice(hashes, func(i, j int) bool { return liveLocs[hashes[i]].Offset < liveLocs[hashes[j]].Offset })
	batch := s.db.NewBatch()
	defer batch.Close()
	var blob []byte
	for _, h := range hashes {
		loc := liveLocs[h]
		blob, err = s.readBlob(h, loc, loc.Flags, blob[:0])
		if err != nil {
			return 0, fmt.Errorf("%s: %w", where, err)
		}
		nl, err := out.add(h, blob, int(loc.RawLength), loc.Flags)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", where, err)
		}
		prefix := byte(prefixChunk)
		if loc.Flags == pack.FlagNode {
			prefix = prefixNode
		}
		batch.Set(hashKey(prefix, h), nl.encode(), nil)
	}
	meta, err := out.finish()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", where, err)
	}
	published = true
	batch.Set(hashKeyPack(out.id), meta.encode(), nil)
	batch.Delete(hashKeyPack(old), nil)
	if err := batch.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("%s: commit index: %w", where, s.indexError(err))
	}
	return meta.Size, s.removePack(old)
}
