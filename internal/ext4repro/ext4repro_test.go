package ext4repro

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

func tools(t *testing.T) Tools {
	t.Helper()
	var tl Tools
	for name, p := range map[string]*string{"debugfs": &tl.Debugfs, "e2fsck": &tl.E2fsck, "tune2fs": &tl.Tune2fs, "mkfs.ext4": new(string)} {
		path, err := exec.LookPath(name)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/sbin"} {
				if _, serr := os.Stat(filepath.Join(dir, name)); serr == nil {
					path, err = filepath.Join(dir, name), nil
				}
			}
		}
		if err != nil {
			t.Skipf("needs e2fsprogs' %s: %v", name, err)
		}
		*p = path
	}
	return tl
}

// image makes an ext4 image of src with mkfs.ext4 -d at the fake time
// now, as stages/mkfs makes one with an epoch.
func image(t *testing.T, src string, now string) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	cmd := exec.Command("mkfs.ext4", "-q", "-F", "-U", "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75",
		"-E", "hash_seed=6e4ff95f-f662-45ee-a82a-bdf44a2d0b75,lazy_itable_init=0,lazy_journal_init=0", "-d", src, img, "8M")
	cmd.Env = append(os.Environ(), "E2FSPROGS_FAKE_TIME="+now, "PATH=/usr/sbin:/sbin:"+os.Getenv("PATH"))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	return img
}

func TestNormalize(t *testing.T) {
	tl := tools(t)
	src := t.TempDir()
	for _, p := range []string{"etc/hostname", "usr/bin/x", "var/log/empty"} {
		if err := os.MkdirAll(filepath.Join(src, filepath.Dir(p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	a, b := image(t, src, "1783764997"), image(t, src, "1783764997")
	// What a kernel that mounted b and wrote into it leaves: its clock
	// and random numbers in the inodes and the superblock.
	var kernel bytes.Buffer
	for _, ino := range []int{2, 12, 13} {
		fmt.Fprintf(&kernel, "sif <%d> ctime @1800000000\nsif <%d> crtime @1800000001\nsif <%d> generation %d\nsif <%d> version 7\n", ino, ino, ino, 1000+ino, ino)
	}
	kernel.WriteString("sif <13> mtime @1800000000\n")
	kernel.WriteString("ssv wtime @1800000002\nssv mnt_count 3\nssv kbytes_written 4096\n")
	cmd := exec.Command(tl.Debugfs, "-w", "-f", "-", b)
	cmd.Stdin = &kernel
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("debugfs: %v\n%s", err, out)
	}
	if same(t, a, b) {
		t.Fatal("two images made at different times are the same already: the test shows nothing")
	}
	// The root, lost+found and what mkfs -d made: inodes 2, 11 and on.
	// Their mtimes are later than the epoch (the files were written
	// today, and b's inode 13 as a kernel's clock says): clamped.
	inodes := []Inode{{Ino: 2, MtimeSec: 1800000000}}
	for i := uint64(11); i < 11+12; i++ {
		inodes = append(inodes, Inode{Ino: i, MtimeSec: 1800000000})
	}
	for _, n := range []struct {
		img    string
		inodes []Inode
	}{{a, inodes}, {b, inodes}} {
		f, err := os.OpenFile(n.img, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		err = Normalize(context.Background(), f, n.inodes, 1783764997, tl)
		f.Close()
		if err != nil {
			t.Fatal(err)
		}
	}
	if !same(t, a, b) {
		t.Error("normalized to one epoch, the images still differ")
	}
	cmd = exec.Command(tl.E2fsck, "-f", "-n", a)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("e2fsck -f -n of a normalized image: %v\n%s", err, out)
	}
}

func TestNormalizeErrors(t *testing.T) {
	tl := tools(t)
	notFS := filepath.Join(t.TempDir(), "zeros")
	if err := os.WriteFile(notFS, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(notFS, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Normalize(context.Background(), f, []Inode{{Ino: 2}}, 1, tl); err == nil {
		t.Error("Normalize of a file of zeros succeeded")
	}
}

func same(t *testing.T, a, b string) bool {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return bytes.Equal(x, y)
}
