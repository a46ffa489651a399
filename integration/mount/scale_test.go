package mount_test

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/fstree"
)

// wideTree writes dirs directories of files small files each under root,
// plus one directory of bigDir entries, so that listing it takes many
// READDIRPLUS requests.
func wideTree(t testing.TB, root string, dirs, files, bigDir int) {
	t.Helper()
	write := func(dir string, count int) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for i := range count {
			name := fmt.Sprintf("file-%05d", i)
			content := fmt.Appendf(nil, "%s/%s\n", filepath.Base(dir), name)
			if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	for d := range dirs {
		write(filepath.Join(root, fmt.Sprintf("d%03d", d/100), fmt.Sprintf("d%05d", d)), files)
	}
	write(filepath.Join(root, "big"), bigDir)
}

// TestMountTimeLargeTree mounts a tree of over 20k names and a tree of a
// handful, and logs how long each took (they should match: nothing is read
// at mount time but the root); then it walks the large tree through the
// mount and compares a 5000-entry directory.
func TestMountTimeLargeTree(t *testing.T) {
	requireFUSE(t)
	dir := testDir(t)
	large := filepath.Join(dir, "large")
	start := time.Now()
	wideTree(t, large, 200, 75, 5000)
	names := 0
	if err := filepath.WalkDir(large, func(string, fs.DirEntry, error) error { names++; return nil }); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %d names in %v", names, time.Since(start))
	small := smallTree(t, dir)
	s := openStore(t, dir)
	start = time.Now()
	largeTree := importTree(t, s, large)
	t.Logf("imported %d names in %v", names, time.Since(start))
	smallTree := importTree(t, s, small)

	// One cache per mount, as a daemon's first mount of a store has.
	for _, c := range []struct {
		name string
		tree digest.Hash
	}{{"small", smallTree}, {"large", largeTree}} {
		start := time.Now()
		m := mountTree(t, fusefs.NewCache(s, 0), c.tree, dir, "mnt-"+c.name, fusefs.Options{})
		t.Logf("mounted the %s tree in %v", c.name, time.Since(start))
		if c.name == "large" {
			start = time.Now()
			count := 0
			if err := filepath.WalkDir(m.Mountpoint(), func(string, fs.DirEntry, error) error { count++; return nil }); err != nil {
				t.Fatal(err)
			}
			t.Logf("walked %d names through the mount in %v (cold)", count, time.Since(start))
			if count != names {
				t.Errorf("walked %d names, the tree has %d", count, names)
			}
			// The directory whose listing takes many requests, and one
			// of the small ones, property by property.
			for _, sub := range []string{"big", "d001/d00150"} {
				fstree.AssertSame(t, filepath.Join(large, sub), filepath.Join(m.Mountpoint(), sub), fstree.Options{CompareRootMeta: true})
			}
		}
	}
}

// TestParallelReads reads a random tree through one mount from many
// goroutines at once (run it with -race) and checks every byte.
func TestParallelReads(t *testing.T) {
	requireFUSE(t)
	dir := testDir(t)
	src := filepath.Join(dir, "src")
	fstree.MustRandomTree(t, src, 7, 64<<20)
	s := openStore(t, dir)
	tree := importTree(t, s, src)
	m := mountTree(t, s, tree, dir, "mnt", fusefs.Options{})

	var files []string
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			rel, _ := filepath.Rel(src, p)
			files = append(files, rel)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	const workers = 8
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each worker starts elsewhere in the list, so that some read
			// the same file at the same time and some different ones.
			for i := range files {
				rel := files[(i+w*len(files)/workers)%len(files)]
				want, err := os.ReadFile(filepath.Join(src, rel))
				if err != nil {
					errs <- err
					return
				}
				got, err := os.ReadFile(filepath.Join(m.Mountpoint(), rel))
				if err != nil {
					errs <- err
					return
				}
				if !bytes.Equal(got, want) {
					errs <- fmt.Errorf("%s: content differs through the mount", rel)
					return
				}
				if w%2 == 1 {
					if _, err := os.ReadDir(filepath.Dir(filepath.Join(m.Mountpoint(), rel))); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d workers read %d files each", workers, len(files))
}

// TestWarmWalkSendsNoRequests: once a tree has been walked and read
// through a mount, doing it again is answered by the kernel alone, with no
// FUSE request: entries, attributes, listings, symlinks and pages are
// cached, and the server has switched off OPEN, OPENDIR and FLUSH.
func TestWarmWalkSendsNoRequests(t *testing.T) {
	requireFUSE(t)
	dir := testDir(t)
	src := filepath.Join(dir, "src")
	wideTree(t, src, 20, 10, 300)
	if err := os.Symlink("big/file-00001", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	s := openStore(t, dir)
	tree := importTree(t, s, src)
	var mu sync.Mutex
	requests := map[string]int{}
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		// go-fuse's debug lines: "rx 12: LOOKUP i1 [...]".
		if f := strings.Fields(line); len(f) >= 3 && f[0] == "rx" {
			mu.Lock()
			requests[f[2]]++
			mu.Unlock()
		}
	}
	m := mountTree(t, s, tree, dir, "mnt", fusefs.Options{Debug: true, Logf: logf})

	walk := func() {
		err := filepath.WalkDir(m.Mountpoint(), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if _, err := os.Lstat(p); err != nil {
				return err
			}
			switch {
			case d.Type().IsRegular():
				_, err = os.ReadFile(p)
			case d.Type()&fs.ModeSymlink != 0:
				_, err = os.Readlink(p)
			}
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	walk()
	mu.Lock()
	t.Logf("first walk: %v", requests)
	clear(requests)
	mu.Unlock()
	walk()
	mu.Lock()
	defer mu.Unlock()
	if len(requests) > 0 {
		t.Errorf("walking and reading the tree again sent FUSE requests: %v", requests)
	}
}
