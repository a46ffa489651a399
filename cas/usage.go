package cas

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// Usage is what a store holds and what it costs on disk.
type Usage struct {
	// LogicalBytes is the sum over refs of their trees' file content: what
	// a store of full copies (osbuild's) would hold.
	LogicalBytes int64
	// StoredBytes is the chunk content the index knows.
	StoredBytes int64
	// PackBytes is the size of the pack files on disk (chunks, headers,
	// footers, and garbage until GC).
	PackBytes  int64
	Chunks     int64
	Nodes      int64
	Packs      int64
	Refs       int64
	DedupRatio float64 // LogicalBytes / StoredBytes
}

// RefUsage is one ref with what it costs.
type RefUsage struct {
	Ref
	LogicalBytes int64
	// UniqueBytes is stored chunk content that no other ref reaches: what
	// dropping this ref (and GC) would free.
	UniqueBytes int64
	// Unreadable, when set, says why the ref's tree could not be walked
	// (a damaged index or pack): the sizes are then unknown, and zero.
	Unreadable string
}

// treeInfo is what one tree reaches.
type treeInfo struct {
	logical int64
	chunks  map[digest.Hash]int64 // chunk → stored size
}

// analyze walks tree h: its logical size (hard-linked content counted once)
// and the set of chunks it reaches.
func (s *Store) analyze(ctx context.Context, h digest.Hash) (treeInfo, error) {
	info := treeInfo{chunks: map[digest.Hash]int64{}}
	seenLinks := map[linkKey]bool{}
	files := map[digest.Hash]bool{}
	var walk func(h digest.Hash) error
	walk = func(h digest.Hash) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := s.Node(h)
		if err != nil {
			return err
		}
		for _, e := range n.Entries {
			if e.Link != 0 {
				k := linkKey{e.Hash, e.Link}
				if seenLinks[k] {
					continue
				}
				seenLinks[k] = true
			}
			if err := walk(e.Hash); err != nil {
				return err
			}
		}
		if n.Type == node.TypeRegular {
			info.logical += int64(n.Size)
			if files[h] {
				return nil
			}
			files[h] = true
			for _, c := range n.Chunks {
				if !c.IsHole() {
					info.chunks[c.Hash] = int64(c.Size)
				}
			}
		}
		return nil
	}
	return info, walk(h)
}

// RefUsage lists every ref with its logical size and the bytes only it holds.
func (s *Store) RefUsage(ctx context.Context) ([]RefUsage, error) {
	refs, err := s.Refs()
	if err != nil {
		return nil, err
	}
	infos := map[digest.Hash]treeInfo{}
	unreadable := map[digest.Hash]string{}
	treeRefs := map[digest.Hash]int{}
	for _, r := range refs {
		treeRefs[r.Tree]++
		if _, ok := infos[r.Tree]; ok || unreadable[r.Tree] != "" {
			continue
		}
		info, err := s.analyze(ctx, r.Tree)
		if err != nil {
			if ctx.Err() != nil || !(errors.Is(err, ErrNotFound) || errors.Is(err, ErrCorrupt)) {
				return nil, err
			}
			// A listing of refs stays a listing when a tree cannot be
			// read: the ref log still names it, and fsck says why.
			unreadable[r.Tree] = err.Error()
			continue
		}
		infos[r.Tree] = info
	}
	reach := map[digest.Hash]int{} // chunk → distinct trees reaching it
	for _, info := range infos {
		for c := range info.chunks {
			reach[c]++
		}
	}
	out := make([]RefUsage, len(refs))
	for i, r := range refs {
		info := infos[r.Tree]
		out[i] = RefUsage{Ref: r, LogicalBytes: info.logical, Unreadable: unreadable[r.Tree]}
		if treeRefs[r.Tree] > 1 {
			continue // another ref holds the same tree
		}
		for c, size := range info.chunks {
			if reach[c] == 1 {
				out[i].UniqueBytes += size
			}
		}
	}
	return out, nil
}

// Usage totals the store.
func (s *Store) Usage(ctx context.Context) (Usage, error) {
	var u Usage
	if err := s.scan(prefixChunk, func(_, v []byte) error {
		loc, err := decodeChunkLoc(v)
		if err != nil {
			return err
		}
		u.Chunks++
		u.StoredBytes += int64(loc.Length)
		return nil
	}); err != nil {
		return u, err
	}
	if err := s.scan(prefixNode, func(_, _ []byte) error { u.Nodes++; return nil }); err != nil {
		return u, err
	}
	if err := s.scan(prefixPack, func(_, _ []byte) error { u.Packs++; return nil }); err != nil {
		return u, err
	}
	files, err := s.packFiles()
	if err != nil {
		return u, err
	}
	for _, size := range files {
		u.PackBytes += size
	}
	refs, err := s.RefUsage(ctx)
	if err != nil {
		return u, err
	}
	u.Refs = int64(len(refs))
	for _, r := range refs {
		u.LogicalBytes += r.LogicalBytes
	}
	if u.StoredBytes > 0 {
		u.DedupRatio = float64(u.LogicalBytes) / float64(u.StoredBytes)
	}
	return u, nil
}

// packFiles lists the pack files on disk with their sizes.
func (s *Store) packFiles() (map[packID]int64, error) {
	dir := filepath.Join(s.dir, packsDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	out := map[packID]int64{}
	for _, e := range entries {
		id, ok := parsePackID(strings.TrimSuffix(e.Name(), packExt))
		if !ok || !strings.HasSuffix(e.Name(), packExt) {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			continue // removed since the listing
		}
		out[id] = fi.Size()
	}
	return out, nil
}
