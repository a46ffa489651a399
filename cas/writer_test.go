package cas

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/chunker"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// TestPutFileParallelHashing: a data range long enough to be hashed on
// several goroutines gets the chunk list a chunker and SHA-256 in order
// give, all-zero chunks as holes merged with their neighbours, and every
// chunk reads back.
func TestPutFileParallelHashing(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("one CPU: putContent hashes in order")
	}
	data := randBytes(11, 3*parallelHashMin)
	// Zeros long enough to make a few all-zero chunks, and a repeat of
	// earlier content (the same chunk put twice at once).
	copy(data[parallelHashMin:], make([]byte, 2<<20))
	copy(data[2*parallelHashMin:], data[:1<<20])
	path := filepath.Join(t.TempDir(), "f")
	writeFile(t, path, data, 0o644)

	var want []node.Chunk
	ck := chunker.New(bytes.NewReader(data), chunker.DefaultParams)
	for {
		b, err := ck.Next()
		if err == io.EOF {
			break
		}
		must(t, err)
		if isZero(b) {
			if k := len(want); k > 0 && want[k-1].IsHole() {
				want[k-1].Size += uint64(len(b))
				continue
			}
			want = append(want, node.Chunk{Size: uint64(len(b))})
			continue
		}
		want = append(want, node.Chunk{Hash: digest.Hash(sha256.Sum256(b)), Size: uint64(len(b))})
	}

	s := openTestStore(t, Options{})
	w, err := s.NewWriter()
	must(t, err)
	defer w.Close()
	f, err := os.Open(path)
	must(t, err)
	defer f.Close()
	got, size, err := w.PutFile(context.Background(), f, int64(len(data)))
	must(t, err)
	if size != uint64(len(data)) || len(got) != len(want) {
		t.Fatalf("%d chunks, %d bytes; want %d chunks, %d bytes", len(got), size, len(want), len(data))
	}
	holes := 0
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("chunk %d: %+v, want %+v", i, got[i], want[i])
		}
		if want[i].IsHole() {
			holes++
		}
	}
	if holes == 0 {
		t.Fatal("no hole among the chunks: the zeros did not make one")
	}
	must(t, w.Flush())
	var back []byte
	for _, c := range got {
		if c.IsHole() {
			back = append(back, make([]byte, c.Size)...)
			continue
		}
		b, err := s.ReadChunk(c.Hash, nil)
		must(t, err)
		back = append(back, b...)
	}
	if !bytes.Equal(back, data) {
		t.Fatal("the chunks read back are not the file")
	}
}

// TestExportLargeFileInRuns: a file large enough to be exported by several
// goroutines comes back byte for byte, its hole still a hole.
func TestExportLargeFileInRuns(t *testing.T) {
	src := t.TempDir()
	path := filepath.Join(src, "disk.img")
	f, err := os.Create(path)
	must(t, err)
	head := randBytes(12, parallelFileMin)
	tail := randBytes(13, 3*parallelRun+12345)
	_, err = f.WriteAt(head, 0)
	must(t, err)
	holeEnd := int64(len(head)) + 32<<20
	_, err = f.WriteAt(tail, holeEnd)
	must(t, err)
	must(t, f.Close())

	s := openTestStore(t, Options{})
	res, err := s.Import(context.Background(), src, ImportOptions{})
	must(t, err)
	out := filepath.Join(t.TempDir(), "out")
	_, err = s.Export(context.Background(), res.Tree, out, ExportOptions{Workers: 1})
	must(t, err)
	got, err := os.ReadFile(filepath.Join(out, "disk.img"))
	must(t, err)
	want := append(append(append([]byte{}, head...), make([]byte, holeEnd-int64(len(head)))...), tail...)
	if !bytes.Equal(got, want) {
		t.Fatalf("exported %d bytes, not the %d imported", len(got), len(want))
	}
	var st unix.Stat_t
	must(t, unix.Stat(filepath.Join(out, "disk.img"), &st))
	if alloc := st.Blocks * 512; alloc > int64(len(head)+len(tail))+1<<20 {
		t.Errorf("the export allocates %d bytes for %d of data: its hole was filled", alloc, len(head)+len(tail))
	}
}
