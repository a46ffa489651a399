package store_test

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/fstree"
)

// TestFidelity: export(import(T)) equals T in every property the fixture
// exercises (What must hold, 1), and the tree hash is a function of the
// tree alone.
func TestFidelity(t *testing.T) {
	forgeBin(t)
	tmp := fstree.DiskTempDir(t)
	s := newStore(t, tmp)
	src := filepath.Join(tmp, "src")
	fstree.MustBuildFixture(t, src)

	hash := s.importTree(src, "fixture")
	if again := s.importTree(src, ""); again != hash {
		t.Errorf("importing the same tree twice gave %s, then %s", hash, again)
	}
	// Another build of the fixture has other inode numbers and creation
	// order, and the same content and metadata: the same hash.
	src2 := filepath.Join(tmp, "src2")
	fstree.MustBuildFixture(t, src2)
	if other := s.importTree(src2, ""); other != hash {
		t.Errorf("two builds of the same fixture imported as %s and %s", hash, other)
	}

	// To a path that does not exist, by ref: the root's own metadata too.
	out := filepath.Join(tmp, "out")
	s.export("fixture", out)
	fstree.AssertSame(t, src, out, exportOptions)
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(out, fstree.FixtureSparse), &st); err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d bytes of data exported as %d bytes allocated", fstree.FixtureSparse, fstree.FixtureSparseData, st.Blocks*512)
	if alloc := st.Blocks * 512; alloc > fstree.FixtureSparseData+exportOptions.SparseSlack {
		t.Errorf("exported %s allocates %d bytes, want about %d: holes were not kept", fstree.FixtureSparse, alloc, fstree.FixtureSparseData)
	}
	// What was exported imports as the same tree.
	if back := s.importTree(out, ""); back != hash {
		t.Errorf("re-importing the export gave %s, want %s", back, hash)
	}

	// To an existing empty directory, by hash.
	empty := filepath.Join(tmp, "empty")
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	s.export(hash, empty)
	fstree.AssertSame(t, src, empty, fstree.Options{CheckSparse: true, SparseSlack: exportOptions.SparseSlack})

	// Not into a directory that has something in it; that something stays.
	busy := filepath.Join(tmp, "busy")
	if err := os.Mkdir(busy, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(busy, "keep"), []byte("mine"), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := s.run("export", "fixture", busy); r.code == 0 {
		t.Errorf("export into a non-empty directory succeeded:\n%s", r)
	}
	entries, err := os.ReadDir(busy)
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(filepath.Join(busy, "keep")); len(entries) != 1 || string(b) != "mine" {
		t.Errorf("failed export into a non-empty directory changed it: %d entries, keep=%q", len(entries), b)
	}
	s.assertClean()
}
