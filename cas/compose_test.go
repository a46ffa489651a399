package cas

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// lookupPath walks a slash path from tree h.
func lookupPath(t *testing.T, s *Store, h digest.Hash, p string) (digest.Hash, *node.Node) {
	t.Helper()
	n, err := s.Node(h)
	must(t, err)
	if p == "" {
		return h, n
	}
	for _, part := range strings.Split(p, "/") {
		i, ok := n.Lookup(part)
		if !ok {
			t.Fatalf("%s: no %q in tree %s", p, part, h.Short())
		}
		h = n.Entries[i].Hash
		n, err = s.Node(h)
		must(t, err)
	}
	return h, n
}

func TestComposeTakesNodesWithoutCopying(t *testing.T) {
	s := openTestStore(t, Options{})
	ctx := context.Background()
	src := makeTree(t)
	res, err := s.Import(ctx, src, ImportOptions{Refs: []string{"src"}})
	must(t, err)
	other := t.TempDir()
	writeFile(t, filepath.Join(other, "sha256:abc"), []byte("source file\n"), 0o644)
	res2, err := s.Import(ctx, other, ImportOptions{Refs: []string{"source/sha256:abc"}})
	must(t, err)

	entries := []ComposeEntry{
		{Name: "sha256:abc", Tree: "source/sha256:abc", Path: "sha256:abc"},
		{Name: "deep/er/file", Tree: res.Tree.String(), Path: "/dir/many-chunks"},
		{Name: "deep/sub", Tree: "src", Path: "emptydir"},
		{Name: "whole", Tree: "src", Path: "/"},
		{Name: "rootless", Tree: "source/sha256:abc", Path: ""},
		{Name: "linked", Tree: "src", Path: "small"}, // three names in src
	}
	before, err := s.Usage(ctx)
	must(t, err)
	h, release, err := s.Compose(ctx, entries)
	must(t, err)
	defer release()
	after, err := s.Usage(ctx)
	must(t, err)
	if after.StoredBytes != before.StoredBytes {
		t.Errorf("compose stored %d bytes of content, want none", after.StoredBytes-before.StoredBytes)
	}

	root, err := s.Node(h)
	must(t, err)
	var names []string
	for _, e := range root.Entries {
		names = append(names, e.Name)
		if e.Link != 0 {
			t.Errorf("entry %s has link %d, want 0", e.Name, e.Link)
		}
	}
	if got, want := strings.Join(names, " "), "deep linked rootless sha256:abc whole"; got != want {
		t.Fatalf("root entries %q, want %q", got, want)
	}
	for _, d := range []string{"", "deep", "deep/er"} {
		_, n := lookupPath(t, s, h, d)
		if n.Type != node.TypeDir || n.Perm != 0o755 || n.UID != 0 || n.GID != 0 || n.MtimeSec != 0 || n.MtimeNsec != 0 || len(n.Xattrs) != 0 {
			t.Errorf("made directory %q: %+v, want 0755 root:root mtime 0", d, n)
		}
	}
	// Taken nodes are the stored ones, by hash.
	for _, tc := range []struct {
		name string
		tree digest.Hash
		path string
	}{
		{"sha256:abc", res2.Tree, "sha256:abc"},
		{"deep/er/file", res.Tree, "dir/many-chunks"},
		{"deep/sub", res.Tree, "emptydir"},
		{"whole", res.Tree, ""},
		{"rootless", res2.Tree, ""},
	} {
		got, _ := lookupPath(t, s, h, tc.name)
		want, _ := lookupPath(t, s, tc.tree, tc.path)
		if got != want {
			t.Errorf("%s is node %s, want %s (%s of %s)", tc.name, got.Short(), want.Short(), tc.path, tc.tree.Short())
		}
	}
	// A file taken from among its hard links counts one name.
	_, orig := lookupPath(t, s, res.Tree, "small")
	_, linked := lookupPath(t, s, h, "linked")
	if orig.Nlink != 3 || linked.Nlink != 1 || linked.Size != orig.Size || len(linked.Chunks) != len(orig.Chunks) || linked.Chunks[0] != orig.Chunks[0] {
		t.Errorf("linked: nlink %d (source %d), want 1 with the source's content", linked.Nlink, orig.Nlink)
	}

	// The content reads back.
	out := filepath.Join(t.TempDir(), "out")
	_, err = s.Export(ctx, h, out, ExportOptions{})
	must(t, err)
	for name, want := range map[string]string{
		"sha256:abc":   filepath.Join(other, "sha256:abc"),
		"deep/er/file": filepath.Join(src, "dir/many-chunks"),
		"whole/small":  filepath.Join(src, "small"),
		"linked":       filepath.Join(src, "small"),
	} {
		a, err := os.ReadFile(filepath.Join(out, name))
		must(t, err)
		b, err := os.ReadFile(want)
		must(t, err)
		if string(a) != string(b) {
			t.Errorf("%s: content differs from %s", name, want)
		}
	}
	if got, want := describe(t, filepath.Join(out, "whole")), describe(t, src); strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("whole differs from the source tree:\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	// Composing the same entries again gives the same tree.
	h2, release2, err := s.Compose(ctx, entries)
	must(t, err)
	release2()
	if h2 != h {
		t.Errorf("the same entries composed as %s and %s", h.Short(), h2.Short())
	}
}

// The pin Compose returns keeps the tree, and what it takes, from GC
// after every ref to its sources is gone; releasing it lets GC free it.
func TestComposePinsAgainstGC(t *testing.T) {
	s := openTestStore(t, Options{})
	ctx := context.Background()
	src := t.TempDir()
	data := randBytes(30, 300<<10)
	writeFile(t, filepath.Join(src, "f"), data, 0o644)
	_, err := s.Import(ctx, src, ImportOptions{Refs: []string{"src"}})
	must(t, err)
	h, release, err := s.Compose(ctx, []ComposeEntry{{Name: "a/b", Tree: "src", Path: "f"}})
	must(t, err)
	must(t, s.DeleteRefs("src"))
	_, err = s.GC(ctx, GCOptions{})
	must(t, err)
	out := filepath.Join(t.TempDir(), "out")
	if _, err := s.Export(ctx, h, out, ExportOptions{}); err != nil {
		t.Fatalf("export of a pinned composed tree after gc: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(out, "a/b"))
	must(t, err)
	if string(got) != string(data) {
		t.Fatal("a/b differs from the file it was taken from")
	}
	release()
	release() // twice is harmless
	r, err := s.GC(ctx, GCOptions{})
	must(t, err)
	if ok, _ := s.HasNode(h); ok || r.ChunkBytes == 0 {
		t.Fatalf("released composed tree survived gc (freed %d chunk bytes)", r.ChunkBytes)
	}
}

func TestComposeErrors(t *testing.T) {
	s := openTestStore(t, Options{})
	ctx := context.Background()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), []byte("x"), 0o644)
	writeFile(t, filepath.Join(src, "d/g"), []byte("y"), 0o644)
	_, err := s.Import(ctx, src, ImportOptions{Refs: []string{"src"}})
	must(t, err)
	ok := func(name string) ComposeEntry { return ComposeEntry{Name: name, Tree: "src", Path: "f"} }
	dir := func(name string) ComposeEntry { return ComposeEntry{Name: name, Tree: "src", Path: "d"} }
	tests := []struct {
		name    string
		entries []ComposeEntry
		is      error
		naming  string // the entry the error names
	}{
		{"missing tree", []ComposeEntry{ok("a"), {Name: "b", Tree: "no-such-ref", Path: "f"}}, ErrNotFound, `"b"`},
		{"missing tree hash", []ComposeEntry{{Name: "b", Tree: strings.Repeat("ab", 32)}}, ErrNotFound, `"b"`},
		{"missing path", []ComposeEntry{{Name: "b", Tree: "src", Path: "nope"}}, ErrNotFound, `"b"`},
		{"path through a file", []ComposeEntry{{Name: "b", Tree: "src", Path: "f/x"}}, ErrNotFound, `"b"`},
		{"path with ..", []ComposeEntry{{Name: "b", Tree: "src", Path: "d/../f"}}, ErrInvalidArgument, `"b"`},
		{"duplicate", []ComposeEntry{ok("a"), ok("b"), ok("a")}, ErrInvalidArgument, `"a"`},
		{"file, then inside it", []ComposeEntry{ok("a"), ok("a/b")}, ErrInvalidArgument, `"a/b"`},
		{"inside, then the file", []ComposeEntry{ok("a/b"), ok("a")}, ErrInvalidArgument, `"a"`},
		{"inside a taken directory", []ComposeEntry{dir("a"), ok("a/x")}, ErrInvalidArgument, `"a/x"`},
		{"dot dot", []ComposeEntry{ok("a/../b")}, ErrInvalidArgument, `"a/../b"`},
		{"dot", []ComposeEntry{ok("./b")}, ErrInvalidArgument, `"./b"`},
		{"empty part", []ComposeEntry{ok("a//b")}, ErrInvalidArgument, `"a//b"`},
		{"trailing slash", []ComposeEntry{ok("a/")}, ErrInvalidArgument, `"a/"`},
		{"absolute", []ComposeEntry{ok("/a")}, ErrInvalidArgument, `"/a"`},
		{"empty", []ComposeEntry{ok("")}, ErrInvalidArgument, `""`},
		{"too long", []ComposeEntry{ok(strings.Repeat("n", 256))}, ErrInvalidArgument, `"nnn`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, release, err := s.Compose(ctx, tt.entries)
			if err == nil {
				release()
				t.Fatal("Compose succeeded")
			}
			if !errors.Is(err, tt.is) {
				t.Fatalf("error %q is not %v", err, tt.is)
			}
			if !strings.Contains(err.Error(), "compose entry "+tt.naming) {
				t.Fatalf("error %q does not name entry %s", err, tt.naming)
			}
		})
	}
	// Nothing stays pinned after a failure: GC frees the source once its
	// ref is gone.
	must(t, s.DeleteRefs("src"))
	r, err := s.GC(ctx, GCOptions{})
	must(t, err)
	if r.Nodes == 0 {
		t.Fatal("a failed Compose left its source pinned")
	}
}

// SubRefs store many trees with refs of their own in one import: one
// pack, and each tree the same as an import of its directory alone.
func TestImportSubRefs(t *testing.T) {
	s := openTestStore(t, Options{})
	ctx := context.Background()
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "a/f"), []byte("a"), 0o644)
	writeFile(t, filepath.Join(src, "b/c/g"), randBytes(40, 100<<10), 0o600)
	writeFile(t, filepath.Join(src, "file"), []byte("x"), 0o644)
	packs := len(packsOf(t, s.Dir()))
	res, err := s.Import(ctx, src, ImportOptions{Refs: []string{"all"}, SubRefs: map[string]string{"ra": "a", "rc": "b/c", "rc2": "b/c"}})
	must(t, err)
	if n := len(packsOf(t, s.Dir())) - packs; n != 1 {
		t.Errorf("the import wrote %d packs, want 1", n)
	}
	if got := mustRef(t, s, "all"); got != res.Tree {
		t.Errorf("ref all = %s, want %s", got.Short(), res.Tree.Short())
	}
	for ref, dir := range map[string]string{"ra": "a", "rc": "b/c", "rc2": "b/c"} {
		alone, err := s.Import(ctx, filepath.Join(src, dir), ImportOptions{})
		must(t, err)
		inside, _ := lookupPath(t, s, res.Tree, dir)
		if got := mustRef(t, s, ref); got != alone.Tree || got != inside {
			t.Errorf("ref %s = %s; want %s, the tree of %s", ref, got.Short(), alone.Tree.Short(), dir)
		}
	}
	for _, tt := range []struct {
		subRefs map[string]string
		is      error
	}{
		{map[string]string{"r": "nope"}, ErrNotFound},
		{map[string]string{"r": "a/nope"}, ErrNotFound},
		{map[string]string{"r": "file"}, ErrInvalidArgument},
		{map[string]string{"r": "a/f"}, ErrInvalidArgument},
		{map[string]string{"r": ""}, ErrInvalidArgument},
		{map[string]string{"r": "a/../b"}, ErrInvalidArgument},
		{map[string]string{"r": "/a"}, ErrInvalidArgument},
		{map[string]string{"bad ref": "a"}, ErrInvalidArgument},
	} {
		if _, err := s.Import(ctx, src, ImportOptions{Refs: []string{"never"}, SubRefs: tt.subRefs}); !errors.Is(err, tt.is) {
			t.Errorf("SubRefs %v: %v, want %v", tt.subRefs, err, tt.is)
		}
	}
	if _, err := s.Ref("never"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a failed import set its ref: %v", err)
	}
}
