package cas

import (
	"context"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"sync"

	"github.com/cockroachdb/pebble/v2"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/cas/pack"
)

// FsckOptions tune Fsck.
type FsckOptions struct {
	// Repair drops the refs and leases whose trees cannot be read, and
	// the index entries of corrupt chunks and nodes, so that a later
	// import stores them anew instead of deduplicating against them.
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

// Fsck re-hashes every chunk and node, checks that every pack, chunk and
// node that refs and leases reach is present and sound, and reports every
// problem it finds.
func (s *Store) Fsck(ctx context.Context, opts FsckOptions) (FsckResult, error) {
	var res FsckResult
	var mu sync.Mutex
	problem := func(format string, args ...any) {
		mu.Lock()
		res.Problems = append(res.Problems, fmt.Sprintf(format, args...))
		mu.Unlock()
	}
	// Hold GC off: it must not delete what is being checked.
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	// Everything is read from one snapshot of the index: imports and
	// commits go on meanwhile, and a ref committed after the chunks were
	// listed must not look like a ref to missing chunks.
	snap := s.db.NewSnapshot()
	defer snap.Close()

	// Packs the index knows, and their footers.
	packs := map[packID]packMeta{}
	if err := s.scanIn(snap, prefixPack, func(k, v []byte) error {
		var id packID
		copy(id[:], k)
		m, err := decodePackMeta(v)
		if err != nil {
			problem("pack %s: index record: %v", id, err)
			return nil
		}
		packs[id] = m
		return nil
	}); err != nil {
		return res, err
	}
	res.Packs = len(packs)
	onDisk, err := s.packFiles()
	if err != nil {
		return res, err
	}
	for id := range onDisk {
		if _, ok := packs[id]; !ok {
			res.GarbagePacks++
		}
	}
	footers := map[packID]map[digest.Hash]pack.Entry{}
	damaged := map[packID]bool{} // on disk, but not as written
	for id, m := range packs {
		size, ok := onDisk[id]
		if !ok {
			problem("pack %s: missing from %s", id, filepath.Join(s.dir, packsDir))
			continue
		}
		if size != m.Size {
			problem("pack %s: %d bytes on disk, index says %d", id, size, m.Size)
			damaged[id] = true
		}
		f, err := s.packFile(id)
		if err != nil {
			problem("pack %s: %v", id, err)
			damaged[id] = true
			continue
		}
		entries, err := pack.ReadIndex(f, size)
		if err != nil {
			problem("pack %s: %v", id, err)
			damaged[id] = true
			continue
		}
		fm := make(map[digest.Hash]pack.Entry, len(entries))
		for _, e := range entries {
			fm[e.Hash] = e
		}
		footers[id] = fm
	}

	// Chunks: every one re-hashed, pack by pack, in parallel.
	byPack := map[packID][]digest.Hash{}
	locs := map[digest.Hash]chunkLoc{}
	if err := s.scanIn(snap, prefixChunk, func(k, v []byte) error {
		h, _ := digest.FromBytes(k)
		loc, err := decodeChunkLoc(v)
		if err != nil {
			problem("chunk %s: %v", h, err)
			return nil
		}
		locs[h] = loc
		byPack[loc.Pack] = append(byPack[loc.Pack], h)
		return nil
	}); err != nil {
		return res, err
	}
	res.Chunks = len(locs)
	bad := map[digest.Hash]bool{} // chunks and nodes that cannot be read
	var badMu sync.Mutex
	markBad := func(h digest.Hash) { badMu.Lock(); bad[h] = true; badMu.Unlock() }
	sem := make(chan struct{}, runtime.GOMAXPROCS(0))
	var wg sync.WaitGroup
	for id, hashes := range byPack {
		if _, ok := packs[id]; !ok {
			for _, h := range hashes {
				problem("chunk %s in pack %s: the index has no such pack", h, id)
				markBad(h)
			}
			continue
		}
		sort.Slice(hashes, func(i, j int) bool { return locs[hashes[i]].Offset < locs[hashes[j]].Offset })
		wg.Add(1)
		sem <- struct{}{}
		go func(id packID, hashes []digest.Hash) {
			defer wg.Done()
			defer func() { <-sem }()
			var buf []byte
			for _, h := range hashes {
				if ctx.Err() != nil {
					return
				}
				loc := locs[h]
				var err error
				buf, err = s.readBlob(h, loc, buf[:0])
				if err != nil {
					problem("%v", err)
					markBad(h)
					continue
				}
				if fe, ok := footers[id][h]; footers[id] != nil && (!ok || fe.Offset != loc.Offset || fe.Length != loc.Length) {
					problem("chunk %s in pack %s: the pack's footer does not list it at offset %d", h, id, loc.Offset)
				}
			}
		}(id, hashes)
	}
	wg.Wait()
	if err := ctx.Err(); err != nil {
		return res, err
	}

	// Nodes: re-hashed and decoded.
	nodes := map[digest.Hash]*node.Node{}
	if err := s.scanIn(snap, prefixNode, func(k, v []byte) error {
		h, _ := digest.FromBytes(k)
		if got := digest.Sum(v); got != h {
			problem("node %s: stored bytes hash to %s", h, got)
			bad[h] = true
			return nil
		}
		n, err := node.Decode(v)
		if err != nil {
			problem("node %s: %v", h, err)
			bad[h] = true
			return nil
		}
		// Keep only what reachability needs.
		nodes[h] = &node.Node{Type: n.Type, Chunks: n.Chunks, Entries: n.Entries}
		return nil
	}); err != nil {
		return res, err
	}
	res.Nodes = len(nodes) + countTrue(bad, func(h digest.Hash) bool { _, isChunk := locs[h]; return !isChunk })

	// Reachability from refs and leases.
	broken := map[digest.Hash]string{} // node → why it cannot be read ("" = sound)
	var check func(h digest.Hash) string
	check = func(h digest.Hash) string {
		if why, ok := broken[h]; ok {
			return why
		}
		broken[h] = "" // a cycle cannot occur in a hash tree; this just stops loops on forged data
		n, ok := nodes[h]
		var why string
		switch {
		case bad[h]:
			why = fmt.Sprintf("node %s is corrupt", h)
		case !ok:
			why = fmt.Sprintf("node %s is missing", h)
		default:
			for _, c := range n.Chunks {
				if c.IsHole() {
					continue
				}
				if _, ok := locs[c.Hash]; !ok {
					why = fmt.Sprintf("chunk %s is missing", c.Hash)
					break
				}
				if bad[c.Hash] {
					why = fmt.Sprintf("chunk %s in pack %s is corrupt", c.Hash, locs[c.Hash].Pack)
					break
				}
			}
			for _, e := range n.Entries {
				if why != "" {
					break
				}
				why = check(e.Hash)
			}
		}
		broken[h] = why
		return why
	}
	refs, err := s.refsIn(snap)
	if err != nil {
		return res, err
	}
	res.Refs = len(refs)
	var dropRefs, dropLeases []string
	for _, r := range refs {
		if why := check(r.Tree); why != "" {
			problem("ref %s (tree %s): cannot be read: %s", r.Name, r.Tree, why)
			dropRefs = append(dropRefs, r.Name)
		}
	}
	if err := s.scanIn(snap, prefixLease, func(k, v []byte) error {
		hs, err := decodeHashes(v)
		if err != nil {
			problem("lease %q: %v", k, err)
			dropLeases = append(dropLeases, string(k))
			return nil
		}
		for _, h := range hs {
			if _, isChunk := locs[h]; isChunk {
				continue
			}
			if why := check(h); why != "" {
				problem("lease %q (%s): cannot be read: %s", k, h, why)
				dropLeases = append(dropLeases, string(k))
				break
			}
		}
		return nil
	}); err != nil {
		return res, err
	}
	for h := range nodes {
		if _, reached := broken[h]; !reached {
			res.GarbageNodes++
		}
	}
	sort.Strings(res.Problems)
	if !opts.Repair || len(res.Problems) == 0 {
		return res, nil
	}

	batch := s.db.NewBatch()
	defer batch.Close()
	for h := range bad {
		if _, isChunk := locs[h]; isChunk {
			batch.Delete(hashKey(prefixChunk, h), nil)
			res.Repaired = append(res.Repaired, fmt.Sprintf("dropped chunk %s from the index", h))
		} else {
			batch.Delete(hashKey(prefixNode, h), nil)
			res.Repaired = append(res.Repaired, fmt.Sprintf("dropped node %s from the index", h))
		}
	}
	if len(bad) > 0 {
		// Imports reuse chunk lists through the stat cache without reading
		// the chunks: forget it all, rather than work out which entries
		// reach dropped chunks.
		if err := s.scan(prefixStat, func(k, _ []byte) error {
			return batch.Delete(append([]byte{prefixStat}, k...), nil)
		}); err != nil {
			return res, err
		}
		res.Repaired = append(res.Repaired, "forgot the import stat cache")
	}
	for _, r := range dropRefs {
		batch.Delete(nameKey(prefixRef, r), nil)
		batch.Delete(nameKey(prefixUsed, r), nil)
		res.Repaired = append(res.Repaired, "dropped ref "+r)
	}
	for _, l := range dropLeases {
		batch.Delete(nameKey(prefixLease, l), nil)
		res.Repaired = append(res.Repaired, fmt.Sprintf("dropped lease %q", l))
	}
	for id := range packs {
		if _, ok := onDisk[id]; !ok {
			// The chunks pointing into it were dropped above as bad.
			batch.Delete(hashKeyPack(id), nil)
			res.Repaired = append(res.Repaired, fmt.Sprintf("dropped missing pack %s from the index", id))
		}
	}
	if err := batch.Commit(pebble.Sync); err != nil {
		return res, fmt.Errorf("store %s: fsck: commit repair: %w", s.dir, err)
	}
	// A damaged pack (truncated, or its footer unreadable) keeps failing
	// checks even with its bad chunks dropped: move the chunks that still
	// verify into a new pack, and drop the old one.
	for id := range damaged {
		good := map[digest.Hash]chunkLoc{}
		for _, h := range byPack[id] {
			if !bad[h] {
				good[h] = locs[h]
			}
		}
		if _, err := s.rewritePack(id, good); err != nil {
			return res, fmt.Errorf("store %s: fsck: %w", s.dir, err)
		}
		res.Repaired = append(res.Repaired, fmt.Sprintf("moved %d sound chunks out of damaged pack %s and dropped it", len(good), id))
	}
	sort.Strings(res.Repaired)
	return res, nil
}

func countTrue(m map[digest.Hash]bool, keep func(digest.Hash) bool) int {
	n := 0
	for h, v := range m {
		if v && keep(h) {
			n++
		}
	}
	return n
}
