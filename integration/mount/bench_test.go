package mount_test

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/fstree"
)

// benchTree is a stored tree for benchmarks: flat/ holds flatFiles files,
// dirs/ holds benchDirs directories of dirFiles files, and big is a file of
// bigFile random bytes.
type benchTree struct {
	dir    string
	store  *cas.Store
	tree   digest.Hash
	mounts int // made so far, to name their directories
}

const (
	flatFiles = 5000
	benchDirs = 500
	dirFiles  = 20
	bigFile   = 64 << 20
)

func newBenchTree(b *testing.B) *benchTree {
	b.Helper()
	requireFUSE(b)
	dir := testDir(b)
	src := filepath.Join(dir, "src")
	for _, d := range []string{"flat", "dirs"} {
		if err := os.MkdirAll(filepath.Join(src, d), 0o755); err != nil {
			b.Fatal(err)
		}
	}
	for i := range flatFiles {
		if err := os.WriteFile(filepath.Join(src, "flat", fmt.Sprintf("f%05d", i)), []byte("x"), 0o644); err != nil {
			b.Fatal(err)
		}
	}
	for d := range benchDirs {
		sub := filepath.Join(src, "dirs", fmt.Sprintf("d%05d", d))
		if err := os.Mkdir(sub, 0o755); err != nil {
			b.Fatal(err)
		}
		for i := range dirFiles {
			if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%02d", i)), []byte("y"), 0o644); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := os.WriteFile(filepath.Join(src, "big"), fstree.RandomBytes("big", bigFile), 0o644); err != nil {
		b.Fatal(err)
	}
	s := openStore(b, dir)
	return &benchTree{dir: dir, store: s, tree: importTree(b, s, src)}
}

// mounts hands out fresh mounts of the tree, taking the previous one down,
// so that each finds the kernel's caches empty.
type mounts struct {
	bt    *benchTree
	cache *fusefs.Cache // nil: a new cache per mount
	cur   *fusefs.Mount
}

func (ms *mounts) next(b *testing.B) string {
	b.Helper()
	if ms.cur != nil {
		unmount(b, ms.cur)
	}
	ms.bt.mounts++
	var src fusefs.Source = ms.cache
	if ms.cache == nil {
		src = fusefs.NewCache(ms.bt.store, 0)
	}
	ms.cur = mountTree(b, src, ms.bt.tree, ms.bt.dir, fmt.Sprintf("mnt-%d", ms.bt.mounts), fusefs.Options{})
	return ms.cur.Mountpoint()
}

// BenchmarkMount times the hot paths of a read-only mount, on one stored
// tree built once for all of them.
func BenchmarkMount(b *testing.B) {
	bt := newBenchTree(b)
	b.Run("lookup", func(b *testing.B) { benchLookup(b, bt) })
	b.Run("stat-cached", func(b *testing.B) { benchStatCached(b, bt) })
	b.Run("readdir", func(b *testing.B) { benchReaddir(b, bt) })
	b.Run("read", func(b *testing.B) { benchRead(b, bt) })
}

// benchLookup times a stat of a name the kernel has not seen, which costs
// a LOOKUP round trip: with the daemon's node cache warm, and with a new
// cache (each lookup reads and verifies the node from the store).
func benchLookup(b *testing.B, bt *benchTree) {
	for _, c := range []struct {
		name  string
		cache *fusefs.Cache
	}{{"warm-node-cache", fusefs.NewCache(bt.store, 0)}, {"cold-node-cache", nil}} {
		b.Run(c.name, func(b *testing.B) {
			ms := &mounts{bt: bt, cache: c.cache}
			if c.cache != nil {
				// Fill the node cache once.
				mnt := ms.next(b)
				for i := range flatFiles {
					stat(b, filepath.Join(mnt, "flat", fmt.Sprintf("f%05d", i)))
				}
			}
			var mnt string
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if i%flatFiles == 0 {
					b.StopTimer()
					mnt = ms.next(b)
					b.StartTimer()
				}
				stat(b, filepath.Join(mnt, "flat", fmt.Sprintf("f%05d", i%flatFiles)))
			}
		})
	}
}

// benchStatCached times a stat the kernel answers from its caches.
func benchStatCached(b *testing.B, bt *benchTree) {
	mnt := (&mounts{bt: bt}).next(b)
	path := filepath.Join(mnt, "dirs", "d00001", "f01")
	stat(b, path)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		stat(b, path)
	}
}

// benchReaddir lists a directory of dirFiles entries with their types:
// "uncached" lists one the kernel has not listed (READDIRPLUS, and a
// lookup of every entry), "cached" one it has (no request at all).
func benchReaddir(b *testing.B, bt *benchTree) {
	b.Run("uncached", func(b *testing.B) {
		ms := &mounts{bt: bt, cache: fusefs.NewCache(bt.store, 0)}
		var mnt string
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			if i%benchDirs == 0 {
				b.StopTimer()
				mnt = ms.next(b)
				b.StartTimer()
			}
			list(b, filepath.Join(mnt, "dirs", fmt.Sprintf("d%05d", i%benchDirs)))
		}
	})
	b.Run("cached", func(b *testing.B) {
		mnt := (&mounts{bt: bt}).next(b)
		dir := filepath.Join(mnt, "dirs", "d00007")
		list(b, dir)
		b.ResetTimer()
		for i := 0; i < b.N; i++ {
			list(b, dir)
		}
	})
}

// benchRead reads a 64 MiB file through the server each time: its pages
// are dropped from the kernel's cache before every read, while the store's
// packs stay in the page cache.
func benchRead(b *testing.B, bt *benchTree) {
	mnt := (&mounts{bt: bt}).next(b)
	path := filepath.Join(mnt, "big")
	buf := make([]byte, 1<<20)
	b.SetBytes(bigFile)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		f, err := os.Open(path)
		if err != nil {
			b.Fatal(err)
		}
		if err := unix.Fadvise(int(f.Fd()), 0, 0, unix.FADV_DONTNEED); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		n, err := io.CopyBuffer(io.Discard, onlyReader{f}, buf)
		f.Close()
		if err != nil || n != bigFile {
			b.Fatalf("read %d bytes: %v", n, err)
		}
	}
}

// onlyReader hides os.File's WriterTo, so that the copy reads through
// read(2) as cat does.
type onlyReader struct{ io.Reader }

func stat(b *testing.B, path string) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		b.Fatal(err)
	}
}

func list(b *testing.B, dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		b.Fatal(err)
	}
	if len(entries) != dirFiles {
		b.Fatalf("%s: %d entries, want %d", dir, len(entries), dirFiles)
	}
}

// BenchmarkReferenceTree compares a mount of the tree named by
// $FORGE_BENCH_TREE (a directory on disk, e.g. a debootstrap tree) with the
// tree itself, warm: "walk" lists every directory (find), "stat" also
// lstat's every name (find -printf), "read" also reads every file (tar).
// It skips when the variable is unset.
func BenchmarkReferenceTree(b *testing.B) {
	ref := os.Getenv("FORGE_BENCH_TREE")
	if ref == "" {
		b.Skip("set FORGE_BENCH_TREE to a directory tree to compare a mount of it with it")
	}
	requireFUSE(b)
	dir := testDir(b)
	s := openStore(b, dir)
	tree := importTree(b, s, ref)
	m := mountTree(b, s, tree, dir, "mnt", fusefs.Options{})
	buf := make([]byte, 1<<20)
	passes := []struct {
		name string
		fn   func(path string, d fs.DirEntry) error
	}{
		{"walk", func(string, fs.DirEntry) error { return nil }},
		{"stat", func(p string, _ fs.DirEntry) error {
			var st unix.Stat_t
			return unix.Lstat(p, &st)
		}},
		{"read", func(p string, d fs.DirEntry) error {
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil || !d.Type().IsRegular() {
				return err
			}
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = io.CopyBuffer(io.Discard, onlyReader{f}, buf)
			return err
		}},
	}
	for _, pass := range passes {
		for _, root := range []struct{ name, path string }{{"disk", ref}, {"mount", m.Mountpoint()}} {
			b.Run(pass.name+"/"+root.name, func(b *testing.B) {
				walk := func() {
					err := filepath.WalkDir(root.path, func(p string, d fs.DirEntry, err error) error {
						if err != nil {
							return err
						}
						return pass.fn(p, d)
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				walk() // warm the caches
				b.ResetTimer()
				for i := 0; i < b.N; i++ {
					walk()
				}
			})
		}
	}
}
