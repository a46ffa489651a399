package cas

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"

	"github.com/cockroachdb/pebble/v2"

	"github.com/forge-build/forge/cas/digest"
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

// GC frees what no ref, lease or open Writer reaches. It marks from those
// roots, deletes unreachable nodes and chunks from the index, and then
// rewrites or deletes packs, deleting old pack files only after the index
// no longer points into them, so a GC interrupted at any point leaves a
// consistent store (and garbage the next GC frees).
func (s *Store) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	var res GCResult
	if opts.RepackBelow <= 0 {
		opts.RepackBelow = 0.8
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

	// Sweep the index.
	batch := s.db.NewBatch()
	defer batch.Close()
	if err := s.scan(prefixNode, func(k, _ []byte) error {
		h, _ := digest.FromBytes(k)
		if _, ok := live[h]; !ok {
			res.Nodes++
			batch.Delete(hashKey(prefixNode, h), nil)
		}
		return nil
	}); err != nil {
		return res, err
	}
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
	type packUse struct {
		live      int64
		liveLocs  map[digest.Hash]chunkLoc
		deadBytes int64
	}
	use := map[packID]*packUse{}
	if err := s.scan(prefixChunk, func(k, v []byte) error {
		h, _ := digest.FromBytes(k)
		loc, err := decodeChunkLoc(v)
		if err != nil {
			return fmt.Errorf("chunk %s: %w", h, err)
		}
		u := use[loc.Pack]
		if u == nil {
			u = &packUse{liveLocs: map[digest.Hash]chunkLoc{}}
			use[loc.Pack] = u
		}
		if _, ok := live[h]; ok {
			u.live += int64(loc.Length)
			u.liveLocs[h] = loc
			return nil
		}
		res.Chunks++
		res.ChunkBytes += int64(loc.Length)
		u.deadBytes += int64(loc.Length)
		batch.Delete(hashKey(prefixChunk, h), nil)
		return nil
	}); err != nil {
		return res, err
	}

	// Decide per pack.
	known := map[packID]packMeta{}
	if err := s.scan(prefixPack, func(k, v []byte) error {
		var id packID
		copy(id[:], k)
		m, err := decodePackMeta(v)
		if err != nil {
			return fmt.Errorf("pack %s: %w", id, err)
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
		return res, fmt.Errorf("store %s: gc: commit index: %w", s.dir, err)
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

// mark returns every node and chunk reachable from refs (but those in
// skip), leases and open Writers.
func (s *Store) mark(ctx context.Context, skip map[string]bool) (map[digest.Hash]struct{}, error) {
	live := map[digest.Hash]struct{}{}
	var roots []digest.Hash
	refs, err := s.Refs()
	if err != nil {
		return nil, err
	}
	for _, r := range refs {
		if !skip[r.Name] {
			roots = append(roots, r.Tree)
		}
	}
	if err := s.scan(prefixLease, func(k, v []byte) error {
		hs, err := decodeHashes(v)
		if err != nil {
			return fmt.Errorf("lease %q: %w", k, err)
		}
		roots = append(roots, hs...)
		return nil
	}); err != nil {
		return nil, err
	}
	s.mu.Lock()
	for w := range s.writers {
		w.addHeld(live)
	}
	for h := range s.pins {
		roots = append(roots, h)
	}
	s.mu.Unlock()
	// What writers hold is live. Walking it is safe: a hash that is a
	// chunk, or a node not committed yet, is simply not found.
	for h := range live {
		roots = append(roots, h)
	}
	visited := map[digest.Hash]bool{}
	var walk func(h digest.Hash) error
	walk = func(h digest.Hash) error {
		if visited[h] {
			return nil
		}
		visited[h] = true
		live[h] = struct{}{}
		n, err := s.Node(h)
		if errors.Is(err, ErrNotFound) {
			return nil // a chunk, or a node a Writer has not committed yet
		}
		if err != nil {
			return fmt.Errorf("gc: %w (run fsck)", err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		for _, c := range n.Chunks {
			if !c.IsHole() {
				live[c.Hash] = struct{}{}
			}
		}
		for _, e := range n.Entries {
			if err := walk(e.Hash); err != nil {
				return err
			}
		}
		return nil
	}
	for _, r := range roots {
		if err := walk(r); err != nil {
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
		blob, err = s.readBlob(h, loc, blob[:0])
		if err != nil {
			return 0, fmt.Errorf("%s: %w", where, err)
		}
		nl, err := out.add(h, blob, int(loc.RawLength), loc.Flags)
		if err != nil {
			return 0, fmt.Errorf("%s: %w", where, err)
		}
		batch.Set(hashKey(prefixChunk, h), nl.encode(), nil)
	}
	meta, err := out.finish()
	if err != nil {
		return 0, fmt.Errorf("%s: %w", where, err)
	}
	published = true
	batch.Set(hashKeyPack(out.id), meta.encode(), nil)
	batch.Delete(hashKeyPack(old), nil)
	if err := batch.Commit(pebble.Sync); err != nil {
		return 0, fmt.Errorf("%s: commit index: %w", where, err)
	}
	return meta.Size, s.removePack(old)
}
