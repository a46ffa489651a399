package cas

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/forge-build/forge/cas/digest"
)

// packsOf lists the pack files of the store at dir.
func packsOf(t *testing.T, dir string) []string {
	t.Helper()
	packs, err := filepath.Glob(filepath.Join(dir, packsDir, "*"+packExt))
	must(t, err)
	sort.Strings(packs)
	return packs
}

// packOfRef is the pack that holds ref's root node.
func packOfRef(t *testing.T, s *Store, ref string) string {
	t.Helper()
	enc, err := s.get(hashKey(prefixNode, mustRef(t, s, ref)))
	must(t, err)
	loc, err := decodeChunkLoc(enc)
	must(t, err)
	return s.packPath(loc.Pack)
}

func copyFile(t *testing.T, from, to string) {
	t.Helper()
	in, err := os.Open(from)
	must(t, err)
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	must(t, err)
	_, err = io.Copy(out, in)
	must(t, err)
	must(t, out.Close())
}

// TestFsckClassifies pins what fsck calls a problem, what it calls garbage
// (what GC frees, which a killed import leaves and is no fault), when it
// holds back from repairing, and what a repair keeps.
func TestFsckClassifies(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name   string
		damage func(t *testing.T, s *Store)
		// wantProblem is a substring of the problems; "" for none.
		wantProblem      string
		wantGarbagePacks int
		wantGarbageNodes bool
		// wantHold: repair must change nothing and say why.
		wantHold bool
		// wantRefs are the refs after fsck --repair.
		wantRefs []string
	}{
		{
			name:     "clean",
			damage:   func(t *testing.T, s *Store) {},
			wantRefs: []string{"t1", "t2"},
		},
		{
			name:             "a deleted ref leaves garbage, not a problem",
			damage:           func(t *testing.T, s *Store) { must(t, s.DeleteRefs("t2")) },
			wantGarbageNodes: true,
			wantRefs:         []string{"t1"},
		},
		{
			// A writer killed between renaming its pack and committing
			// the pack's index entries leaves a pack the index does not
			// know, holding blobs the index lacks.
			name: "a killed writer's pack is garbage, not index damage",
			damage: func(t *testing.T, s *Store) {
				other := filepath.Join(t.TempDir(), "other")
				o, err := Open(other, Options{})
				must(t, err)
				src := t.TempDir()
				writeFile(t, filepath.Join(src, "x"), randBytes(99, 200<<10), 0o644)
				_, err = o.Import(ctx, src, ImportOptions{})
				must(t, err)
				must(t, o.Close())
				p := packsOf(t, other)
				if len(p) != 1 {
					t.Fatalf("%d packs in the other store, want 1", len(p))
				}
				copyFile(t, p[0], filepath.Join(s.Dir(), packsDir, filepath.Base(p[0])))
			},
			wantGarbagePacks: 1,
			wantRefs:         []string{"t1", "t2"},
		},
		{
			name: "an index that lost a chunk record is damaged; repair rebuilds it",
			damage: func(t *testing.T, s *Store) {
				var key []byte
				must(t, s.scan(prefixChunk, func(k, _ []byte) error {
					if key == nil {
						key = append([]byte{prefixChunk}, k...)
					}
					return nil
				}))
				must(t, s.db.Delete(key, pebble.Sync))
			},
			wantProblem: "index",
			wantRefs:    []string{"t1", "t2"},
		},
		{
			name: "a missing pack is a problem; repair drops the refs that need it",
			damage: func(t *testing.T, s *Store) {
				must(t, os.Remove(packOfRef(t, s, "t2")))
			},
			wantProblem: "missing from",
			wantRefs:    []string{"t1"},
		},
		{
			name: "bytes appended to a pack: repair salvages it whole",
			damage: func(t *testing.T, s *Store) {
				f, err := os.OpenFile(packOfRef(t, s, "t1"), os.O_WRONLY|os.O_APPEND, 0)
				must(t, err)
				_, err = f.Write([]byte("trailing junk"))
				must(t, err)
				must(t, f.Close())
			},
			wantProblem: "no trailer",
			wantRefs:    []string{"t1", "t2"},
		},
		{
			// Not a pack format error: a read that fails for a reason
			// that may pass (here EISDIR; EACCES and EIO alike).
			name: "a pack that cannot be read holds the repair back",
			damage: func(t *testing.T, s *Store) {
				p := packOfRef(t, s, "t2")
				must(t, os.Rename(p, p+".moved"))
				must(t, os.Mkdir(p, 0o700))
			},
			wantProblem: "is a directory",
			wantHold:    true,
			wantRefs:    []string{"t1", "t2"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			storeWithTwoRefs(t, dir)
			s, err := Open(dir, Options{})
			must(t, err)
			defer s.Close()
			tt.damage(t, s)

			fr, err := s.Fsck(ctx, FsckOptions{})
			must(t, err)
			problems := strings.Join(fr.Problems, "\n")
			if tt.wantProblem == "" && len(fr.Problems) != 0 {
				t.Fatalf("problems %q, want none", fr.Problems)
			}
			if tt.wantProblem != "" && !strings.Contains(problems, tt.wantProblem) {
				t.Fatalf("problems %q, want one containing %q", fr.Problems, tt.wantProblem)
			}
			// Garbage is counted from what the refs reach, so it is
			// only meaningful in a store without problems.
			if tt.wantProblem == "" && fr.GarbagePacks != tt.wantGarbagePacks {
				t.Errorf("%d garbage packs, want %d", fr.GarbagePacks, tt.wantGarbagePacks)
			}
			if tt.wantProblem == "" && (fr.GarbageNodes > 0) != tt.wantGarbageNodes {
				t.Errorf("%d garbage nodes, want some: %v", fr.GarbageNodes, tt.wantGarbageNodes)
			}

			packsBefore := packsOf(t, dir)
			fr, err = s.Fsck(ctx, FsckOptions{Repair: true})
			must(t, err)
			if tt.wantHold {
				if len(fr.Repaired) != 0 || !strings.Contains(strings.Join(fr.Problems, "\n"), "not repairing") {
					t.Fatalf("repair with an unreadable pack: repaired %q, problems %q", fr.Repaired, fr.Problems)
				}
				if after := packsOf(t, dir); strings.Join(after, " ") != strings.Join(packsBefore, " ") {
					t.Fatalf("packs changed by a held repair: %v, then %v", packsBefore, after)
				}
			}
			refs, err := s.Refs()
			must(t, err)
			var names []string
			for _, r := range refs {
				names = append(names, r.Name)
			}
			sort.Strings(names)
			if strings.Join(names, " ") != strings.Join(tt.wantRefs, " ") {
				t.Fatalf("refs after repair %q, want %q", names, tt.wantRefs)
			}
			if tt.wantHold {
				return
			}
			fr, err = s.Fsck(ctx, FsckOptions{})
			must(t, err)
			if len(fr.Problems) != 0 {
				t.Fatalf("problems after repair: %q", fr.Problems)
			}
			for _, name := range names {
				if _, err := s.Export(ctx, mustRef(t, s, name), filepath.Join(t.TempDir(), "out"), ExportOptions{}); err != nil {
					t.Fatalf("export of %s after repair: %v", name, err)
				}
			}
		})
	}
}

// requireNodeCopies checks that every node record of the index carries a
// copy of its node that verifies.
func requireNodeCopies(t *testing.T, s *Store) {
	t.Helper()
	n := 0
	must(t, s.scan(prefixNode, func(k, v []byte) error {
		h, _ := digest.FromBytes(k)
		loc, inline, err := decodeBlobRecord(v)
		if err != nil {
			return err
		}
		if loc.Length <= inlineNodeMax && digest.Sum(inline) != h {
			t.Errorf("node %s: the index record has no good copy of it", h)
		}
		n++
		return nil
	}))
	if n == 0 {
		t.Fatal("no node records")
	}
}

// GC moves a pack's live nodes into a new pack: their index records keep
// their copies.
func TestGCRewriteKeepsNodeCopies(t *testing.T) {
	s := openTestStore(t, Options{})
	ctx := context.Background()
	a := t.TempDir()
	writeFile(t, filepath.Join(a, "x"), randBytes(1, 1<<20), 0o644)
	writeFile(t, filepath.Join(a, "b/y"), randBytes(2, 1<<20), 0o644)
	_, err := s.Import(ctx, a, ImportOptions{Refs: []string{"a"}})
	must(t, err)
	// b's nodes and chunks are all in a's pack already.
	rb, err := s.Import(ctx, filepath.Join(a, "b"), ImportOptions{Refs: []string{"b"}})
	must(t, err)
	before, err := s.location(prefixNode, rb.Tree)
	must(t, err)
	must(t, s.DeleteRefs("a"))
	res, err := s.GC(ctx, GCOptions{RepackBelow: 1})
	must(t, err)
	after, err := s.location(prefixNode, rb.Tree)
	must(t, err)
	if res.PacksRewritten == 0 || after.Pack == before.Pack {
		t.Fatalf("gc rewrote %d packs, b's root still in %s: the test needs a rewrite", res.PacksRewritten, after.Pack)
	}
	requireNodeCopies(t, s)
}

// A node whose bytes rot in its pack still reads from the index's copy;
// fsck reports the rot, and repair writes the copy into a new pack rather
// than dropping the node and the refs that need it.
func TestRepairRescuesNodesFromTheIndexCopy(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name   string
		damage func(t *testing.T, s *Store, loc chunkLoc)
	}{
		{"node bytes flipped in the pack", func(t *testing.T, s *Store, loc chunkLoc) {
			s.forgetPack(loc.Pack)
			flipByte(t, s.packPath(loc.Pack), loc.Offset+3)
		}},
		{"the pack holds only nodes, and is gone", func(t *testing.T, s *Store, loc chunkLoc) {
			s.forgetPack(loc.Pack)
			must(t, os.Remove(s.packPath(loc.Pack)))
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTestStore(t, Options{})
			src := t.TempDir()
			writeFile(t, filepath.Join(src, "f"), randBytes(7, 100<<10), 0o644)
			first, err := s.Import(ctx, src, ImportOptions{})
			must(t, err)
			// A second import of the same content with new metadata
			// stores only nodes, in a pack of their own.
			must(t, os.Chmod(filepath.Join(src, "f"), 0o600))
			res, err := s.Import(ctx, src, ImportOptions{Refs: []string{"t"}})
			must(t, err)
			if res.Tree == first.Tree || res.Stats.NewChunks != 0 {
				t.Fatalf("second import: tree %s (first %s), %d new chunks", res.Tree, first.Tree, res.Stats.NewChunks)
			}
			loc, err := s.location(prefixNode, res.Tree)
			must(t, err)
			tc.damage(t, s, loc)

			if _, err := s.Node(res.Tree); err != nil {
				t.Fatalf("Node before the repair: %v; want it from the index's copy", err)
			}
			fr, err := s.Fsck(ctx, FsckOptions{})
			must(t, err)
			if !strings.Contains(strings.Join(fr.Problems, "\n"), "sound copy") {
				t.Fatalf("fsck problems %q do not report the damage", fr.Problems)
			}
			fr, err = s.Fsck(ctx, FsckOptions{Repair: true})
			must(t, err)
			if !strings.Contains(strings.Join(fr.Repaired, "\n"), "from the index's copies") {
				t.Fatalf("repair: %q", fr.Repaired)
			}
			fr, err = s.Fsck(ctx, FsckOptions{})
			must(t, err)
			if len(fr.Problems) != 0 {
				t.Fatalf("fsck after the repair: %q", fr.Problems)
			}
			if got := mustRef(t, s, "t"); got != res.Tree {
				t.Fatalf("ref t = %s after the repair, want %s", got, res.Tree)
			}
			// The pack is the truth again: a rebuilt index has the node.
			rr, err := s.rebuildIndex(ctx)
			must(t, err)
			if len(rr.Problems) != 0 {
				t.Fatalf("rebuild: %q", rr.Problems)
			}
			if _, err := s.Export(ctx, res.Tree, filepath.Join(t.TempDir(), "out"), ExportOptions{}); err != nil {
				t.Fatalf("export after repair and rebuild: %v", err)
			}
		})
	}
}
