package buildroot

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestCopyTree: the /etc a cache keeps comes back with contents, modes,
// links and times; other file types are refused.
func TestCopyTree(t *testing.T) {
	src := filepath.Join(t.TempDir(), "etc")
	os.MkdirAll(filepath.Join(src, "ssl/certs"), 0o755)
	os.WriteFile(filepath.Join(src, "passwd"), []byte("root:x:0:0::/root:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(src, "shadow"), []byte("root:*::0:::::\n"), 0o640)
	os.Chmod(filepath.Join(src, "shadow"), 0o600) // 0 in /etc; readable here without root
	os.Symlink("/usr/share/ca-certificates/x.crt", filepath.Join(src, "ssl/certs/x.pem"))
	old := time.Unix(1700000000, 0)
	os.Chtimes(filepath.Join(src, "passwd"), old, old)
	dst := filepath.Join(t.TempDir(), "copy")
	if err := copyTree(src, dst); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		mode os.FileMode
	}{
		{"passwd", 0o644}, {"shadow", 0o600}, {"ssl", os.ModeDir | 0o755}, {"ssl/certs", os.ModeDir | 0o755},
	} {
		fi, err := os.Lstat(filepath.Join(dst, tc.name))
		if err != nil || fi.Mode() != tc.mode {
			t.Errorf("%s: %v, %v; want mode %v", tc.name, fi.Mode(), err, tc.mode)
		}
	}
	if b, _ := os.ReadFile(filepath.Join(dst, "passwd")); string(b) != "root:x:0:0::/root:/bin/sh\n" {
		t.Errorf("passwd: %q", b)
	}
	if fi, _ := os.Stat(filepath.Join(dst, "passwd")); !fi.ModTime().Equal(old) {
		t.Errorf("passwd's mtime %v, want %v", fi.ModTime(), old)
	}
	if l, err := os.Readlink(filepath.Join(dst, "ssl/certs/x.pem")); err != nil || l != "/usr/share/ca-certificates/x.crt" {
		t.Errorf("link: %q, %v", l, err)
	}
	// A FIFO is nothing the runner's steps make: refused.
	os.Remove(filepath.Join(src, "passwd"))
	if err := syscallMkfifo(filepath.Join(src, "fifo")); err != nil {
		t.Fatal(err)
	}
	if err := copyTree(src, filepath.Join(t.TempDir(), "c2")); err == nil {
		t.Errorf("copyTree copied a FIFO")
	}
}

func syscallMkfifo(p string) error { return unix.Mkfifo(p, 0o644) }
