package remote

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"time"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/cas/pack"
	"github.com/forge-build/forge/remote/objstore"
)

// Remote is a bucket as one store sees it.
type Remote struct {
	Bucket *objstore.Bucket
	// Cache is a directory of the store's where pack footers read from
	// the bucket are kept; "" keeps them in memory only.
	Cache string
	// Host names this host in the pointers it writes.
	Host string
	// PackSize is the size a pushed pack is closed at (default 64 MiB).
	PackSize int64
}

// Progress is how far a push or pull is.
type Progress struct {
	Phase   string // "index", "packs", "chunks", "tree", "pointers"
	Objects int64  // objects written or chunks read so far
	Bytes   int64  // their bytes
	Total   int64  // bytes to move in this phase, when known
}

// PushOptions say what to name the pushed tree.
type PushOptions struct {
	// Stages are stage IDs whose tree this is (stages/ID, create-only).
	Stages []string
	// Refs are names to point at the tree (refs/NAME, compare-and-swap).
	Refs     []string
	Progress func(Progress)
}

// PushResult says what a push did.
type PushResult struct {
	Tree        digest.Hash
	Chunks      int   // chunks the tree has (holes aside)
	NewChunks   int   // those the bucket lacked, now pushed
	NewBytes    int64 // their bytes
	Packs       int   // packs written
	PackBytes   int64 // their bytes
	TreeWritten bool  // false: the bucket had the tree object already
	// Adopted are stage IDs the bucket already pointed at another tree
	// (another host won the race); the value is that tree.
	Adopted  map[string]digest.Hash
	Requests objstore.Stats
	Elapsed  time.Duration
}

// Push copies tree, which st holds, into the bucket, then points the
// stage IDs and refs of opts at it. Only chunks the bucket lacks are sent;
// nothing names the tree before its data is complete.
func (r *Remote) Push(ctx context.Context, st *cas.Store, tree digest.Hash, opts PushOptions) (PushResult, error) {
	start := time.Now()
	before := r.Bucket.Stats()
	res := PushResult{Tree: tree}
	progress := func(p Progress) {
		if opts.Progress != nil {
			opts.Progress(p)
		}
	}
	for _, id := range opts.Stages {
		if !isHex64(id) {
			return res, fmt.Errorf("stage ID %q: %w: want 64 hex digits", id, cas.ErrInvalidArgument)
		}
	}
	for _, name := range opts.Refs {
		if err := cas.ValidRefName(name); err != nil {
			return res, err
		}
	}
	release, err := st.Pin(tree)
	if err != nil {
		return res, err
	}
	defer release()

	nodes, chunks, err := walk(st, tree)
	if err != nil {
		return res, err
	}
	res.Chunks = len(chunks)

	progress(Progress{Phase: "index"})
	// Packs the bucket's GC condemned are not deduplicated against: a
	// later GC run may delete them before this push's tree object makes
	// them live again. Their chunks go into new packs.
	condemned, err := r.loadCondemned(ctx)
	if err != nil {
		return res, fmt.Errorf("push %s: %w", tree.Short(), err)
	}
	skip := make(map[string]bool, len(condemned))
	for k := range condemned {
		skip[k] = true
	}
	idx := newChunkIndex(r.Bucket, r.Cache)
	if err := idx.addAll(ctx, skip); err != nil {
		return res, fmt.Errorf("push %s: list what the bucket holds: %w", tree.Short(), err)
	}
	var missing []chunkRef
	for _, c := range chunks {
		if _, ok := idx.lookup(c.Hash); !ok {
			missing = append(missing, c)
			res.NewBytes += int64(c.Size)
		}
	}
	res.NewChunks = len(missing)

	if err := r.pushPacks(ctx, st, idx, missing, &res, progress); err != nil {
		return res, fmt.Errorf("push %s: %w", tree.Short(), err)
	}

	// The tree object lists every pack holding one of its chunks.
	obj := &treeObject{Tree: tree, Nodes: nodes}
	seen := map[digest.Hash]bool{}
	for _, c := range chunks {
		at, ok := idx.lookup(c.Hash)
		if !ok {
			return res, fmt.Errorf("push %s: chunk %s is in no pack of the bucket", tree.Short(), c.Hash)
		}
		if !seen[at.pack] {
			seen[at.pack] = true
			p, _ := idx.pack(at.pack)
			obj.Packs = append(obj.Packs, p)
		}
	}
	// Every pack the tree object will name must still be there: one
	// listing, so that a pack a GC deleted while this push ran fails the
	// push rather than break the tree for every reader.
	present := map[string]bool{}
	if err := r.Bucket.List(ctx, packsPrefix, func(o objstore.Object) error { present[o.Key] = true; return nil }); err != nil {
		return res, fmt.Errorf("push %s: %w", tree.Short(), err)
	}
	for _, p := range obj.Packs {
		if !present[packKey(p.Hash)] {
			return res, fmt.Errorf("push %s: %s left the bucket during the push (a garbage collection?): push again", tree.Short(), packKey(p.Hash))
		}
	}
	progress(Progress{Phase: "tree"})
	_, err = r.Bucket.PutIfAbsent(ctx, treeKey(tree), obj.encode())
	switch {
	case err == nil:
		res.TreeWritten = true
	case errors.Is(err, objstore.ErrPrecondition):
		// Another push wrote it first: any complete tree object of
		// this tree will do.
	default:
		return res, fmt.Errorf("push %s: %w", tree.Short(), err)
	}

	progress(Progress{Phase: "pointers"})
	ptr := encodePointer(tree, r.Host)
	for _, id := range opts.Stages {
		_, err := r.Bucket.PutIfAbsent(ctx, stageKey(id), ptr)
		if errors.Is(err, objstore.ErrPrecondition) {
			other, gerr := r.stageTree(ctx, id)
			if gerr != nil {
				return res, fmt.Errorf("push %s: stage %s: %w", tree.Short(), id, gerr)
			}
			if other != tree {
				if res.Adopted == nil {
					res.Adopted = map[string]digest.Hash{}
				}
				res.Adopted[id] = other
			}
			// In the bucket already: this host uses it too.
			if err := r.MarkUsed(ctx, id); err != nil {
				return res, fmt.Errorf("push %s: stage %s: %w", tree.Short(), id, err)
			}
			continue
		}
		if err != nil {
			return res, fmt.Errorf("push %s: stage %s: %w", tree.Short(), id, err)
		}
	}
	for _, name := range opts.Refs {
		if err := r.setRef(ctx, name, ptr); err != nil {
			return res, fmt.Errorf("push %s: ref %s: %w", tree.Short(), name, err)
		}
	}
	res.Requests = sub(r.Bucket.Stats(), before)
	res.Elapsed = time.Since(start)
	return res, nil
}

// setRef points refs/NAME at ptr with compare-and-swap, retrying when
// another host moved it in between: the last writer wins, and no write is
// lost to a read-modify-write race.
func (r *Remote) setRef(ctx context.Context, name string, ptr []byte) error {
	for range 8 {
		cur, etag, err := r.Bucket.Get(ctx, refKey(name))
		switch {
		case errors.Is(err, objstore.ErrNotFound):
			etag = ""
		case err != nil:
			return err
		case bytes.Equal(cur, ptr):
			return nil
		}
		_, err = r.Bucket.PutIfMatch(ctx, refKey(name), ptr, etag)
		if errors.Is(err, objstore.ErrPrecondition) {
			continue
		}
		return err
	}
	return fmt.Errorf("%s kept changing: gave up after 8 tries", refKey(name))
}

// MarkUsed records that this host took stage id from the bucket now
// (used/ID, replaced each time): a stage in use stays past the retention
// counted from its push, as long as hosts keep taking it.
func (r *Remote) MarkUsed(ctx context.Context, id string) error {
	if !isHex64(id) {
		return fmt.Errorf("stage ID %q: %w: want 64 hex digits", id, cas.ErrInvalidArgument)
	}
	b, _ := json.Marshal(struct {
		Host string    `json:"host"`
		Time time.Time `json:"time"`
	}{r.Host, time.Now().UTC()})
	_, err := r.Bucket.Put(ctx, usedKey(id), append(b, '\n'))
	return err
}

func (r *Remote) stageTree(ctx context.Context, id string) (digest.Hash, error) {
	b, _, err := r.Bucket.Get(ctx, stageKey(id))
	if err != nil {
		return digest.Hash{}, err
	}
	return decodePointer(stageKey(id), b)
}

// pushPacks writes the missing chunks into new packs, in the tree's order
// (so that a reader's ranges are long), each closed at PackSize.
func (r *Remote) pushPacks(ctx context.Context, st *cas.Store, idx *chunkIndex, missing []chunkRef, res *PushResult, progress func(Progress)) error {
	limit := r.PackSize
	if limit <= 0 {
		limit = 64 << 20
	}
	var (
		buf  bytes.Buffer
		pw   *pack.Writer
		data []byte
		sent int64
	)
	flush := func() error {
		if pw == nil || pw.Count() == 0 {
			return nil
		}
		entries, err := pw.Finish()
		if err != nil {
			return err
		}
		body := buf.Bytes()
		h := digest.Sum(body)
		if _, err := r.Bucket.PutIfAbsent(ctx, packKey(h), body); err != nil && !errors.Is(err, objstore.ErrPrecondition) {
			return err
		}
		footer := pack.FooterSize(len(entries))
		if r.Cache != "" {
			// The footer is known: no GET for it next time.
			tail := body[int64(len(body))-footer:]
			writeCache(filepath.Join(r.Cache, h.String()), append(binary.LittleEndian.AppendUint64(nil, uint64(len(body))), tail...))
		}
		idx.mu.Lock()
		idx.packs[h] = packRef{Hash: h, Size: int64(len(body)), FooterSize: footer}
		for _, e := range entries {
			if _, ok := idx.chunks[e.Hash]; !ok {
				idx.chunks[e.Hash] = chunkAt{pack: h, off: e.Offset, length: e.Length, raw: e.RawLength, flags: e.Flags}
			}
		}
		idx.mu.Unlock()
		res.Packs++
		res.PackBytes += int64(len(body))
		sent += int64(len(body))
		progress(Progress{Phase: "packs", Objects: int64(res.Packs), Bytes: sent, Total: res.NewBytes})
		pw = nil
		buf.Reset()
		return nil
	}
	for _, c := range missing {
		if err := ctx.Err(); err != nil {
			return err
		}
		if pw == nil {
			var err error
			if pw, err = pack.NewWriter(&buf); err != nil {
				return err
			}
		}
		// As the store keeps it: a compressed chunk goes compressed.
		// (data is reused from chunk to chunk: not declared here.)
		var (
			raw   int
			flags uint8
			err   error
		)
		data, raw, flags, err = st.ReadStoredChunk(c.Hash, data[:0])
		if err != nil {
			return err
		}
		if _, err := pw.Add(c.Hash, data, raw, flags); err != nil {
			return err
		}
		if pw.Size() >= limit {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

// chunkRef is a chunk a tree needs.
type chunkRef struct {
	Hash digest.Hash
	Size uint64
}

// walk lists tree's nodes (encoded, root first, each once) and its
// distinct chunks in the order a walk of the tree meets them.
func walk(st *cas.Store, tree digest.Hash) ([][]byte, []chunkRef, error) {
	var (
		nodes  [][]byte
		chunks []chunkRef
	)
	seenNode := map[digest.Hash]bool{tree: true}
	seenChunk := map[digest.Hash]bool{}
	// Depth first, entries in name order: the order tar, cp and a copy
	// stage read a tree in, and so the order its chunks go into packs,
	// which a lazy remote mount's read-ahead follows (breadth first, a
	// reader of the Debian tree jumped about its packs).
	stack := []digest.Hash{tree}
	for len(stack) > 0 {
		h := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n, err := st.Node(h)
		if err != nil {
			return nil, nil, fmt.Errorf("node %s: %w", h.Short(), err)
		}
		enc, err := n.Encode()
		if err != nil {
			return nil, nil, fmt.Errorf("node %s: %w", h.Short(), err)
		}
		nodes = append(nodes, enc)
		n.ChunkRefs(func(c node.Chunk) {
			if !c.IsHole() && !seenChunk[c.Hash] {
				seenChunk[c.Hash] = true
				chunks = append(chunks, chunkRef{Hash: c.Hash, Size: c.Size})
			}
		})
		var children []digest.Hash
		n.Children(func(c digest.Hash) {
			if !seenNode[c] {
				seenNode[c] = true
				children = append(children, c)
			}
		})
		slices.Reverse(children) // the first name on top
		stack = append(stack, children...)
	}
	return nodes, chunks, nil
}

func sub(a, b objstore.Stats) objstore.Stats {
	return objstore.Stats{Requests: a.Requests - b.Requests, Gets: a.Gets - b.Gets, Puts: a.Puts - b.Puts, BytesDown: a.BytesDown - b.BytesDown, BytesUp: a.BytesUp - b.BytesUp}
}
