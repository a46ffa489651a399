package cas

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/fstree"
	"github.com/forge-build/forge/internal/treecopy"
	"github.com/forge-build/forge/internal/treestream"
)

// streamCopy streams tree into a new directory with treecopy.CopyStream,
// through a pipe as the copy stage gets it, and returns the directory and
// both sides' errors.
func streamCopy(t *testing.T, s *Store, tree string, dst string) (sendErr, copyErr error) {
	t.Helper()
	h, err := s.Resolve(tree)
	must(t, err)
	r, w := io.Pipe()
	done := make(chan error, 1)
	go func() {
		err := s.StreamTree(context.Background(), h, w)
		w.CloseWithError(err)
		done <- err
	}()
	copyErr = treecopy.CopyStream(context.Background(), r, dst)
	r.Close()
	return <-done, copyErr
}

// TestStreamTreeCopiesFixture: a stored tree streamed and written with
// treecopy.CopyStream equals the tree it was imported from in every
// property the fidelity fixture has, the root's own metadata included, and
// stays as sparse; so does a copy made by walking the tree (treecopy.Copy),
// which the stream is to stand in for.
func TestStreamTreeCopiesFixture(t *testing.T) {
	fstree.RequireRoot(t)
	tmp := fstree.DiskTempDir(t)
	src := filepath.Join(tmp, "src")
	fstree.MustBuildFixture(t, src)
	fstree.MustAddLinkedSpecials(t, src)
	s := openTestStore(t, Options{})
	_, err := s.Import(context.Background(), src, ImportOptions{Refs: []string{"fixture"}})
	must(t, err)
	dst := filepath.Join(tmp, "dst")
	must(t, os.Mkdir(dst, 0o700))
	sendErr, copyErr := streamCopy(t, s, "fixture", dst)
	if sendErr != nil || copyErr != nil {
		t.Fatalf("stream: sender %v, copy %v", sendErr, copyErr)
	}
	fstree.AssertSame(t, src, dst, fstree.Options{CompareRootMeta: true, CheckSparse: true})

	walked := filepath.Join(tmp, "walked")
	must(t, os.Mkdir(walked, 0o700))
	must(t, treecopy.Copy(context.Background(), dst, walked))
	fstree.AssertSame(t, dst, walked, fstree.Options{CompareRootMeta: true, CheckSparse: true})
}

// TestStreamTreeLinkAcrossMounts: a hard link whose second name falls in a
// filesystem mounted below the destination becomes a copy of its own, made
// from the first copy (the stream carries an inode's content once).
func TestStreamTreeLinkAcrossMounts(t *testing.T) {
	fstree.RequireRoot(t)
	tmp := fstree.DiskTempDir(t)
	src := filepath.Join(tmp, "src")
	writeFile(t, filepath.Join(src, "a/file"), randBytes(5, 200<<10), 0o640)
	must(t, os.Mkdir(filepath.Join(src, "m"), 0o755))
	must(t, os.Link(filepath.Join(src, "a/file"), filepath.Join(src, "m/again")))
	s := openTestStore(t, Options{})
	_, err := s.Import(context.Background(), src, ImportOptions{Refs: []string{"linked"}})
	must(t, err)
	dst := filepath.Join(tmp, "dst")
	must(t, os.MkdirAll(filepath.Join(dst, "m"), 0o700))
	must(t, unix.Mount("forge-test", filepath.Join(dst, "m"), "tmpfs", 0, ""))
	t.Cleanup(func() { unix.Unmount(filepath.Join(dst, "m"), unix.MNT_DETACH) })
	if sendErr, copyErr := streamCopy(t, s, "linked", dst); sendErr != nil || copyErr != nil {
		t.Fatalf("stream: sender %v, copy %v", sendErr, copyErr)
	}
	want, err := os.ReadFile(filepath.Join(src, "a/file"))
	must(t, err)
	for _, p := range []string{"a/file", "m/again"} {
		got, err := os.ReadFile(filepath.Join(dst, p))
		must(t, err)
		fi, err := os.Lstat(filepath.Join(dst, p))
		must(t, err)
		if string(got) != string(want) || fi.Mode().Perm() != 0o640 {
			t.Errorf("%s: %d bytes, mode %v; want the source's %d bytes, mode 0640", p, len(got), fi.Mode(), len(want))
		}
	}
}

// TestStreamTreeDamagedChunk: a chunk that fails its hash ends the stream
// with the sender's error, which the copy reports, naming the chunk, and
// the entry it stopped in.
func TestStreamTreeDamagedChunk(t *testing.T) {
	s := openTestStore(t, Options{})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "dir/victim"), randBytes(3, 1<<20), 0o644)
	_, err := s.Import(context.Background(), src, ImportOptions{Refs: []string{"victim"}})
	must(t, err)
	packs, err := filepath.Glob(filepath.Join(s.Dir(), packsDir, "*"+packExt))
	must(t, err)
	flipByte(t, packs[0], 4096)
	sendErr, copyErr := streamCopy(t, s, "victim", t.TempDir())
	var ce *ChunkError
	if !errors.As(sendErr, &ce) || !errors.Is(sendErr, ErrCorrupt) {
		t.Fatalf("sender: %v; want the damaged chunk's ChunkError", sendErr)
	}
	var we *treestream.WriterError
	if !errors.As(copyErr, &we) || !strings.Contains(copyErr.Error(), ce.Chunk.String()) || !strings.Contains(copyErr.Error(), `"dir/victim"`) {
		t.Fatalf("copy: %v; want the sender's error naming chunk %s, and dir/victim", copyErr, ce.Chunk)
	}
}

// TestStreamTreeCutShort: a stream that stops in the middle is an error,
// not a short copy.
func TestStreamTreeCutShort(t *testing.T) {
	s := openTestStore(t, Options{})
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), randBytes(4, 300<<10), 0o644)
	res, err := s.Import(context.Background(), src, ImportOptions{})
	must(t, err)
	var full strings.Builder
	must(t, s.StreamTree(context.Background(), res.Tree, &full))
	for _, cut := range []int{len(full.String()) / 2, len(full.String()) - 2} {
		err := treecopy.CopyStream(context.Background(), strings.NewReader(full.String()[:cut]), t.TempDir())
		if !errors.Is(err, treestream.ErrTruncated) {
			t.Errorf("a stream cut at %d of %d bytes: %v; want ErrTruncated", cut, len(full.String()), err)
		}
	}
}
