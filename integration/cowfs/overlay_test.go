package cowfs_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/overlay"
)

// TestRenamedAndReplacedDirectories covers what overlayfs records beside
// plain copies, and the commit must read back right: a renamed stored
// directory (a redirect) changed inside and renamed again, a stored file
// renamed after a metadata-only change (a metacopy file with a redirect),
// and a stored directory removed and made again (opaque). Each commit is
// compared with ext4, and a second commit after one more change too.
func TestRenamedAndReplacedDirectories(t *testing.T) {
	eachKind(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		steps := []op{
			{"rename a stored directory and change it", func(t *testing.T, r string) string {
				return errs(os.Rename(p(r, "d"), p(r, "e")),
					os.WriteFile(p(r, "e/sub/new"), []byte("new in a renamed directory\n"), 0o644),
					os.Rename(p(r, "e/sub"), p(r, "full/sub2")))
			}},
			{"chmod a stored file, then move it", func(t *testing.T, r string) string {
				return errs(os.Chmod(p(r, "e/big"), 0o600), os.Rename(p(r, "e/big"), p(r, "full/big")))
			}},
			{"remove a stored directory and make it again", func(t *testing.T, r string) string {
				return errs(os.RemoveAll(p(r, "full/sub2")), os.Mkdir(p(r, "full/sub2"), 0o700),
					os.WriteFile(p(r, "full/sub2/c"), []byte("not the stored c\n"), 0o644))
			}},
		}
		apply(t, steps, e.ref, e.mp)
		fixTimes(t, e.ref)
		fixTimes(t, e.mp)
		e.assertSame(t, "the mount", e.ref, e.mp)
		h1, st := e.commit(e.mount)
		e.assertSame(t, "the first commit", e.ref, e.export(h1, "export1"))
		if st.NewChunks > 2 {
			// The new file and the new c: the moved big file's data is
			// the stored one's.
			t.Errorf("the commit stored %d new chunks, want at most 2", st.NewChunks)
		}
		apply(t, []op{{"move the renamed directory back", func(t *testing.T, r string) string {
			return errs(os.Rename(p(r, "e"), p(r, "d")))
		}}}, e.ref, e.mp)
		fixTimes(t, e.ref)
		fixTimes(t, e.mp)
		h2, _ := e.commit(e.mount)
		e.assertSame(t, "the second commit", e.ref, e.export(h2, "export2"))
	})
}

// TestOverlayUnmountedByOthers: a plain umount(2) of the overlay, by
// someone else than its owner, ends the mount as forge's Unmount would:
// Wait returns and the lower mount is gone.
func TestOverlayUnmountedByOthers(t *testing.T) {
	requireFUSE(t)
	e := newEnv(t, kindFUSE) // only for its store and work directory
	mp := filepath.Join(e.work, "ov")
	must(t, os.Mkdir(mp, 0o755))
	scratch := filepath.Join(e.store.Dir(), "tmp", "mount-ov")
	must(t, os.MkdirAll(scratch, 0o700))
	h, _ := e.commit(e.mount)
	m, err := overlay.New(mp, fusefs.NewCache(e.store, 0), h, overlay.Options{Scratch: scratch, Logf: t.Logf})
	must(t, err)
	t.Cleanup(func() {
		m.Unmount(true)
		m.Wait()
		os.RemoveAll(scratch)
	})
	must(t, unix.Unmount(mp, 0))
	done := make(chan struct{})
	go func() { m.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("Wait did not return within 30 s of a plain umount")
	}
	lower := filepath.Join(scratch, "lower")
	var st, parent unix.Stat_t
	must(t, unix.Stat(lower, &st))
	must(t, unix.Stat(scratch, &parent))
	if st.Dev != parent.Dev {
		t.Errorf("the lower mount is still at %s", lower)
	}
	if err := m.Unmount(false); err != nil {
		t.Errorf("Unmount after someone else's umount: %v", err)
	}
}

// TestHardLinksSurviveEviction changes a stored hard-linked file through
// one name, has the kernel forget every inode it can (drop_caches), and
// checks that the other names still show the change and the same inode,
// through a second change and the commit. overlayfs finds the changed
// copy of a lower hard link by the lower inode's file handle: that must
// name the same inode after the kernel forgot it.
func TestHardLinksSurviveEviction(t *testing.T) {
	eachKind(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		for _, r := range []string{e.ref, e.mp} {
			f, err := os.OpenFile(p(r, "hl1"), os.O_WRONLY|os.O_APPEND, 0)
			must(t, err)
			_, err = f.Write([]byte("appended\n"))
			must(t, err)
			must(t, f.Close())
		}
		var before unix.Stat_t
		must(t, unix.Stat(p(e.mp, "d/sub/hl3"), &before))
		dropCaches(t)
		for _, name := range []string{"hl2", "d/sub/hl3"} {
			got, err := os.ReadFile(p(e.mp, name))
			must(t, err)
			if string(got) != "two names\nappended\n" {
				t.Errorf("after drop_caches, %s holds %q", name, got)
			}
			var st unix.Stat_t
			must(t, unix.Stat(p(e.mp, name), &st))
			if st.Ino != before.Ino || st.Dev != before.Dev || st.Nlink != 3 {
				t.Errorf("after drop_caches, %s is inode %d:%d with %d links, was %d:%d with 3",
					name, st.Dev, st.Ino, st.Nlink, before.Dev, before.Ino)
			}
		}
		for _, r := range []string{e.ref, e.mp} {
			must(t, os.Chmod(p(r, "hl2"), 0o604))
		}
		dropCaches(t)
		fixTimes(t, e.ref)
		fixTimes(t, e.mp)
		e.assertSame(t, "the mount", e.ref, e.mp)
		h, _ := e.commit(e.mount)
		e.assertSame(t, "the export", e.ref, e.export(h, "export"))
	})
}

// TestOneDevice: every file of an overlay has the overlay's st_dev, as on
// one filesystem (find -xdev, du -x and tar --one-file-system rely on it):
// stored files, copied-up ones, new ones and directories alike.
func TestOneDevice(t *testing.T) {
	e := newEnv(t, kindOverlay)
	must(t, os.Chmod(p(e.mp, "d/a"), 0o600))                               // metadata-only copy
	must(t, os.WriteFile(p(e.mp, "full/x"), []byte("copied up\n"), 0o644)) // data copy
	must(t, os.WriteFile(p(e.mp, "new"), []byte("new\n"), 0o644))          // new
	var root unix.Stat_t
	must(t, unix.Stat(e.mp, &root))
	for _, name := range []string{"d", "d/a", "d/big", "full/x", "new", "hl1", "sym", "null"} {
		var st unix.Stat_t
		must(t, unix.Lstat(p(e.mp, name), &st))
		if st.Dev != root.Dev {
			t.Errorf("%s has st_dev %d, the mount's root %d", name, st.Dev, root.Dev)
		}
	}
}

// TestSameChangesSameTree makes the same changes, new hard links among
// them, on two mounts of one tree: the commits must be the same tree,
// whatever inode numbers the two mounts gave the files.
func TestSameChangesSameTree(t *testing.T) {
	e := newEnv(t, kindOverlay)
	h0, _ := e.commit(e.mount)
	other := e.mountTree(h0, "mnt-other")
	change := func(r string) {
		must(t, os.WriteFile(p(r, "pair"), []byte("two names, new\n"), 0o644))
		must(t, os.Link(p(r, "pair"), p(r, "d/pair2")))
		must(t, os.WriteFile(p(r, "twin"), []byte("two names, new\n"), 0o644))
		must(t, os.Link(p(r, "twin"), p(r, "d/twin2")))
		must(t, os.Chmod(p(r, "hl1"), 0o600))
		fixTimes(t, r)
	}
	// Different inode numbers on the two sides: the other mount makes a
	// few files first.
	for i := range 5 {
		must(t, os.WriteFile(p(other.Mountpoint(), "tmp"+itoa(i)), nil, 0o644))
		must(t, os.Remove(p(other.Mountpoint(), "tmp"+itoa(i))))
	}
	change(e.mp)
	change(other.Mountpoint())
	h1, _ := e.commit(e.mount)
	h2, _ := e.commit(other)
	if h1 != h2 {
		t.Errorf("the same changes committed as %s on one mount and %s on the other", h1.Short(), h2.Short())
	}
	e.assertSame(t, "the other mount's commit", e.mp, e.export(h2, "export"))
}

// TestCopiedUpFilesAfterEviction: files copied up (data, or metadata
// only) stay usable after the kernel forgot every inode it could, however
// often they are looked up again. With a lower mount that let overlayfs
// decode a forgotten inode's handle, the second access failed with ESTALE.
func TestCopiedUpFilesAfterEviction(t *testing.T) {
	eachKind(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		must(t, os.WriteFile(p(e.mp, "d/a"), []byte("changed\n"), 0o644))
		must(t, os.Chmod(p(e.mp, "d/sub/c"), 0o640))
		for round := range 3 {
			dropCaches(t)
			for range 3 {
				for _, name := range []string{"d/a", "d/sub/c"} {
					var st unix.Stat_t
					if err := unix.Stat(p(e.mp, name), &st); err != nil {
						t.Fatalf("round %d: stat %s: %v", round, name, err)
					}
					if _, err := os.ReadFile(p(e.mp, name)); err != nil {
						t.Fatalf("round %d: read %s: %v", round, name, err)
					}
				}
			}
		}
		h, _ := e.commit(e.mount)
		got, err := os.ReadFile(p(e.export(h, "export"), "d/a"))
		must(t, err)
		if string(got) != "changed\n" {
			t.Errorf("the commit holds %q in d/a", got)
		}
	})
}
