// Package cowfs_test checks the two kinds of writable mount in process, as
// root, without the daemon or the CLI: fusefs.MountCopyOnWrite (a FUSE
// filesystem) and overlay.New (overlayfs over a read-only FUSE mount). A
// small stored tree is mounted, changed, committed through a cas.Writer
// and exported, and the mount and each export are compared with the same
// changes made to an ext4 copy of the tree.
package cowfs_test

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/fstree"
	"github.com/forge-build/forge/overlay"
)

// casWriter adapts *cas.Writer to fusefs.Writer.
type casWriter struct{ *cas.Writer }

// failingWriter fails every PutFile: a commit that meets a full disk.
type failingWriter struct{ casWriter }

var errNoSpace = errors.New("no space left (test)")

func (failingWriter) PutFile(ctx context.Context, f *os.File, size int64) ([]node.Chunk, uint64, error) {
	return nil, 0, errNoSpace
}

const baseSec = 1614834367

type env struct {
	t       *testing.T
	kind    string // kindFUSE or kindOverlay
	store   *cas.Store
	work    string
	scratch string
	ref     string // the ext4 side
	mp      string // the mount
	mount   writable
}

// writable is what both kinds of writable mount do.
type writable interface {
	Mountpoint() string
	Unmount(lazy bool) error
	Wait()
	Commit(ctx context.Context, newWriter func() (fusefs.Writer, error), refs ...string) (digest.Hash, error)
}

const (
	kindFUSE    = "fuse"
	kindOverlay = "overlay"
)

// mountKind mounts tree writable at mp as kind, its changes in scratch;
// opts go to the FUSE filesystem, or to the overlay's lower mount (and
// Suid and Dev to the overlay).
func mountKind(kind, mp string, s *cas.Store, tree digest.Hash, scratch string, opts fusefs.Options) (writable, error) {
	if kind == kindOverlay {
		return overlay.New(mp, fusefs.NewCache(s, 0), tree, overlay.Options{
			Lower: opts, Suid: opts.Suid, Dev: opts.Dev, Scratch: scratch, Logf: opts.Logf})
	}
	return fusefs.MountCopyOnWrite(mp, fusefs.NewCache(s, 0), tree, fusefs.CowOptions{Options: opts, Scratch: scratch})
}

// eachKind runs test once per kind of writable mount.
func eachKind(t *testing.T, test func(t *testing.T, kind string)) {
	for _, kind := range []string{kindFUSE, kindOverlay} {
		t.Run(kind, func(t *testing.T) { test(t, kind) })
	}
}

func requireFUSE(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts FUSE, chowns, mknods and sets trusted.* xattrs")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// buildBase makes the starting tree in dir.
func buildBase(t testing.TB, dir string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, "d/sub"), 0o755))
	must(t, os.Mkdir(filepath.Join(dir, "empty"), 0o755))
	must(t, os.Mkdir(filepath.Join(dir, "full"), 0o750))
	must(t, os.WriteFile(filepath.Join(dir, "d/a"), []byte("line one\nline two\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "d/big"), fstree.RandomBytes("big", 3<<20), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "d/sub/c"), []byte("deep\n"), 0o600))
	must(t, os.WriteFile(filepath.Join(dir, "full/x"), []byte("x\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(dir, "hl1"), []byte("two names\n"), 0o640))
	must(t, os.Chown(filepath.Join(dir, "hl1"), 1000, 1000))
	must(t, os.Link(filepath.Join(dir, "hl1"), filepath.Join(dir, "hl2")))
	must(t, os.Link(filepath.Join(dir, "hl1"), filepath.Join(dir, "d/sub/hl3")))
	must(t, os.Symlink("d/a", filepath.Join(dir, "sym")))
	must(t, unix.Setxattr(filepath.Join(dir, "d/a"), "user.note", []byte("base"), 0))
	must(t, unix.Setxattr(filepath.Join(dir, "d/a"), "trusted.t", []byte("tv"), 0))
	must(t, unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	// A tree may hold overlayfs's own xattrs (a container's layers, say):
	// an overlay over the tree must show them, not obey them.
	must(t, os.WriteFile(filepath.Join(dir, "ovl-meta"), []byte("has its data\n"), 0o644))
	must(t, unix.Setxattr(filepath.Join(dir, "ovl-meta"), "trusted.overlay.metacopy", nil, 0))
	must(t, os.Mkdir(filepath.Join(dir, "ovl-opaque"), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, "ovl-opaque/f"), []byte("f\n"), 0o644))
	must(t, unix.Setxattr(filepath.Join(dir, "ovl-opaque"), "trusted.overlay.opaque", []byte("y"), 0))
	f, err := os.Create(filepath.Join(dir, "sparse"))
	must(t, err)
	_, err = f.WriteAt(fstree.RandomBytes("sparse", 256<<10), 2<<20)
	must(t, err)
	must(t, f.Truncate(8<<20))
	must(t, f.Close())
	fixTimes(t, dir)
}

// fixTimes sets every mtime below dir (and dir's) to baseSec, children
// before their directories.
func fixTimes(t testing.TB, dir string) {
	t.Helper()
	var paths []string
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	}))
	ts := []unix.Timespec{{Sec: baseSec}, {Sec: baseSec}}
	for i := len(paths) - 1; i >= 0; i-- {
		must(t, unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// newEnv stores the base tree, exports a copy of it to ext4 and mounts it
// copy-on-write.
func newEnv(t *testing.T, kind string) *env {
	t.Helper()
	requireFUSE(t)
	unix.Umask(0o022)
	work := fstree.DiskTempDir(t)
	s, err := cas.Open(filepath.Join(work, "store"), cas.Options{})
	must(t, err)
	e := &env{t: t, kind: kind, store: s, work: work}
	t.Cleanup(func() { s.Close() })
	src := filepath.Join(work, "src")
	must(t, os.Mkdir(src, 0o755))
	buildBase(t, src)
	res, err := s.Import(context.Background(), src, cas.ImportOptions{})
	must(t, err)
	e.ref = filepath.Join(work, "ref")
	_, err = s.Export(context.Background(), res.Tree, e.ref, cas.ExportOptions{})
	must(t, err)
	e.mount = e.mountTree(res.Tree, "mnt")
	e.mp = e.mount.Mountpoint()
	return e
}

// mountTree mounts tree copy-on-write at <work>/<name>, unmounted (and its
// scratch directory removed) when the test ends.
func (e *env) mountTree(tree digest.Hash, name string) writable {
	t := e.t
	t.Helper()
	mp := filepath.Join(e.work, name)
	must(t, os.Mkdir(mp, 0o755))
	scratch := filepath.Join(e.store.Dir(), "tmp", "mount-"+name)
	must(t, os.MkdirAll(scratch, 0o700))
	e.scratch = scratch
	m, err := mountKind(e.kind, mp, e.store, tree, scratch, fusefs.Options{AllowOther: true, Suid: true, Dev: true, Logf: t.Logf})
	must(t, err)
	t.Cleanup(func() {
		if err := m.Unmount(true); err != nil {
			t.Errorf("unmount: %v", err)
		}
		m.Wait()
		os.RemoveAll(scratch)
	})
	return m
}

func (e *env) commit(m writable) (digest.Hash, cas.WriteStats) {
	e.t.Helper()
	var w *cas.Writer
	h, err := m.Commit(context.Background(), func() (fusefs.Writer, error) {
		var err error
		w, err = e.store.NewWriter()
		return casWriter{w}, err
	})
	if err != nil {
		e.t.Fatalf("commit: %v", err)
	}
	return h, w.Stats()
}

func (e *env) export(h digest.Hash, name string) string {
	e.t.Helper()
	dst := filepath.Join(e.work, name)
	_, err := e.store.Export(context.Background(), h, dst, cas.ExportOptions{})
	must(e.t, err)
	return dst
}

func (e *env) assertSame(t *testing.T, what, a, b string) {
	t.Helper()
	opts := fstree.Options{CheckSparse: true}
	if e.kind == kindOverlay {
		// overlayfs copies a file up in 1 MiB pieces from each of its
		// data extents: the zeros after one, up to 1 MiB, become data.
		opts.SparseSlack = 1 << 20
	}
	diffs, err := fstree.Compare(a, b, opts)
	must(t, err)
	if len(diffs) > 0 {
		var sb strings.Builder
		for _, d := range diffs {
			sb.WriteString("\n\t" + d.String())
		}
		t.Errorf("%s: %d differences from ext4:%s", what, len(diffs), sb.String())
	}
}

// op is one change made the same way to both trees; it returns what the
// calls returned, which must agree too.
type op struct {
	name string
	do   func(t *testing.T, root string) string
}

func errs(errs ...error) string {
	var s []string
	for _, err := range errs {
		if err == nil {
			s = append(s, "ok")
		} else {
			s = append(s, err.Error())
		}
	}
	return strings.Join(s, ",")
}

func p(root, rel string) string { return filepath.Join(root, rel) }

var ops = []op{
	{"overwrite the middle of a stored file", func(t *testing.T, r string) string {
		f, err := os.OpenFile(p(r, "d/big"), os.O_RDWR, 0)
		if err != nil {
			return err.Error()
		}
		_, werr := f.WriteAt([]byte("patched"), 1<<20)
		buf := make([]byte, 16)
		_, rerr := f.ReadAt(buf, 1<<20-4)
		return errs(werr, rerr, f.Close()) + string(buf)
	}},
	{"append to a stored file", func(t *testing.T, r string) string {
		f, err := os.OpenFile(p(r, "d/a"), os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			return err.Error()
		}
		_, werr := f.Write([]byte("line three\n"))
		return errs(werr, f.Close())
	}},
	{"O_TRUNC a stored file and write", func(t *testing.T, r string) string {
		return errs(os.WriteFile(p(r, "full/x"), []byte("new x\n"), 0o600))
	}},
	{"O_EXCL on an existing name", func(t *testing.T, r string) string {
		_, err := os.OpenFile(p(r, "d/a"), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		return errs(err)
	}},
	{"create, write, truncate up and down", func(t *testing.T, r string) string {
		f, err := os.OpenFile(p(r, "new"), os.O_CREATE|os.O_RDWR, 0o666)
		if err != nil {
			return err.Error()
		}
		_, werr := f.Write(bytes.Repeat([]byte("n"), 10000))
		return errs(werr, f.Truncate(100), f.Truncate(70000), f.Close(), os.Truncate(p(r, "d/sub/c"), 2))
	}},
	{"punch a hole in a stored sparse file", func(t *testing.T, r string) string {
		f, err := os.OpenFile(p(r, "sparse"), os.O_RDWR, 0)
		if err != nil {
			return err.Error()
		}
		ferr := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 2<<20, 64<<10)
		return errs(ferr, f.Close())
	}},
	{"mkdir, rmdir, rmdir of a full one", func(t *testing.T, r string) string {
		return errs(os.Mkdir(p(r, "nd"), 0o777), os.Mkdir(p(r, "nd/inner"), 0o700),
			unix.Rmdir(p(r, "empty")), unix.Rmdir(p(r, "full")), unix.Rmdir(p(r, "nd/inner")))
	}},
	{"renames", func(t *testing.T, r string) string {
		return errs(
			os.Rename(p(r, "d/a"), p(r, "d/sub/c")), // over a stored file
			unix.Renameat2(unix.AT_FDCWD, p(r, "d/big"), unix.AT_FDCWD, p(r, "new"), unix.RENAME_NOREPLACE),
			unix.Renameat2(unix.AT_FDCWD, p(r, "d/sub"), unix.AT_FDCWD, p(r, "full"), unix.RENAME_EXCHANGE),
			os.Rename(p(r, "nd"), p(r, "d/moved")),
			os.Mkdir(p(r, "d/target"), 0o755),
			unix.Rename(p(r, "d/moved"), p(r, "d/target")), // over an empty directory
		)
	}},
	{"links", func(t *testing.T, r string) string {
		return errs(os.Link(p(r, "new"), p(r, "new-link")), os.Remove(p(r, "hl2")),
			os.Link(p(r, "hl1"), p(r, "hl4")), os.Link(p(r, "d"), p(r, "dlink")))
	}},
	{"unlink an open file, read it, write it", func(t *testing.T, r string) string {
		f, err := os.OpenFile(p(r, "new-link"), os.O_RDWR, 0)
		if err != nil {
			return err.Error()
		}
		uerr := os.Remove(p(r, "new-link"))
		_, werr := f.WriteAt([]byte("still here"), 0)
		b := make([]byte, 10)
		_, rerr := f.ReadAt(b, 0)
		return errs(uerr, werr, rerr, f.Close()) + string(b)
	}},
	{"symlink, mknod", func(t *testing.T, r string) string {
		return errs(os.Symlink("../nowhere", p(r, "d/dangling")),
			unix.Mkfifo(p(r, "fifo"), 0o640),
			unix.Mknod(p(r, "blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(8, 1))),
			unix.Mknod(p(r, "sock"), unix.S_IFSOCK|0o755, 0))
	}},
	{"chmod, chown, xattrs on stored nodes", func(t *testing.T, r string) string {
		return errs(os.Chmod(p(r, "hl1"), 0o4755), os.Lchown(p(r, "sym"), 12, 34),
			os.Chown(p(r, "d"), 5, 6),
			unix.Setxattr(p(r, "sparse"), "user.added", []byte("v"), 0),
			unix.Setxattr(p(r, "sparse"), "user.added", []byte("v"), unix.XATTR_CREATE),
			unix.Removexattr(p(r, "sym"), "user.none"),
			unix.Removexattr(p(r, "sparse"), "user.added"),
			unix.Setxattr(p(r, "sparse"), "user.added", []byte("w"), unix.XATTR_REPLACE),
			unix.Setxattr(p(r, "sparse"), "trusted.x", []byte("w"), 0),
			unix.Setxattr(p(r, "full/c"), "security.capability", capV2(), 0))
	}},
	{"explicit times", func(t *testing.T, r string) string {
		ts := []unix.Timespec{{Sec: 1500000000, Nsec: 5}, {Sec: 1600000000, Nsec: 7}}
		return errs(unix.UtimesNanoAt(unix.AT_FDCWD, p(r, "hl1"), ts, 0))
	}},
}

func capV2() []byte {
	b := make([]byte, 20)
	b[3] = 2 // VFS_CAP_REVISION_2
	b[0] = 1 // effective
	b[4] = 1 << 5
	return b
}

// apply runs ops on both trees and checks that they returned the same.
func apply(t *testing.T, ops []op, ref, mp string) {
	t.Helper()
	for _, o := range ops {
		want := strings.ReplaceAll(o.do(t, ref), ref, "ROOT")
		got := strings.ReplaceAll(o.do(t, mp), mp, "ROOT")
		if got != want {
			t.Errorf("%s: mount says %q, ext4 says %q", o.name, got, want)
		}
	}
}

func TestOperationsAndCommit(t *testing.T) {
	eachKind(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		apply(t, ops, e.ref, e.mp)
		fixTimes(t, e.ref)
		fixTimes(t, e.mp)
		e.assertSame(t, "the mount", e.ref, e.mp)
		h1, _ := e.commit(e.mount)
		e.assertSame(t, "the first commit", e.ref, e.export(h1, "export1"))

		// The mount goes on; a commit without changes stores nothing new.
		h2, st := e.commit(e.mount)
		if h2 != h1 || st.NewNodes != 0 || st.NewChunks != 0 {
			t.Errorf("a commit without changes gave %s (was %s) and stored %d nodes, %d chunks", h2.Short(), h1.Short(), st.NewNodes, st.NewChunks)
		}

		// One more change: only it and its directories are stored.
		more := []op{{"write d/sub/c again", func(t *testing.T, r string) string {
			return errs(os.WriteFile(p(r, "full/c"), []byte("third\n"), 0o644))
		}}}
		apply(t, more, e.ref, e.mp)
		fixTimes(t, e.ref)
		fixTimes(t, e.mp)
		h3, st := e.commit(e.mount)
		e.assertSame(t, "the second commit", e.ref, e.export(h3, "export3"))
		if st.NewChunks != 1 {
			t.Errorf("changing one small file stored %d new chunks", st.NewChunks)
		}

		// A mount of the committed tree shows it.
		m2 := e.mountTree(h3, "mnt2")
		e.assertSame(t, "a mount of the commit", e.ref, m2.Mountpoint())
	})
}

func TestFailedCommitChangesNothing(t *testing.T) {
	eachKind(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		must(t, os.WriteFile(p(e.mp, "d/a"), []byte("changed\n"), 0o644))
		_, err := e.mount.Commit(context.Background(), func() (fusefs.Writer, error) {
			w, err := e.store.NewWriter()
			return failingWriter{casWriter{w}}, err
		}, "should-not-exist")
		if !errors.Is(err, errNoSpace) {
			t.Fatalf("commit with a failing writer: %v", err)
		}
		if _, err := e.store.Ref("should-not-exist"); err == nil {
			t.Errorf("a failed commit set its ref")
		}
		must(t, os.WriteFile(p(e.ref, "d/a"), []byte("changed\n"), 0o644))
		fixTimes(t, e.ref)
		fixTimes(t, e.mp)
		h, _ := e.commit(e.mount)
		e.assertSame(t, "the commit after a failed one", e.ref, e.export(h, "export"))
	})
}

func TestScratchFilesGo(t *testing.T) {
	eachKind(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		f, err := os.Create(p(e.mp, "tmpfile"))
		must(t, err)
		_, err = f.Write([]byte("data"))
		must(t, err)
		must(t, os.Remove(p(e.mp, "tmpfile")))
		if n := e.copies(t); n != 1 && kind == kindFUSE {
			// (overlayfs unlinks the upper file: the scratch
			// filesystem keeps the open inode, as any would.)
			t.Errorf("an unlinked open file has %d scratch files, want 1", n)
		}
		must(t, f.Close())
		// The kernel forgets the inode soon after the last close; a stat of
		// the directory makes it flush what it holds.
		dropCaches(t)
		if n := e.copies(t); n != 0 {
			t.Errorf("an unlinked closed file left %d scratch files", n)
		}
		// Metadata changes and reads copy nothing.
		must(t, os.Chmod(p(e.mp, "d/big"), 0o600))
		must(t, unix.Setxattr(p(e.mp, "d/big"), "user.x", []byte("y"), 0))
		_, err = os.ReadFile(p(e.mp, "d/big"))
		must(t, err)
		if n := e.copies(t); n != 0 {
			t.Errorf("chmod, setxattr and a read made %d scratch files", n)
		}
	})
}

func dropCaches(t *testing.T) {
	t.Helper()
	unix.Sync()
	must(t, os.WriteFile("/proc/sys/vm/drop_caches", []byte("2"), 0))
}

// copies counts the files whose data the mount holds in its scratch
// directory: FUSE's scratch files; overlayfs's upper files with data (a
// metadata-only copy has trusted.overlay.metacopy, and its data below).
func (e *env) copies(t *testing.T) int {
	t.Helper()
	if e.kind == kindFUSE {
		return countFiles(t, e.scratch)
	}
	seen := map[uint64]bool{}
	must(t, filepath.WalkDir(filepath.Join(e.scratch, "upper"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		var st unix.Stat_t
		must(t, unix.Lstat(path, &st))
		_, err = unix.Lgetxattr(path, "trusted.overlay.metacopy", nil)
		if st.Size > 0 && errors.Is(err, unix.ENODATA) {
			seen[st.Ino] = true
		}
		return nil
	}))
	return len(seen)
}

func countFiles(t *testing.T, dir string) int {
	t.Helper()
	ents, err := os.ReadDir(dir)
	must(t, err)
	return len(ents)
}

// TestHardLinkChangedThroughOneName changes a stored hard-linked file
// through one name while another name lies in a directory never looked up:
// the commit must carry the change to every name.
func TestHardLinkChangedThroughOneName(t *testing.T) {
	eachKind(t, func(t *testing.T, kind string) {
		for _, tc := range []struct {
			name string
			do   func(root string) error
		}{
			{"chmod", func(r string) error { return os.Chmod(p(r, "hl1"), 0o600) }},
			{"append", func(r string) error {
				f, err := os.OpenFile(p(r, "hl2"), os.O_WRONLY|os.O_APPEND, 0)
				if err != nil {
					return err
				}
				_, err = f.Write([]byte("more\n"))
				return errors.Join(err, f.Close())
			}},
			{"another link", func(r string) error { return os.Link(p(r, "hl1"), p(r, "hl5")) }},
			{"unlink one", func(r string) error { return os.Remove(p(r, "hl2")) }},
		} {
			t.Run(tc.name, func(t *testing.T) {
				e := newEnv(t, kind)
				must(t, tc.do(e.ref))
				must(t, tc.do(e.mp))
				fixTimes(t, e.ref)
				// Only the root's times: the mount's other directories stay
				// unlooked-up.
				ts := []unix.Timespec{{Sec: baseSec}, {Sec: baseSec}}
				must(t, unix.UtimesNanoAt(unix.AT_FDCWD, p(e.mp, "hl1"), ts, 0))
				must(t, unix.UtimesNanoAt(unix.AT_FDCWD, e.mp, ts, 0))
				h, _ := e.commit(e.mount)
				e.assertSame(t, "the export", e.ref, e.export(h, "export"))
			})
		}
	})
}

// TestTmpfileAndMmap: O_TMPFILE then linkat, and MAP_SHARED writes.
func TestTmpfileAndMmap(t *testing.T) {
	eachKind(t, func(t *testing.T, kind string) {
		e := newEnv(t, kind)
		for _, root := range []string{e.ref, e.mp} {
			fd, err := unix.Open(root, unix.O_TMPFILE|unix.O_RDWR, 0o640)
			must(t, err)
			_, err = unix.Write(fd, []byte("from a tmpfile\n"))
			must(t, err)
			must(t, unix.Linkat(unix.AT_FDCWD, "/proc/self/fd/"+itoa(fd), unix.AT_FDCWD, p(root, "was-tmp"), unix.AT_SYMLINK_FOLLOW))
			must(t, unix.Close(fd))
			fd, err = unix.Open(root, unix.O_TMPFILE|unix.O_RDWR, 0o640)
			must(t, err)
			must(t, unix.Close(fd)) // never linked: gone

			fd, err = unix.Open(p(root, "d/big"), unix.O_RDWR, 0)
			must(t, err)
			m, err := unix.Mmap(fd, 0, 1<<20, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			must(t, err)
			copy(m[4096:], "written through a shared mapping")
			must(t, unix.Msync(m, unix.MS_SYNC))
			must(t, unix.Munmap(m))
			must(t, unix.Close(fd))
		}
		fixTimes(t, e.ref)
		fixTimes(t, e.mp)
		e.assertSame(t, "the mount", e.ref, e.mp)
		h, _ := e.commit(e.mount)
		e.assertSame(t, "the export", e.ref, e.export(h, "export"))
		dropCaches(t)
		if n := e.copies(t); n != 2 {
			t.Errorf("%d scratch files, want 2 (was-tmp and d/big)", n)
		}
	})
}

func itoa(i int) string { return strconv.Itoa(i) }
