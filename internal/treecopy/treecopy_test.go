package treecopy

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/internal/fstree"
	"golang.org/x/sys/unix"
)

// TestCopyFixture: the copy of the fidelity fixture equals it in every
// property Compare knows, the roots' own metadata included, and is no less
// sparse; the paths beyond PATH_MAX, the socket, and a symlink and a FIFO
// of two names each are there too.
func TestCopyFixture(t *testing.T) {
	fstree.RequireRoot(t)
	tmp := fstree.DiskTempDir(t)
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	fstree.MustBuildFixture(t, src)
	fstree.MustAddLinkedSpecials(t, src)
	if err := os.Mkdir(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := Copy(context.Background(), src, dst); err != nil {
		t.Fatalf("Copy: %v", err)
	}
	fstree.AssertSame(t, src, dst, fstree.Options{CompareRootMeta: true, CheckSparse: true})

	// Written zeros become holes, as with cp --sparse=always.
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dst, "files/zeros-300KiB"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Size != 300<<10 || st.Blocks != 0 {
		t.Errorf("copy of 300 KiB of written zeros: size %d, %d blocks allocated; want 300 KiB, none", st.Size, st.Blocks)
	}
}

// TestCopyMergesDirectories: a directory already in the destination (a
// mount point, lost+found) is filled and given the source's metadata; a
// file in the way is an error that names it.
func TestCopyMergesDirectories(t *testing.T) {
	fstree.RequireRoot(t)
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	mustMkdir(t, filepath.Join(src, "boot"), 0o555)
	mustWrite(t, filepath.Join(src, "boot", "vmlinuz"), "kernel")
	mustMkdir(t, filepath.Join(dst, "boot"), 0o700)
	if err := Copy(context.Background(), src, dst); err != nil {
		t.Fatalf("Copy into a destination with the directory: %v", err)
	}
	fstree.AssertSame(t, src, dst, fstree.Options{CompareRootMeta: true})

	dst2 := filepath.Join(tmp, "dst2")
	mustMkdir(t, dst2, 0o755)
	mustWrite(t, filepath.Join(dst2, "boot"), "a file where the directory goes")
	err := Copy(context.Background(), src, dst2)
	if err == nil || !strings.Contains(err.Error(), `"boot"`) || !errors.Is(err, unix.EEXIST) {
		t.Errorf("Copy over a file in the way: %v; want EEXIST naming \"boot\"", err)
	}
}

// TestCopyCancelled: a cancelled context stops the copy with its error.
func TestCopyCancelled(t *testing.T) {
	tmp := t.TempDir()
	src, dst := filepath.Join(tmp, "src"), filepath.Join(tmp, "dst")
	mustMkdir(t, src, 0o755)
	mustWrite(t, filepath.Join(src, "f"), "x")
	mustMkdir(t, dst, 0o755)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := Copy(ctx, src, dst); !errors.Is(err, context.Canceled) {
		t.Errorf("Copy with a cancelled context: %v", err)
	}
}

// TestWriteNonZero: blocks of zeros aligned in the file are left out, the
// rest is written in place, whatever the alignment of the buffer.
func TestWriteNonZero(t *testing.T) {
	block := func(c byte) []byte { return bytes.Repeat([]byte{c}, zeroBlock) }
	tests := []struct {
		name      string
		off       int64
		data      []byte
		wantAlloc bool // some block must be allocated
	}{
		{"all zeros", 0, make([]byte, 3*zeroBlock), false},
		{"data between zeros", 0, concat(block(0), block('a'), block(0)), true},
		{"unaligned start", 100, concat(make([]byte, zeroBlock-100), block('b'), make([]byte, 10)), true},
		{"unaligned zeros", 100, make([]byte, 2*zeroBlock), false},
		{"one byte", 5, []byte{'c'}, true},
		{"short tail of data", 0, concat(block(0), []byte("tail")), true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			f, err := os.Create(filepath.Join(t.TempDir(), "f"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if err := writeNonZero(int(f.Fd()), test.data, test.off); err != nil {
				t.Fatal(err)
			}
			end := test.off + int64(len(test.data))
			if err := f.Truncate(end); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(test.data))
			if _, err := f.ReadAt(got, test.off); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, test.data) {
				t.Error("content differs from what was written")
			}
			var st unix.Stat_t
			if err := unix.Fstat(int(f.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			if (st.Blocks > 0) != test.wantAlloc {
				t.Errorf("%d blocks allocated, want allocation %v", st.Blocks, test.wantAlloc)
			}
		})
	}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func mustMkdir(t *testing.T, dir string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, mode); err != nil {
		t.Fatal(err)
	}
}

func mustWrite(t *testing.T, path, content string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestOnLoopDevice: the copy starts writeback early into a filesystem on a
// loop device, and not into one on the machine's disk.
func TestOnLoopDevice(t *testing.T) {
	fstree.RequireRoot(t)
	tmp := fstree.DiskTempDir(t)
	if onLoopDevice(mustOpenDir(t, tmp)) {
		t.Fatalf("%s is on a loop device, says onLoopDevice", tmp)
	}
	img, mnt := filepath.Join(tmp, "fs.img"), filepath.Join(tmp, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", img, "8M").CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v %s", err, out)
	}
	out, err := exec.Command("losetup", "-f", "--show", img).Output()
	if err != nil {
		t.Fatalf("losetup: %v", err)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() { exec.Command("losetup", "-d", dev).Run() })
	if err := unix.Mount(dev, mnt, "ext4", 0, ""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(mnt, 0) })
	if !onLoopDevice(mustOpenDir(t, mnt)) {
		t.Fatalf("ext4 on %s mounted at %s: not on a loop device, says onLoopDevice", dev, mnt)
	}
}

func mustOpenDir(t *testing.T, dir string) int {
	t.Helper()
	fd, err := unix.Open(dir, openDirFlags, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}
