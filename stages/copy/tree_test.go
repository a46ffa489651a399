package copy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCopyContentsMatchesCp copies one tree with cp -a and with
// copyContents and compares everything cp -a keeps: types, content and
// holes, owners, modes, times, xattrs, link targets, devices and which
// names share an inode. As root the tree also has other owners, set-id
// files, a device node, a POSIX ACL, a file capability and trusted.*
// xattrs.
func TestCopyContentsMatchesCp(t *testing.T) {
	if _, err := exec.LookPath("cp"); err != nil {
		t.Skip("no cp here")
	}
	base := t.TempDir()
	src := filepath.Join(base, "src")
	byCp, byUs := filepath.Join(base, "cp"), filepath.Join(base, "us")
	for _, d := range []string{src, byCp, byUs} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	xattrs := makeTree(t, src)
	if out, err := exec.Command("cp", "-a", "--reflink=auto", src+"/.", byCp).CombinedOutput(); err != nil {
		t.Fatalf("cp -a: %v\n%s", err, out)
	}
	if err := copyContents(context.Background(), src, byUs); err != nil {
		t.Fatal(err)
	}
	want, got := snapshot(t, byCp, xattrs), snapshot(t, byUs, xattrs)
	if len(want) < 20 {
		t.Fatalf("cp's copy has %d names: the tree was not made", len(want))
	}
	for _, p := range sortedKeys(want, got) {
		if want[p] != got[p] {
			t.Errorf("%s:\n cp -a:        %s\n copyContents: %s", p, want[p], got[p])
		}
	}
}

// makeTree fills dir with one of everything; it says whether xattrs
// could be set here (a filesystem without them makes no test of them).
func makeTree(t *testing.T, dir string) (xattrs bool) {
	t.Helper()
	root := os.Geteuid() == 0
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	p := func(rel string) string { return filepath.Join(dir, rel) }
	for _, d := range []string{"etc", "usr/lib/x", "usr/share/doc/empty", "var/log", "ro"} {
		must(os.MkdirAll(p(d), 0o755))
	}
	must(os.WriteFile(p("etc/hostname"), []byte("forge\n"), 0o644))
	must(os.WriteFile(p("etc/empty"), nil, 0o600))
	must(os.WriteFile(p("etc/secret"), []byte("s"), 0o400))
	big := make([]byte, 3<<20+17)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(r.Uint32())
	}
	must(os.WriteFile(p("usr/lib/x/big"), big, 0o755))
	// A sparse file: data, a hole, data, and a hole at the end.
	f, err := os.Create(p("var/log/lastlog"))
	must(err)
	_, err = f.WriteAt([]byte("head"), 0)
	must(err)
	_, err = f.WriteAt([]byte("middle"), 8<<20)
	must(err)
	must(f.Truncate(32 << 20))
	must(f.Close())
	// Hard links, within a directory and across two.
	must(os.Link(p("etc/hostname"), p("etc/hostname.link")))
	must(os.Link(p("usr/lib/x/big"), p("var/log/big.link")))
	must(os.Symlink("hostname", p("etc/rel-link")))
	must(os.Symlink("/nowhere/at/all", p("etc/dangling")))
	must(os.Symlink(strings.Repeat("long/", 300)+"end", p("etc/long-link")))
	must(unix.Mkfifo(p("var/fifo"), 0o640))
	l, err := net.Listen("unix", p("var/sock"))
	must(err)
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if unix.Setxattr(p("etc/hostname"), "user.forge.test", []byte("value"), 0) == nil {
		xattrs = true
		must(unix.Setxattr(p("usr/share/doc"), "user.dir", []byte{0, 1, 2}, 0))
		must(unix.Setxattr(p("usr/lib/x/big"), "user.big", make([]byte, 3000), 0))
		must(unix.Setxattr(p("etc/empty"), "user.empty", nil, 0))
	}
	must(os.WriteFile(p("ro/file"), []byte("ro"), 0o444))
	if root {
		must(os.Chown(p("etc/secret"), 1234, 5678))
		must(os.Lchown(p("etc/rel-link"), 42, 43))
		must(os.Chown(p("usr/share/doc"), 7, 8))
		must(os.WriteFile(p("usr/lib/x/suid"), []byte("#!/bin/sh\n"), 0o755))
		must(os.Chown(p("usr/lib/x/suid"), 0, 50))
		must(os.Chmod(p("usr/lib/x/suid"), 0o4755|os.ModeSetgid))
		must(os.Chmod(p("usr/lib/x/suid"), os.ModeSetuid|os.ModeSetgid|0o755))
		must(unix.Mknod(p("var/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(unix.Mknod(p("var/blk"), unix.S_IFBLK|0o600, int(unix.Mkdev(7, 200))))
		if xattrs {
			must(unix.Setxattr(p("var/log"), "trusted.forge", []byte("t"), 0))
			must(unix.Lsetxattr(p("etc/rel-link"), "trusted.link", []byte("on a link"), 0))
			if out, err := exec.Command("setfacl", "-m", "u:1000:rwx,g:100:r-x", p("var/log")).CombinedOutput(); err != nil {
				t.Logf("setfacl: %v %s (no ACL in the tree)", err, out)
			} else if out, err := exec.Command("setfacl", "-d", "-m", "u:1000:rwx", p("var/log")).CombinedOutput(); err != nil {
				t.Fatalf("setfacl -d: %v %s", err, out)
			}
			// A file capability (cap_net_raw+ep), version 2.
			capv2 := []byte{0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
			must(unix.Setxattr(p("usr/lib/x/big"), "security.capability", capv2, 0))
		}
	}
	must(os.Chmod(p("ro"), 0o555))
	t.Cleanup(func() { os.Chmod(p("ro"), 0o755) })
	// Times: mtimes in the past with nanoseconds.
	now := time.Now()
	i := 0
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		i++
		mtime := time.Unix(1_600_000_000+int64(i)*1000, int64(i)*1_000_003)
		atime := now.Add(-time.Hour - time.Duration(i)*time.Second)
		ts := []unix.Timespec{unix.NsecToTimespec(atime.UnixNano()), unix.NsecToTimespec(mtime.UnixNano())}
		return unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW)
	})
	must(err)
	return xattrs
}

// snapshot describes every name below dir (dir itself as "."): all
// cp -a keeps, with inodes numbered by their first name.
func snapshot(t *testing.T, dir string, xattrs bool) map[string]string {
	t.Helper()
	out := map[string]string{}
	firstName := map[uint64]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		// Not the atime: reading a copy moves it (its ctime is newer).
		desc := fmt.Sprintf("mode %o uid %d gid %d mtime %d.%09d",
			st.Mode, st.Uid, st.Gid, st.Mtim.Sec, st.Mtim.Nsec)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += fmt.Sprintf(" size %d sha256 %s data %v", st.Size, hex.EncodeToString(sum[:8]), dataExtents(t, p))
			if st.Nlink > 1 {
				if first, ok := firstName[st.Ino]; ok {
					desc += " same inode as " + first
				} else {
					firstName[st.Ino] = rel
				}
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			desc += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			desc += fmt.Sprintf(" rdev %d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		}
		if st.Mode&unix.S_IFMT != unix.S_IFDIR {
			desc += fmt.Sprintf(" nlink %d", st.Nlink)
		}
		if xattrs {
			desc += " xattrs " + listXattrs(t, p)
		}
		out[rel] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func dataExtents(t *testing.T, name string) []int64 {
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, _ := f.Stat()
	var ext []int64
	for off := int64(0); off < fi.Size(); {
		d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
		if err != nil {
			break
		}
		h, _ := unix.Seek(int(f.Fd()), d, unix.SEEK_HOLE)
		ext = append(ext, d, h)
		off = h
	}
	return ext
}

func listXattrs(t *testing.T, p string) string {
	buf := make([]byte, 64<<10)
	n, err := unix.Llistxattr(p, buf)
	if err != nil {
		return "error " + err.Error()
	}
	names := splitNames(buf[:n])
	slices.Sort(names)
	var parts []string
	for _, name := range names {
		v := make([]byte, 64<<10)
		m, err := unix.Lgetxattr(p, name, v)
		if err != nil {
			t.Fatalf("%s: %s: %v", p, name, err)
		}
		sum := sha256.Sum256(v[:m])
		parts = append(parts, name+"="+hex.EncodeToString(sum[:6]))
	}
	return strings.Join(parts, ",")
}

func sortedKeys(maps ...map[string]string) []string {
	seen := map[string]bool{}
	var keys []string
	for _, m := range maps {
		for k := range m {
			if !seen[k] {
				seen[k] = true
				keys = append(keys, k)
			}
		}
	}
	sort.Strings(keys)
	return keys
}

// TestCanCopyContents: only into an empty directory, or one holding just
// a lost+found the source lacks.
func TestCanCopyContents(t *testing.T) {
	base := t.TempDir()
	mk := func(names ...string) string {
		d, err := os.MkdirTemp(base, "d")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.Mkdir(filepath.Join(d, n), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	plain := mk("etc")
	withLF := mk("etc", "lost+found")
	tests := []struct {
		name     string
		src, dst string
		want     bool
	}{
		{"empty", plain, mk(), true},
		{"a fresh ext4", plain, mk("lost+found"), true},
		{"lost+found in both", withLF, mk("lost+found"), false},
		{"something else there", plain, mk("etc"), false},
		{"lost+found and more", plain, mk("lost+found", "boot"), false},
		{"no destination", plain, filepath.Join(base, "missing"), false},
	}
	for _, tt := range tests {
		if got := canCopyContents(tt.src, tt.dst); got != tt.want {
			t.Errorf("%s: canCopyContents = %v, want %v", tt.name, got, tt.want)
		}
	}
}

// TestCopyContentsCancel: a cancelled context stops the copy with its
// error.
func TestCopyContentsCancel(t *testing.T) {
	base := t.TempDir()
	src, dst := filepath.Join(base, "src"), filepath.Join(base, "dst")
	os.MkdirAll(filepath.Join(src, "a/b"), 0o755)
	os.Mkdir(dst, 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := copyContents(ctx, src, dst); err != context.Canceled {
		t.Fatalf("got %v, want context.Canceled", err)
	}
}
