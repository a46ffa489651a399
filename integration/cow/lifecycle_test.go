package cow_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/fstree"
)

// change is a change made the same way to a CoW mount and to an ext4
// directory, given the root of either.
type change func(t *testing.T, root string)

func applyTo(t *testing.T, changes []change, roots ...string) {
	t.Helper()
	for _, root := range roots {
		for _, c := range changes {
			c(t, root)
		}
	}
}

func writeFile(rel string, data []byte, mode os.FileMode) change {
	return func(t *testing.T, root string) {
		t.Helper()
		must(t, os.WriteFile(filepath.Join(root, rel), data, mode))
	}
}

func writeAt(rel string, data []byte, off int64) change {
	return func(t *testing.T, root string) {
		t.Helper()
		f, err := os.OpenFile(filepath.Join(root, rel), os.O_WRONLY, 0)
		must(t, err)
		_, err = f.WriteAt(data, off)
		must(t, errors.Join(err, f.Close()))
	}
}

func chmod(rel string, mode uint32) change {
	return func(t *testing.T, root string) {
		t.Helper()
		must(t, unix.Chmod(filepath.Join(root, rel), mode))
	}
}

func remove(rel string) change {
	return func(t *testing.T, root string) {
		t.Helper()
		must(t, os.Remove(filepath.Join(root, rel)))
	}
}

func setxattr(rel, name, value string) change {
	return func(t *testing.T, root string) {
		t.Helper()
		must(t, unix.Lsetxattr(filepath.Join(root, rel), name, []byte(value), 0))
	}
}

// baseSetup is a store holding the base tree (also as ref "base"), and a
// work directory with the tree's source at src.
type baseSetup struct {
	store      *testStore
	work, src  string
	base       string
	startedOps time.Time
}

func newBaseSetup(t *testing.T) *baseSetup {
	t.Helper()
	requireRoot(t)
	b := &baseSetup{store: newStore(t), work: testDir(t)}
	b.src = filepath.Join(b.work, "src")
	buildBase(t, b.src)
	b.base = b.store.importTree(t, b.src, "base")
	b.startedOps = time.Now()
	return b
}

// ext4 makes a fresh copy of the base at work/name, for replaying changes.
func (b *baseSetup) ext4(t *testing.T, name string) string {
	t.Helper()
	dir := filepath.Join(b.work, name)
	buildBase(t, dir)
	return dir
}

// diffLines runs `forge store diff A B` and returns its lines, sorted.
func (s *testStore) diffLines(t *testing.T, a, b string) []string {
	t.Helper()
	var lines []string
	for _, l := range strings.Split(s.must(t, "store diff", a, b), "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}

// TestCommitTwice commits, changes one file, commits again: the diff
// between the commits is that file, each commit exports what the mount
// held then, and a commit with nothing changed gives the same tree.
func TestCommitTwice(t *testing.T) {
	b := newBaseSetup(t)
	s := b.store
	mp := filepath.Join(b.work, "mnt")
	s.mountRW(t, "base", mp) // by ref; the other tests mount by hash
	first := []change{writeFile("added", []byte("added before the first commit\n"), 0o644)}
	second := []change{writeAt("d/a", []byte("TWO"), 5)}

	ext1, ext2 := b.ext4(t, "ext4-first"), b.ext4(t, "ext4-second")
	applyTo(t, first, mp, ext1, ext2)
	h1 := s.commit(t, mp, "first")
	// The mount stays writable after a commit.
	applyTo(t, second, mp, ext2)
	h2 := s.commit(t, mp, "second")
	if h1 == h2 {
		t.Fatalf("the second commit gave the first commit's tree %s though d/a changed", h1)
	}
	if h3 := s.commit(t, mp); h3 != h2 {
		t.Errorf("a commit with nothing changed gave tree %s, want the previous commit's %s", h3, h2)
	}

	for _, c := range []struct {
		a, b string
		want []string
	}{
		{b.base, h1, []string{"A added"}},
		{h1, h2, []string{"M d/a"}},
		{"first", "second", []string{"M d/a"}},
		{h2, "second", nil},
	} {
		if got := s.diffLines(t, c.a, c.b); !slices.Equal(got, c.want) {
			t.Errorf("forge store diff %s %s:\n%s\nwant:\n%s", c.a, c.b, strings.Join(got, "\n"), strings.Join(c.want, "\n"))
		}
	}

	ls := s.must(t, "store ls")
	for ref, h := range map[string]string{"first": h1, "second": h2} {
		if !strings.Contains(ls, ref) || !strings.Contains(ls, h[:12]) {
			t.Errorf("forge store ls does not show ref %s at %s:\n%s", ref, h[:12], ls)
		}
	}
	for _, c := range []struct{ tree, want string }{{h1, ext1}, {"second", ext2}} {
		dst := filepath.Join(b.work, "export-"+c.tree)
		s.export(t, c.tree, dst)
		assertSameTree(t, c.want, dst, "the export of "+c.tree, b.startedOps)
	}
	assertSameTree(t, ext2, mp, "the mount after two commits", b.startedOps)
}

// TestCommitAcrossAnOpenFile commits while a file is open for writing and
// a shared mapping of another is live, then writes through both: each
// commit holds what was written before it, and the second commit's diff
// names exactly the two files.
func TestCommitAcrossAnOpenFile(t *testing.T) {
	b := newBaseSetup(t)
	s := b.store
	mp := filepath.Join(b.work, "mnt")
	s.mountRW(t, b.base, mp)
	f, err := os.OpenFile(filepath.Join(mp, "d/a"), os.O_RDWR, 0)
	must(t, err)
	defer f.Close()
	g, err := os.OpenFile(filepath.Join(mp, "d/b"), os.O_RDWR, 0)
	must(t, err)
	defer g.Close()
	m, err := unix.Mmap(int(g.Fd()), 0, 4096, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	must(t, err)
	defer unix.Munmap(m)

	before := []change{writeAt("d/a", []byte("BEFORE"), 0), writeAt("d/b", []byte("mapped before"), 0)}
	after := []change{writeAt("d/a", []byte("AFTER"), 10), writeAt("d/b", []byte("mapped after"), 100)}
	e1, e2 := b.ext4(t, "ext4-1"), b.ext4(t, "ext4-2")
	applyTo(t, before, e1, e2)
	applyTo(t, after, e2)

	_, err = f.WriteAt([]byte("BEFORE"), 0)
	must(t, err)
	copy(m, "mapped before")
	must(t, unix.Msync(m, unix.MS_SYNC))
	h1 := s.commit(t, mp)
	_, err = f.WriteAt([]byte("AFTER"), 10)
	must(t, err)
	copy(m[100:], "mapped after")
	must(t, unix.Msync(m, unix.MS_SYNC))
	h2 := s.commit(t, mp)

	if got, want := s.diffLines(t, h1, h2), []string{"M d/a", "M d/b"}; !slices.Equal(got, want) {
		t.Errorf("forge store diff between the commits:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, c := range []struct{ tree, want string }{{h1, e1}, {h2, e2}} {
		dst := filepath.Join(b.work, "export-"+c.tree[:12])
		s.export(t, c.tree, dst)
		assertSameTree(t, c.want, dst, "the export of "+c.tree[:12], b.startedOps)
	}
}

// TestUmountDiscardsWhatWasNotCommitted: changes made after the last
// commit (or with no commit at all) are gone after umount.
func TestUmountDiscardsWhatWasNotCommitted(t *testing.T) {
	b := newBaseSetup(t)
	s := b.store
	mp := filepath.Join(b.work, "mnt")
	scrap := []change{
		writeAt("d/a", []byte("scrapped"), 0),
		writeFile("scrap", bytes.Repeat([]byte("s"), 3<<20), 0o644),
		remove("d/b"),
		chmod(baseBig, 0o600),
		setxattr("xf", "user.scrap", "1"),
	}

	t.Run("no commit", func(t *testing.T) {
		s.mountRW(t, b.base, mp)
		applyTo(t, scrap, mp)
		s.umount(t, mp)
		s.mountRW(t, b.base, mp)
		assertSameTree(t, b.src, mp, "the base mounted again after umount", b.startedOps)
		s.umount(t, mp)
	})
	t.Run("after a commit", func(t *testing.T) {
		kept := []change{writeFile("kept", []byte("committed\n"), 0o600), chmod("d/a", 0o640)}
		ext := b.ext4(t, "ext4-kept")
		applyTo(t, kept, ext)
		s.mountRW(t, b.base, mp)
		applyTo(t, kept, mp)
		h := s.commit(t, mp)
		applyTo(t, scrap, mp)
		s.umount(t, mp)
		s.mountRW(t, h, mp)
		assertSameTree(t, ext, mp, "the commit mounted again after umount", b.startedOps)
	})
}

// TestTwoMountsDoNotSeeEachOther mounts one tree twice and changes both:
// each shows only its own changes, also to a file the other has open, and
// each commits only its own.
func TestTwoMountsDoNotSeeEachOther(t *testing.T) {
	b := newBaseSetup(t)
	s := b.store
	m1, m2 := filepath.Join(b.work, "m1"), filepath.Join(b.work, "m2")
	s.mountRW(t, b.base, m1)
	s.mountRW(t, b.base, m2)
	e1, e2 := b.ext4(t, "e1"), b.ext4(t, "e2")

	// m2 holds d/a open from before m1 changes it.
	open2, err := os.Open(filepath.Join(m2, "d/a"))
	must(t, err)
	defer open2.Close()

	one := []change{
		writeAt("d/a", []byte("ONE"), 0),
		writeFile("only-in-1", []byte("1\n"), 0o644),
		remove("d/b"),
		chmod(baseBig, 0o600),
		setxattr("xf", "user.one", "1"),
		writeAt(baseBig, []byte("one"), 1<<20),
	}
	two := []change{
		writeAt("d/a", []byte("TWO"), 10),
		writeFile("only-in-2", []byte("2\n"), 0o644),
		chmod("d/b", 0o600),
	}
	applyTo(t, one, m1, e1)
	buf := make([]byte, len(baseText))
	if _, err := open2.ReadAt(buf, 0); err != nil || string(buf) != baseText {
		t.Errorf("m2's open d/a reads %q, %v after m1 wrote its own d/a; want the base %q", buf, err, baseText)
	}
	applyTo(t, two, m2, e2)
	open2.Close()

	assertSameTree(t, e1, m1, "mount 1", b.startedOps)
	assertSameTree(t, e2, m2, "mount 2", b.startedOps)
	h1, h2 := s.commit(t, m1), s.commit(t, m2)
	if h1 == h2 {
		t.Fatalf("two mounts with different changes committed the same tree %s", h1)
	}
	for _, c := range []struct{ tree, want string }{{h1, e1}, {h2, e2}} {
		dst := filepath.Join(b.work, "export-"+c.tree[:12])
		s.export(t, c.tree, dst)
		assertSameTree(t, c.want, dst, "the export of "+c.tree[:12], b.startedOps)
	}
}

// TestScratchRemoved: what a rw mount copies up lives under <store>/tmp/
// (DESIGN §4) and is gone when the mount is, by umount or daemon stop.
func TestScratchRemoved(t *testing.T) {
	for _, how := range []string{"umount", "daemon stop"} {
		t.Run(how, func(t *testing.T) {
			b := newBaseSetup(t)
			s := b.store
			mp := filepath.Join(b.work, "mnt")
			s.mountRW(t, b.base, mp)
			applyTo(t, []change{
				writeAt(baseBig, bytes.Repeat([]byte("w"), 4<<20), 1<<20),
				writeFile("new", fstree.RandomBytes("new", 2<<20), 0o644),
			}, mp)
			if n, alloc, _ := s.scratchUsage(t); n == 0 {
				t.Fatalf("after writing 6 MiB into the rw mount, <store>/tmp holds nothing (%d bytes): "+
					"DESIGN §4 puts copied-up files there, so this test cannot see them removed", alloc)
			}
			s.commit(t, mp)
			applyTo(t, []change{writeFile("after-commit", []byte("uncommitted"), 0o644)}, mp)
			switch how {
			case "umount":
				s.umount(t, mp)
			case "daemon stop":
				pid := s.daemonPID(t)
				s.must(t, "daemon stop")
				if !waitGone(pid, 30*time.Second) {
					t.Fatalf("daemon %d still runs after forge daemon stop", pid)
				}
				if isForgeMount(mp) {
					t.Fatalf("forge daemon stop left the rw mount at %s", mp)
				}
			}
			if n, alloc, names := s.scratchUsage(t); n != 0 {
				t.Errorf("after %s, <store>/tmp still holds %d entries (%d bytes): %s", how, n, alloc, strings.Join(names, ", "))
			}
		})
	}
}

// TestDaemonKilledUnderRWMount kills the daemon with SIGKILL while a rw
// mount has uncommitted changes and an open file: the next command's
// daemon detaches the dead mount and removes its scratch, fsck is clean,
// and what was committed before exports as it was.
func TestDaemonKilledUnderRWMount(t *testing.T) {
	b := newBaseSetup(t)
	s := b.store
	mp := filepath.Join(b.work, "mnt")
	s.mountRW(t, b.base, mp)
	committed := []change{
		writeFile("committed", fstree.RandomBytes("committed", 1<<20), 0o644),
		writeAt("d/a", []byte("committed"), 0),
		chmod("d/b", 0o600),
	}
	ext := b.ext4(t, "ext4")
	applyTo(t, committed, mp, ext)
	h := s.commit(t, mp, "before-kill")
	applyTo(t, []change{
		writeFile("lost", fstree.RandomBytes("lost", 4<<20), 0o644),
		writeAt(baseBig, []byte("lost"), 3<<20),
		remove("d/sub/c"),
	}, mp)
	open, err := os.OpenFile(filepath.Join(mp, "committed"), os.O_RDWR, 0)
	must(t, err)
	_, err = open.WriteAt([]byte("open and dirty"), 0)
	must(t, err)

	pid := s.daemonPID(t)
	must(t, syscall.Kill(pid, syscall.SIGKILL))
	if !waitGone(pid, 30*time.Second) {
		t.Fatalf("daemon %d survived SIGKILL", pid)
	}
	open.Close() // fails on a dead mount; nothing to check
	if _, err := os.ReadDir(mp); !errors.Is(err, syscall.ENOTCONN) && !errors.Is(err, syscall.ECONNABORTED) {
		t.Errorf("listing the dead mount: %v, want ENOTCONN or ECONNABORTED", err)
	}

	// Any command starts a new daemon, which cleans up after the old one.
	s.must(t, "store ls")
	if isForgeMount(mp) {
		t.Errorf("the new daemon left the dead rw mount at %s", mp)
	}
	if n, alloc, names := s.scratchUsage(t); n != 0 {
		t.Errorf("the new daemon left the dead mount's scratch: %d entries (%d bytes) in <store>/tmp: %s",
			n, alloc, strings.Join(names, ", "))
	}
	if out, _, err := s.forge(cliTimeout, "store fsck"); err != nil {
		t.Errorf("fsck after kill -9 under a rw mount: %v\n%s", err, out)
	}
	dst := filepath.Join(b.work, "export")
	s.export(t, "before-kill", dst)
	assertSameTree(t, ext, dst, "the export of the commit made before kill -9", b.startedOps)
	mp2 := filepath.Join(b.work, "mnt2")
	s.mountRW(t, h, mp2)
	assertSameTree(t, ext, mp2, "the commit made before kill -9, mounted rw again", b.startedOps)
}

// TestStatfs checks what statfs(2) says of a rw mount: an overlay (or,
// where the store's filesystem cannot hold one, FUSE) that is writable,
// nosuid and nodev unless it is a build root (--build-root: devices and
// set-id programs work), takes 255-byte names, and reports free space that
// tools checking before they write (dpkg, apt) can rely on: at least what
// the store's filesystem has free, up to 1 GiB, since copied-up data is
// written there.
func TestStatfs(t *testing.T) {
	b := newBaseSetup(t)
	mp := filepath.Join(b.work, "mnt")
	b.store.mountRW(t, b.base, mp)
	var st, inner, store unix.Statfs_t
	must(t, unix.Statfs(mp, &st))
	const fuseSuperMagic, overlaySuperMagic = 0x65735546, 0x794c7630
	if st.Type != overlaySuperMagic && st.Type != fuseSuperMagic {
		t.Errorf("f_type %#x, want overlayfs's %#x or FUSE's %#x", st.Type, overlaySuperMagic, fuseSuperMagic)
	}
	for _, f := range []struct {
		flag int64
		name string
	}{{unix.ST_RDONLY, "ST_RDONLY"}, {unix.ST_NODEV, "ST_NODEV"}, {unix.ST_NOSUID, "ST_NOSUID"}} {
		if st.Flags&f.flag != 0 {
			t.Errorf("f_flag has %s (%#x): a rw build root must not", f.name, st.Flags)
		}
	}
	plain := filepath.Join(b.work, "plain")
	b.store.mountRWPlain(t, b.base, plain)
	var pst unix.Statfs_t
	must(t, unix.Statfs(plain, &pst))
	if pst.Flags&unix.ST_RDONLY != 0 || pst.Flags&unix.ST_NODEV == 0 || pst.Flags&unix.ST_NOSUID == 0 {
		t.Errorf("f_flag %#x of a rw mount without --build-root: want it writable, ST_NODEV and ST_NOSUID", pst.Flags)
	}
	if st.Namelen < 255 {
		t.Errorf("f_namelen %d, want at least 255", st.Namelen)
	}
	if st.Bsize <= 0 || st.Frsize <= 0 {
		t.Errorf("f_bsize %d, f_frsize %d: want both positive", st.Bsize, st.Frsize)
	}
	if !(st.Blocks >= st.Bfree && st.Bfree >= st.Bavail && st.Blocks > 0) {
		t.Errorf("f_blocks %d, f_bfree %d, f_bavail %d: want blocks > 0 and blocks >= bfree >= bavail", st.Blocks, st.Bfree, st.Bavail)
	}
	if st.Files < st.Ffree {
		t.Errorf("f_files %d < f_ffree %d", st.Files, st.Ffree)
	}
	must(t, unix.Statfs(b.store.dir, &store))
	want := min(int64(store.Bavail)*store.Frsize/2, 1<<30)
	if got := int64(st.Bavail) * st.Frsize; got < want {
		t.Errorf("the mount reports %d bytes available; the store's filesystem has %d, so want at least %d",
			got, int64(store.Bavail)*store.Frsize, want)
	}
	f, err := os.Open(filepath.Join(mp, "d/a"))
	must(t, err)
	defer f.Close()
	must(t, unix.Fstatfs(int(f.Fd()), &inner))
	if inner.Type != st.Type || inner.Bsize != st.Bsize || inner.Namelen != st.Namelen {
		t.Errorf("fstatfs of a file in the mount says %+v, statfs of the root %+v", inner, st)
	}
}

// TestMetadataOnlyCopiesNoData: chmod, chown, utimensat and xattr changes
// of a large stored file, and reading it, copy none of its data into the
// mount's scratch space; the commit carries the changes.
func TestMetadataOnlyCopiesNoData(t *testing.T) {
	requireRoot(t)
	s := newStore(t)
	work := testDir(t)
	const size = 64 << 20
	data := fstree.RandomBytes("huge", size)
	mk := func(dir string) {
		must(t, os.Mkdir(dir, 0o755))
		must(t, os.WriteFile(filepath.Join(dir, "huge"), data, 0o644))
		ts := []unix.Timespec{{Sec: baseSec}, {Sec: baseSec}}
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(dir, "huge"), ts, 0))
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, dir, ts, 0))
	}
	src, ext, mp := filepath.Join(work, "src"), filepath.Join(work, "ext4"), filepath.Join(work, "mnt")
	mk(src)
	mk(ext)
	tree := s.importTree(t, src)
	start := time.Now()
	s.mountRW(t, tree, mp)
	_, before, _ := s.scratchUsage(t)

	changes := []change{
		chmod("huge", 0o600),
		func(t *testing.T, root string) { must(t, os.Chown(filepath.Join(root, "huge"), 1234, 5678)) },
		func(t *testing.T, root string) {
			ts := []unix.Timespec{{Sec: 1500000000, Nsec: 1}, {Sec: 1600000000, Nsec: 2}}
			must(t, unix.UtimesNanoAt(unix.AT_FDCWD, filepath.Join(root, "huge"), ts, 0))
		},
		setxattr("huge", "user.meta", "only"),
		setxattr("huge", "trusted.meta", "only"),
		func(t *testing.T, root string) {
			must(t, unix.Removexattr(filepath.Join(root, "huge"), "trusted.meta"))
		},
	}
	applyTo(t, changes, mp, ext)
	got, err := os.ReadFile(filepath.Join(mp, "huge"))
	must(t, err)
	if !bytes.Equal(got, data) {
		t.Errorf("reading the unmodified 64 MiB file through the mount gives different bytes")
	}
	if _, after, names := s.scratchUsage(t); after-before >= 1<<20 {
		t.Errorf("metadata changes and a read of a %d-byte file grew <store>/tmp by %d bytes (%s): its data was copied",
			size, after-before, strings.Join(names, ", "))
	}
	assertSameTree(t, ext, mp, "the mount after metadata-only changes", start)
	h := s.commit(t, mp)
	dst := filepath.Join(work, "export")
	s.export(t, h, dst)
	assertSameTree(t, ext, dst, "the export after metadata-only changes", start)
}

// TestEmptyTreeMount mounts no tree: the mount starts empty, takes every
// kind of entry, and commits and exports what it holds. The contract does
// not say what the empty root's own mode and owner are, so the roots are
// not compared.
func TestEmptyTreeMount(t *testing.T) {
	requireRoot(t)
	s := newStore(t)
	work := testDir(t)
	mp, ext := filepath.Join(work, "mnt"), filepath.Join(work, "ext4")
	must(t, os.Mkdir(ext, 0o755))
	s.mountRW(t, "", mp)
	entries, err := os.ReadDir(mp)
	must(t, err)
	if len(entries) != 0 {
		t.Fatalf("a rw mount of no tree lists %d entries, want none", len(entries))
	}
	var root unix.Stat_t
	must(t, unix.Stat(mp, &root))
	t.Logf("the empty tree's root: mode %#o, owner %d:%d", root.Mode&0o7777, root.Uid, root.Gid)

	start := time.Now()
	changes := []change{
		func(t *testing.T, r string) { must(t, os.MkdirAll(filepath.Join(r, "etc/apt"), 0o755)) },
		writeFile("etc/hostname", []byte("forge\n"), 0o644),
		func(t *testing.T, r string) { must(t, os.Symlink("hostname", filepath.Join(r, "etc/name"))) },
		func(t *testing.T, r string) {
			must(t, os.Link(filepath.Join(r, "etc/hostname"), filepath.Join(r, "etc/hostname.bak")))
		},
		func(t *testing.T, r string) {
			must(t, unix.Mknod(filepath.Join(r, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		},
		func(t *testing.T, r string) { must(t, os.Chown(filepath.Join(r, "etc/apt"), 100, 65534)) },
		setxattr("etc/hostname", "user.x", "y"),
		writeFile("big", fstree.RandomBytes("big", 5<<20), 0o600),
	}
	applyTo(t, changes, mp, ext)
	opts := treeOptions
	opts.CompareRootMeta = false
	assertSameTreeOpts(t, ext, mp, "the empty-tree mount", start, opts)
	h := s.commit(t, mp)
	dst := filepath.Join(work, "export")
	s.export(t, h, dst)
	assertSameTreeOpts(t, ext, dst, "the export of the empty-tree mount's commit", start, opts)
}
