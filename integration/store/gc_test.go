package store_test

import (
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/forge-build/forge/internal/fstree"
)

// TestGCMaxSize: with --max-size, gc drops the least recently used refs
// first until the store fits, and --dry-run changes nothing.
//
// Three refs of refSize random bytes each, imported in order r1, r2, r3 a
// second apart (so that even a last_used with one-second resolution orders
// them). Sizes are given to --max-size in bytes, half a ref away from
// each boundary, so index and pack framing cannot tip the choice.
func TestGCMaxSize(t *testing.T) {
	forgeBin(t)
	tmp := fstree.DiskTempDir(t)
	s := newStore(t, tmp)
	const refSize = 16 << 20
	names := []string{"r1", "r2", "r3"}
	srcs := map[string]string{}
	for i, name := range names {
		if i > 0 {
			time.Sleep(1100 * time.Millisecond)
		}
		srcs[name] = filepath.Join(tmp, name)
		writeTree(t, srcs[name], map[string][]byte{"data": fstree.RandomBytes("gc "+name, refSize)})
		s.importTree(srcs[name], name)
	}

	refs := s.ls()
	var prev time.Time
	for _, name := range names {
		e, ok := refs[name]
		if !ok {
			t.Fatalf("ls does not list %s", name)
		}
		used, err := parseLastUsed(e.LastUsed)
		if err != nil {
			t.Fatalf("ref %s: %v", name, err)
		}
		if !used.After(prev) {
			t.Fatalf("ls: %s last used %v, not after the ref imported before it (%v)", name, used, prev)
		}
		prev = used
		if e.LogicalBytes < refSize || e.LogicalBytes > refSize+minChunk {
			t.Errorf("ls: %s has logical_bytes %d, want %d", name, e.LogicalBytes, refSize)
		}
		if e.UniqueBytes < refSize*9/10 {
			t.Errorf("ls: %s has unique_bytes %d, want about %d: nothing else holds its data", name, e.UniqueBytes, refSize)
		}
	}
	stored := s.du().StoredBytes
	u1, u2 := refs["r1"].UniqueBytes, refs["r2"].UniqueBytes
	dropOne := stored - u1/2
	dropTwo := stored - u1 - u2/2

	lsBefore, duBefore := s.ok("ls", "--json").stdout, s.ok("du", "--json").stdout
	r := s.ok("gc", "--max-size", strconv.FormatInt(dropTwo, 10), "--dry-run")
	t.Logf("gc --dry-run:\n%s%s", r.stdout, r.stderr)
	if ls := s.ok("ls", "--json").stdout; ls != lsBefore {
		t.Errorf("gc --dry-run changed ls:\nbefore: %s\nafter:  %s", lsBefore, ls)
	}
	if du := s.ok("du", "--json").stdout; du != duBefore {
		t.Errorf("gc --dry-run changed du:\nbefore: %s\nafter:  %s", duBefore, du)
	}

	for _, step := range []struct {
		maxSize int64
		left    []string
	}{
		{dropOne, []string{"r2", "r3"}},
		{dropTwo, []string{"r3"}},
	} {
		s.ok("gc", "--max-size", strconv.FormatInt(step.maxSize, 10))
		var left []string
		for name := range s.ls() {
			left = append(left, name)
		}
		slices.Sort(left)
		if !slices.Equal(left, step.left) {
			t.Fatalf("after gc --max-size %d: refs %v, want %v (least recently used dropped first)", step.maxSize, left, step.left)
		}
		d := s.du()
		if d.StoredBytes > step.maxSize {
			t.Errorf("after gc --max-size %d: stored_bytes %d", step.maxSize, d.StoredBytes)
		}
		for _, name := range left {
			s.assertExportEquals(name, srcs[name])
		}
		s.assertClean()
		s.assertNoGarbage()
	}
	if r := s.run("export", "r1", filepath.Join(tmp, "gone")); r.code == 0 {
		t.Errorf("export of a ref gc dropped succeeded:\n%s", r)
	}
}

// TestRmThenGC: rm drops refs (one or several at once); gc then frees the
// data only they held and keeps what another ref shares.
func TestRmThenGC(t *testing.T) {
	forgeBin(t)
	tmp := fstree.DiskTempDir(t)
	s := newStore(t, tmp)
	const own, shared = 8 << 20, 4 << 20
	common := fstree.RandomBytes("rm shared", shared)
	srcs := map[string]string{}
	for _, name := range []string{"r1", "r2", "r3"} {
		srcs[name] = filepath.Join(tmp, name)
		writeTree(t, srcs[name], map[string][]byte{
			"own":    fstree.RandomBytes("rm "+name, own),
			"shared": common,
		})
		s.importTree(srcs[name], name)
	}
	before := s.du()

	s.ok("rm", "r1")
	if _, ok := s.ls()["r1"]; ok {
		t.Fatal("rm r1: ls still lists it")
	}
	s.ok("gc")
	after := s.du()
	if freed := before.StoredBytes - after.StoredBytes; freed < own-maxChunk || freed > own+maxChunk {
		t.Errorf("gc after rm r1 freed %d stored bytes, want about %d (its own file, not the shared one)", freed, own)
	}
	s.assertNoGarbage()
	s.assertExportEquals("r2", srcs["r2"])

	s.ok("rm", "r2", "r3")
	if left := s.ls(); len(left) != 0 {
		t.Fatalf("rm r2 r3: ls still lists %d refs", len(left))
	}
	s.ok("gc")
	if d := s.du(); d.StoredBytes != 0 || d.Chunks != 0 || d.Refs != 0 {
		t.Errorf("gc of a store without refs left %+v", d)
	}
	s.assertNoGarbage()
	s.assertClean()
}
