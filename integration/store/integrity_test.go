package store_test

import (
	"os"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/forge-build/forge/internal/fstree"
)

// TestIntegrity damages a pack that holds one ref's data (What must hold,
// 4): export of that ref fails naming the chunk and the pack, fsck exits 1
// naming them too, fsck --repair drops that ref and keeps the other, and a
// following fsck is clean. Nothing exported holds a byte that is not the
// original's.
func TestIntegrity(t *testing.T) {
	forgeBin(t)
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, pack string, from, size int64)
	}{
		{"byte flipped in the middle", flipMiddle},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := fstree.DiskTempDir(t)
			s := newStore(t, tmp)
			intact := filepath.Join(tmp, "intact")
			fstree.MustRandomTree(t, intact, 1, 4<<20)
			s.importTree(intact, "intact")
			before := s.packs()

			// One large random file: the pack data it adds is chunk data,
			// stored raw, so the middle of it is inside a chunk.
			const size = 8 << 20
			content := fstree.RandomBytes("integrity", size)
			damaged := filepath.Join(tmp, "damaged")
			writeTree(t, damaged, map[string][]byte{"big": content})
			s.importTree(damaged, "damaged")

			// The pack the import added, or grew the most.
			var packID string
			var from, grown int64
			for id, n := range s.packs() {
				if g := n - before[id]; g > grown {
					packID, from, grown = id, before[id], g
				}
			}
			if grown < size/2 {
				t.Fatalf("importing %d random bytes grew no pack by more than %d bytes", size, grown)
			}
			tc.damage(t, filepath.Join(s.dir, "packs", packID+".pack"), from, grown)

			named := regexp.MustCompile(`chunk ([0-9a-f]{64}) in pack ` + packID)
			out := filepath.Join(tmp, "out")
			r := s.run("export", "damaged", out)
			if r.code == 0 {
				t.Fatalf("export of damaged data succeeded:\n%s", r)
			}
			m := named.FindStringSubmatch(r.stdout + r.stderr)
			if m == nil {
				t.Fatalf("export error does not say \"chunk <hash> in pack %s\":\n%s", packID, r)
			}
			chunk := m[1]
			assertNoWrongBytes(t, filepath.Join(out, "big"), content)

			r = s.run("fsck")
			if r.code != 1 {
				t.Fatalf("fsck of a damaged store: exit %d, want 1\n%s", r.code, r)
			}
			if !regexp.MustCompile(`chunk ` + chunk + ` in pack ` + packID).MatchString(r.stdout + r.stderr) {
				t.Errorf("fsck does not name chunk %s in pack %s:\n%s", chunk, packID, r)
			}

			r = s.run("fsck", "--repair")
			t.Logf("fsck --repair: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			refs := s.ls()
			if _, ok := refs["damaged"]; ok {
				t.Errorf("fsck --repair kept the ref whose data cannot be read")
			}
			if _, ok := refs["intact"]; !ok {
				t.Fatalf("fsck --repair dropped the ref whose data is intact")
			}
			s.assertClean()
			s.assertExportEquals("intact", intact)
		})
	}
}

// flipMiddle inverts one byte in the middle of the pack data [from,
// from+size).
func flipMiddle(t *testing.T, pack string, from, size int64) {
	f, err := os.OpenFile(pack, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, 1)
	off := from + size/2
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0xff
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// assertNoWrongBytes checks that a file a failed export may have left
// holds only bytes of the original at their offsets, or zeros where
// nothing was written: never data that did not match its hash.
func assertNoWrongBytes(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range got {
		if i >= len(want) {
			t.Fatalf("failed export left %s longer than the original", path)
		}
		if b != 0 && b != want[i] {
			t.Fatalf("failed export left a wrong byte in %s at offset %d", path, i)
		}
	}
}
