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
// in progress has pinned. It plans (planGC: mark from those roots, decide
// what goes from the index and which packs are deleted or rewritten) and
// then applies the plan (applyGC: index first, pack files after, so a GC
// interrupted at any point leaves a consistent store and garbage the next
// GC frees). DryRun is the plan alone, as restic's prune is PlanPrune then
// Execute.
//
// The ref log, not the index, says what is live: GC refuses to run while
// the index lacks any node or chunk a ref reaches, and before it deletes a
// pack it reads the pack's footer and keeps the pack if it holds a live
// blob the index does not locate in a pack that stays.
func (s *Store) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	if opts.RepackBelow <= 0 {
		opts.RepackBelow = 0.8
	}
	if d := s.Damage(); len(d) > 0 {
		return GCResult{}, damageError(s.dir, d)
	}
	if why := s.packsDirProblem(); why != "" {
		return GCResult{}, fmt.Errorf("store %s: gc: %s: not collecting", s.dir, why)
	}
	var dropped []string
	if opts.MaxSize > 0 {
		var err error
		if dropped, err = s.lruVictims(ctx, opts.MaxSize); err != nil {
			return GCResult{}, err
		}
		if !opts.DryRun && len(dropped) > 0 {
			if err := s.DeleteRefs(dropped...); err != nil {
				return GCResult{DroppedRefs: dropped}, err
			}
		}
	}
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	skip := map[string]bool{}
	if opts.DryRun {
		// Not dropped: planned as if they were.
		for _, r := range dropped {
			skip[r] = true
		}
	}
	plan, err := s.planGC(ctx, opts.RepackBelow, skip)
	if err != nil {
		return GCResult{DroppedRefs: dropped}, err
	}
	plan.res.DroppedRefs = dropped
	if opts.DryRun {
		return plan.res, nil
	}
	return s.applyGC(ctx, plan)
}

// gcPlan is what one GC will do. Its result is what applying it frees;
// nothing changes until applyGC.
type gcPlan struct {
	res       GCResult
	dead      [][]byte // index keys to delete: blobs, stat-cache entries
	toDelete  []packID // packs the index knows that hold nothing live
	orphans   []packID // pack files the index does not know
	toRewrite []packID // packs to rewrite with their live blobs only
	use       map[packID]*packUse
	onDisk    map[packID]int64
}

// planGC marks what is live and decides what goes. gcMu is held.
func (s *Store) planGC(ctx context.Context, repackBelow float64, skip map[string]bool) (*gcPlan, error) {
	plan := &gcPlan{use: map[packID]*packUse{}}
	res := &plan.res
	live, err := s.mark(ctx, skip)
	if err != nil {
		return nil, err
	}
	// Stat-cache entries of files whose nodes are going.
	if err := s.scan(prefixStat, func(k, v []byte) error {
		if e, ok := decodeStatEntry(v); ok {
			if _, live := live[e.Node]; live {
				return nil
			}
		}
		plan.dead = append(plan.dead, append([]byte{prefixStat}, k...))
		return nil
	}); err != nil {
		return nil, err
	}
	// Chunks and nodes alike are blobs in packs.
	where := map[digest.Hash]packID{} // live blob → the pack the index locates it in
	for _, prefix := range []byte{prefixChunk, prefixNode} {
		if err := s.scan(prefix, func(k, v []byte) error {
			h, _ := digest.FromBytes(k)
			loc, err := decodeChunkLoc(v)
			if err != nil {
				return fmt.Errorf("gc: %s %s: %w (run forge store fsck --repair)", blobKind(prefix), h, err)
			}
			u := plan.use[loc.Pack]
			if u == nil {
				u = &packUse{liveLocs: map[digest.Hash]chunkLoc{}}
				plan.use[loc.Pack] = u
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
			plan.dead = append(plan.dead, hashKey(prefix, h))
			return nil
		}); err != nil {
			return nil, err
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
		return nil, err
	}
	for id, m := range known {
		u := plan.use[id]
		switch {
		case u == nil || u.live == 0:
			plan.toDelete = append(plan.toDelete, id)
		case u.deadBytes > 0 && float64(u.live) < repackBelow*float64(m.Size):
			plan.toRewrite = append(plan.toRewrite, id)
		}
	}
	sort.Slice(plan.toRewrite, func(i, j int) bool { return plan.toRewrite[i].String() < plan.toRewrite[j].String() })
	if plan.onDisk, err = s.packFiles(); err != nil {
		return nil, err
	}
	for id := range plan.onDisk {
		if _, ok := known[id]; !ok {
			plan.orphans = append(plan.orphans, id)
		}
	}
	// The last word before a pack goes: its own footer. A pack the index
	// lost track of may hold what a ref needs.
	going := map[packID]bool{}
	for _, id := range append(plan.toDelete, plan.orphans...) {
		going[id] = true
	}
	for _, id := range append(plan.toDelete, plan.orphans...) {
		if _, ok := plan.onDisk[id]; !ok {
			continue
		}
		if err := s.safeToDelete(id, plan.onDisk[id], live, where, going); err != nil {
			return nil, err
		}
	}
	res.PacksDeleted, res.PacksRewritten, res.OrphanPacks = len(plan.toDelete), len(plan.toRewrite), len(plan.orphans)
	for _, id := range append(plan.toDelete, plan.orphans...) {
		res.FreedBytes += plan.onDisk[id]
	}
	for _, id := range plan.toRewrite {
		res.FreedBytes += plan.onDisk[id] - plan.use[id].live
	}
	return plan, nil
}

// applyGC carries a plan out: the index first, then the pack files it no
// longer points into, then the rewrites. gcMu is held. The result's
// FreedBytes counts what rewrites really freed (their new packs' headers
// and footers included).
func (s *Store) applyGC(ctx context.Context, plan *gcPlan) (GCResult, error) {
	res := plan.res
	batch := s.db.NewBatch()
	defer batch.Close()
	for _, k := range plan.dead {
		batch.Delete(k, nil)
	}
	for _, id := range plan.toDelete {
		batch.Delete(hashKeyPack(id), nil)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return res, fmt.Errorf("store %s: gc: commit index: %w", s.dir, s.indexError(err))
	}
	// Only now that the index no longer points into them.
	for _, id := range append(plan.toDelete, plan.orphans...) {
		if err := s.removePack(id); err != nil {
			return res, err
		}
	}
	for _, id := range plan.toRewrite {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		newSize, err := s.rewritePack(id, plan.use[id].liveLocs)
		if err != nil {
			return res, err
		}
		res.FreedBytes -= newSize - plan.use[id].live // the plan counted the live bytes alone
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
	size, err := s.copyBlobs(liveLocs, old, where)
	if err != nil {
		return 0, err
	}
	return size, s.removePack(old)
}

// copyBlobs copies the blobs of liveLocs into a new pack and points the
// index at it, in one synced batch that also drops the record of pack
// drop (unless it is the zero ID). A node whose bytes in its pack do not
// verify is copied from the index's copy of it when that one does. It
// returns the new pack's size.
func (s *Store) copyBlobs(liveLocs map[digest.Hash]chunkLoc, drop packID, where string) (int64, error) {
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
		// As stored: a compressed chunk moves compressed.
		blob, err = s.readStoredBlob(h, loc, blob[:0])
		if err != nil && loc.Flags == pack.FlagNode {
			if cp := s.nodeCopy(h); cp != nil {
				blob, err = append(blob[:0], cp...), nil
			}
		}
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
		batch.Set(hashKey(prefix, h), encodeBlobRecord(nl, blob), nil)
	}
	meta, err := out.finish()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", where, err)
	}
	published = true
	batch.Set(hashKeyPack(out.id), meta.encode(), nil)
	if drop != (packID{}) {
		batch.Delete(hashKeyPack(drop), nil)
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("%s: commit index: %w", where, s.indexError(err))
	}
	return meta.Size, nil
}
