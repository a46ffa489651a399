package cow_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/fstree"
)

// The two sides of every comparison.
const (
	sideExt4 = "ext4" // the reference: a directory on ext4
	sideCoW  = "cow"  // a forge copy-on-write mount
)

// opCase is one POSIX operation, or a short sequence of them, run on each
// side by the same function. run says what it observed through rec.
type opCase struct {
	name string
	run  func(r *rec)
}

// rec runs the steps of a case on one side and writes down a transcript
// of what each call returned and what it read: names of errnos, byte
// counts, digests of contents, modes. The transcripts of the two sides
// must be equal, so nothing in them may name the side's own root.
//
// The step helpers take the errno a step is expected to fail with (none:
// success). The expectation is about ext4: a step that does not meet it on
// ext4 fails the test as a bug in the case; on the CoW side the transcript
// comparison shows the difference.
type rec struct {
	t     *testing.T
	side  string
	root  string
	start time.Time // before either side ran: times at or after it are "now"
	lines []string
}

func (r *rec) p(rel string) string { return filepath.Join(r.root, rel) }

// note adds a line to the transcript.
func (r *rec) note(format string, args ...any) {
	r.lines = append(r.lines, fmt.Sprintf(format, args...))
}

// check writes down the outcome of step and reports whether it succeeded.
func (r *rec) check(step string, err error, want ...unix.Errno) bool {
	r.t.Helper()
	var w unix.Errno
	if len(want) > 0 {
		w = want[0]
	}
	got := r.errName(err)
	line := step + ": " + got
	if (w == 0) != (err == nil) || (w != 0 && !errors.Is(err, w)) {
		line += " (expected " + errnoName(w) + ")"
		if r.side == sideExt4 {
			r.t.Errorf("ext4 reference: %s: %s, expected %s: the case expects what ext4 does not do", step, got, errnoName(w))
		}
	}
	r.lines = append(r.lines, line)
	return err == nil
}

// unsupported skips the case when the CoW mount answers EOPNOTSUPP to an
// operation that issue 4 allows it not to support.
func (r *rec) unsupported(step string, err error) {
	r.t.Helper()
	if r.side == sideCoW && errors.Is(err, unix.EOPNOTSUPP) {
		r.t.Skipf("UNSUPPORTED by the CoW mount: %s: EOPNOTSUPP (issue 4 allows it; report it in the notes)", step)
	}
}

func (r *rec) errName(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return errnoName(e)
	}
	return "error: " + strings.ReplaceAll(err.Error(), r.root, "<root>")
}

func errnoName(e unix.Errno) string {
	if e == 0 {
		return "ok"
	}
	if n := unix.ErrnoName(e); n != "" {
		return n
	}
	return e.Error()
}

// open opens rel and returns the descriptor, or -1.
func (r *rec) open(rel string, flags int, mode uint32, want ...unix.Errno) int {
	r.t.Helper()
	fd, err := unix.Open(r.p(rel), flags|unix.O_CLOEXEC, mode)
	if !r.check(fmt.Sprintf("open %s %s", rel, flagNames(flags)), err, want...) {
		return -1
	}
	return fd
}

func (r *rec) close(fd int) {
	r.t.Helper()
	if fd >= 0 {
		r.check("close", unix.Close(fd))
	}
}

func (r *rec) write(fd int, data []byte, want ...unix.Errno) {
	r.t.Helper()
	n, err := unix.Write(fd, data)
	r.check(fmt.Sprintf("write %s -> %d", summary(data), n), err, want...)
}

func (r *rec) pwrite(fd int, data []byte, off int64, want ...unix.Errno) {
	r.t.Helper()
	n, err := unix.Pwrite(fd, data, off)
	r.check(fmt.Sprintf("pwrite %s at %d -> %d", summary(data), off, n), err, want...)
}

func (r *rec) read(fd, n int, want ...unix.Errno) {
	r.t.Helper()
	buf := make([]byte, n)
	got, err := unix.Read(fd, buf)
	r.check(fmt.Sprintf("read %d -> %s", n, summary(buf[:max(got, 0)])), err, want...)
}

func (r *rec) pread(fd, n int, off int64, want ...unix.Errno) {
	r.t.Helper()
	buf := make([]byte, n)
	got, err := unix.Pread(fd, buf, off)
	r.check(fmt.Sprintf("pread %d at %d -> %s", n, off, summary(buf[:max(got, 0)])), err, want...)
}

func (r *rec) seek(fd int, off int64, whence int, want ...unix.Errno) {
	r.t.Helper()
	pos, err := unix.Seek(fd, off, whence)
	r.check(fmt.Sprintf("lseek %d whence %d -> %d", off, whence, pos), err, want...)
}

// stat writes down what lstat says of rel: type, mode, owner, and for
// non-directories size and link count.
func (r *rec) stat(rel string, want ...unix.Errno) {
	r.t.Helper()
	var st unix.Stat_t
	err := unix.Lstat(r.p(rel), &st)
	r.check("lstat "+rel+" "+describeStat(&st, err), err, want...)
}

func (r *rec) fstat(fd int) {
	r.t.Helper()
	var st unix.Stat_t
	err := unix.Fstat(fd, &st)
	r.check("fstat "+describeStat(&st, err), err)
}

func describeStat(st *unix.Stat_t, err error) string {
	if err != nil {
		return ""
	}
	s := fmt.Sprintf("%s mode=%#o uid=%d gid=%d", typeName(st.Mode), st.Mode&0o7777, st.Uid, st.Gid)
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		s += fmt.Sprintf(" size=%d nlink=%d", st.Size, st.Nlink)
	}
	if t := st.Mode & unix.S_IFMT; t == unix.S_IFCHR || t == unix.S_IFBLK {
		s += fmt.Sprintf(" rdev=%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	return s
}

func typeName(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "dir"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "chardev"
	case unix.S_IFBLK:
		return "blockdev"
	}
	return fmt.Sprintf("type%#o", mode&unix.S_IFMT)
}

// content reads rel whole and writes down its digest.
func (r *rec) content(rel string, want ...unix.Errno) {
	r.t.Helper()
	b, err := os.ReadFile(r.p(rel))
	r.check("content "+rel+" "+summary(b), err, want...)
}

// list writes down the names in directory rel.
func (r *rec) list(rel string, want ...unix.Errno) {
	r.t.Helper()
	entries, err := os.ReadDir(r.p(rel))
	var names []string
	for _, e := range entries {
		names = append(names, strconv.Quote(e.Name()))
	}
	r.check("list "+rel+" ["+strings.Join(names, " ")+"]", err, want...)
}

func (r *rec) readlink(rel string, want ...unix.Errno) {
	r.t.Helper()
	target, err := os.Readlink(r.p(rel))
	r.check("readlink "+rel+" "+summary([]byte(target)), err, want...)
}

// xattrs writes down every xattr of rel (not following a symlink).
func (r *rec) xattrs(rel string) {
	r.t.Helper()
	names, err := llistxattr(r.p(rel))
	if !r.check(fmt.Sprintf("llistxattr %s %q", rel, names), err) {
		return
	}
	for _, n := range names {
		v, err := lgetxattr(r.p(rel), n)
		r.check(fmt.Sprintf("lgetxattr %s %s = %s", rel, n, summary(v)), err)
	}
}

// times writes down atime and mtime of rel: "now" for a time set during
// the case, the exact value otherwise.
func (r *rec) times(rel string) {
	r.t.Helper()
	var st unix.Stat_t
	err := unix.Lstat(r.p(rel), &st)
	r.check(fmt.Sprintf("times %s atime=%s mtime=%s", rel, r.when(st.Atim), r.when(st.Mtim)), err)
}

func (r *rec) when(ts unix.Timespec) string {
	t := time.Unix(ts.Sec, ts.Nsec)
	if !t.Before(r.start.Add(-time.Second)) && t.Before(time.Now().Add(time.Second)) {
		return "now"
	}
	return fmt.Sprintf("%d.%09d", ts.Sec, ts.Nsec)
}

// allocated returns the bytes rel allocates, or -1.
// copyUpSlack is the allocation a file copied up from the base may have
// beyond ext4's: overlayfs copies a file up in 1 MiB pieces from each of
// its data extents, so the zeros after one, up to 1 MiB, become data.
func (r *rec) copyUpSlack() int64 {
	for _, m := range mountTable() {
		if m.mountpoint == filepath.Clean(r.root) && m.fstype == "overlay" {
			return 1 << 20
		}
	}
	return 0
}

func (r *rec) allocated(rel string) int64 {
	var st unix.Stat_t
	if err := unix.Lstat(r.p(rel), &st); err != nil {
		return -1
	}
	return st.Blocks * 512
}

// summary shows short printable data as it is and anything else by size
// and digest.
func summary(b []byte) string {
	if len(b) <= 48 && utf8.Valid(b) {
		return strconv.Quote(string(b))
	}
	zeros := true
	for _, c := range b {
		if c != 0 {
			zeros = false
			break
		}
	}
	if zeros {
		return fmt.Sprintf("%d zero bytes", len(b))
	}
	return fmt.Sprintf("%d bytes sha256:%x", len(b), sha256.Sum256(b))
}

func flagNames(flags int) string {
	var names []string
	switch flags & unix.O_ACCMODE {
	case unix.O_RDONLY:
		names = append(names, "O_RDONLY")
	case unix.O_WRONLY:
		names = append(names, "O_WRONLY")
	case unix.O_RDWR:
		names = append(names, "O_RDWR")
	}
	for _, f := range []struct {
		bit  int
		name string
	}{
		{unix.O_TMPFILE, "O_TMPFILE"}, // before O_DIRECTORY, which it includes
		{unix.O_CREAT, "O_CREAT"}, {unix.O_EXCL, "O_EXCL"}, {unix.O_TRUNC, "O_TRUNC"},
		{unix.O_APPEND, "O_APPEND"}, {unix.O_DIRECTORY, "O_DIRECTORY"}, {unix.O_NOFOLLOW, "O_NOFOLLOW"},
		{unix.O_PATH, "O_PATH"}, {unix.O_SYNC, "O_SYNC"},
	} {
		if flags&f.bit == f.bit {
			names = append(names, f.name)
			flags &^= f.bit
		}
	}
	return strings.Join(names, "|")
}

func llistxattr(path string) ([]string, error) {
	size, err := unix.Llistxattr(path, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size+1024)
	n, err := unix.Llistxattr(path, buf)
	if err != nil {
		return nil, err
	}
	var names []string
	for _, b := range strings.Split(string(buf[:n]), "\x00") {
		if b != "" {
			names = append(names, b)
		}
	}
	slices.Sort(names)
	return names, nil
}

func lgetxattr(path, name string) ([]byte, error) {
	size, err := unix.Lgetxattr(path, name, nil)
	if err != nil {
		return nil, err
	}
	buf := make([]byte, size+1024)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// caseEnv is what the cases of one test share: a store holding the base
// tree, and a work directory.
type caseEnv struct {
	store *testStore
	work  string
	base  string // tree hash of the base tree
}

// runCases runs each case on ext4 and on a CoW mount, and compares: the
// transcripts; then the trees, directly on the mount before the commit;
// the mount after the commit; and the export of the commit.
func runCases(t *testing.T, cases []opCase) {
	requireRoot(t)
	s := newStore(t)
	work := testDir(t)
	src := filepath.Join(work, "src")
	buildBase(t, src)
	env := &caseEnv{store: s, work: work, base: s.importTree(t, src)}
	// An untouched mount shows the base as ext4 holds it. When the mount
	// itself fails, every case would fail the same way: stop here.
	mounted := false
	t.Run("mount shows the base", func(t *testing.T) {
		mp := filepath.Join(work, "base-mnt")
		s.mountRW(t, env.base, mp)
		mounted = true
		assertSameTree(t, src, mp, "an untouched rw mount of the base", time.Now())
	})
	if !mounted {
		t.Fatal("a rw mount of the base fails (above); not running the cases")
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) { env.run(t, i, c) })
	}
}

func (e *caseEnv) run(t *testing.T, i int, c opCase) {
	dir := filepath.Join(e.work, fmt.Sprintf("case%02d", i))
	must(t, os.Mkdir(dir, 0o755))
	ext, mnt, exp := filepath.Join(dir, "ext4"), filepath.Join(dir, "mnt"), filepath.Join(dir, "export")
	buildBase(t, ext)
	e.store.mountRW(t, e.base, mnt)

	start := time.Now()
	re := &rec{t: t, side: sideExt4, root: ext, start: start}
	c.run(re)
	rc := &rec{t: t, side: sideCoW, root: mnt, start: start}
	c.run(rc)
	compareTranscripts(t, re.lines, rc.lines)

	assertSameTree(t, ext, mnt, "the CoW mount before commit", start)
	tree := e.store.commit(t, mnt)
	assertSameTree(t, ext, mnt, "the CoW mount after commit", start)
	e.store.export(t, tree, exp)
	assertSameTree(t, ext, exp, "the export of the commit", start)
}

// compareTranscripts fails t, showing both transcripts, unless they agree.
func compareTranscripts(t *testing.T, ext4, cow []string) {
	t.Helper()
	if slices.Equal(ext4, cow) {
		return
	}
	var b strings.Builder
	for i := range max(len(ext4), len(cow)) {
		var a, c string
		if i < len(ext4) {
			a = ext4[i]
		}
		if i < len(cow) {
			c = cow[i]
		}
		if a == c {
			fmt.Fprintf(&b, "\t  %s\n", a)
			continue
		}
		fmt.Fprintf(&b, "\t- ext4: %s\n\t+ cow:  %s\n", a, c)
	}
	t.Errorf("the CoW mount answered differently from ext4:\n%s", b.String())
}

// treeOptions compare a tree with the ext4 reference. The slack allows a
// stored file to allocate whole chunks (up to 256 KiB) where data meets a
// hole, as the store's own export tests do; the sparse files here are big
// enough that a filled hole still shows.
var treeOptions = fstree.Options{CompareRootMeta: true, CheckSparse: true, SparseSlack: 2 << 20}

// assertSameTree fails t with every difference between the ext4 reference
// at ref and the tree at got. An mtime that both sides set during the case
// (at or after since) is not a difference: the two sides ran at different
// moments. An mtime that only one side changed is.
func assertSameTree(t *testing.T, ref, got, what string, since time.Time) {
	t.Helper()
	assertSameTreeOpts(t, ref, got, what, since, treeOptions)
}

func assertSameTreeOpts(t *testing.T, ref, got, what string, since time.Time, opts fstree.Options) {
	t.Helper()
	diffs, err := fstree.Compare(ref, got, opts)
	if err != nil {
		t.Fatalf("compare %s with ext4: %v", what, err)
	}
	var b strings.Builder
	n := 0
	for _, d := range diffs {
		if d.Property == fstree.PropMtime && bothRecent(ref, got, d.Path, since) {
			continue
		}
		n++
		b.WriteString("\n\t" + d.String())
	}
	if n > 0 {
		t.Errorf("%s differs from ext4 in %d properties:%s", what, n, b.String())
	}
}

func bothRecent(a, b, rel string, since time.Time) bool {
	limit := since.Add(-time.Second)
	for _, root := range []string{a, b} {
		var st unix.Stat_t
		if err := unix.Lstat(filepath.Join(root, rel), &st); err != nil {
			return false
		}
		if time.Unix(st.Mtim.Sec, st.Mtim.Nsec).Before(limit) {
			return false
		}
	}
	return true
}
