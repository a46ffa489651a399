package cas

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/pack"
)

func TestCompressionSetting(t *testing.T) {
	dir := t.TempDir()
	if c, err := ReadCompression(dir); err != nil || c != CompressionNone {
		t.Fatalf("no setting: %q, %v; want none", c, err)
	}
	for _, c := range []Compression{CompressionZstd, CompressionNone} {
		must(t, SetCompression(dir, c))
		if got, err := ReadCompression(dir); err != nil || got != c {
			t.Fatalf("after setting %q: %q, %v", c, got, err)
		}
	}
	if err := SetCompression(dir, "lz4"); err == nil {
		t.Fatal("lz4 accepted")
	}
	must(t, os.WriteFile(filepath.Join(dir, compressionFile), []byte("gzip\n"), 0o600))
	if _, err := ReadCompression(dir); err == nil || !strings.Contains(err.Error(), "gzip") {
		t.Fatalf("a bad setting: %v", err)
	}
}

// compressedTree is a tree of text that zstd shrinks, random bytes it
// does not, and a small file.
func compressedTree(t *testing.T) string {
	dir := t.TempDir()
	var text bytes.Buffer
	for i := 0; text.Len() < 3<<20; i++ {
		text.WriteString("forge stores trees in chunks, line ")
		text.WriteString(strings.Repeat("x", i%50))
		text.WriteString("\n")
	}
	writeFile(t, filepath.Join(dir, "usr/share/doc/text"), text.Bytes(), 0o644)
	writeFile(t, filepath.Join(dir, "usr/lib/random"), randBytes(7, 1<<20), 0o755)
	writeFile(t, filepath.Join(dir, "etc/hostname"), []byte("forge\n"), 0o644)
	return dir
}

// chunkFlags returns the pack flags of every chunk of file rel of tree.
func chunkFlags(t *testing.T, s *Store, tree digest.Hash, rel string) []uint8 {
	t.Helper()
	h := tree
	for _, name := range strings.Split(rel, "/") {
		n, err := s.Node(h)
		must(t, err)
		i, ok := n.Lookup(name)
		if !ok {
			t.Fatalf("%s: no %s", rel, name)
		}
		h = n.Entries[i].Hash
	}
	n, err := s.Node(h)
	must(t, err)
	var flags []uint8
	for _, c := range n.Chunks {
		loc, err := s.location(prefixChunk, c.Hash)
		must(t, err)
		flags = append(flags, loc.Flags)
	}
	return flags
}

// TestCompressedChunks: with compression on, what shrinks is stored
// compressed and reads back the same through export, fsck, a GC that
// repacks it, and an index rebuilt from the packs; a flipped byte is
// found; turning compression off leaves a store that reads both.
func TestCompressedChunks(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Open(dir, Options{PackSize: 1 << 20})
	must(t, err)
	defer func() { s.Close() }()
	must(t, SetCompression(dir, CompressionZstd))
	src := compressedTree(t)
	res, err := s.Import(ctx, src, ImportOptions{Refs: []string{"tree"}})
	must(t, err)
	if res.Stats.StoredBytes >= res.Stats.NewBytes-(2<<20) {
		t.Fatalf("stored %d bytes of %d new: compression saved too little", res.Stats.StoredBytes, res.Stats.NewBytes)
	}
	// Every chunk of the text but its short tail shrinks; no chunk of the
	// random bytes does, nor the 6-byte file.
	text := chunkFlags(t, s, res.Tree, "usr/share/doc/text")
	for i, fl := range text[:len(text)-1] {
		if fl != pack.FlagZstd {
			t.Errorf("text: chunk %d of %d has flags %#x, want zstd", i, len(text), fl)
		}
	}
	for _, rel := range []string{"usr/lib/random", "etc/hostname"} {
		for _, fl := range chunkFlags(t, s, res.Tree, rel) {
			if fl != 0 {
				t.Errorf("%s: a chunk with flags %#x, want none", rel, fl)
			}
		}
	}
	exportSame := func(what string, tree digest.Hash) {
		t.Helper()
		dst := filepath.Join(t.TempDir(), "out")
		if _, err := s.Export(ctx, tree, dst, ExportOptions{}); err != nil {
			t.Fatalf("%s: export: %v", what, err)
		}
		if want, got := describe(t, src), describe(t, dst); strings.Join(want, "\n") != strings.Join(got, "\n") {
			t.Fatalf("%s: export differs from the source", what)
		}
		fr, err := s.Fsck(ctx, FsckOptions{})
		must(t, err)
		if len(fr.Problems) != 0 {
			t.Fatalf("%s: fsck: %q", what, fr.Problems)
		}
	}
	exportSame("compressed", res.Tree)

	// GC repacks a pack holding compressed chunks: they move as stored.
	other := t.TempDir()
	writeFile(t, filepath.Join(other, "junk"), randBytes(9, 2<<20), 0o644)
	_, err = s.Import(ctx, other, ImportOptions{Refs: []string{"junk"}})
	must(t, err)
	must(t, s.DeleteRefs("junk"))
	_, err = s.GC(ctx, GCOptions{RepackBelow: 1})
	must(t, err)
	exportSame("after gc", res.Tree)
	if fl := chunkFlags(t, s, res.Tree, "usr/share/doc/text"); fl[0] != pack.FlagZstd {
		t.Fatalf("after gc the text's first chunk has flags %#x", fl[0])
	}

	// The index rebuilt from the packs alone.
	must(t, s.Close())
	must(t, os.RemoveAll(filepath.Join(dir, indexDir)))
	s, err = Open(dir, Options{})
	must(t, err)
	exportSame("rebuilt index", res.Tree)

	// Off again: new chunks are stored as they are, old ones still read.
	must(t, SetCompression(dir, CompressionNone))
	more := t.TempDir()
	textBytes, err := os.ReadFile(filepath.Join(src, "usr/share/doc/text"))
	must(t, err)
	writeFile(t, filepath.Join(more, "text2"), append([]byte("another "), textBytes...), 0o644)
	res2, err := s.Import(ctx, more, ImportOptions{Refs: []string{"more"}})
	must(t, err)
	if res2.Stats.NewChunks == 0 || res2.Stats.StoredBytes != res2.Stats.NewBytes {
		t.Fatalf("compression off: stored %d of %d new bytes", res2.Stats.StoredBytes, res2.Stats.NewBytes)
	}
	exportSame("mixed", res.Tree)
}

// TestCorruptCompressedChunk: a flipped byte in a compressed chunk fails
// the read naming the chunk and its pack, and fsck finds it.
func TestCorruptCompressedChunk(t *testing.T) {
	ctx := context.Background()
	s := openTestStore(t, Options{})
	must(t, SetCompression(s.Dir(), CompressionZstd))
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "text"), bytes.Repeat([]byte("compressible line of text\n"), 40000), 0o644)
	res, err := s.Import(ctx, src, ImportOptions{Refs: []string{"victim"}})
	must(t, err)
	flags := chunkFlags(t, s, res.Tree, "text")
	if flags[0] != pack.FlagZstd {
		t.Fatalf("the chunk is not compressed (flags %#x)", flags[0])
	}
	packs, err := filepath.Glob(filepath.Join(s.Dir(), packsDir, "*"+packExt))
	must(t, err)
	flipByte(t, packs[0], pack.HeaderSize+20)
	_, err = s.Export(ctx, res.Tree, filepath.Join(t.TempDir(), "out"), ExportOptions{})
	var ce *ChunkError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || !strings.Contains(packs[0], ce.Pack) {
		t.Fatalf("export of a damaged compressed chunk: %v; want a ChunkError of its pack", err)
	}
	fr, err := s.Fsck(ctx, FsckOptions{})
	must(t, err)
	if len(fr.Problems) == 0 {
		t.Fatal("fsck found nothing wrong")
	}
}
