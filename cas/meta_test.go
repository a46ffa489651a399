package cas

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/node"
)

func TestStoredXattr(t *testing.T) {
	for _, tc := range []struct {
		name string
		want bool
	}{
		{"user.comment", true},
		{"trusted.overlay.opaque", true},
		{"security.capability", true},
		{"security.selinux", true},
		{"system.posix_acl_access", true},
		{"system.posix_acl_default", true},
		{"system.nfs4_acl", false},
		{"system.data", false},
		{"btrfs.compression", false},
		{"user", false},
		{"", false},
	} {
		if got := StoredXattr(tc.name); got != tc.want {
			t.Errorf("StoredXattr(%q) = %v, want %v", tc.name, got, tc.want)
		}
	}
}

// TestReadXattrs reads real attributes: sorted by name, values past the
// first buffer size whole, a symlink's own attributes unless followed.
func TestReadXattrs(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 1200)
	for name, v := range map[string][]byte{"user.b": []byte("2"), "user.a": []byte("1"), "user.big": big} {
		if err := unix.Lsetxattr(f, name, v, 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) {
				t.Skipf("%s has no user xattrs", dir)
			}
			t.Fatal(err)
		}
	}
	// Names long enough that the list outgrows xattr.List's first buffer
	// (1 KiB), all within what ext4 keeps in one block.
	long := "user." + strings.Repeat("n", 200)
	for i := 0; i < 6; i++ {
		if err := unix.Lsetxattr(f, long+string(rune('a'+i)), []byte{byte(i)}, 0); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "l")
	if err := os.Symlink("f", link); err != nil {
		t.Fatal(err)
	}

	xs, err := ReadPathXattrs(f, false)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, x := range xs {
		names = append(names, x.Name)
	}
	want := []string{"user.a", "user.b", "user.big"}
	for i := 0; i < 6; i++ {
		want = append(want, long+string(rune('a'+i)))
	}
	// sorted by name: long names ("user.nnn…") sort after "user.big"
	if strings.Join(names, ",") != strings.Join(want, ",") {
		t.Fatalf("names %q, want %q", names, want)
	}
	if !bytes.Equal(xs[2].Value, big) {
		t.Errorf("user.big: %d bytes, want %d", len(xs[2].Value), len(big))
	}

	own, err := ReadPathXattrs(link, false)
	if err != nil {
		t.Fatal(err)
	}
	if len(own) != 0 {
		t.Errorf("the symlink's own xattrs: %v, want none", own)
	}
	followed, err := ReadPathXattrs(link, true)
	if err != nil {
		t.Fatal(err)
	}
	if len(followed) != len(want) {
		t.Errorf("through the symlink: %d xattrs, want %d", len(followed), len(want))
	}

	if _, err := ReadPathXattrs(filepath.Join(dir, "missing"), false); !errors.Is(err, unix.ENOENT) {
		t.Errorf("missing file: %v, want ENOENT", err)
	}
}

func TestNodeFromStat(t *testing.T) {
	dir := t.TempDir()
	mk := map[string]func(p string) error{
		"regular": func(p string) error { return os.WriteFile(p, []byte("data"), 0o4751) },
		"dir":     func(p string) error { return os.Mkdir(p, 0o1777) },
		"symlink": func(p string) error { return os.Symlink("target", p) },
		"fifo":    func(p string) error { return unix.Mkfifo(p, 0o600) },
	}
	for _, tc := range []struct {
		kind string
		typ  node.Type
	}{
		{"regular", node.TypeRegular},
		{"dir", node.TypeDir},
		{"symlink", node.TypeSymlink},
		{"fifo", node.TypeFIFO},
	} {
		t.Run(tc.kind, func(t *testing.T) {
			p := filepath.Join(dir, tc.kind)
			if err := mk[tc.kind](p); err != nil {
				t.Fatal(err)
			}
			ts := []unix.Timespec{{Sec: 1_000_000_000, Nsec: 123456789}, {Sec: 1_000_000_000, Nsec: 123456789}}
			if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
				t.Fatal(err)
			}
			if tc.kind != "symlink" {
				// umask may have cleared bits: set the mode the test expects.
				if err := unix.Chmod(p, map[string]uint32{"regular": 0o4751, "dir": 0o1777, "fifo": 0o600}[tc.kind]); err != nil {
					t.Fatal(err)
				}
			}
			var st unix.Stat_t
			if err := unix.Lstat(p, &st); err != nil {
				t.Fatal(err)
			}
			xs := []node.Xattr{{Name: "user.k", Value: []byte("v")}}
			n, err := NodeFromStat(&st, xs)
			if err != nil {
				t.Fatal(err)
			}
			if n.Type != tc.typ || n.Perm != st.Mode&0o7777 || n.UID != st.Uid || n.GID != st.Gid {
				t.Errorf("got type %v perm %o uid %d gid %d, want %v %o %d %d", n.Type, n.Perm, n.UID, n.GID, tc.typ, st.Mode&0o7777, st.Uid, st.Gid)
			}
			if n.MtimeSec != 1_000_000_000 || n.MtimeNsec != 123456789 {
				t.Errorf("mtime %d.%09d", n.MtimeSec, n.MtimeNsec)
			}
			if n.Rdev != 0 || n.Nlink != 0 || n.Size != 0 || len(n.Chunks) != 0 || len(n.Entries) != 0 {
				t.Errorf("NodeFromStat filled in what is the caller's: %+v", n)
			}
			if len(n.Xattrs) != 1 || n.Xattrs[0].Name != "user.k" {
				t.Errorf("xattrs %v", n.Xattrs)
			}
		})
	}
}
