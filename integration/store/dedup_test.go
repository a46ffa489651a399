package store_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/forge-build/forge/internal/fstree"
)

// TestDedupSameTreeTwice: importing the same tree again grows the store
// by less than 1% (What must hold, 2).
func TestDedupSameTreeTwice(t *testing.T) {
	forgeBin(t)
	tmp := fstree.DiskTempDir(t)
	s := newStore(t, tmp)
	src := filepath.Join(tmp, "src")
	fstree.MustBuildFixture(t, src)

	s.importTree(src, "first")
	before := s.du()
	s.importTree(src, "second")
	after := s.du()
	t.Logf("du after one import: %+v; after two: %+v", before, after)
	if grew := after.StoredBytes - before.StoredBytes; grew*100 >= before.StoredBytes {
		t.Errorf("stored_bytes grew by %d bytes (from %d) on re-import, want < 1%%", grew, before.StoredBytes)
	}
	if grew := after.PackBytes - before.PackBytes; grew*100 >= before.PackBytes {
		t.Errorf("pack_bytes grew by %d bytes (from %d) on re-import, want < 1%%", grew, before.PackBytes)
	}
	if after.Refs != 2 {
		t.Errorf("du reports %d refs, want 2", after.Refs)
	}
}

// TestDedupAcrossTrees: a file with one byte inserted at its start shares
// almost all its chunks with the original, and identical files in
// different trees are stored once (What must hold, 2).
func TestDedupAcrossTrees(t *testing.T) {
	forgeBin(t)
	tmp := fstree.DiskTempDir(t)
	s := newStore(t, tmp)
	const size = 5 << 20
	content := fstree.RandomBytes("dedup across trees", size)
	inserted := append([]byte{0x5a}, content...)

	one := filepath.Join(tmp, "one")
	writeTree(t, one, map[string][]byte{"big": content})
	s.importTree(one, "one")
	d1 := s.du()
	if d1.StoredBytes < size*9/10 {
		t.Fatalf("a tree of %d random bytes is stored as %d bytes", size, d1.StoredBytes)
	}

	// The same file, and the same file with one byte inserted at the
	// start: content-defined chunks realign after the first boundary, so
	// only the first chunk or two are new.
	two := filepath.Join(tmp, "two")
	writeTree(t, two, map[string][]byte{"same": content, "dir/inserted": inserted})
	s.importTree(two, "two")
	d2 := s.du()
	if grew := d2.StoredBytes - d1.StoredBytes; grew > 3*maxChunk {
		t.Errorf("a tree holding the same %d-byte file and a copy with one byte inserted grew stored_bytes by %d, want ≤ %d (three chunks)",
			size, grew, 3*maxChunk)
	} else {
		t.Logf("one-byte insertion: stored_bytes grew by %d for %d logical bytes", grew, 2*size+1)
	}

	// The same content under other names, modes and owners in a third
	// tree: no chunk of it is stored again.
	three := filepath.Join(tmp, "three")
	writeTree(t, three, map[string][]byte{"a/copy-1": content, "b/copy-2": content})
	if err := os.Chmod(filepath.Join(three, "a/copy-1"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(filepath.Join(three, "b/copy-2"), 4321, 8765); err != nil {
		t.Fatal(err)
	}
	s.importTree(three, "three")
	d3 := s.du()
	if grew := d3.StoredBytes - d2.StoredBytes; grew*100 >= size {
		t.Errorf("a third tree holding the same file twice grew stored_bytes by %d, want < 1%% of %d", grew, size)
	}
	for ref, src := range map[string]string{"one": one, "two": two, "three": three} {
		s.assertExportEquals(ref, src)
	}
	s.assertClean()
}
