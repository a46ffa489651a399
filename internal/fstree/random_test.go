package fstree_test

import (
	"path/filepath"
	"testing"

	"github.com/forge-build/forge/internal/fstree"
)

func TestRandomTreeIsAFunctionOfItsSeed(t *testing.T) {
	fstree.RequireRoot(t)
	tmp := fstree.DiskTempDir(t)
	const size = 20 << 20
	trees := map[string]uint64{"a": 7, "b": 7, "c": 8}
	written := map[string]int64{}
	for name, seed := range trees {
		written[name] = fstree.MustRandomTree(t, filepath.Join(tmp, name), seed, size)
		if written[name] < size {
			t.Errorf("tree %s: wrote %d bytes, asked for %d", name, written[name], size)
		}
	}
	fstree.AssertSame(t, filepath.Join(tmp, "a"), filepath.Join(tmp, "b"), fstree.Options{CompareRootMeta: true})
	diffs, err := fstree.Compare(filepath.Join(tmp, "a"), filepath.Join(tmp, "c"), fstree.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if len(diffs) == 0 {
		t.Error("trees of seeds 7 and 8 compare equal")
	}
}
