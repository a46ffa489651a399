package cas

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/forge-build/forge/cas/digest"
)

// storeWithTwoRefs makes a closed store at dir holding refs t1 and t2 and
// returns what each names.
func storeWithTwoRefs(t *testing.T, dir string) map[string]digest.Hash {
	t.Helper()
	s, err := Open(dir, Options{})
	must(t, err)
	defer s.Close()
	ctx := context.Background()
	want := map[string]digest.Hash{}
	for i, name := range []string{"t1", "t2"} {
		src := t.TempDir()
		writeFile(t, filepath.Join(src, "a"), randBytes(int64(60+i), 300<<10), 0o644)
		writeFile(t, filepath.Join(src, "sub/b"), randBytes(int64(70+i), 5000), 0o600)
		writeFile(t, filepath.Join(src, "same"), randBytes(80, 100<<10), 0o644)
		res, err := s.Import(ctx, src, ImportOptions{Refs: []string{name}})
		must(t, err)
		want[name] = res.Tree
	}
	must(t, s.Close())
	return want
}

// requireRefs checks that s has exactly the refs of want and that every
// tree exports.
func requireRefs(t *testing.T, s *Store, want map[string]digest.Hash) {
	t.Helper()
	refs, err := s.Refs()
	must(t, err)
	got := map[string]digest.Hash{}
	for _, r := range refs {
		got[r.Name] = r.Tree
	}
	if len(got) != len(want) {
		t.Fatalf("refs %v, want %v", got, want)
	}
	for name, tree := range want {
		if got[name] != tree {
			t.Fatalf("ref %s = %s, want %s", name, got[name], tree)
		}
		if _, err := s.Export(context.Background(), tree, filepath.Join(t.TempDir(), "out"), ExportOptions{}); err != nil {
			t.Fatalf("export of ref %s: %v", name, err)
		}
	}
}

func TestMissingIndexIsRebuiltFromPacksAndRefLog(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	want := storeWithTwoRefs(t, dir)
	must(t, os.RemoveAll(filepath.Join(dir, indexDir)))
	s, err := Open(dir, Options{})
	must(t, err)
	defer s.Close()
	if d := s.Damage(); len(d) != 0 {
		t.Fatalf("damage after a rebuild: %q", d)
	}
	requireRefs(t, s, want)
	fr, err := s.Fsck(context.Background(), FsckOptions{})
	must(t, err)
	if len(fr.Problems) != 0 {
		t.Fatalf("fsck after rebuild: %q", fr.Problems)
	}
	// The rebuild copies small nodes into the index again, as writers do.
	for name, tree := range want {
		rec, err := s.get(hashKey(prefixNode, tree))
		must(t, err)
		if _, inline, err := decodeBlobRecord(rec); err != nil || digest.Sum(inline) != tree {
			t.Errorf("ref %s: the rebuilt index record of its root has no good copy of it (%v)", name, err)
		}
	}
}

// newestWAL is the index's newest write-ahead log.
func newestWAL(t *testing.T, dir string) string {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, indexDir, "*.log"))
	must(t, err)
	if len(logs) == 0 {
		t.Fatal("no WAL in the index")
	}
	sort.Strings(logs)
	return logs[len(logs)-1]
}

// The attack of issue 14: four bytes written into the WAL made pebble drop
// every record after them, and the store looked empty and clean.
func TestDamagedWALIsDetectedAndRepaired(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	want := storeWithTwoRefs(t, dir)
	f, err := os.OpenFile(newestWAL(t, dir), os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt([]byte{0xde, 0xad, 0xbe, 0xef}, 100)
	must(t, err)
	must(t, f.Close())
	packsBefore, err := filepath.Glob(filepath.Join(dir, packsDir, "*"))
	must(t, err)

	s, err := Open(dir, Options{})
	must(t, err)
	defer s.Close()
	ctx := context.Background()
	if refs, _ := s.Refs(); len(refs) != 2 {
		t.Fatalf("%d refs after the damage, want 2: refs live in the ref log", len(refs))
	}
	fr, err := s.Fsck(ctx, FsckOptions{})
	must(t, err)
	if len(fr.Problems) == 0 {
		t.Fatal("fsck of a store whose index lost records reports no problem")
	}
	if _, err := s.GC(ctx, GCOptions{}); !errors.Is(err, errIndexDamaged) || !strings.Contains(err.Error(), "fsck --repair") {
		t.Fatalf("gc on a damaged index: %v, want a refusal that says to run fsck --repair", err)
	}
	packsAfter, err := filepath.Glob(filepath.Join(dir, packsDir, "*"))
	must(t, err)
	if len(packsAfter) != len(packsBefore) {
		t.Fatalf("gc deleted packs: %d before, %d after", len(packsBefore), len(packsAfter))
	}
	fr, err = s.Fsck(ctx, FsckOptions{Repair: true})
	must(t, err)
	if len(fr.Repaired) == 0 {
		t.Fatalf("fsck --repair repaired nothing; problems %q", fr.Problems)
	}
	fr, err = s.Fsck(ctx, FsckOptions{})
	must(t, err)
	if len(fr.Problems) != 0 {
		t.Fatalf("fsck after repair: %q", fr.Problems)
	}
	requireRefs(t, s, want)
	if _, err := s.GC(ctx, GCOptions{}); err != nil {
		t.Fatalf("gc after repair: %v", err)
	}
	requireRefs(t, s, want)
}

// Random damage to any file of the index ends in a store that repairs to
// everything it held, or in an error: never in a smaller store that says
// it is clean.
func TestRandomIndexDamage(t *testing.T) {
	template := filepath.Join(t.TempDir(), "store")
	want := storeWithTwoRefs(t, template)
	rng := rand.New(rand.NewSource(14))
	iterations := 50
	if testing.Short() {
		iterations = 10
	}
	for i := range iterations {
		dir := filepath.Join(t.TempDir(), "store")
		copyDir(t, template, dir)
		var files []string
		filepath.WalkDir(filepath.Join(dir, indexDir), func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.Type().IsRegular() && !strings.HasSuffix(p, "LOCK") {
				if fi, err := d.Info(); err == nil && fi.Size() > 0 {
					files = append(files, p)
				}
			}
			return nil
		})
		victim := files[rng.Intn(len(files))]
		fi, err := os.Stat(victim)
		must(t, err)
		off := rng.Int63n(fi.Size())
		flipByte(t, victim, off)
		func() {
			s, err := Open(dir, Options{})
			if err != nil {
				t.Logf("%d: %s@%d: open: %v", i, filepath.Base(victim), off, err)
				return
			}
			defer s.Close()
			ctx := context.Background()
			if _, err := s.Fsck(ctx, FsckOptions{Repair: true}); err != nil {
				t.Logf("%d: %s@%d: fsck --repair: %v", i, filepath.Base(victim), off, err)
				return
			}
			fr, err := s.Fsck(ctx, FsckOptions{})
			if err != nil {
				t.Logf("%d: %s@%d: fsck: %v", i, filepath.Base(victim), off, err)
				return
			}
			if len(fr.Problems) != 0 {
				t.Logf("%d: %s@%d: fsck after repair: %q", i, filepath.Base(victim), off, fr.Problems)
				return
			}
			// Clean: then it must hold everything it held.
			requireRefs(t, s, want)
		}()
	}
}

func copyDir(t *testing.T, src, dst string) {
	t.Helper()
	must(t, filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o700)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o600)
	}))
}

func TestGCNeverDeletesWhatTheIndexLost(t *testing.T) {
	tests := []struct {
		name string
		lose func(t *testing.T, s *Store, tree digest.Hash)
	}{
		{"chunk records", func(t *testing.T, s *Store, tree digest.Hash) {
			must(t, s.scan(prefixChunk, func(k, _ []byte) error {
				return s.db.Delete(append([]byte{prefixChunk}, k...), pebble.Sync)
			}))
		}},
		{"the tree's root node", func(t *testing.T, s *Store, tree digest.Hash) {
			must(t, s.db.Delete(hashKey(prefixNode, tree), pebble.Sync))
		}},
		{"pack records", func(t *testing.T, s *Store, tree digest.Hash) {
			must(t, s.scan(prefixPack, func(k, _ []byte) error {
				return s.db.Delete(append([]byte{prefixPack}, k...), pebble.Sync)
			}))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "store")
			want := storeWithTwoRefs(t, dir)
			s, err := Open(dir, Options{})
			must(t, err)
			defer s.Close()
			tt.lose(t, s, want["t1"])
			packs, err := s.packFiles()
			must(t, err)
			ctx := context.Background()
			if _, err := s.GC(ctx, GCOptions{}); !errors.Is(err, errIndexDamaged) {
				t.Fatalf("gc with an index that lost %s: %v, want a refusal", tt.name, err)
			}
			after, err := s.packFiles()
			must(t, err)
			if len(after) != len(packs) {
				t.Fatalf("gc deleted packs: %d before, %d after", len(packs), len(after))
			}
			if _, err := s.Fsck(ctx, FsckOptions{Repair: true}); err != nil {
				t.Fatal(err)
			}
			requireRefs(t, s, want)
		})
	}
}

func TestRefLogTornTailAndDamage(t *testing.T) {
	ctx := context.Background()
	t.Run("torn tail is cut off", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "store")
		want := storeWithTwoRefs(t, dir)
		path := filepath.Join(dir, refLogName)
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
		must(t, err)
		rec := encodeRefRecord(1, []refChange{{Name: "t3", Tree: want["t1"]}})
		_, err = f.Write(rec[:len(rec)-5])
		must(t, err)
		must(t, f.Close())
		s, err := Open(dir, Options{})
		must(t, err)
		defer s.Close()
		if d := s.Damage(); len(d) != 0 {
			t.Fatalf("a torn tail is reported as damage: %q", d)
		}
		requireRefs(t, s, want)
		// The next record follows the good ones.
		w, err := s.NewWriter()
		must(t, err)
		must(t, w.Commit(want["t1"], "t4"))
		must(t, w.Close())
		must(t, s.Close())
		s2, err := Open(dir, Options{})
		must(t, err)
		defer s2.Close()
		if tree, err := s2.Ref("t4"); err != nil || tree != want["t1"] {
			t.Fatalf("ref t4 after reopen = %s, %v", tree, err)
		}
	})
	t.Run("damaged record is reported and rewritten by repair", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "store")
		want := storeWithTwoRefs(t, dir)
		// The first record (t1) is damaged, the second whole.
		flipByte(t, filepath.Join(dir, refLogName), refLogHeaderSize+refRecHeaderSize+10)
		s, err := Open(dir, Options{})
		must(t, err)
		defer s.Close()
		if len(s.Damage()) == 0 {
			t.Fatal("a damaged ref log record is not reported")
		}
		if _, err := s.GC(ctx, GCOptions{}); !errors.Is(err, errIndexDamaged) {
			t.Fatalf("gc with a damaged ref log: %v, want a refusal", err)
		}
		fr, err := s.Fsck(ctx, FsckOptions{Repair: true})
		must(t, err)
		if len(fr.Problems) == 0 || len(fr.Repaired) == 0 {
			t.Fatalf("fsck --repair: problems %q, repaired %q", fr.Problems, fr.Repaired)
		}
		fr, err = s.Fsck(ctx, FsckOptions{})
		must(t, err)
		if len(fr.Problems) != 0 {
			t.Fatalf("fsck after repair: %q", fr.Problems)
		}
		delete(want, "t1")
		requireRefs(t, s, want)
	})
}

func TestRefLogCompacts(t *testing.T) {
	s := openTestStore(t, Options{})
	res, err := s.Import(context.Background(), makeTree(t), ImportOptions{Refs: []string{"keep"}})
	must(t, err)
	name := strings.Repeat("x", 200)
	for range 3000 {
		w, err := s.NewWriter()
		must(t, err)
		must(t, w.Commit(res.Tree, name))
		must(t, w.Close())
	}
	fi, err := os.Stat(filepath.Join(s.Dir(), refLogName))
	must(t, err)
	if fi.Size() > 2*compactRefLogAt {
		t.Fatalf("ref log of %d bytes after 3000 updates of one ref: not compacted", fi.Size())
	}
	must(t, s.Close())
	s2, err := Open(s.Dir(), Options{})
	must(t, err)
	defer s2.Close()
	requireRefs(t, s2, map[string]digest.Hash{"keep": res.Tree, name: res.Tree})
}

// A store of format 1 kept nodes and refs only in the index: it is
// converted when opened.
func TestFormat1IsConverted(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	want := storeWithTwoRefs(t, dir)
	// Make it format 1: node records hold the encoded nodes, refs are
	// index keys, and there is no format file, ref log or version key.
	{
		s, err := Open(dir, Options{})
		must(t, err)
		b := s.db.NewBatch()
		must(t, s.scan(prefixNode, func(k, _ []byte) error {
			h, _ := digest.FromBytes(k)
			enc, err := s.readNode(h, nil)
			if err != nil {
				return err
			}
			return b.Set(hashKey(prefixNode, h), enc, nil)
		}))
		for name, tree := range want {
			b.Set(nameKey(prefixRef, name), tree[:], nil)
		}
		b.Delete([]byte{prefixMeta}, nil)
		must(t, b.Commit(pebble.Sync))
		must(t, s.Close())
		must(t, os.Remove(filepath.Join(dir, formatFile)))
		must(t, os.Remove(filepath.Join(dir, refLogName)))
	}
	var logs []string
	s, err := Open(dir, Options{Logf: func(f string, a ...any) { logs = append(logs, fmt.Sprintf(f, a...)) }})
	must(t, err)
	defer s.Close()
	if !strings.Contains(strings.Join(logs, "\n"), "converted from format 1") {
		t.Errorf("no log line says the store was converted: %q", logs)
	}
	requireRefs(t, s, want)
	fr, err := s.Fsck(context.Background(), FsckOptions{})
	must(t, err)
	if len(fr.Problems) != 0 {
		t.Fatalf("fsck after conversion: %q", fr.Problems)
	}
}

func TestOpenRefusesOtherFormats(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	storeWithTwoRefs(t, dir)
	must(t, os.WriteFile(filepath.Join(dir, formatFile), []byte("forge store format 4\n"), 0o600))
	_, err := Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "format 4") {
		t.Fatalf("open of a format-4 store: %v", err)
	}
}

// TestFormat2IsUpgraded: a format-2 store opens, says format 3 after,
// and its trees read as before.
func TestFormat2IsUpgraded(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	want := storeWithTwoRefs(t, dir)
	must(t, os.WriteFile(filepath.Join(dir, formatFile), []byte("forge store format 2\n"), 0o600))
	s, err := Open(dir, Options{})
	must(t, err)
	defer s.Close()
	b, err := os.ReadFile(filepath.Join(dir, formatFile))
	must(t, err)
	if string(b) != "forge store format 3\n" {
		t.Fatalf("format file after open: %q", b)
	}
	requireRefs(t, s, want)
}

func TestValidRefName(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"t1", true},
		{"builds/2026/debian", true},
		{strings.Repeat("a", 64), true},
		{"", false},
		{"/abs", false},
		{"trailing/", false},
		{"a//b", false},
		{"..", false},
		{"a/../b", false},
		{"./a", false},
		{"a b", false},
		{"new\nline", false},
		{"tab\there", false},
		{"del\x7f", false},
		{"c1\u0085", false},
		{string([]byte{0xff}), false},
		{strings.Repeat("a", MaxRefNameLen+1), false},
	}
	for _, tt := range tests {
		err := ValidRefName(tt.name)
		if (err == nil) != tt.ok {
			t.Errorf("ValidRefName(%q) = %v, want ok %v", tt.name, err, tt.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidArgument) {
			t.Errorf("ValidRefName(%q) = %v, not ErrInvalidArgument", tt.name, err)
		}
	}
}

// GC is its plan applied: a dry run reports what GC then does, and changes
// nothing.
func TestGCPlanIsWhatGCDoes(t *testing.T) {
	s := openTestStore(t, Options{PackSize: 256 << 10})
	ctx := context.Background()
	for i, name := range []string{"a", "b", "c"} {
		src := t.TempDir()
		writeFile(t, filepath.Join(src, "big"), randBytes(int64(90+i), 600<<10), 0o644)
		writeFile(t, filepath.Join(src, "shared"), randBytes(99, 100<<10), 0o644)
		_, err := s.Import(ctx, src, ImportOptions{Refs: []string{name}})
		must(t, err)
	}
	must(t, s.DeleteRefs("b"))
	packsBefore, err := s.packFiles()
	must(t, err)
	usageBefore, err := s.Usage(ctx)
	must(t, err)
	dry, err := s.GC(ctx, GCOptions{DryRun: true})
	must(t, err)
	if dry.Chunks == 0 || dry.Nodes == 0 || dry.PacksDeleted+dry.PacksRewritten == 0 {
		t.Fatalf("dry run plans nothing after a ref was dropped: %+v", dry)
	}
	packsAfter, err := s.packFiles()
	must(t, err)
	usageAfter, err := s.Usage(ctx)
	must(t, err)
	if !maps.Equal(packsBefore, packsAfter) || usageAfter != usageBefore {
		t.Fatalf("a dry run changed the store: packs %v → %v, usage %+v → %+v", packsBefore, packsAfter, usageBefore, usageAfter)
	}
	done, err := s.GC(ctx, GCOptions{})
	must(t, err)
	if done.Chunks != dry.Chunks || done.Nodes != dry.Nodes || done.PacksDeleted != dry.PacksDeleted ||
		done.PacksRewritten != dry.PacksRewritten || done.OrphanPacks != dry.OrphanPacks {
		t.Fatalf("gc did %+v, its dry run planned %+v", done, dry)
	}
	// A rewritten pack has a header and a footer of its own: what GC
	// frees is at most what the plan counted.
	if done.FreedBytes > dry.FreedBytes || done.FreedBytes < dry.FreedBytes-int64(64<<10) {
		t.Fatalf("gc freed %d bytes, its plan said %d", done.FreedBytes, dry.FreedBytes)
	}
	requireRefs(t, s, map[string]digest.Hash{"a": mustRef(t, s, "a"), "c": mustRef(t, s, "c")})
	again, err := s.GC(ctx, GCOptions{DryRun: true})
	must(t, err)
	if again.Chunks != 0 || again.Nodes != 0 || again.PacksDeleted != 0 {
		t.Fatalf("a second gc plans more: %+v", again)
	}
}

func mustRef(t *testing.T, s *Store, name string) digest.Hash {
	t.Helper()
	h, err := s.Ref(name)
	must(t, err)
	return h
}
