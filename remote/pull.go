package remote

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync/atomic"
	"time"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/errdefs"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/cas/pack"
	"github.com/forge-build/forge/remote/objstore"
)

// Resolved is what a name given to pull stands for in the bucket.
type Resolved struct {
	Tree digest.Hash
	// Kind is "stage", "tree" or "ref": where the name was found.
	Kind string
}

// Resolve finds name in the bucket: a stage ID (stages/NAME), a tree hash
// (trees/NAME), or a ref (refs/NAME), tried in that order for 64 hex
// digits and as a ref otherwise.
func (r *Remote) Resolve(ctx context.Context, name string) (Resolved, error) {
	if isHex64(name) {
		h, err := r.stageTree(ctx, name)
		if err == nil {
			return Resolved{Tree: h, Kind: "stage"}, nil
		}
		if !errors.Is(err, objstore.ErrNotFound) {
			return Resolved{}, err
		}
		t, _ := digest.Parse(name)
		// A tree is there if its object is: a HEAD would do, but not
		// every engine answers HEAD with the conditional headers right,
		// and a tree object is small.
		if _, err := r.Bucket.GetRange(ctx, treeKey(t), 0, 1); err == nil {
			return Resolved{Tree: t, Kind: "tree"}, nil
		} else if !errors.Is(err, objstore.ErrNotFound) {
			return Resolved{}, err
		}
	}
	if cas.ValidRefName(name) == nil {
		b, _, err := r.Bucket.Get(ctx, refKey(name))
		if err == nil {
			h, err := decodePointer(refKey(name), b)
			return Resolved{Tree: h, Kind: "ref"}, err
		}
		if !errors.Is(err, objstore.ErrNotFound) {
			return Resolved{}, err
		}
	}
	return Resolved{}, fmt.Errorf("%q: %w %s (no stage, tree or ref of that name)", name, ErrNotInBucket, r.Bucket.Location())
}

// StageTree is the tree the bucket holds for stage id; ErrNotInBucket if
// it holds none.
func (r *Remote) StageTree(ctx context.Context, id string) (digest.Hash, error) {
	if !isHex64(id) {
		return digest.Hash{}, fmt.Errorf("stage ID %q: %w: want 64 hex digits", id, cas.ErrInvalidArgument)
	}
	h, err := r.stageTree(ctx, id)
	if errors.Is(err, objstore.ErrNotFound) {
		return h, fmt.Errorf("stage %s: %w %s", id, ErrNotInBucket, r.Bucket.Location())
	}
	return h, err
}

// PullOptions say what to call the pulled tree.
type PullOptions struct {
	// Refs are the local refs to point at the tree (at least one, or the
	// next GC frees it).
	Refs     []string
	Progress func(Progress)
}

// PullResult says what a pull did.
type PullResult struct {
	Tree        digest.Hash
	Nodes       int
	Chunks      int   // distinct chunks of the tree (holes aside)
	Fetched     int   // chunks read from the bucket (the rest were stored)
	FetchedSize int64 // their bytes
	Ranges      int   // ranged GETs that read them
	Requests    objstore.Stats
	Elapsed     time.Duration
}

// maxGap is the largest run of unwanted bytes between two wanted chunks of
// one pack that a single ranged GET still reads through (restic's rule):
// a request costs more than a few hundred KiB of transfer.
const maxGap = 1 << 20

// maxRange bounds one ranged GET, so a pull holds little in memory and
// its work spreads over the workers.
const maxRange = 16 << 20

// Pull copies tree from the bucket into st, every chunk and node verified
// by its hash before it is stored, and points opts.Refs at it.
func (r *Remote) Pull(ctx context.Context, st *cas.Store, tree digest.Hash, opts PullOptions) (PullResult, error) {
	start := time.Now()
	before := r.Bucket.Stats()
	res := PullResult{Tree: tree}
	progress := func(p Progress) {
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}
	if len(opts.Refs) == 0 {
		return res, fmt.Errorf("pull %s: %w: no ref to keep it under", tree.Short(), cas.ErrInvalidArgument)
	}
	for _, name := range opts.Refs {
		if err := cas.ValidRefName(name); err != nil {
			return res, err
		}
	}
	// The bucket's GC keeps what a lease names while the pull runs, even
	// a tree that no ref or stage names (pulled by its hash): taken
	// before anything of the tree is read, and renewed.
	dropLease, err := r.holdLease(ctx, tree)
	if err != nil {
		return res, fmt.Errorf("pull %s: %w", tree.Short(), err)
	}
	defer dropLease()
	raw, _, err := r.Bucket.Get(ctx, treeKey(tree))
	if err != nil {
		return res, fmt.Errorf("pull %s: %w", tree.Short(), err)
	}
	obj, nodes, err := decodeTreeObject(tree, raw)
	if err != nil {
		return res, fmt.Errorf("pull %s: %w", tree.Short(), err)
	}
	res.Nodes = len(nodes)
	// The Writer first: the chunks found stored are held from the
	// store's GC until the tree that needs them is committed.
	w, err := st.NewWriter()
	if err != nil {
		return res, err
	}
	defer w.Close()

	// The chunks the store lacks.
	var want []digest.Hash
	seen := map[digest.Hash]bool{}
	for _, n := range nodes {
		var ferr error
		n.ChunkRefs(func(c node.Chunk) {
			if seen[c.Hash] || ferr != nil {
				return
			}
			seen[c.Hash] = true
			ok, err := w.HasChunk(c.Hash)
			if err != nil {
				ferr = err
			} else if !ok {
				want = append(want, c.Hash)
			}
		})
		if ferr != nil {
			return res, fmt.Errorf("pull %s: %w", tree.Short(), ferr)
		}
	}
	res.Chunks = len(seen)

	if len(want) > 0 {
		progress(Progress{Phase: "index"})
		idx := newChunkIndex(r.Bucket, r.Cache)
		if err := forEach(ctx, obj.Packs, 4, func(ctx context.Context, p packRef) error { return idx.addPack(ctx, p) }); err != nil {
			return res, fmt.Errorf("pull %s: %w", tree.Short(), err)
		}
		ranges, total, err := planRanges(idx, want)
		if err != nil {
			return res, fmt.Errorf("pull %s: %w", tree.Short(), err)
		}
		res.Ranges = len(ranges)
		var done, doneBytes atomic.Int64
		err = forEach(ctx, ranges, 4, func(ctx context.Context, rg byteRange) error {
			n, b, err := r.fetchRange(ctx, st, w, rg)
			var ce *ChunkError
			if errors.As(err, &ce) {
				idx.forget(rg.pack)
			}
			done.Add(int64(n))
			progress(Progress{Phase: "chunks", Objects: done.Load(), Bytes: doneBytes.Add(b), Total: total})
			return err
		})
		if err != nil {
			return res, fmt.Errorf("pull %s: %w", tree.Short(), err)
		}
		res.Fetched = len(want)
		res.FetchedSize = total
	}

	// Nodes children first: a node is stored after what it names.
	progress(Progress{Phase: "tree"})
	for i := len(obj.Nodes) - 1; i >= 0; i-- {
		n, err := node.Decode(obj.Nodes[i])
		if err != nil {
			return res, err
		}
		if _, err := w.PutNode(n); err != nil {
			return res, fmt.Errorf("pull %s: %w", tree.Short(), err)
		}
	}
	if err := w.Commit(tree, opts.Refs...); err != nil {
		return res, fmt.Errorf("pull %s: %w", tree.Short(), err)
	}
	res.Requests = sub(r.Bucket.Stats(), before)
	res.Elapsed = time.Since(start)
	return res, nil
}

// byteRange is one ranged GET: chunks of one pack, in offset order.
type byteRange struct {
	pack   digest.Hash
	off    int64
	end    int64
	chunks []rangeChunk
}

type rangeChunk struct {
	hash digest.Hash
	at   chunkAt
}

// planRanges groups the wanted chunks by pack and merges neighbours into
// ranges (gaps under maxGap, ranges up to maxRange).
func planRanges(idx *chunkIndex, want []digest.Hash) ([]byteRange, int64, error) {
	byPack := map[digest.Hash][]rangeChunk{}
	var total int64
	for _, h := range want {
		at, ok := idx.lookup(h)
		if !ok {
			return nil, 0, fmt.Errorf("chunk %s is in none of the packs the tree object lists", h)
		}
		if at.flags&^pack.FlagZstd != 0 {
			return nil, 0, fmt.Errorf("chunk %s in %s has flags %#x this forge cannot read", h, packKey(at.pack), at.flags)
		}
		byPack[at.pack] = append(byPack[at.pack], rangeChunk{hash: h, at: at})
		total += int64(at.length)
	}
	var out []byteRange
	for p, cs := range byPack {
		sort.Slice(cs, func(i, j int) bool { return cs[i].at.off < cs[j].at.off })
		var cur *byteRange
		for _, c := range cs {
			end := c.at.off + int64(c.at.length)
			if cur != nil && c.at.off-cur.end < maxGap && end-cur.off <= maxRange {
				cur.end = max(cur.end, end)
				cur.chunks = append(cur.chunks, c)
				continue
			}
			out = append(out, byteRange{pack: p, off: c.at.off, end: end, chunks: []rangeChunk{c}})
			cur = &out[len(out)-1]
		}
	}
	// Larger ranges first keeps the workers busy to the end.
	sort.Slice(out, func(i, j int) bool { return out[i].end-out[i].off > out[j].end-out[j].off })
	return out, total, nil
}

// fetchRange reads one range and stores its chunks, each checked against
// its hash first: a damaged byte fails the pull naming the chunk and the
// object, and nothing of it is stored.
func (r *Remote) fetchRange(ctx context.Context, st *cas.Store, w *cas.Writer, rg byteRange) (int, int64, error) {
	key := packKey(rg.pack)
	body, err := r.Bucket.GetRange(ctx, key, rg.off, rg.end-rg.off)
	if err != nil {
		return 0, 0, err
	}
	if int64(len(body)) != rg.end-rg.off {
		return 0, 0, fmt.Errorf("%s: %d bytes at %d, want %d", key, len(body), rg.off, rg.end-rg.off)
	}
	var n int
	var bytes int64
	var plain []byte
	for _, c := range rg.chunks {
		lo, hi := c.at.off-rg.off, c.at.off-rg.off+int64(c.at.length)
		if lo < 0 || hi > int64(len(body)) || lo > hi {
			return n, bytes, fmt.Errorf("chunk %s in %s: at %d+%d, outside the range read", c.hash, key, c.at.off, c.at.length)
		}
		data := body[lo:hi]
		// Decoded and hashed, then kept as the bucket sent it.
		var err error
		if plain, err = st.DecodeChunk(c.hash, data, c.at.flags, c.at.raw, plain[:0]); err != nil {
			return n, bytes, &ChunkError{Chunk: c.hash, Object: key, Offset: c.at.off, Err: err}
		}
		if _, err := w.PutStoredChunk(c.hash, data, int(c.at.raw), c.at.flags); err != nil {
			return n, bytes, err
		}
		n++
		bytes += int64(len(data))
	}
	return n, bytes, nil
}

// ChunkError is a chunk whose bytes in the bucket do not decode (a
// compressed one) or do not hash to its name.
type ChunkError struct {
	Chunk  digest.Hash
	Object string
	Offset int64
	Err    error // how: bytes that do not decode, or that hash to another name
}

func (e *ChunkError) Error() string {
	return fmt.Sprintf("chunk %s in %s at offset %d is damaged: %v", e.Chunk, e.Object, e.Offset, e.Err)
}

// Unwrap makes it a cas.ErrCorrupt.
func (e *ChunkError) Unwrap() error { return errdefs.ErrCorrupt }
