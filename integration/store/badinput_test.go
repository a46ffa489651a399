package store_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/internal/fstree"
)

// TestImportBadSource: sources that cannot be imported give a clear error
// naming the path, exit non-zero, create no ref and leave the store clean
// (What must hold, 5).
func TestImportBadSource(t *testing.T) {
	forgeBin(t)
	for _, tc := range []struct {
		name string
		// source returns the PATH to import and the name the error must
		// mention.
		source func(t *testing.T, tmp string) (path, mention string)
	}{
		{
			name: "missing path",
			source: func(t *testing.T, tmp string) (string, string) {
				p := filepath.Join(tmp, "does-not-exist")
				return p, p
			},
		},
		{
			name: "dangling symlink as path",
			source: func(t *testing.T, tmp string) (string, string) {
				p := filepath.Join(tmp, "dangling")
				if err := os.Symlink("nowhere", p); err != nil {
					t.Fatal(err)
				}
				return p, p
			},
		},
		{
			// Root reads any file whatever its mode, so the unreadable file
			// is a sysfs attribute without a read method (open fails with
			// EACCES even for root), bind-mounted over a regular file of
			// the tree: to the importer it is a 4096-byte regular file.
			name: "unreadable file",
			source: func(t *testing.T, tmp string) (string, string) {
				attr := writeOnlySysfsFile(t)
				src := filepath.Join(tmp, "src")
				writeTree(t, src, map[string][]byte{"readable": []byte("fine\n"), "sub/unreadable": nil})
				target := filepath.Join(src, "sub/unreadable")
				mustRun(t, "mount", "--bind", attr, target)
				unmountAtCleanup(t, target)
				return src, "unreadable"
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tmp := fstree.DiskTempDir(t)
			s := newStore(t, tmp)
			good := filepath.Join(tmp, "good")
			writeTree(t, good, map[string][]byte{"a": []byte("a\n")})
			s.importTree(good, "good")

			path, mention := tc.source(t, tmp)
			r := s.run("import", "--ref", "bad", path)
			if r.code == 0 {
				t.Fatalf("import of a bad source succeeded:\n%s", r)
			}
			if !strings.Contains(r.stderr, mention) {
				t.Errorf("the error does not name %q:\n%s", mention, r)
			}
			if _, ok := s.ls()["bad"]; ok {
				t.Errorf("a failed import created its ref")
			}
			s.assertClean()
			s.assertExportEquals("good", good)
		})
	}
}

// writeOnlySysfsFile returns a sysfs attribute that has no read method.
func writeOnlySysfsFile(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"/sys/bus/pci/drivers_probe", "/sys/bus/pci/rescan", "/sys/bus/platform/drivers_probe"} {
		f, err := os.Open(p)
		if err == nil {
			f.Close()
			continue
		}
		if os.IsPermission(err) {
			return p
		}
	}
	t.Skip("no write-only sysfs attribute on this machine to stand for an unreadable file")
	return ""
}

// TestReadOnlyStore: an import into a store on a read-only mount fails
// with an error saying so, and the store is intact once writable again.
func TestReadOnlyStore(t *testing.T) {
	forgeBin(t)
	tmp := fstree.DiskTempDir(t)
	s := newStore(t, tmp)
	good := filepath.Join(tmp, "good")
	fstree.MustRandomTree(t, good, 2, 2<<20)
	s.importTree(good, "good")

	mustRun(t, "mount", "--bind", s.dir, s.dir)
	unmountAtCleanup(t, s.dir)
	mustRun(t, "mount", "-o", "remount,bind,ro", s.dir)

	more := filepath.Join(tmp, "more")
	fstree.MustRandomTree(t, more, 3, 2<<20)
	r := s.run("import", "--ref", "more", more)
	if r.code == 0 {
		t.Fatalf("import into a read-only store succeeded:\n%s", r)
	}
	if !strings.Contains(strings.ToLower(r.stderr), "read-only") {
		t.Errorf("the error does not say the store is read-only:\n%s", r)
	}

	mustRun(t, "umount", s.dir)
	s.assertClean()
	if _, ok := s.ls()["more"]; ok {
		t.Errorf("the failed import created its ref")
	}
	s.assertExportEquals("good", good)
	s.importTree(more, "more")
	s.assertExportEquals("more", more)
}

// TestFullFilesystem: an import that does not fit fails with an error
// mentioning the lack of space; once space is freed the store is clean,
// keeps what it had, and takes a smaller import.
func TestFullFilesystem(t *testing.T) {
	forgeBin(t)
	tmp := fstree.DiskTempDir(t)
	mnt := loopExt4(t, tmp, 64<<20)
	s := newStore(t, mnt)
	// Exports go to the disk, not the small filesystem.
	s.scratch = filepath.Join(tmp, "scratch")
	if err := os.Mkdir(s.scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	good := filepath.Join(tmp, "good")
	fstree.MustRandomTree(t, good, 4, 1<<20)
	s.importTree(good, "good")
	// Ballast to free afterwards.
	ballast := filepath.Join(mnt, "ballast")
	if err := os.WriteFile(ballast, fstree.RandomBytes("ballast", 8<<20), 0o644); err != nil {
		t.Fatal(err)
	}

	big := filepath.Join(tmp, "big")
	fstree.MustRandomTree(t, big, 5, 120<<20)
	r := s.run("import", "--ref", "big", big)
	if r.code == 0 {
		t.Fatalf("import of 120 MB into a 64 MiB filesystem succeeded:\n%s", r)
	}
	if !strings.Contains(strings.ToLower(r.stderr), "no space") {
		t.Errorf("the error does not mention the lack of space:\n%s", r)
	}

	if err := os.Remove(ballast); err != nil {
		t.Fatal(err)
	}
	s.assertClean()
	if _, ok := s.ls()["big"]; ok {
		t.Errorf("the failed import created its ref")
	}
	s.assertExportEquals("good", good)
	small := filepath.Join(tmp, "small")
	fstree.MustRandomTree(t, small, 6, 2<<20)
	s.importTree(small, "small")
	s.assertExportEquals("small", small)
	s.ok("gc")
	s.assertClean()
}

// TestStoreInUse: one daemon owns a store (pebble lets one process open
// it); a second daemon for the same store fails at once, naming the first,
// while commands keep working through the first.
func TestStoreInUse(t *testing.T) {
	forgeBin(t)
	tmp := fstree.DiskTempDir(t)
	s := newStore(t, tmp)
	first := filepath.Join(tmp, "first")
	fstree.MustRandomTree(t, first, 7, 1<<20)

	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	holder := forgeCommand(ctx, t, "daemon", "--store", s.dir, "--idle-timeout", "0")
	var holderErr bytes.Buffer
	holder.Stderr = &holderErr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	pid := holder.Process.Pid
	done := make(chan error, 1)
	go func() { done <- holder.Wait() }()
	t.Cleanup(func() {
		syscall.Kill(pid, syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second):
			holder.Process.Kill()
			<-done
		}
	})
	// Wait until the holder answers: a command before that would start
	// a daemon of its own, which could win the store from the holder.
	for i := 0; ; i++ {
		c := client.NewClient(s.dir)
		_, err := c.Ping(ctx)
		c.Close()
		if err == nil {
			break
		}
		if i > 1000 {
			t.Fatalf("the holding daemon did not answer: %v\n%s", err, holderErr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.importTree(first, "first")

	second := runForge(t, "daemon", "--store", s.dir, "--idle-timeout", "0")
	want := fmt.Sprintf("in use by process %d", pid)
	if second.code == 0 || !strings.Contains(second.stderr, want) {
		t.Errorf("a second daemon on a held store: %s\nwant a failure saying %q", second, want)
	}
	if _, ok := s.ls()["first"]; !ok {
		t.Errorf("after the refused second daemon, ls through the first does not show the ref")
	}
	syscall.Kill(pid, syscall.SIGTERM)
	if err := <-done; err != nil {
		t.Errorf("holding daemon after SIGTERM: %v\n%s", err, holderErr.String())
	}
	done <- nil
}

// TestBadRefNames: names that could climb out of a directory, or say
// nothing, are refused with exit 2 by every command that takes one, and
// the store is left as it was (issue 14, 6).
func TestBadRefNames(t *testing.T) {
	forgeBin(t)
	tmp := fstree.DiskTempDir(t)
	s := newStore(t, tmp)
	src := filepath.Join(tmp, "src")
	writeTree(t, src, map[string][]byte{"f": []byte("x")})
	s.importTree(src, "good")
	for _, name := range []string{"", "..", "../x", "/abs", "a//b", "a/./b", "trailing/", "tab\tname", "nl\nname"} {
		for _, args := range [][]string{
			{"import", "--ref", name, src},
			{"rm", name},
		} {
			if r := s.run(args[0], args[1:]...); r.code != 2 || !strings.Contains(r.stderr, "ref name") {
				t.Errorf("forge store %q: want exit 2 naming the ref name\n%s", args, r)
			}
		}
	}
	if refs := s.ls(); len(refs) != 1 {
		t.Errorf("refs after refused names: %v, want only good", refs)
	}
}
