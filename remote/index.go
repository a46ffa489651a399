package remote

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/pack"
	"github.com/forge-build/forge/remote/objstore"
)

// chunkAt is where a chunk lies in the bucket.
type chunkAt struct {
	pack   digest.Hash
	off    int64
	length uint32 // in the pack: compressed, for a chunk flagged so
	raw    uint32 // decoded
	flags  uint8
}

// chunkIndex locates chunks in a bucket's packs from the packs' footers,
// which it reads with one ranged GET each and keeps in a directory of the
// host's store: packs never change, so a footer once read is good for
// ever (and is checked against its CRC each time it is loaded).
type chunkIndex struct {
	b     *objstore.Bucket
	cache string // directory of cached footers; "" for none

	mu     sync.Mutex
	packs  map[digest.Hash]packRef
	chunks map[digest.Hash]chunkAt
	// byPack lists each pack's chunks in the order of their offsets, for
	// reading a window of a pack (Lazy's read-ahead).
	byPack map[digest.Hash][]pack.Entry
}

func newChunkIndex(b *objstore.Bucket, cache string) *chunkIndex {
	return &chunkIndex{b: b, cache: cache, packs: map[digest.Hash]packRef{}, chunks: map[digest.Hash]chunkAt{},
		byPack: map[digest.Hash][]pack.Entry{}}
}

// chunkEnd returns end, moved to the end of the chunk of pack h that
// straddles it (if any): a window never cuts a chunk, which would cost a
// request of its own.
func (x *chunkIndex) chunkEnd(h digest.Hash, end int64) int64 {
	x.mu.Lock()
	defer x.mu.Unlock()
	es := x.byPack[h]
	i := sort.Search(len(es), func(i int) bool { return es[i].Offset+int64(es[i].Length) > end })
	if i < len(es) && es[i].Offset < end {
		return es[i].Offset + int64(es[i].Length)
	}
	return end
}

// within returns the chunks of pack h that lie whole in [off, end).
func (x *chunkIndex) within(h digest.Hash, off, end int64) []pack.Entry {
	x.mu.Lock()
	defer x.mu.Unlock()
	es := x.byPack[h]
	i := sort.Search(len(es), func(i int) bool { return es[i].Offset >= off })
	var out []pack.Entry
	for ; i < len(es) && es[i].Offset+int64(es[i].Length) <= end; i++ {
		out = append(out, es[i])
	}
	return out
}

// guessFooter is how much of a pack's end to read when its footer's size
// is not known: a full 64 MiB pack of 64 KiB chunks has a footer of about
// 50 KiB.
const guessFooter = 64 << 10

// maxFooter bounds a footer read from the bucket (1.3 million entries):
// a pack's trailer is not trusted to ask for more.
const maxFooter = 64 << 20

// addPack reads the footer of pack ref (ref.FooterSize may be 0: unknown)
// and indexes its chunks.
func (x *chunkIndex) addPack(ctx context.Context, ref packRef) error {
	x.mu.Lock()
	_, done := x.packs[ref.Hash]
	x.mu.Unlock()
	if done {
		return nil
	}
	entries, size, footer, err := x.footer(ctx, ref)
	if err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	x.packs[ref.Hash] = packRef{Hash: ref.Hash, Size: size, FooterSize: footer}
	var chunks []pack.Entry
	for _, e := range entries {
		if e.Flags&pack.FlagNode != 0 {
			continue
		}
		chunks = append(chunks, e)
		if _, ok := x.chunks[e.Hash]; !ok {
			x.chunks[e.Hash] = chunkAt{pack: ref.Hash, off: e.Offset, length: e.Length, raw: e.RawLength, flags: e.Flags}
		}
	}
	sort.Slice(chunks, func(i, j int) bool { return chunks[i].Offset < chunks[j].Offset })
	x.byPack[ref.Hash] = chunks
	return nil
}

// forget drops what the index holds of pack h, its cached footer included:
// a chunk of it was damaged where the footer placed it, so the footer may
// be the damaged part (the cache's CRC checks only that the cache holds
// what was read), and the next reader must read it from the bucket again.
func (x *chunkIndex) forget(h digest.Hash) {
	if x.cache != "" {
		os.Remove(filepath.Join(x.cache, h.String()))
	}
}

// footer returns pack ref's entries, from the cache or the bucket.
func (x *chunkIndex) footer(ctx context.Context, ref packRef) ([]pack.Entry, int64, int64, error) {
	key := packKey(ref.Hash)
	cached := ""
	if x.cache != "" {
		cached = filepath.Join(x.cache, ref.Hash.String())
		if b, err := os.ReadFile(cached); err == nil && len(b) > 8 {
			size := int64(binary.LittleEndian.Uint64(b))
			if entries, err := pack.ParseTail(b[8:], size); err == nil {
				return entries, size, int64(len(b) - 8), nil
			}
			// A damaged cache file is read again from the bucket.
		}
	}
	want := ref.FooterSize
	if want <= 0 {
		want = guessFooter
	}
	tail, size, err := x.b.GetTail(ctx, key, want)
	if err != nil {
		return nil, 0, 0, fmt.Errorf("the footer of %s: %w", key, err)
	}
	if ref.Size > 0 && size != ref.Size {
		return nil, 0, 0, fmt.Errorf("%s: %d bytes, but the tree object says %d", key, size, ref.Size)
	}
	entries, err := pack.ParseTail(tail, size)
	var te *pack.TailError
	if errors.As(err, &te) && te.Need > maxFooter {
		return nil, 0, 0, fmt.Errorf("the footer of %s: %d bytes, more than the %d forge reads", key, te.Need, int64(maxFooter))
	}
	if errors.As(err, &te) && te.Need > int64(len(tail)) && te.Need <= size {
		if tail, _, err = x.b.GetTail(ctx, key, te.Need); err != nil {
			return nil, 0, 0, fmt.Errorf("the footer of %s: %w", key, err)
		}
		entries, err = pack.ParseTail(tail, size)
	}
	if err != nil {
		return nil, 0, 0, fmt.Errorf("the footer of %s: %w", key, err)
	}
	footer := pack.FooterSize(len(entries))
	tail = tail[int64(len(tail))-footer:]
	if cached != "" {
		b := binary.LittleEndian.AppendUint64(nil, uint64(size))
		writeCache(cached, append(b, tail...))
	}
	return entries, size, footer, nil
}

// writeCache writes a cache file whole or not at all; a cache that cannot
// be written only costs a GET next time.
func writeCache(path string, data []byte) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, 0o600); err != nil {
		os.Remove(tmp)
		return
	}
	if os.Rename(tmp, path) != nil {
		os.Remove(tmp)
	}
}

// addAll indexes every pack in the bucket but those in skip: what a push
// needs to know which chunks the bucket has already.
func (x *chunkIndex) addAll(ctx context.Context, skip map[string]bool) error {
	var refs []packRef
	err := x.b.List(ctx, packsPrefix, func(o objstore.Object) error {
		if h, ok := packFromKey(o.Key); ok && !skip[o.Key] {
			refs = append(refs, packRef{Hash: h, Size: o.Size})
		}
		return nil
	})
	if err != nil {
		return err
	}
	return forEach(ctx, refs, 4, func(ctx context.Context, r packRef) error { return x.addPack(ctx, r) })
}

func (x *chunkIndex) lookup(h digest.Hash) (chunkAt, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	c, ok := x.chunks[h]
	return c, ok
}

func (x *chunkIndex) pack(h digest.Hash) (packRef, bool) {
	x.mu.Lock()
	defer x.mu.Unlock()
	p, ok := x.packs[h]
	return p, ok
}

// forEach runs fn on every item with at most n at once, and returns the
// first error (after which no new item starts).
func forEach[T any](ctx context.Context, items []T, n int, fn func(context.Context, T) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		first error
	)
	sem := make(chan struct{}, n)
	for _, it := range items {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := fn(ctx, it); err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first == nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return first
}
