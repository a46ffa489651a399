package fstree_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/fstree"
)

type wantDiff struct {
	path string
	prop fstree.Property
}

// TestCompareReportsEachChange is what keeps Compare honest: each case
// builds a second fixture, checks that it compares equal, changes one
// property of one path, and expects Compare to report exactly that path and
// property, nothing more and nothing less.
func TestCompareReportsEachChange(t *testing.T) {
	fstree.RequireRoot(t)
	tmp := fstree.DiskTempDir(t)
	a := filepath.Join(tmp, "a")
	fstree.MustBuildFixture(t, a)
	deepFile := fstree.FixtureDeepFile()
	notUTF8 := "names/\xff\xfe not utf-8 \x80"
	sparse := fstree.Options{CheckSparse: true}

	cases := []struct {
		name string
		opts fstree.Options
		// keep lists paths whose mtime the change must leave alone: the
		// mutation's own side effects (a rename touches its directory) are
		// undone so that only the intended property differs.
		keep   []string
		mutate func(t *testing.T, b string)
		want   []wantDiff
	}{
		{
			name:   "chmod",
			mutate: func(t *testing.T, b string) { chmod(t, b, "files/one", 0o600) },
			want:   []wantDiff{{"files/one", fstree.PropMode}},
		},
		{
			name:   "setuid cleared",
			mutate: func(t *testing.T, b string) { chmod(t, b, "modes/setuid", 0o755) },
			want:   []wantDiff{{"modes/setuid", fstree.PropMode}},
		},
		{
			name:   "sticky bit of a directory cleared",
			mutate: func(t *testing.T, b string) { chmod(t, b, "modes/sticky-dir", 0o777) },
			want:   []wantDiff{{"modes/sticky-dir", fstree.PropMode}},
		},
		{
			name:   "non-UTF-8 name chmod",
			mutate: func(t *testing.T, b string) { chmod(t, b, notUTF8, 0o600) },
			want:   []wantDiff{{notUTF8, fstree.PropMode}},
		},
		{
			name:   "owner",
			mutate: func(t *testing.T, b string) { chown(t, b, "owners/u1234-g5678", 1235, 5678) },
			want:   []wantDiff{{"owners/u1234-g5678", fstree.PropUID}},
		},
		{
			name:   "group",
			mutate: func(t *testing.T, b string) { chown(t, b, "owners/u65534-g0", 65534, 1) },
			want:   []wantDiff{{"owners/u65534-g0", fstree.PropGID}},
		},
		{
			name:   "group of a symlink",
			mutate: func(t *testing.T, b string) { chown(t, b, "owners/symlink-2222-3333", 2222, 3334) },
			want:   []wantDiff{{"owners/symlink-2222-3333", fstree.PropGID}},
		},
		{
			name:   "owner of a block device",
			mutate: func(t *testing.T, b string) { chown(t, b, "special/block-7-200", 6, 0) },
			want:   []wantDiff{{"special/block-7-200", fstree.PropUID}},
		},
		{
			name:   "mtime one nanosecond later",
			mutate: func(t *testing.T, b string) { shiftMtime(t, b, "files/hundred", 1) },
			want:   []wantDiff{{"files/hundred", fstree.PropMtime}},
		},
		{
			name:   "mtime of a symlink",
			mutate: func(t *testing.T, b string) { shiftMtime(t, b, "links/relative", -1_000_000_000) },
			want:   []wantDiff{{"links/relative", fstree.PropMtime}},
		},
		{
			name:   "mtime of a directory before 1970",
			mutate: func(t *testing.T, b string) { shiftMtime(t, b, "times/dir-1965", 1) },
			want:   []wantDiff{{"times/dir-1965", fstree.PropMtime}},
		},
		{
			name:   "xattr value",
			mutate: func(t *testing.T, b string) { setxattr(t, b, "xattrs/file", "user.plain", []byte("hellp")) },
			want:   []wantDiff{{"xattrs/file", fstree.PropXattr}},
		},
		{
			name:   "empty xattr gets a value",
			mutate: func(t *testing.T, b string) { setxattr(t, b, "xattrs/file", "user.empty", []byte("x")) },
			want:   []wantDiff{{"xattrs/file", fstree.PropXattr}},
		},
		{
			name:   "trusted xattr removed from a symlink",
			mutate: func(t *testing.T, b string) { removexattr(t, b, "xattrs/symlink", "trusted.link") },
			want:   []wantDiff{{"xattrs/symlink", fstree.PropXattr}},
		},
		{
			name: "selinux label of a symlink",
			mutate: func(t *testing.T, b string) {
				setxattr(t, b, "xattrs/symlink", "security.selinux", []byte("system_u:object_r:etc_t:s0\x00"))
			},
			want: []wantDiff{{"xattrs/symlink", fstree.PropXattr}},
		},
		{
			name:   "xattr added to a directory",
			mutate: func(t *testing.T, b string) { setxattr(t, b, "xattrs/dir", "trusted.new", []byte("n")) },
			want:   []wantDiff{{"xattrs/dir", fstree.PropXattr}},
		},
		{
			name:   "xattr added to a socket",
			mutate: func(t *testing.T, b string) { setxattr(t, b, "special/socket", "trusted.new", nil) },
			want:   []wantDiff{{"special/socket", fstree.PropXattr}},
		},
		{
			name: "capability",
			mutate: func(t *testing.T, b string) {
				setxattr(t, b, "xattrs/file", "security.capability", getxattr(t, b, "xattrs/cap-bind", "security.capability"))
			},
			want: []wantDiff{{"xattrs/file", fstree.PropXattr}},
		},
		{
			// The mask stays r--, so the mode does not change with it.
			name: "ACL entry",
			mutate: func(t *testing.T, b string) {
				setxattr(t, b, "xattrs/file", "system.posix_acl_access", fstree.EncodeACL(
					fstree.ACLEntry{Tag: fstree.ACLUserObj, Perm: 6},
					fstree.ACLEntry{Tag: fstree.ACLUser, Perm: 0, ID: 1234},
					fstree.ACLEntry{Tag: fstree.ACLGroupObj, Perm: 4},
					fstree.ACLEntry{Tag: fstree.ACLGroup, Perm: 4, ID: 5678},
					fstree.ACLEntry{Tag: fstree.ACLMask, Perm: 4},
					fstree.ACLEntry{Tag: fstree.ACLOther, Perm: 0},
				))
			},
			want: []wantDiff{{"xattrs/file", fstree.PropXattr}},
		},
		{
			name:   "default ACL removed",
			mutate: func(t *testing.T, b string) { removexattr(t, b, "xattrs/dir", "system.posix_acl_default") },
			want:   []wantDiff{{"xattrs/dir", fstree.PropXattr}},
		},
		{
			name:   "truncate",
			keep:   []string{"files/300KiB"},
			mutate: func(t *testing.T, b string) { truncate(t, b, "files/300KiB", 300<<10-1) },
			want:   []wantDiff{{"files/300KiB", fstree.PropSize}},
		},
		{
			name:   "one byte changed in a large file",
			keep:   []string{fstree.FixtureRandom5M},
			mutate: func(t *testing.T, b string) { flipByte(t, b, fstree.FixtureRandom5M, 3<<20) },
			want:   []wantDiff{{fstree.FixtureRandom5M, fstree.PropContent}},
		},
		{
			name:   "data written into a hole",
			keep:   []string{fstree.FixtureSparse},
			mutate: func(t *testing.T, b string) { writeAt(t, b, fstree.FixtureSparse, 500<<20, []byte{1}) },
			want:   []wantDiff{{fstree.FixtureSparse, fstree.PropContent}},
		},
		{
			name:   "hole punched into data",
			keep:   []string{fstree.FixtureSparse},
			mutate: func(t *testing.T, b string) { punchHole(t, b, fstree.FixtureSparse, 0, 64<<10) },
			want:   []wantDiff{{fstree.FixtureSparse, fstree.PropContent}},
		},
		{
			name:   "hole filled with zeros",
			opts:   sparse,
			keep:   []string{fstree.FixtureSparse},
			mutate: func(t *testing.T, b string) { writeAt(t, b, fstree.FixtureSparse, 100<<20, make([]byte, 8<<20)) },
			want:   []wantDiff{{fstree.FixtureSparse, fstree.PropAllocation}},
		},
		{
			name:   "hole filled with zeros, sparse check off",
			keep:   []string{fstree.FixtureSparse},
			mutate: func(t *testing.T, b string) { writeAt(t, b, fstree.FixtureSparse, 100<<20, make([]byte, 8<<20)) },
		},
		{
			// A copy may be sparser than the original: not a difference.
			name:   "written zeros made a hole",
			opts:   sparse,
			keep:   []string{"files/zeros-300KiB"},
			mutate: func(t *testing.T, b string) { punchHole(t, b, "files/zeros-300KiB", 0, 300<<10) },
		},
		{
			name:   "hard link of three broken",
			keep:   []string{"hardlinks/b"},
			mutate: func(t *testing.T, b string) { replaceWithCopy(t, b, "hardlinks/b/trio-3") },
			want: []wantDiff{
				{"hardlinks/a/trio-1", fstree.PropHardLinks},
				{"hardlinks/b/trio-2", fstree.PropHardLinks},
				{"hardlinks/b/trio-3", fstree.PropHardLinks},
			},
		},
		{
			// The twin groups are identical but for their links: only
			// the link structure can tell the change.
			name: "two identical link groups joined",
			keep: []string{"hardlinks"},
			mutate: func(t *testing.T, b string) {
				replaceWithLink(t, b, "hardlinks/twin-y-1", "hardlinks/twin-x-1")
			},
			want: []wantDiff{
				{"hardlinks/twin-x-1", fstree.PropHardLinks},
				{"hardlinks/twin-x-2", fstree.PropHardLinks},
				{"hardlinks/twin-y-1", fstree.PropHardLinks},
				{"hardlinks/twin-y-2", fstree.PropHardLinks},
			},
		},
		{
			name:   "hard link below PATH_MAX broken",
			keep:   []string{fstree.FixtureDeep},
			mutate: func(t *testing.T, b string) { replaceWithCopy(t, b, fstree.FixtureDeep+"/hardlink-to-bottom") },
			want: []wantDiff{
				{fstree.FixtureDeep + "/hardlink-to-bottom", fstree.PropHardLinks},
				{deepFile, fstree.PropHardLinks},
			},
		},
		{
			name:   "symlink target",
			keep:   []string{"links", "links/relative"},
			mutate: func(t *testing.T, b string) { replaceSymlink(t, b, "links/relative", "../files/hundred") },
			want:   []wantDiff{{"links/relative", fstree.PropTarget}},
		},
		{
			name:   "rename",
			keep:   []string{"names"},
			mutate: func(t *testing.T, b string) { rename(t, b, "names/with space", "names/with  space") },
			want: []wantDiff{
				{"names/with  space", fstree.PropExtra},
				{"names/with space", fstree.PropMissing},
			},
		},
		{
			name: "device number",
			keep: []string{"special", "special/char-1-3"},
			mutate: func(t *testing.T, b string) {
				remove(t, b, "special/char-1-3")
				mknod(t, b, "special/char-1-3", unix.S_IFCHR|0o666, 1, 5)
			},
			want: []wantDiff{{"special/char-1-3", fstree.PropRdev}},
		},
		{
			name: "fifo became a file",
			keep: []string{"special", "special/fifo"},
			mutate: func(t *testing.T, b string) {
				remove(t, b, "special/fifo")
				writeFile(t, b, "special/fifo", nil, 0o644)
			},
			want: []wantDiff{{"special/fifo", fstree.PropType}},
		},
		{
			name:   "content below PATH_MAX",
			keep:   []string{deepFile},
			mutate: func(t *testing.T, b string) { flipByte(t, b, deepFile, 1000) },
			// Both names of the inode see it.
			want: []wantDiff{{deepFile, fstree.PropContent}, {fstree.FixtureDeep + "/hardlink-to-bottom", fstree.PropContent}},
		},
		{
			name:   "xattr below PATH_MAX",
			mutate: func(t *testing.T, b string) { setxattr(t, b, deepFile, "user.deep", []byte("changed")) },
			want:   []wantDiff{{deepFile, fstree.PropXattr}, {fstree.FixtureDeep + "/hardlink-to-bottom", fstree.PropXattr}},
		},
		{
			name:   "file removed from a 0500 directory",
			keep:   []string{"readonly-dir"},
			mutate: func(t *testing.T, b string) { remove(t, b, "readonly-dir/b") },
			want:   []wantDiff{{"readonly-dir/b", fstree.PropMissing}},
		},
		{
			name:   "file added to an empty directory",
			keep:   []string{"empty-dir"},
			mutate: func(t *testing.T, b string) { writeFile(t, b, "empty-dir/new", []byte("new"), 0o644) },
			want:   []wantDiff{{"empty-dir/new", fstree.PropExtra}},
		},
		{
			name:   "root mtime, root metadata not compared",
			mutate: func(t *testing.T, b string) { shiftMtime(t, b, ".", 1) },
		},
		{
			name:   "root mtime",
			opts:   fstree.Options{CompareRootMeta: true},
			mutate: func(t *testing.T, b string) { shiftMtime(t, b, ".", 1) },
			want:   []wantDiff{{".", fstree.PropMtime}},
		},
		{
			name:   "root mode",
			opts:   fstree.Options{CompareRootMeta: true},
			mutate: func(t *testing.T, b string) { chmod(t, b, ".", 0o700) },
			want:   []wantDiff{{".", fstree.PropMode}},
		},
		{
			name:   "root xattr",
			opts:   fstree.Options{CompareRootMeta: true},
			mutate: func(t *testing.T, b string) { setxattr(t, b, ".", "user.root", []byte("r")) },
			want:   []wantDiff{{".", fstree.PropXattr}},
		},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			b := filepath.Join(tmp, fmt.Sprintf("b%02d", i))
			fstree.MustBuildFixture(t, b)
			t.Cleanup(func() { os.RemoveAll(b) })
			if diffs, err := fstree.Compare(a, b, fstree.Options{CompareRootMeta: true, CheckSparse: true}); err != nil || len(diffs) > 0 {
				t.Fatalf("fixtures differ before the change: %v %v", diffs, err)
			}
			restore := saveMtimes(t, b, tc.keep)
			tc.mutate(t, b)
			restore()
			diffs, err := fstree.Compare(a, b, tc.opts)
			if err != nil {
				t.Fatalf("Compare: %v", err)
			}
			var got, want []string
			for _, d := range diffs {
				got = append(got, fstree.Difference{Path: d.Path, Property: d.Property}.String())
			}
			for _, w := range tc.want {
				want = append(want, fstree.Difference{Path: w.path, Property: w.prop}.String())
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("differences:\n\t%s\nwant:\n\t%s\nreported:%s",
					strings.Join(got, "\n\t"), strings.Join(want, "\n\t"), describe(diffs))
			}
		})
	}
}

// TestCompareAgainstCp compares the fixture with a copy made by
// `cp -a --preserve=all`, an independent implementation: Compare must find
// it equal except for what cp cannot copy, the paths beyond PATH_MAX
// (cp fails on them with ENAMETOOLONG and reports it).
func TestCompareAgainstCp(t *testing.T) {
	fstree.RequireRoot(t)
	tmp := fstree.DiskTempDir(t)
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	fstree.MustBuildFixture(t, a)
	out, cpErr := exec.Command("cp", "-a", "--preserve=all", a, b).CombinedOutput()
	diffs, err := fstree.Compare(a, b, fstree.Options{CompareRootMeta: true, CheckSparse: true})
	if err != nil {
		t.Fatal(err)
	}
	var lost []fstree.Difference
	for _, d := range diffs {
		if !strings.HasPrefix(d.Path, fstree.FixtureDeep+"/") {
			t.Errorf("cp lost %s", d)
			continue
		}
		lost = append(lost, d)
	}
	// cp's loss under FixtureDeep is a missing subtree; whatever cp's
	// version, its directory is then touched, or nothing is lost at all.
	for _, d := range lost {
		if d.Property != fstree.PropMissing && d.Property != fstree.PropMtime && d.Property != fstree.PropHardLinks {
			t.Errorf("unexpected difference below %s: %s", fstree.FixtureDeep, d)
		}
	}
	if (len(lost) > 0) != (cpErr != nil) {
		t.Errorf("cp exit %v but Compare found %d differences below %s; cp said:\n%s", cpErr, len(lost), fstree.FixtureDeep, out)
	}
	t.Logf("cp: %v; Compare: %d differences below %s", cpErr, len(lost), fstree.FixtureDeep)
}

func TestCompareMissingRoot(t *testing.T) {
	dir := t.TempDir()
	if _, err := fstree.Compare(dir, filepath.Join(dir, "nope"), fstree.Options{}); err == nil {
		t.Fatal("Compare with a missing root succeeded")
	}
}

func TestDifferenceString(t *testing.T) {
	for _, tc := range []struct {
		d    fstree.Difference
		want string
	}{
		{fstree.Difference{Path: "a/b c", Property: fstree.PropMode, Detail: "a: 0644, b: 0600"}, "a/b c: mode: a: 0644, b: 0600"},
		{fstree.Difference{Path: "new\nline", Property: fstree.PropMissing, Detail: "x"}, `"new\nline": missing: x`},
		{fstree.Difference{Path: "\xff", Property: fstree.PropUID, Detail: "x"}, `"\xff": uid: x`},
		{fstree.Difference{Path: `q"`, Property: fstree.PropUID, Detail: "x"}, `"q\"": uid: x`},
		{fstree.Difference{Path: "ünï", Property: fstree.PropUID, Detail: "x"}, "ünï: uid: x"},
	} {
		if got := tc.d.String(); got != tc.want {
			t.Errorf("String() = %s, want %s", got, tc.want)
		}
	}
	long := fstree.Difference{Path: strings.Repeat("d/", 1000) + "end", Property: fstree.PropMode}
	if s := long.String(); len(s) > 500 || !strings.Contains(s, "/end: mode") {
		t.Errorf("long path shown as %d bytes: %.100s…", len(s), s)
	}
}

func describe(diffs []fstree.Difference) string {
	var sb strings.Builder
	for _, d := range diffs {
		sb.WriteString("\n\t" + d.String())
	}
	return sb.String()
}

// at opens the parent directory of rel below root one component at a time,
// so rel may be longer than PATH_MAX, and returns its fd and rel's last
// component; "." is the root itself.
func at(t *testing.T, root, rel string) (int, string) {
	t.Helper()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(rel, "/")
	for _, p := range parts[:len(parts)-1] {
		next, err := unix.Openat(fd, p, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		unix.Close(fd)
		if err != nil {
			t.Fatalf("open %q: %v", p, err)
		}
		fd = next
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, parts[len(parts)-1]
}

func proc(fd int, name string) string { return fmt.Sprintf("/proc/self/fd/%d/%s", fd, name) }

func must(t *testing.T, what, rel string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s %q: %v", what, rel, err)
	}
}

func saveMtimes(t *testing.T, root string, rels []string) (restore func()) {
	t.Helper()
	saved := make([]unix.Timespec, len(rels))
	for i, rel := range rels {
		fd, name := at(t, root, rel)
		var st unix.Stat_t
		must(t, "stat", rel, unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW))
		saved[i] = st.Mtim
	}
	return func() {
		for i, rel := range rels {
			fd, name := at(t, root, rel)
			must(t, "utimensat", rel, unix.UtimesNanoAt(fd, name, []unix.Timespec{saved[i], saved[i]}, unix.AT_SYMLINK_NOFOLLOW))
		}
	}
}

func chmod(t *testing.T, root, rel string, mode uint32) {
	fd, name := at(t, root, rel)
	must(t, "chmod", rel, unix.Fchmodat(fd, name, mode, 0))
}

func chown(t *testing.T, root, rel string, uid, gid int) {
	fd, name := at(t, root, rel)
	must(t, "chown", rel, unix.Fchownat(fd, name, uid, gid, unix.AT_SYMLINK_NOFOLLOW))
}

func shiftMtime(t *testing.T, root, rel string, ns int64) {
	fd, name := at(t, root, rel)
	var st unix.Stat_t
	must(t, "stat", rel, unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW))
	m := unix.NsecToTimespec(st.Mtim.Nano() + ns)
	must(t, "utimensat", rel, unix.UtimesNanoAt(fd, name, []unix.Timespec{m, m}, unix.AT_SYMLINK_NOFOLLOW))
}

func setxattr(t *testing.T, root, rel, attr string, value []byte) {
	fd, name := at(t, root, rel)
	must(t, "setxattr "+attr, rel, unix.Lsetxattr(proc(fd, name), attr, value, 0))
}

func getxattr(t *testing.T, root, rel, attr string) []byte {
	fd, name := at(t, root, rel)
	buf := make([]byte, 64<<10)
	n, err := unix.Lgetxattr(proc(fd, name), attr, buf)
	must(t, "getxattr "+attr, rel, err)
	return buf[:n]
}

func removexattr(t *testing.T, root, rel, attr string) {
	fd, name := at(t, root, rel)
	must(t, "removexattr "+attr, rel, unix.Lremovexattr(proc(fd, name), attr))
}

func openAt(t *testing.T, root, rel string) *os.File {
	fd, name := at(t, root, rel)
	f, err := os.OpenFile(proc(fd, name), os.O_RDWR, 0)
	must(t, "open", rel, err)
	t.Cleanup(func() { f.Close() })
	return f
}

func truncate(t *testing.T, root, rel string, size int64) {
	must(t, "truncate", rel, openAt(t, root, rel).Truncate(size))
}

func writeAt(t *testing.T, root, rel string, off int64, data []byte) {
	f := openAt(t, root, rel)
	_, err := f.WriteAt(data, off)
	must(t, "write", rel, err)
	must(t, "close", rel, f.Close())
}

func flipByte(t *testing.T, root, rel string, off int64) {
	f := openAt(t, root, rel)
	b := make([]byte, 1)
	_, err := f.ReadAt(b, off)
	must(t, "read", rel, err)
	b[0] ^= 0xff
	_, err = f.WriteAt(b, off)
	must(t, "write", rel, err)
	must(t, "close", rel, f.Close())
}

func punchHole(t *testing.T, root, rel string, off, n int64) {
	f := openAt(t, root, rel)
	must(t, "punch hole", rel, unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n))
	must(t, "close", rel, f.Close())
}

func remove(t *testing.T, root, rel string) {
	fd, name := at(t, root, rel)
	must(t, "unlink", rel, unix.Unlinkat(fd, name, 0))
}

func rename(t *testing.T, root, from, to string) {
	must(t, "rename", from, os.Rename(filepath.Join(root, from), filepath.Join(root, to)))
}

func writeFile(t *testing.T, root, rel string, data []byte, mode os.FileMode) {
	must(t, "write", rel, os.WriteFile(filepath.Join(root, rel), data, mode))
	chmod(t, root, rel, uint32(mode))
}

func mknod(t *testing.T, root, rel string, mode uint32, major, minor uint32) {
	fd, name := at(t, root, rel)
	must(t, "mknod", rel, unix.Mknodat(fd, name, mode, int(unix.Mkdev(major, minor))))
	must(t, "chmod", rel, unix.Fchmodat(fd, name, mode&0o7777, 0))
}

// replaceWithCopy gives rel an inode of its own with the same content and
// metadata (cp -a keeps mode, owner, mtime and xattrs).
func replaceWithCopy(t *testing.T, root, rel string) {
	tmp := filepath.Join(root, rel+".tmp")
	run(t, "cp", "-a", "--preserve=all", filepath.Join(root, rel), tmp)
	rename(t, root, rel+".tmp", rel)
}

// replaceWithLink makes rel another name of target.
func replaceWithLink(t *testing.T, root, rel, target string) {
	must(t, "link", rel, os.Link(filepath.Join(root, target), filepath.Join(root, rel+".tmp")))
	rename(t, root, rel+".tmp", rel)
}

func replaceSymlink(t *testing.T, root, rel, target string) {
	remove(t, root, rel)
	must(t, "symlink", rel, os.Symlink(target, filepath.Join(root, rel)))
}
