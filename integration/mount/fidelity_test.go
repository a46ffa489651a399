package mount_test

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/fstree"
)

// fuseSuperMagic is statfs's f_type for FUSE filesystems.
const fuseSuperMagic = 0x65735546

// TestFixtureThroughMount mounts the fidelity fixture and reads every
// property back through the mount, as root and as other users.
func TestFixtureThroughMount(t *testing.T) {
	requireFUSE(t)
	dir := testDir(t)
	src := filepath.Join(dir, "src")
	fstree.MustBuildFixture(t, src)
	s := openStore(t, dir)
	tree := importTree(t, s, src)
	cache := fusefs.NewCache(s, 0)
	m := mountTree(t, cache, tree, dir, "mnt", fusefs.Options{AllowOther: true})
	mnt := m.Mountpoint()

	t.Run("compare", func(t *testing.T) {
		fstree.AssertSame(t, src, mnt, fstree.Options{CompareRootMeta: true, CheckSparse: true})
	})

	t.Run("inode numbers", func(t *testing.T) {
		if st := lstat(t, mnt); st.Ino != 1 {
			t.Errorf("root has inode %d, want 1", st.Ino)
		}
		groups := [][]string{
			{"hardlinks/a/trio-1", "hardlinks/b/trio-2", "hardlinks/b/trio-3"},
			{"hardlinks/twin-x-1", "hardlinks/twin-x-2"},
			{"hardlinks/twin-y-1", "hardlinks/twin-y-2"},
			{"hardlinks/twin-single"},
		}
		seen := map[uint64]string{}
		for _, g := range groups {
			first := lstat(t, filepath.Join(mnt, g[0]))
			if int(first.Nlink) != len(g) {
				t.Errorf("%s: st_nlink %d, want %d", g[0], first.Nlink, len(g))
			}
			for _, p := range g[1:] {
				if st := lstat(t, filepath.Join(mnt, p)); st.Ino != first.Ino {
					t.Errorf("%s has inode %d, %s (same inode in the original) has %d", p, st.Ino, g[0], first.Ino)
				}
			}
			if other, dup := seen[first.Ino]; dup {
				t.Errorf("%s and %s are different inodes in the original but share inode %d", g[0], other, first.Ino)
			}
			seen[first.Ino] = g[0]
		}

		// Directories: st_nlink is 2 plus subdirectories, as on ext4;
		// every file's st_nlink and every time stamp as stored.
		walkFixture(t, src, func(rel string, d fs.DirEntry) {
			a, b := lstat(t, filepath.Join(src, rel)), lstat(t, filepath.Join(mnt, rel))
			if a.Nlink != b.Nlink {
				t.Errorf("%s: st_nlink %d, original %d", rel, b.Nlink, a.Nlink)
			}
			if b.Ino == 0 {
				t.Errorf("%s: inode number 0", rel)
			}
			if b.Ctim != b.Mtim || b.Atim != b.Mtim {
				t.Errorf("%s: atime %v, ctime %v, want both the mtime %v", rel, b.Atim, b.Ctim, b.Mtim)
			}
			if b.Blksize != 4096 {
				t.Errorf("%s: st_blksize %d, want 4096", rel, b.Blksize)
			}
			if a.Mode&unix.S_IFMT == unix.S_IFLNK && b.Size != a.Size {
				t.Errorf("%s: symlink st_size %d, original %d", rel, b.Size, a.Size)
			}
		})

		// The sparse file allocates its data, not its size.
		sp := lstat(t, filepath.Join(mnt, fstree.FixtureSparse))
		if alloc := sp.Blocks * 512; alloc < fstree.FixtureSparseData || alloc > fstree.FixtureSparseData+1<<20 {
			t.Errorf("%s: allocates %d bytes, want about %d", fstree.FixtureSparse, alloc, fstree.FixtureSparseData)
		}

		// Inode numbers are a function of the tree: a second mount of it
		// shows the same ones.
		again := mountTree(t, cache, tree, dir, "again", fusefs.Options{})
		walkFixture(t, src, func(rel string, d fs.DirEntry) {
			a, b := lstat(t, filepath.Join(mnt, rel)), lstat(t, filepath.Join(again.Mountpoint(), rel))
			if a.Ino != b.Ino {
				t.Errorf("%s: inode %d in one mount, %d in another of the same tree", rel, a.Ino, b.Ino)
			}
		})
	})

	t.Run("getfattr", func(t *testing.T) {
		var rels []string
		walkFixture(t, src, func(rel string, d fs.DirEntry) { rels = append(rels, rel) })
		for _, u := range []struct {
			name     string
			uid, gid uint32
		}{{"root", 0, 0}, {"nobody", 65534, 65534}, {"uid 1234", 1234, 1234}} {
			want := getfattr(t, u.uid, u.gid, src, rels)
			got := getfattr(t, u.uid, u.gid, mnt, rels)
			if got != want {
				t.Errorf("getfattr -d -m - as %s differs:\n%s", u.name, lineDiff(want, got))
			}
			if u.uid == 0 {
				for _, x := range []string{"security.capability=", "security.selinux=", "trusted.t=", "system.posix_acl_access=", "system.posix_acl_default=", "user.big="} {
					if !strings.Contains(got, x) {
						t.Errorf("getfattr as root through the mount shows no %s", x)
					}
				}
			} else if strings.Contains(got, "trusted.") {
				t.Errorf("getfattr as %s through the mount shows trusted.* xattrs", u.name)
			}
		}
	})

	t.Run("seek data and holes", func(t *testing.T) {
		for _, rel := range []string{fstree.FixtureSparse, "sparse/hole-at-end", "sparse/hole-at-start", "sparse/all-hole", "files/300KiB", "files/empty"} {
			want := extents(t, filepath.Join(src, rel))
			got := extents(t, filepath.Join(mnt, rel))
			if !slices.Equal(got, want) {
				t.Errorf("%s: data extents through the mount %v, original %v", rel, got, want)
			}
		}
		// The 1 GiB file has exactly the fixture's four data regions.
		if got := extents(t, filepath.Join(mnt, fstree.FixtureSparse)); len(got) != 4*2 {
			t.Errorf("%s: %d data extents, want 4: %v", fstree.FixtureSparse, len(got)/2, got)
		}
		f, err := os.Open(filepath.Join(mnt, fstree.FixtureSparse))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, whence := range []int{unix.SEEK_DATA, unix.SEEK_HOLE} {
			if _, err := unix.Seek(int(f.Fd()), fstree.FixtureSparseSize, whence); !errors.Is(err, unix.ENXIO) {
				t.Errorf("lseek(size, %d): %v, want ENXIO", whence, err)
			}
		}
	})

	t.Run("statfs", func(t *testing.T) {
		var st unix.Statfs_t
		if err := unix.Statfs(mnt, &st); err != nil {
			t.Fatal(err)
		}
		var inodes uint64
		seen := map[uint64]bool{}
		walkAll(t, src, func(st *unix.Stat_t) {
			if !seen[st.Ino] {
				seen[st.Ino] = true
				inodes++
			}
		})
		switch {
		case st.Type != fuseSuperMagic:
			t.Errorf("f_type %#x, want FUSE's %#x", st.Type, fuseSuperMagic)
		case st.Bsize != 4096 || st.Frsize != 4096:
			t.Errorf("f_bsize %d, f_frsize %d, want 4096", st.Bsize, st.Frsize)
		case st.Namelen != 255:
			t.Errorf("f_namelen %d, want 255", st.Namelen)
		case st.Flags&unix.ST_RDONLY == 0:
			t.Errorf("f_flags %#x lack ST_RDONLY", st.Flags)
		case st.Files != inodes:
			t.Errorf("f_files %d, the tree has %d inodes", st.Files, inodes)
		case st.Blocks*4096 < fstree.FixtureSparseData || st.Bfree != 0 || st.Ffree != 0:
			t.Errorf("f_blocks %d, f_bfree %d, f_ffree %d: want the tree's blocks, none free", st.Blocks, st.Bfree, st.Ffree)
		}
	})

	t.Run("other users", func(t *testing.T) {
		paths := []string{
			"files/one", "files/300KiB", "modes/no-bits", "modes/setuid", "readonly-dir/a",
			"xattrs/file", "xattrs/dir/inherits-acl", "owners/dir-4321-8765/file",
			"owners/u65534-g0", "hardlinks/twin-x-1", fstree.FixtureRandom5M,
		}
		dirs := []string{"files", "readonly-dir", "empty-dir-0700", "owners/dir-4321-8765", "xattrs/dir", "modes/sticky-dir"}
		allowed, denied := 0, 0
		for _, u := range [][2]uint32{{65534, 65534}, {1234, 1234}, {4321, 8765}, {1000, 1000}} {
			check := func(cmd, rel string) {
				want, _ := runAs(t, u[0], u[1], cmd, filepath.Join(src, rel))
				got, out := runAs(t, u[0], u[1], cmd, filepath.Join(mnt, rel))
				if got != want {
					t.Errorf("%s %s as %d:%d exits %d through the mount, %d on the original: %s", cmd, rel, u[0], u[1], got, want, out)
				}
				if got == 0 {
					allowed++
				} else {
					denied++
				}
			}
			for _, p := range paths {
				check("cat", p)
			}
			for _, d := range dirs {
				check("ls", d)
			}
		}
		if allowed == 0 || denied == 0 {
			t.Errorf("%d reads allowed, %d denied: the check tells nothing", allowed, denied)
		}
	})

	t.Run("mountinfo", func(t *testing.T) {
		mi, ok := findMount(t, mnt)
		if !ok {
			t.Fatalf("%s is not in /proc/self/mountinfo", mnt)
		}
		if want := "forge:" + tree.Short(); mi.Source != want {
			t.Errorf("source %q, want %q", mi.Source, want)
		}
		if mi.FSType != "fuse."+fusefs.FSType {
			t.Errorf("type %q, want fuse.%s", mi.FSType, fusefs.FSType)
		}
		for _, o := range []string{"ro", "nosuid", "nodev"} {
			if !hasOption(mi.Options, o) {
				t.Errorf("mount options %q lack %s", mi.Options, o)
			}
		}
		for _, o := range []string{"default_permissions", "allow_other"} {
			if !hasOption(mi.SuperOptions, o) {
				t.Errorf("superblock options %q lack %s", mi.SuperOptions, o)
			}
		}
	})
}

// walkFixture calls fn for every path below root (relative to it), except
// those under the fixture's deep directory, whose paths outgrow PATH_MAX.
func walkFixture(t testing.TB, root string, fn func(rel string, d fs.DirEntry)) {
	t.Helper()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		if rel == fstree.FixtureDeep {
			return filepath.SkipDir
		}
		if rel != "." {
			fn(rel, d)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// walkAll lstat's every inode below root, the deep directory included,
// going down by file descriptor.
func walkAll(t testing.TB, root string, fn func(*unix.Stat_t)) {
	t.Helper()
	fd, err := unix.Open(root, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	fn(&st)
	walkFd(t, fd, fn)
}

func walkFd(t testing.TB, fd int, fn func(*unix.Stat_t)) {
	t.Helper()
	f := os.NewFile(uintptr(fd), "dir")
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range names {
		var st unix.Stat_t
		if err := unix.Fstatat(fd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			t.Fatal(err)
		}
		fn(&st)
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			sub, err := unix.Openat(fd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			walkFd(t, sub, fn)
		}
	}
}

// getfattr runs `getfattr -h -d -m -` as uid:gid on the paths rels under
// root and returns its output with root taken out, so that outputs for two
// roots compare.
func getfattr(t testing.TB, uid, gid uint32, root string, rels []string) string {
	t.Helper()
	args := []string{"-h", "-d", "-m", "-", "--absolute-names"}
	for _, r := range rels {
		args = append(args, filepath.Join(root, r))
	}
	code, out := runAs(t, uid, gid, "getfattr", args...)
	return fmt.Sprintf("%s\nexit %d", strings.ReplaceAll(out, root, "ROOT"), code)
}

// extents lists a file's data extents as start, end pairs, found with
// SEEK_DATA and SEEK_HOLE.
func extents(t testing.TB, path string) []int64 {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	var out []int64
	for off := int64(0); off < fi.Size(); {
		data, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if errors.Is(err, unix.ENXIO) {
			break
		}
		if err != nil {
			t.Fatalf("%s: SEEK_DATA at %d: %v", path, off, err)
		}
		hole, err := unix.Seek(int(f.Fd()), data, unix.SEEK_HOLE)
		if err != nil {
			t.Fatalf("%s: SEEK_HOLE at %d: %v", path, data, err)
		}
		out = append(out, data, hole)
		off = hole
	}
	return out
}

// lineDiff shows the lines of got that differ from want, for messages.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var b strings.Builder
	for i := 0; i < max(len(w), len(g)); i++ {
		var lw, lg string
		if i < len(w) {
			lw = w[i]
		}
		if i < len(g) {
			lg = g[i]
		}
		if lw != lg {
			fmt.Fprintf(&b, "line %d:\n  want %s\n  got  %s\n", i+1, lw, lg)
		}
	}
	return b.String()
}
