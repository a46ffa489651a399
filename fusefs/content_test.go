package fusefs

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/internal/fstree"
)

// countingSource is a Source that counts the reads that reach it.
type countingSource struct {
	Source
	nodes, chunks atomic.Int64
}

func (c *countingSource) Node(h digest.Hash) (*node.Node, error) {
	c.nodes.Add(1)
	return c.Source.Node(h)
}

func (c *countingSource) ReadChunk(h digest.Hash, buf []byte) ([]byte, error) {
	c.chunks.Add(1)
	return c.Source.ReadChunk(h, buf)
}

// testFiles are the files storedFiles writes: content that spans many
// chunks, holes at the start, middle and end, zeros written as data, and
// nothing at all.
var testFiles = map[string]func(f *os.File) error{
	"random": func(f *os.File) error {
		_, err := f.Write(fstree.RandomBytes("random", 1<<20+123))
		return err
	},
	"sparse": func(f *os.File) error {
		if err := f.Truncate(6 << 20); err != nil {
			return err
		}
		if _, err := f.WriteAt(fstree.RandomBytes("middle", 512<<10), 1<<20); err != nil {
			return err
		}
		_, err := f.WriteAt(fstree.RandomBytes("end", 100<<10), 6<<20-100<<10)
		return err
	},
	"hole-at-end": func(f *os.File) error {
		if _, err := f.Write(fstree.RandomBytes("start", 300<<10)); err != nil {
			return err
		}
		return f.Truncate(3 << 20)
	},
	"large": func(f *os.File) error {
		_, err := f.Write(fstree.RandomBytes("large", 20<<20))
		return err
	},
	"zeros": func(f *os.File) error {
		_, err := f.Write(make([]byte, 200<<10))
		return err
	},
	"empty": func(f *os.File) error { return nil },
}

// storedFiles writes testFiles into a directory, imports it into a new
// store and returns the directory, the store, and each file's node hash.
func storedFiles(t *testing.T) (string, *cas.Store, map[string]digest.Hash) {
	t.Helper()
	dir := t.TempDir()
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, fill := range testFiles {
		f, err := os.Create(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		err = fill(f)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	s, err := cas.Open(filepath.Join(dir, "store"), cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	res, err := s.Import(context.Background(), src, cas.ImportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	root, err := s.Node(res.Tree)
	if err != nil {
		t.Fatal(err)
	}
	hashes := map[string]digest.Hash{}
	for _, e := range root.Entries {
		hashes[e.Name] = e.Hash
	}
	return src, s, hashes
}

func TestReadAt(t *testing.T) {
	src, s, hashes := storedFiles(t)
	c := NewCache(s, 0)
	rng := rand.New(rand.NewPCG(1, 2))
	for name := range testFiles {
		want, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		info, err := c.info(hashes[name])
		if err != nil {
			t.Fatal(err)
		}
		size := int64(len(want))
		type span struct{ off, n int64 }
		spans := []span{{0, 4096}, {0, size + 10}, {size, 10}, {size + 100, 10}, {size - 1, 4096}, {1 << 20, 128 << 10}, {0, 0}}
		for range 200 {
			spans = append(spans, span{rng.Int64N(size + 1), rng.Int64N(300 << 10)})
		}
		for _, sp := range spans {
			if sp.off < 0 {
				continue
			}
			dest := bytes.Repeat([]byte{0xAA}, int(sp.n))
			got, err := c.read(info, dest, sp.off)
			if err != nil {
				t.Fatalf("%s: read(%d, %d): %v", name, sp.off, sp.n, err)
			}
			var exp []byte
			if sp.off < size {
				exp = want[sp.off:min(size, sp.off+sp.n)]
			}
			if !bytes.Equal(got, exp) {
				t.Fatalf("%s: read(%d, %d) = %d bytes, want %d (content equal: %v)", name, sp.off, sp.n, len(got), len(exp), bytes.Equal(got, exp))
			}
		}
	}
	if _, err := c.read(mustInfo(t, c, hashes["random"]), make([]byte, 10), -1); err == nil {
		t.Error("read at a negative offset succeeded")
	}
}

func mustInfo(t *testing.T, c *Cache, h digest.Hash) *nodeInfo {
	t.Helper()
	info, err := c.info(h)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestHolesReadNothing: reading a range that is all hole reads no chunk.
func TestHolesReadNothing(t *testing.T) {
	_, s, hashes := storedFiles(t)
	src := &countingSource{Source: s}
	c := NewCache(src, 0)
	info := mustInfo(t, c, hashes["sparse"])
	dest := bytes.Repeat([]byte{0xAA}, 512<<10)
	got, err := c.read(info, dest, 2<<20)
	if err != nil {
		t.Fatal(err)
	}
	if n := src.chunks.Load(); n != 0 {
		t.Errorf("reading a hole read %d chunks", n)
	}
	if !bytes.Equal(got, make([]byte, len(dest))) {
		t.Error("a hole did not read as zeros")
	}
}

// TestSmallReadsReadEachChunkOnce: 4 KiB reads in order through a file
// read each of its chunks from the source once, and its node once.
func TestSmallReadsReadEachChunkOnce(t *testing.T) {
	_, s, hashes := storedFiles(t)
	src := &countingSource{Source: s}
	c := NewCache(src, 0)
	var ra readahead
	for range 3 {
		info := mustInfo(t, c, hashes["random"])
		buf := make([]byte, 4096)
		for off := int64(0); off < int64(info.node.Size); off += int64(len(buf)) {
			ra.advance(c, info, uint64(off), uint64(off)+uint64(len(buf)))
			if _, err := c.read(info, buf, off); err != nil {
				t.Fatal(err)
			}
		}
	}
	info := mustInfo(t, c, hashes["random"])
	if got, want := src.chunks.Load(), int64(len(info.node.Chunks)); got != want {
		t.Errorf("read %d chunks from the source for a file of %d chunks", got, want)
	}
	if got := src.nodes.Load(); got != 1 {
		t.Errorf("read the file's node %d times", got)
	}
}

// TestReadahead: a reader that streams through a file gets the chunks
// after its reads read ahead; reads that jump around do not.
func TestReadahead(t *testing.T) {
	_, s, hashes := storedFiles(t)
	src := &countingSource{Source: s}
	c := NewCache(src, 0)
	info := mustInfo(t, c, hashes["large"])
	var ra readahead
	read := func(off uint64) int64 {
		t.Helper()
		ra.advance(c, info, off, off+4096)
		if _, err := c.read(info, make([]byte, 4096), int64(off)); err != nil {
			t.Fatal(err)
		}
		for len(c.prefetching) > 0 {
			runtime.Gosched() // until every prefetch started has ended
		}
		return src.chunks.Load()
	}
	if n := read(19 << 20); n != 1 {
		t.Errorf("a first read far into the file read %d chunks, want its own 1", n)
	}
	if n := read(1 << 20); n != 2 {
		t.Errorf("a read far back read %d chunks in all, want 2", n)
	}
	if n := read(1<<20 + 4096); n <= 2 {
		t.Errorf("a read right after the last one read no chunk ahead (%d in all)", n)
	}
	// Keep streaming: everything up to the window past the last read is
	// read ahead, in as many steps as the prefetch limit takes.
	off := uint64(1<<20 + 8192)
	for range 60 {
		read(off)
		off += 4096
	}
	ahead := info.chunkAt(off + readaheadWindow - 1)
	if got, want := src.chunks.Load(), int64(ahead-info.chunkAt(1<<20)+2); got < want-1 || got > want+1 {
		t.Errorf("streaming to %d read %d chunks, want about %d (to the window's end)", off, got, want)
	}
}

func TestSeekData(t *testing.T) {
	src, s, hashes := storedFiles(t)
	c := NewCache(s, 0)
	for _, name := range []string{"sparse", "hole-at-end", "random", "zeros"} {
		f, err := os.Open(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil {
			t.Fatal(err)
		}
		info := mustInfo(t, c, hashes[name])
		for off := int64(0); off <= fi.Size()+4096; off += 4096 {
			for _, whence := range []int{unix.SEEK_DATA, unix.SEEK_HOLE} {
				want, werr := unix.Seek(int(f.Fd()), off, whence)
				if name == "zeros" && whence == unix.SEEK_DATA && werr == nil {
					// Written zeros are data on disk and a hole in
					// the store: both are right.
					continue
				}
				if name == "zeros" && whence == unix.SEEK_HOLE && werr == nil {
					want = off
				}
				got, gerr := seekData(info, uint64(off), whence)
				if !errors.Is(gerr, werr) && !(werr == nil && gerr == nil) {
					t.Fatalf("%s: seek(%d, %d): error %v, want %v", name, off, whence, gerr, werr)
				}
				if werr == nil && int64(got) != want {
					t.Fatalf("%s: seek(%d, %d) = %d, want %d", name, off, whence, got, want)
				}
			}
		}
	}
}

// TestCacheLoadsOnce: callers asking for one hash at the same time wait
// for one load.
func TestCacheLoadsOnce(t *testing.T) {
	l := newLRU(10, func(int) int64 { return 1 })
	var loads atomic.Int64
	release := make(chan struct{})
	var wg sync.WaitGroup
	key := digest.Sum([]byte("k"))
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v, err := l.get(key, func() (int, error) {
				loads.Add(1)
				<-release
				return 42, nil
			})
			if v != 42 || err != nil {
				t.Errorf("get: %d, %v", v, err)
			}
		}()
	}
	for !l.has(key) {
		runtime.Gosched() // until the first caller is loading
	}
	close(release)
	wg.Wait()
	if n := loads.Load(); n != 1 {
		t.Errorf("%d loads for one key", n)
	}

	// Errors are not kept.
	boom := errors.New("boom")
	other := digest.Sum([]byte("other"))
	if _, err := l.get(other, func() (int, error) { return 0, boom }); !errors.Is(err, boom) {
		t.Errorf("get: %v, want boom", err)
	}
	if v, err := l.get(other, func() (int, error) { return 7, nil }); v != 7 || err != nil {
		t.Errorf("get after an error: %d, %v; want a new load", v, err)
	}
}

func TestCacheEvictsLeastRecentlyUsed(t *testing.T) {
	l := newLRU(10, func(v int) int64 { return int64(v) })
	key := func(i int) digest.Hash { return digest.Sum([]byte{byte(i)}) }
	put := func(i, cost int) {
		if _, err := l.get(key(i), func() (int, error) { return cost, nil }); err != nil {
			t.Fatal(err)
		}
	}
	put(1, 4)
	put(2, 4)
	put(1, 0) // a hit: 1 is now the most recently used
	put(3, 4) // over 10: 2 goes
	if !l.has(key(1)) || l.has(key(2)) || !l.has(key(3)) {
		t.Errorf("after evicting: has 1 %v, 2 %v, 3 %v; want true, false, true", l.has(key(1)), l.has(key(2)), l.has(key(3)))
	}
	put(4, 11) // larger than the whole cache: not kept, nothing evicted
	if l.has(key(4)) || !l.has(key(1)) {
		t.Error("a value larger than the cache was kept, or evicted others")
	}
	if _, _, used := l.stats(); used != 8 {
		t.Errorf("cost held %d, want 8", used)
	}
}

func TestInodeNumbers(t *testing.T) {
	h1, h2 := digest.Sum([]byte("1")), digest.Sum([]byte("2"))
	if linkIno(h1, 1) != linkIno(h1, 1) || nameIno(5, "a") != nameIno(5, "a") {
		t.Error("inode numbers are not a function of their inputs")
	}
	seen := map[uint64]string{}
	add := func(ino uint64, what string) {
		if ino <= 1 || ino == ^uint64(0) {
			t.Errorf("%s: reserved inode number %d", what, ino)
		}
		if other, dup := seen[ino]; dup {
			t.Errorf("%s and %s share inode number %d", what, other, ino)
		}
		seen[ino] = what
	}
	add(linkIno(h1, 1), "h1 link 1")
	add(linkIno(h1, 2), "h1 link 2")
	add(linkIno(h2, 1), "h2 link 1")
	for parent := range uint64(100) {
		for _, name := range []string{"a", "b", "ab", "ba", "a\x00"} {
			add(nameIno(parent+1, name), "name "+name)
		}
	}
	for _, x := range []uint64{0, 1, ^uint64(0)} {
		if v := validIno(x); v <= 1 || v == ^uint64(0) {
			t.Errorf("validIno(%d) = %d", x, v)
		}
	}
}
