package fstree_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/fstree"
)

// TestFixtureIsDeterministic builds the fixture twice: the builds must
// agree in every property, or a store test could not tell a lossy round
// trip from a fixture that changes under it.
func TestFixtureIsDeterministic(t *testing.T) {
	fstree.RequireRoot(t)
	tmp := fstree.DiskTempDir(t)
	a, b := filepath.Join(tmp, "a"), filepath.Join(tmp, "b")
	fstree.MustBuildFixture(t, a)
	fstree.MustBuildFixture(t, b)
	fstree.AssertSame(t, a, b, fstree.Options{CompareRootMeta: true, CheckSparse: true})
}

func TestBuildFixtureRefusesNonEmptyDir(t *testing.T) {
	fstree.RequireRoot(t)
	dir := fstree.DiskTempDir(t)
	if err := os.WriteFile(filepath.Join(dir, "x"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := fstree.BuildFixture(dir); err == nil {
		t.Fatal("BuildFixture into a non-empty directory succeeded")
	}
}

// TestFixtureHoldsWhatItPromises checks the fixture against the list of
// properties the store must keep, through plain stat and xattr calls, so a
// builder that silently skipped something is caught here.
func TestFixtureHoldsWhatItPromises(t *testing.T) {
	fstree.RequireRoot(t)
	root := filepath.Join(fstree.DiskTempDir(t), "fixture")
	fstree.MustBuildFixture(t, root)
	p := func(rel string) string { return filepath.Join(root, rel) }

	sizes := map[string]int64{
		"files/empty":            0,
		"files/one":              1,
		"files/hundred":          100,
		"files/16KiB-1":          16<<10 - 1,
		"files/16KiB":            16 << 10,
		"files/300KiB":           300 << 10,
		fstree.FixtureRandom5M:   5 << 20,
		fstree.FixtureInserted5M: 5<<20 + 1,
		fstree.FixtureSparse:     fstree.FixtureSparseSize,
	}
	for rel, want := range sizes {
		if st := lstat(t, p(rel)); st.Size != want {
			t.Errorf("%s: size %d, want %d", rel, st.Size, want)
		}
	}
	random, err := os.ReadFile(p(fstree.FixtureRandom5M))
	if err != nil {
		t.Fatal(err)
	}
	inserted, err := os.ReadFile(p(fstree.FixtureInserted5M))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(inserted[1:], random) {
		t.Errorf("%s is not %s with one byte inserted at the start", fstree.FixtureInserted5M, fstree.FixtureRandom5M)
	}
	if alloc := lstat(t, p(fstree.FixtureSparse)).Blocks * 512; alloc < fstree.FixtureSparseData || alloc > fstree.FixtureSparseData+1<<20 {
		t.Errorf("%s allocates %d bytes, want about %d", fstree.FixtureSparse, alloc, fstree.FixtureSparseData)
	}

	types := map[string]uint32{
		"links/relative":      unix.S_IFLNK,
		"special/fifo":        unix.S_IFIFO,
		"special/socket":      unix.S_IFSOCK,
		"special/char-1-3":    unix.S_IFCHR,
		"special/block-7-200": unix.S_IFBLK,
		"empty-dir":           unix.S_IFDIR,
	}
	for rel, want := range types {
		if st := lstat(t, p(rel)); st.Mode&unix.S_IFMT != want {
			t.Errorf("%s: type %#o, want %#o", rel, st.Mode&unix.S_IFMT, want)
		}
	}
	if st := lstat(t, p("special/char-1-3")); unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("special/char-1-3: rdev %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	if st := lstat(t, p("special/block-7-200")); unix.Major(st.Rdev) != 7 || unix.Minor(st.Rdev) != 200 {
		t.Errorf("special/block-7-200: rdev %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}
	for target, rel := range map[string]string{
		"../files/one":      "links/relative",
		"/etc/os-release":   "links/absolute",
		"../does/not/exist": "links/dangling",
	} {
		if got, err := os.Readlink(p(rel)); err != nil || got != target {
			t.Errorf("%s: target %q (%v), want %q", rel, got, err, target)
		}
	}
	if _, err := os.Stat(p("links/dangling")); !os.IsNotExist(err) {
		t.Errorf("links/dangling is not dangling: %v", err)
	}

	modes := map[string]uint32{
		"modes/setuid":     0o4755,
		"modes/setgid":     0o2755,
		"modes/sticky":     0o1644,
		"modes/all-bits":   0o7777,
		"modes/sticky-dir": 0o1777,
		"modes/setgid-dir": 0o2775,
		"readonly-dir":     0o500,
	}
	for rel, want := range modes {
		if st := lstat(t, p(rel)); st.Mode&0o7777 != want {
			t.Errorf("%s: mode %#o, want %#o", rel, st.Mode&0o7777, want)
		}
	}
	owners := map[string][2]uint32{
		"owners/u1234-g5678":            {1234, 5678},
		"owners/u65534-g0":              {65534, 0},
		"owners/symlink-2222-3333":      {2222, 3333},
		"modes/setgid-dir/inherits-gid": {0, 5678},
	}
	for rel, want := range owners {
		if st := lstat(t, p(rel)); st.Uid != want[0] || st.Gid != want[1] {
			t.Errorf("%s: owner %d:%d, want %d:%d", rel, st.Uid, st.Gid, want[0], want[1])
		}
	}
	mtimes := map[string]unix.Timespec{
		"times/year-1960":    {Sec: -315619200, Nsec: 123456789},
		"times/year-2100":    {Sec: 4102444800, Nsec: 1},
		"times/symlink-2100": {Sec: 4102444801, Nsec: 999999999},
		"times/dir-1965":     {Sec: -157766400, Nsec: 555555555},
		".":                  {Sec: 1700000000, Nsec: 987654321},
	}
	for rel, want := range mtimes {
		if st := lstat(t, p(rel)); st.Mtim != want {
			t.Errorf("%s: mtime %v, want %v", rel, st.Mtim, want)
		}
	}

	links := map[string]uint64{
		"hardlinks/a/trio-1":                       3,
		"hardlinks/twin-x-1":                       2,
		"hardlinks/twin-y-1":                       2,
		"hardlinks/twin-single":                    1,
		fstree.FixtureDeep + "/hardlink-to-bottom": 2,
	}
	for rel, want := range links {
		if st := lstat(t, p(rel)); st.Nlink != want {
			t.Errorf("%s: %d links, want %d", rel, st.Nlink, want)
		}
	}
	if lstat(t, p("hardlinks/a/trio-1")).Ino != lstat(t, p("hardlinks/b/trio-3")).Ino {
		t.Error("hardlinks/a/trio-1 and hardlinks/b/trio-3 are not one inode")
	}
	if lstat(t, p("hardlinks/twin-x-1")).Ino == lstat(t, p("hardlinks/twin-y-1")).Ino {
		t.Error("the two twin groups share an inode")
	}

	xattrs := map[string][]string{
		"xattrs/file": {"user.plain", "user.empty", "trusted.t", "security.selinux",
			"security.capability", "system.posix_acl_access"},
		"xattrs/dir":              {"user.dir", "trusted.dir", "system.posix_acl_access", "system.posix_acl_default"},
		"xattrs/symlink":          {"trusted.link", "security.selinux"},
		"xattrs/dir/inherits-acl": {"system.posix_acl_access"},
	}
	for rel, names := range xattrs {
		for _, name := range names {
			if _, err := unix.Lgetxattr(p(rel), name, nil); err != nil {
				t.Errorf("%s: xattr %s: %v", rel, name, err)
			}
		}
	}

	for _, name := range []string{"with space", "new\nline", "\xff\xfe not utf-8 \x80", strings.Repeat("n", 255)} {
		if _, err := os.Lstat(p("names/" + name)); err != nil {
			t.Errorf("name %q: %v", name, err)
		}
	}
	if n := len(fstree.FixtureDeepFile()) + len(root); n <= unix.PathMax {
		t.Errorf("deepest path has %d bytes, want more than PATH_MAX", n)
	}
	if entries, err := os.ReadDir(p("empty-dir")); err != nil || len(entries) != 0 {
		t.Errorf("empty-dir: %d entries, %v", len(entries), err)
	}
	if entries, err := os.ReadDir(p("readonly-dir")); err != nil || len(entries) != 2 {
		t.Errorf("readonly-dir: %d entries, %v", len(entries), err)
	}
}

// TestFixtureBlobsMatchTheTools checks the capability and ACL blobs the
// fixture writes against what setcap and setfacl write for the same
// settings, so the fixture stores real-world values.
func TestFixtureBlobsMatchTheTools(t *testing.T) {
	fstree.RequireRoot(t)
	for _, tool := range []string{"setcap", "setfacl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (Debian packages libcap2-bin, acl): %v", tool, err)
		}
	}
	dir := fstree.DiskTempDir(t)
	root := filepath.Join(dir, "fixture")
	fstree.MustBuildFixture(t, root)
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o640); err != nil {
		t.Fatal(err)
	}
	run(t, "setcap", "cap_net_raw+ep", probe)
	run(t, "setfacl", "--set", "u::rw-,u:1234:r--,g::r--,g:5678:r--,m::r--,o::---", probe)
	for _, name := range []string{"security.capability", "system.posix_acl_access"} {
		want := xattr(t, probe, name)
		if got := xattr(t, filepath.Join(root, "xattrs/file"), name); !bytes.Equal(got, want) {
			t.Errorf("%s: fixture has %x, the tool writes %x", name, got, want)
		}
	}
}

func lstat(t *testing.T, path string) unix.Stat_t {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("lstat: %v", err)
	}
	return st
}

func xattr(t *testing.T, path, name string) []byte {
	t.Helper()
	buf := make([]byte, 64<<10)
	n, err := unix.Lgetxattr(path, name, buf)
	if err != nil {
		t.Fatalf("%s: xattr %s: %v", path, name, err)
	}
	return buf[:n]
}

func run(t *testing.T, name string, args ...string) {
	t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}
