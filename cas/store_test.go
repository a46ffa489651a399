package cas

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
)

// These tests run without root: ownership, devices and privileged xattrs
// are covered by integration/store, which runs as root.

func openTestStore(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "store"), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func randBytes(seed int64, n int) []byte {
	b := make([]byte, n)
	rand.New(rand.NewSource(seed)).Read(b)
	return b
}

func writeFile(t *testing.T, path string, data []byte, perm os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, data, perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
}

// makeTree builds a tree of everything an unprivileged user can make.
func makeTree(t *testing.T) string {
	t.Helper()
	root := filepath.Join(t.TempDir(), "tree")
	writeFile(t, filepath.Join(root, "empty"), nil, 0o644)
	writeFile(t, filepath.Join(root, "small"), []byte("hello\n"), 0o600)
	writeFile(t, filepath.Join(root, "exact-min"), randBytes(1, 16<<10), 0o640)
	writeFile(t, filepath.Join(root, "dir/many-chunks"), randBytes(2, 3<<20+17), 0o755)
	writeFile(t, filepath.Join(root, "dir/sub/zeros"), make([]byte, 300<<10), 0o644)
	writeFile(t, filepath.Join(root, "name with spaces\nand newline"), []byte("x"), 0o644)
	writeFile(t, filepath.Join(root, "not-utf8-\xff\xfe"), []byte("y"), 0o644)
	writeFile(t, filepath.Join(root, strings.Repeat("n", 255)), []byte("z"), 0o644)
	must(t, os.Symlink("small", filepath.Join(root, "rel-link")))
	must(t, os.Symlink("/nonexistent/dangling", filepath.Join(root, "abs-dangling")))
	must(t, os.Link(filepath.Join(root, "small"), filepath.Join(root, "dir/hardlink")))
	must(t, os.Link(filepath.Join(root, "small"), filepath.Join(root, "dir/sub/hardlink2")))
	must(t, unix.Mkfifo(filepath.Join(root, "fifo"), 0o620))
	must(t, os.Mkdir(filepath.Join(root, "emptydir"), 0o1777))
	must(t, os.Chmod(filepath.Join(root, "emptydir"), 0o1777))
	must(t, unix.Setxattr(filepath.Join(root, "small"), "user.forge", []byte("value\x00bin"), 0))
	must(t, unix.Setxattr(filepath.Join(root, "dir"), "user.dir", nil, 0))
	// Directory mtimes last: creating entries changes them.
	mt := time.Unix(1234567890, 123456789)
	must(t, filepath.Walk(root, func(p string, info fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{unix.NsecToTimespec(mt.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}, unix.AT_SYMLINK_NOFOLLOW)
	}))
	return root
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// describe lists every path with the properties an unprivileged export
// must keep, for comparison.
func describe(t *testing.T, root string) []string {
	t.Helper()
	var out []string
	inodes := map[uint64]string{}
	must(t, filepath.Walk(root, func(p string, info fs.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		st := info.Sys().(*syscall.Stat_t)
		line := fmt.Sprintf("%q mode=%v mtime=%d.%09d", rel, info.Mode(), st.Mtim.Sec, st.Mtim.Nsec)
		switch {
		case info.Mode().IsRegular():
			data, err := os.ReadFile(p)
			must(t, err)
			line += fmt.Sprintf(" content=%s", digest.Sum(data).Short())
			if st.Nlink > 1 {
				if first, ok := inodes[st.Ino]; ok {
					line += " linked-to=" + first
				} else {
					inodes[st.Ino] = rel
				}
			}
		case info.Mode()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			must(t, err)
			line += " -> " + target
		}
		if info.Mode()&fs.ModeSymlink == 0 {
			xs, err := ReadPathXattrs(p, true)
			must(t, err)
			for _, x := range xs {
				line += fmt.Sprintf(" %s=%q", x.Name, x.Value)
			}
		}
		out = append(out, line)
		return nil
	}))
	return out
}

func TestImportExportRoundTrip(t *testing.T) {
	s := openTestStore(t, Options{})
	src := makeTree(t)
	ctx := context.Background()
	res, err := s.Import(ctx, src, ImportOptions{Refs: []string{"tree"}})
	must(t, err)
	dst := filepath.Join(t.TempDir(), "out")
	if _, err := s.Export(ctx, res.Tree, dst, ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	want, got := describe(t, src), describe(t, dst)
	if strings.Join(want, "\n") != strings.Join(got, "\n") {
		t.Fatalf("export differs from source:\nsource:\n%s\nexport:\n%s", strings.Join(want, "\n"), strings.Join(got, "\n"))
	}
	// The all-zero file is a hole: nothing stored, nothing allocated.
	var st unix.Stat_t
	must(t, unix.Stat(filepath.Join(dst, "dir/sub/zeros"), &st))
	if st.Blocks != 0 {
		t.Errorf("all-zero file exported with %d blocks allocated, want a hole", st.Blocks)
	}
	if tree, err := s.Ref("tree"); err != nil || tree != res.Tree {
		t.Fatalf("ref tree = %s, %v; want %s", tree, err, res.Tree)
	}
}

func TestExportDestination(t *testing.T) {
	s := openTestStore(t, Options{})
	res, err := s.Import(context.Background(), makeTree(t), ImportOptions{})
	must(t, err)
	tests := []struct {
		name    string
		prepare func(dir string) string
		wantErr bool
	}{
		{"missing", func(dir string) string { return filepath.Join(dir, "new") }, false},
		{"empty directory", func(dir string) string { return dir }, false},
		{"non-empty directory", func(dir string) string {
			writeFile(t, filepath.Join(dir, "x"), nil, 0o644)
			return dir
		}, true},
		{"parent missing", func(dir string) string { return filepath.Join(dir, "a/b") }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dest := tt.prepare(t.TempDir())
			_, err := s.Export(context.Background(), res.Tree, dest, ExportOptions{})
			if (err != nil) != tt.wantErr {
				t.Fatalf("Export to %s: err = %v, want error: %v", dest, err, tt.wantErr)
			}
		})
	}
}

func TestImportIsDeterministicAndDeduplicates(t *testing.T) {
	s := openTestStore(t, Options{})
	src := makeTree(t)
	ctx := context.Background()
	first, err := s.Import(ctx, src, ImportOptions{})
	must(t, err)
	second, err := s.Import(ctx, src, ImportOptions{})
	must(t, err)
	if first.Tree != second.Tree {
		t.Fatalf("same tree imported as %s and %s", first.Tree, second.Tree)
	}
	if second.Stats.NewBytes != 0 || second.Stats.NewNodes != 0 {
		t.Fatalf("re-import stored %d new bytes and %d new nodes, want none", second.Stats.NewBytes, second.Stats.NewNodes)
	}
	// A copy with one byte inserted at the start of a multi-chunk file
	// shares almost all of its chunks.
	big, err := os.ReadFile(filepath.Join(src, "dir/many-chunks"))
	must(t, err)
	other := filepath.Join(t.TempDir(), "other")
	writeFile(t, filepath.Join(other, "shifted"), append([]byte{'!'}, big...), 0o644)
	third, err := s.Import(ctx, other, ImportOptions{})
	must(t, err)
	if frac := float64(third.Stats.NewBytes) / float64(len(big)); frac > 0.15 {
		t.Fatalf("one inserted byte made %.0f%% of the file new", 100*frac)
	}
}

func TestCorruptChunkIsDetected(t *testing.T) {
	s := openTestStore(t, Options{})
	ctx := context.Background()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), randBytes(3, 1<<20), 0o644)
	res, err := s.Import(ctx, src, ImportOptions{Refs: []string{"victim"}})
	must(t, err)
	packs, err := filepath.Glob(filepath.Join(s.Dir(), packsDir, "*"+packExt))
	must(t, err)
	if len(packs) != 1 {
		t.Fatalf("%d packs, want 1", len(packs))
	}
	flipByte(t, packs[0], 4096)
	packID := strings.TrimSuffix(filepath.Base(packs[0]), packExt)

	_, err = s.Export(ctx, res.Tree, filepath.Join(t.TempDir(), "out"), ExportOptions{})
	var ce *ChunkError
	if !errors.As(err, &ce) || !errors.Is(err, ErrCorrupt) || ce.Pack != packID {
		t.Fatalf("export of corrupt data: %v; want a ChunkError in pack %s", err, packID)
	}
	if !strings.Contains(err.Error(), ce.Chunk.String()) {
		t.Fatalf("error %q does not name the chunk", err)
	}
	fr, err := s.Fsck(ctx, FsckOptions{})
	must(t, err)
	if len(fr.Problems) == 0 || !strings.Contains(strings.Join(fr.Problems, "\n"), packID) {
		t.Fatalf("fsck problems %q do not name pack %s", fr.Problems, packID)
	}
	fr, err = s.Fsck(ctx, FsckOptions{Repair: true})
	must(t, err)
	if len(fr.Repaired) == 0 {
		t.Fatal("fsck --repair repaired nothing")
	}
	if _, err := s.Ref("victim"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("ref of corrupt tree survived repair: %v", err)
	}
	fr, err = s.Fsck(ctx, FsckOptions{})
	must(t, err)
	if len(fr.Problems) != 0 {
		t.Fatalf("fsck after repair: %q", fr.Problems)
	}
	// The corrupt chunk is out of the index, so importing the data again
	// stores it anew rather than deduplicating against the bad copy.
	again, err := s.Import(ctx, src, ImportOptions{Refs: []string{"again"}})
	must(t, err)
	if again.Stats.NewChunks == 0 {
		t.Fatal("re-import after repair stored no new chunks")
	}
	if _, err := s.Export(ctx, again.Tree, filepath.Join(t.TempDir(), "out"), ExportOptions{}); err != nil {
		t.Fatalf("export after repair and re-import: %v", err)
	}
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	b := make([]byte, 1)
	_, err = f.ReadAt(b, off)
	must(t, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	must(t, err)
}

func TestCorruptNodeIsDetected(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name    string
		corrupt func(t *testing.T, s *Store, tree digest.Hash, loc chunkLoc, enc []byte)
		// readable: the node still reads whole, from the pack or from
		// the index's copy, but fsck must find the damage.
		readable bool
	}{
		{"node bytes in the pack", func(t *testing.T, s *Store, tree digest.Hash, loc chunkLoc, enc []byte) {
			s.forgetPack(loc.Pack)
			flipByte(t, s.packPath(loc.Pack), loc.Offset+3)
		}, true},
		{"the index's copy of the node", func(t *testing.T, s *Store, tree digest.Hash, loc chunkLoc, enc []byte) {
			damaged := bytes.Clone(enc)
			damaged[len(damaged)-3] ^= 0xff
			must(t, s.db.Set(hashKey(prefixNode, tree), damaged, nil))
		}, true},
		{"node bytes in the pack, and no copy in the index", func(t *testing.T, s *Store, tree digest.Hash, loc chunkLoc, enc []byte) {
			must(t, s.db.Set(hashKey(prefixNode, tree), loc.encode(), nil))
			s.forgetPack(loc.Pack)
			flipByte(t, s.packPath(loc.Pack), loc.Offset+3)
		}, false},
		{"index record truncated", func(t *testing.T, s *Store, tree digest.Hash, loc chunkLoc, enc []byte) {
			must(t, s.db.Set(hashKey(prefixNode, tree), enc[:len(enc)/2], nil))
		}, false},
		{"index record names another pack", func(t *testing.T, s *Store, tree digest.Hash, loc chunkLoc, enc []byte) {
			loc.Pack[0] ^= 1
			must(t, s.db.Set(hashKey(prefixNode, tree), loc.encode(), nil))
		}, false},
		{"index record points past the pack", func(t *testing.T, s *Store, tree digest.Hash, loc chunkLoc, enc []byte) {
			loc.Length = 1 << 31
			must(t, s.db.Set(hashKey(prefixNode, tree), loc.encode(), nil))
		}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTestStore(t, Options{})
			res, err := s.Import(ctx, makeTree(t), ImportOptions{Refs: []string{"t"}})
			must(t, err)
			enc, err := s.get(hashKey(prefixNode, res.Tree))
			must(t, err)
			loc, err := decodeChunkLoc(enc)
			must(t, err)
			if _, inline, err := decodeBlobRecord(enc); err != nil || inline == nil {
				t.Fatalf("the index record of a small node has no copy of it (%v)", err)
			}
			tt.corrupt(t, s, res.Tree, loc, enc)
			n, err := s.Node(res.Tree)
			if tt.readable {
				if err != nil || n == nil {
					t.Fatalf("Node: %v, %v; want the node, read from where it is whole", n, err)
				}
			} else if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("Node: %v, want ErrCorrupt", err)
			}
			fr, err := s.Fsck(ctx, FsckOptions{})
			must(t, err)
			if !strings.Contains(strings.Join(fr.Problems, "\n"), res.Tree.String()) {
				t.Fatalf("fsck problems %q do not name node %s", fr.Problems, res.Tree)
			}
		})
	}
}

func TestGCFreesWhatNoRefHolds(t *testing.T) {
	s := openTestStore(t, Options{PackSize: 256 << 10})
	ctx := context.Background()
	a, b := t.TempDir(), t.TempDir()
	shared := randBytes(10, 2<<20)
	writeFile(t, filepath.Join(a, "shared"), shared, 0o644)
	writeFile(t, filepath.Join(b, "shared"), shared, 0o644)
	writeFile(t, filepath.Join(a, "only-a"), randBytes(11, 2<<20), 0o644)
	writeFile(t, filepath.Join(b, "only-b"), randBytes(12, 1<<20), 0o644)
	ra, err := s.Import(ctx, a, ImportOptions{Refs: []string{"a"}})
	must(t, err)
	rb, err := s.Import(ctx, b, ImportOptions{Refs: []string{"b"}})
	must(t, err)

	refs, err := s.RefUsage(ctx)
	must(t, err)
	for _, r := range refs {
		want := map[string]int64{"a": 2 << 20, "b": 1 << 20}[r.Name]
		if r.UniqueBytes != want {
			t.Errorf("ref %s holds %d unique bytes, want %d", r.Name, r.UniqueBytes, want)
		}
	}

	must(t, s.DeleteRefs("a"))
	dry, err := s.GC(ctx, GCOptions{DryRun: true})
	must(t, err)
	before, err := s.Usage(ctx)
	must(t, err)
	if dry.ChunkBytes != 2<<20 {
		t.Fatalf("dry run would free %d chunk bytes, want %d", dry.ChunkBytes, 2<<20)
	}
	// Repack every pack with dead bytes, so no garbage may remain.
	res, err := s.GC(ctx, GCOptions{RepackBelow: 1})
	must(t, err)
	after, err := s.Usage(ctx)
	must(t, err)
	if res.ChunkBytes != 2<<20 || after.StoredBytes != before.StoredBytes-2<<20 {
		t.Fatalf("gc freed %d chunk bytes (stored %d → %d), want %d", res.ChunkBytes, before.StoredBytes, after.StoredBytes, 2<<20)
	}
	if overhead := after.PackBytes - after.StoredBytes; overhead > 64<<10 {
		t.Fatalf("after gc, packs hold %d bytes beyond live chunks", overhead)
	}
	if _, err := s.Export(ctx, rb.Tree, filepath.Join(t.TempDir(), "out"), ExportOptions{}); err != nil {
		t.Fatalf("export of the kept ref after gc: %v", err)
	}
	if ok, _ := s.HasNode(ra.Tree); ok {
		t.Fatal("tree of the dropped ref survived gc")
	}
	fr, err := s.Fsck(ctx, FsckOptions{})
	must(t, err)
	if len(fr.Problems) != 0 || fr.GarbagePacks != 0 || fr.GarbageNodes != 0 {
		t.Fatalf("fsck after gc: %+v", fr)
	}
}

// An open Writer's data survives a concurrent GC: what it wrote and what it
// deduplicated against.
func TestGCKeepsWhatWritersHold(t *testing.T) {
	s := openTestStore(t, Options{PackSize: 64 << 10})
	ctx := context.Background()
	src := t.TempDir()
	old := randBytes(20, 200<<10)
	writeFile(t, filepath.Join(src, "f"), old, 0o644)
	res, err := s.Import(ctx, src, ImportOptions{Refs: []string{"old"}})
	must(t, err)
	oldNode, err := s.Node(res.Tree)
	must(t, err)
	fileNode, err := s.Node(oldNode.Entries[0].Hash)
	must(t, err)

	w, err := s.NewWriter()
	must(t, err)
	defer w.Close()
	fresh := randBytes(21, 100<<10) // past PackSize: its pack is flushed
	freshHash := digest.Sum(fresh)
	_, err = w.PutChunk(freshHash, fresh)
	must(t, err)
	// Dedup against a chunk only the old ref holds, then drop the ref.
	reused := fileNode.Chunks[0]
	isNew, err := w.PutChunk(reused.Hash, nil)
	must(t, err)
	if isNew {
		t.Fatal("stored chunk reported as new")
	}
	must(t, s.DeleteRefs("old"))
	if _, err := s.GC(ctx, GCOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []digest.Hash{freshHash, reused.Hash} {
		if _, err := s.ReadChunk(h, nil); err != nil {
			t.Fatalf("chunk held by an open writer was collected: %v", err)
		}
	}
}

func TestOpenRefusesSecondHolder(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	s, err := Open(dir, Options{})
	must(t, err)
	defer s.Close()
	_, err = Open(dir, Options{})
	if !errors.Is(err, ErrInUse) || !strings.Contains(err.Error(), fmt.Sprintf("process %d", os.Getpid())) {
		t.Fatalf("second Open: %v; want ErrInUse naming process %d", err, os.Getpid())
	}
}

func TestImportRejectsBadInput(t *testing.T) {
	s := openTestStore(t, Options{})
	file := filepath.Join(t.TempDir(), "file")
	writeFile(t, file, []byte("x"), 0o644)
	tests := []struct {
		name string
		path string
		opts ImportOptions
	}{
		{"missing path", filepath.Join(t.TempDir(), "missing"), ImportOptions{}},
		{"not a directory", file, ImportOptions{}},
		{"bad ref name", t.TempDir(), ImportOptions{Refs: []string{"has space"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := s.Import(context.Background(), tt.path, tt.opts); err == nil {
				t.Fatal("Import succeeded")
			}
		})
	}
}

func TestDiff(t *testing.T) {
	s := openTestStore(t, Options{})
	ctx := context.Background()
	base := t.TempDir()
	writeFile(t, filepath.Join(base, "keep"), []byte("same"), 0o644)
	writeFile(t, filepath.Join(base, "content"), []byte("old"), 0o644)
	writeFile(t, filepath.Join(base, "mode"), []byte("m"), 0o644)
	writeFile(t, filepath.Join(base, "gone/a"), []byte("a"), 0o644)
	writeFile(t, filepath.Join(base, "gone/sub/b"), []byte("b"), 0o644)
	writeFile(t, filepath.Join(base, "deep/x/y/z"), []byte("z"), 0o644)
	ra, err := s.Import(ctx, base, ImportOptions{})
	must(t, err)
	writeFile(t, filepath.Join(base, "content"), []byte("new"), 0o644)
	must(t, os.Chmod(filepath.Join(base, "mode"), 0o600))
	must(t, os.RemoveAll(filepath.Join(base, "gone")))
	writeFile(t, filepath.Join(base, "added"), []byte("+"), 0o644)
	rb, err := s.Import(ctx, base, ImportOptions{})
	must(t, err)

	var got []string
	must(t, s.Diff(ctx, ra.Tree, rb.Tree, func(c Change) error {
		got = append(got, string(c.Op)+" "+c.Path)
		return nil
	}))
	want := []string{"A added", "M content", "D gone", "D gone/a", "D gone/sub", "D gone/sub/b", "M mode"}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("diff:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var none []Change
	must(t, s.Diff(ctx, rb.Tree, rb.Tree, func(c Change) error { none = append(none, c); return nil }))
	if len(none) != 0 {
		t.Fatalf("diff of a tree with itself: %v", none)
	}
}

func TestGCMaxSizeDropsLeastRecentlyUsed(t *testing.T) {
	clock := time.Unix(1700000000, 0)
	var mu sync.Mutex
	now := func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		clock = clock.Add(time.Second)
		return clock
	}
	s := openTestStore(t, Options{Now: now})
	ctx := context.Background()
	for i, name := range []string{"oldest", "middle", "newest"} {
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "f"), randBytes(int64(30+i), 1<<20), 0o644)
		_, err := s.Import(ctx, dir, ImportOptions{Refs: []string{name}})
		must(t, err)
	}
	// Using "oldest" makes "middle" the least recently used.
	_, err := s.Resolve("oldest")
	must(t, err)

	dry, err := s.GC(ctx, GCOptions{MaxSize: 2<<20 + 1000, DryRun: true})
	must(t, err)
	if strings.Join(dry.DroppedRefs, ",") != "middle" {
		t.Fatalf("dry run would drop %v, want [middle]", dry.DroppedRefs)
	}
	if refs, _ := s.Refs(); len(refs) != 3 {
		t.Fatalf("dry run dropped refs: %v", refs)
	}
	res, err := s.GC(ctx, GCOptions{MaxSize: 1<<20 + 1000})
	must(t, err)
	if strings.Join(res.DroppedRefs, ",") != "middle,newest" {
		t.Fatalf("gc dropped %v, want [middle newest]", res.DroppedRefs)
	}
	u, err := s.Usage(ctx)
	must(t, err)
	if u.StoredBytes > 1<<20+1000 {
		t.Fatalf("store holds %d bytes after gc --max-size", u.StoredBytes)
	}
}

func TestSparseFileImportSkipsHoles(t *testing.T) {
	s := openTestStore(t, Options{})
	ctx := context.Background()
	src := t.TempDir()
	path := filepath.Join(src, "sparse")
	f, err := os.Create(path)
	must(t, err)
	data := randBytes(40, 1<<20)
	_, err = f.WriteAt(data, 512<<20)
	must(t, err)
	must(t, f.Truncate(1<<30))
	must(t, f.Close())
	res, err := s.Import(ctx, src, ImportOptions{})
	must(t, err)
	if res.Stats.NewBytes > 2<<20 {
		t.Fatalf("stored %d bytes for 1 MiB of data", res.Stats.NewBytes)
	}
	dst := filepath.Join(t.TempDir(), "out")
	_, err = s.Export(ctx, res.Tree, dst, ExportOptions{})
	must(t, err)
	var st unix.Stat_t
	must(t, unix.Stat(filepath.Join(dst, "sparse"), &st))
	if st.Size != 1<<30 || st.Blocks*512 > 4<<20 {
		t.Fatalf("exported sparse file: size %d, %d bytes allocated", st.Size, st.Blocks*512)
	}
	got := make([]byte, len(data))
	out, err := os.Open(filepath.Join(dst, "sparse"))
	must(t, err)
	defer out.Close()
	_, err = out.ReadAt(got, 512<<20)
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Fatal("data in the sparse file changed")
	}
}

func TestRepairOfTruncatedPack(t *testing.T) {
	s := openTestStore(t, Options{})
	ctx := context.Background()
	keep, victim := t.TempDir(), t.TempDir()
	writeFile(t, filepath.Join(victim, "f"), randBytes(50, 2<<20), 0o644)
	writeFile(t, filepath.Join(keep, "f"), randBytes(51, 1<<20), 0o644)
	// Each import writes a pack of its own: truncate the victim's.
	kept, err := s.Import(ctx, keep, ImportOptions{Refs: []string{"keep"}})
	must(t, err)
	_, err = s.Import(ctx, victim, ImportOptions{Refs: []string{"victim"}})
	must(t, err)
	packs, err := filepath.Glob(filepath.Join(s.Dir(), packsDir, "*"+packExt))
	must(t, err)
	for _, p := range packs {
		fi, err := os.Stat(p)
		must(t, err)
		if fi.Size() > 2<<20 {
			must(t, os.Truncate(p, fi.Size()/2))
		}
	}
	fr, err := s.Fsck(ctx, FsckOptions{Repair: true})
	must(t, err)
	if len(fr.Problems) == 0 {
		t.Fatal("fsck found nothing wrong with a truncated pack")
	}
	fr, err = s.Fsck(ctx, FsckOptions{})
	must(t, err)
	if len(fr.Problems) != 0 {
		t.Fatalf("fsck after repair of a truncated pack: %q", fr.Problems)
	}
	if _, err := s.Export(ctx, kept.Tree, filepath.Join(t.TempDir(), "out"), ExportOptions{}); err != nil {
		t.Fatalf("tree in another pack lost by the repair: %v", err)
	}
}

func TestReimportReusesUnchangedFiles(t *testing.T) {
	s := openTestStore(t, Options{})
	s.racyWindow = -time.Hour // the files were just written; trust their ctimes anyway
	ctx := context.Background()
	src := makeTree(t)
	first, err := s.Import(ctx, src, ImportOptions{})
	must(t, err)
	if first.ReusedBytes != 0 {
		t.Fatalf("first import reused %d bytes", first.ReusedBytes)
	}
	second, err := s.Import(ctx, src, ImportOptions{})
	must(t, err)
	if second.Tree != first.Tree || second.ReusedBytes != second.Bytes || second.Bytes == 0 {
		t.Fatalf("unchanged re-import: tree %s (want %s), reused %d of %d bytes", second.Tree, first.Tree, second.ReusedBytes, second.Bytes)
	}
	// A changed file is read again, and only it.
	path := filepath.Join(src, "dir/many-chunks")
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	must(t, err)
	_, err = f.Write([]byte("more"))
	must(t, err)
	must(t, f.Close())
	third, err := s.Import(ctx, src, ImportOptions{})
	must(t, err)
	fi, err := os.Stat(path)
	must(t, err)
	if third.Tree == first.Tree || third.Bytes-third.ReusedBytes != fi.Size() {
		t.Fatalf("after changing one file: read %d bytes, want the file's %d", third.Bytes-third.ReusedBytes, fi.Size())
	}
	dst := filepath.Join(t.TempDir(), "out")
	_, err = s.Export(ctx, third.Tree, dst, ExportOptions{})
	must(t, err)
	if a, b := describe(t, src), describe(t, dst); strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("export after cached re-import differs:\n%s\n---\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	// Once GC has freed the chunks, the cache entry is not trusted.
	must(t, s.DeleteRefs())
	_, err = s.GC(ctx, GCOptions{})
	must(t, err)
	fourth, err := s.Import(ctx, src, ImportOptions{})
	must(t, err)
	if fourth.ReusedBytes != 0 || fourth.Tree != third.Tree {
		t.Fatalf("after gc freed everything: reused %d bytes, tree %s (want %s)", fourth.ReusedBytes, fourth.Tree, third.Tree)
	}
}

// Hard links are not only for regular files: a symlink, a FIFO (and, as
// root, a device) can have several names too.
func TestHardLinkedSpecialFilesRoundTrip(t *testing.T) {
	s := openTestStore(t, Options{})
	src := t.TempDir()
	must(t, os.Symlink("target", filepath.Join(src, "sym")))
	must(t, unix.Linkat(unix.AT_FDCWD, filepath.Join(src, "sym"), unix.AT_FDCWD, filepath.Join(src, "sym2"), 0))
	must(t, unix.Mkfifo(filepath.Join(src, "fifo"), 0o600))
	must(t, os.Mkdir(filepath.Join(src, "d"), 0o755))
	must(t, os.Link(filepath.Join(src, "fifo"), filepath.Join(src, "d/fifo2")))
	must(t, os.Symlink("alone", filepath.Join(src, "single")))
	ctx := context.Background()
	res, err := s.Import(ctx, src, ImportOptions{})
	must(t, err)
	dst := filepath.Join(t.TempDir(), "out")
	_, err = s.Export(ctx, res.Tree, dst, ExportOptions{})
	must(t, err)
	for _, pair := range [][2]string{{"sym", "sym2"}, {"fifo", "d/fifo2"}} {
		var a, b unix.Stat_t
		must(t, unix.Lstat(filepath.Join(dst, pair[0]), &a))
		must(t, unix.Lstat(filepath.Join(dst, pair[1]), &b))
		if a.Ino != b.Ino || a.Nlink != 2 {
			t.Errorf("%s and %s: inodes %d and %d, nlink %d; want one inode with 2 links", pair[0], pair[1], a.Ino, b.Ino, a.Nlink)
		}
	}
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dst, "single"), &st))
	if st.Nlink != 1 {
		t.Errorf("a lone symlink exported with %d links", st.Nlink)
	}
}

// Fsck reads the index from one snapshot: imports that commit new chunks,
// nodes and refs while it runs must not look like refs to missing chunks
// (a ref committed after the chunks were listed did, in a crash test).
func TestFsckDuringImports(t *testing.T) {
	s := openTestStore(t, Options{PackSize: 256 << 10})
	const imports = 30
	done := make(chan error, 1)
	go func() {
		for i := range imports {
			dir := filepath.Join(t.TempDir(), "tree")
			for j := range 8 {
				writeFile(t, filepath.Join(dir, fmt.Sprintf("f%d", j)), randBytes(int64(1000*i+j), 64<<10), 0o644)
			}
			if _, err := s.Import(context.Background(), dir, ImportOptions{Refs: []string{fmt.Sprintf("r%d", i)}}); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for checks := 0; ; checks++ {
		select {
		case err := <-done:
			must(t, err)
			t.Logf("%d fscks during %d imports", checks, imports)
			return
		default:
		}
		res, err := s.Fsck(context.Background(), FsckOptions{})
		must(t, err)
		if len(res.Problems) > 0 {
			t.Fatalf("fsck during imports: %v", res.Problems)
		}
	}
}
