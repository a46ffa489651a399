package store_test

import (
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/forge-build/forge/internal/fstree"
)

// storeOfTwo imports the fidelity fixture as t1 and a random tree as t2
// and stops the daemon, so that the index's files can be damaged.
func storeOfTwo(t *testing.T) (s *testStore, srcs map[string]string) {
	t.Helper()
	return storeOf(t, func(t1 string) { fstree.MustBuildFixture(t, t1) })
}

// storeOf is storeOfTwo with t1 made by makeT1.
func storeOf(t *testing.T, makeT1 func(dir string)) (s *testStore, srcs map[string]string) {
	t.Helper()
	forgeBin(t)
	tmp := fstree.DiskTempDir(t)
	s = newStore(t, tmp)
	srcs = map[string]string{"t1": filepath.Join(tmp, "t1"), "t2": filepath.Join(tmp, "t2")}
	makeT1(srcs["t1"])
	fstree.MustRandomTree(t, srcs["t2"], 2, 2<<20)
	for _, ref := range []string{"t1", "t2"} {
		s.importTree(srcs[ref], ref)
	}
	if r := runForge(t, "daemon", "stop", "--store", s.dir); r.code != 0 {
		t.Fatalf("%s", r)
	}
	return s, srcs
}

// newestWAL is the index's newest write-ahead log and its size.
func newestWAL(t *testing.T, dir string) (string, int64) {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "index", "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no WAL in %s/index: %v", dir, err)
	}
	sort.Strings(logs)
	fi, err := os.Stat(logs[len(logs)-1])
	if err != nil {
		t.Fatal(err)
	}
	return fi.Name(), fi.Size()
}

// walBlock is the block size of pebble's WAL: a bad record in the last
// block is taken for a write a crash cut short, and the log's tail from it
// is dropped; one in an earlier block fails the replay.
const walBlock = 32 << 10

func (s *testStore) assertHolds(srcs map[string]string) {
	s.t.Helper()
	refs := s.ls()
	if len(refs) != len(srcs) {
		s.t.Fatalf("store has refs %v, want %d", refs, len(srcs))
	}
	for ref, src := range srcs {
		s.assertExportEquals(ref, src)
	}
}

// TestDamagedIndexWAL is issue 14's attack 1: four bytes written into the
// index's newest WAL made pebble drop every record after them; fsck said
// "0 problems", ls was empty, and gc deleted every pack. The refs live in
// the ref log now. Pebble meets the damage in one of two ways, and each
// has its case: it drops the WAL's tail (the damage is in its last block),
// and then fsck exits 1, gc refuses and deletes nothing, and fsck --repair
// gives back every ref and tree; or it refuses the WAL (an earlier block),
// and then the daemon keeps the index as index.damaged, rebuilds it from
// the packs and the ref log on open, and says so in its log.
func TestDamagedIndexWAL(t *testing.T) {
	t.Run("tail dropped", func(t *testing.T) {
		// Two small trees: a WAL of one block.
		s, srcs := storeOf(t, func(t1 string) { fstree.MustRandomTree(t, t1, 1, 1<<20) })
		wal, size := newestWAL(t, s.dir)
		if size <= 100 || size > walBlock {
			t.Fatalf("the WAL %s has %d bytes: the case needs one block of more than 100", wal, size)
		}
		damageAt(t, filepath.Join(s.dir, "index", wal), 100)
		packs := s.packs()

		if refs := s.ls(); len(refs) != 2 {
			t.Fatalf("ls after the damage: %v, want t1 and t2", refs)
		}
		if r := s.run("fsck"); r.code != 1 || !strings.Contains(r.stdout+r.stderr, "fsck --repair") {
			t.Fatalf("fsck of a damaged index: want exit 1 and a hint to repair\n%s", r)
		}
		r := s.run("gc")
		if r.code == 0 || !strings.Contains(r.stderr, "fsck --repair") {
			t.Fatalf("gc on a damaged index: want a refusal that says to run fsck --repair\n%s", r)
		}
		if after := s.packs(); len(after) != len(packs) {
			t.Fatalf("gc deleted packs of a damaged store: %d before, %d after", len(packs), len(after))
		}
		r = s.run("fsck", "--repair")
		if !strings.Contains(r.stdout, "repaired: rebuilt the index") {
			t.Fatalf("fsck --repair did not rebuild the index\n%s", r)
		}
		s.assertClean()
		s.assertHolds(srcs)
		s.ok("gc")
		s.assertHolds(srcs)
	})
	t.Run("replay refused", func(t *testing.T) {
		s, srcs := storeOfTwo(t)
		wal, size := newestWAL(t, s.dir)
		if size <= walBlock {
			t.Fatalf("the WAL %s has %d bytes: the case needs more than one block", wal, size)
		}
		damageAt(t, filepath.Join(s.dir, "index", wal), 100)
		if refs := s.ls(); len(refs) != 2 {
			t.Fatalf("ls after the damage: %v, want t1 and t2", refs)
		}
		log, err := os.ReadFile(filepath.Join(s.dir, "daemon.log"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(log), "index.damaged, rebuilding it") {
			t.Fatalf("the daemon's log does not say it rebuilt a corrupt index:\n%s", log)
		}
		if _, err := os.Stat(filepath.Join(s.dir, "index.damaged")); err != nil {
			t.Fatalf("the damaged index is not kept: %v", err)
		}
		s.assertClean()
		s.assertHolds(srcs)
		s.ok("gc")
		s.assertHolds(srcs)
	})
}

func damageAt(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("\xde\xad\xbe\xef"), off); err != nil {
		t.Fatal(err)
	}
}

// TestIndexRemoved: the index is a cache; without it, the store rebuilds
// it from the packs and the ref log.
func TestIndexRemoved(t *testing.T) {
	s, srcs := storeOfTwo(t)
	if err := os.RemoveAll(filepath.Join(s.dir, "index")); err != nil {
		t.Fatal(err)
	}
	s.run("fsck", "--repair")
	s.assertClean()
	s.assertHolds(srcs)
}

// TestFsckRepairKeepsIndexWhenPacksAreHidden is issue 14's attack 3: with
// something mounted over STORE/packs, every pack looked missing and
// fsck --repair dropped every chunk and ref. It must report and stop.
func TestFsckRepairKeepsIndexWhenPacksAreHidden(t *testing.T) {
	s, srcs := storeOfTwo(t)
	packs := filepath.Join(s.dir, "packs")
	mustRun(t, "mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", packs)
	unmountAtCleanup(t, packs)
	r := s.run("fsck", "--repair")
	if r.code != 1 || !strings.Contains(r.stdout, "not repairing") {
		t.Fatalf("fsck --repair with packs/ hidden: want exit 1 and no repair\n%s", r)
	}
	if strings.Contains(r.stdout, "repaired:") {
		t.Fatalf("fsck --repair changed the store while its packs were hidden\n%s", r)
	}
	if r := s.run("gc"); r.code == 0 {
		t.Fatalf("gc with packs/ hidden succeeded\n%s", r)
	}
	if r := runForge(t, "daemon", "stop", "--store", s.dir); r.code != 0 {
		t.Fatalf("%s", r)
	}
	mustRun(t, "umount", packs)
	s.assertClean()
	s.assertHolds(srcs)
}

// TestCorruptIndexFileWhileServing: a damaged index file met by a running
// daemon fails the requests that need it, naming the file; the daemon does
// not exit (pebble's default would end the process), and what does not
// need the damaged block goes on working. fsck --repair then restores all.
func TestCorruptIndexFileWhileServing(t *testing.T) {
	s, srcs := storeOfTwo(t)
	// One more daemon cycle: pebble writes the WAL it replays at open
	// into a table, and the index's records then live in .sst files.
	s.ok("ls")
	if r := runForge(t, "daemon", "stop", "--store", s.dir); r.code != 0 {
		t.Fatalf("%s", r)
	}
	tables, err := filepath.Glob(filepath.Join(s.dir, "index", "*.sst"))
	if err != nil || len(tables) == 0 {
		t.Fatalf("no tables in %s/index: %v", s.dir, err)
	}
	sort.Strings(tables)
	newest := tables[len(tables)-1]
	// The first data block: chunk records (keys sort by prefix, 'c' first).
	f, err := os.OpenFile(newest, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("\xde\xad\xbe\xef\xde\xad\xbe\xef"), 64); err != nil {
		t.Fatal(err)
	}
	f.Close()

	s.ok("ls") // starts the daemon; refs come from the ref log
	pids := forgeProcesses(s.dir)
	if len(pids) != 1 {
		t.Fatalf("forge processes for the store: %v, want one daemon", pids)
	}
	failed := 0
	for ref := range srcs {
		r := s.run("export", ref, filepath.Join(s.scratch, "out-"+ref))
		if r.code != 0 {
			failed++
			if !strings.Contains(r.stderr, newest) {
				t.Errorf("export failure does not name the damaged index file %s:\n%s", newest, r)
			}
		}
	}
	if failed == 0 {
		t.Fatalf("no export met the damaged block of %s", newest)
	}
	if !running(pids[0]) {
		t.Fatalf("the daemon (pid %d) exited on a damaged index file", pids[0])
	}
	s.ok("mounts")
	s.ok("ls")
	if r := s.run("fsck"); r.code != 1 {
		t.Fatalf("fsck with a damaged index file: exit %d, want 1\n%s", r.code, r)
	}
	s.run("fsck", "--repair")
	s.assertClean()
	s.assertHolds(srcs)
	if now := forgeProcesses(s.dir); len(now) != 1 || now[0] != pids[0] {
		t.Fatalf("daemon changed from %v to %v: it restarted", pids, now)
	}
}
