package mount_test

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/fstree"
)

// smallTree writes a few files under dir/src and returns its path.
func smallTree(t testing.TB, dir string) string {
	t.Helper()
	src := filepath.Join(dir, "src")
	if err := os.MkdirAll(filepath.Join(src, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	for name, data := range map[string][]byte{
		"a":      []byte("a\n"),
		"sub/b":  fstree.RandomBytes("b", 300<<10),
		"setuid": []byte("#!/bin/sh\n"),
	} {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// unix.Chmod: os.Chmod takes the setuid bit as os.ModeSetuid only.
	if err := unix.Chmod(filepath.Join(src, "setuid"), 0o4755); err != nil {
		t.Fatal(err)
	}
	// /dev/null's device number, to see whether a mount honours devices.
	if err := unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))); err != nil {
		t.Fatal(err)
	}
	// A setuid-root copy of id(1), to see whether a mount honours setuid.
	id, err := os.ReadFile("/usr/bin/id")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "id-setuid"), id, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Chmod(filepath.Join(src, "id-setuid"), 0o4755); err != nil {
		t.Fatal(err)
	}
	return src
}

// TestUnmountBusy: a plain unmount of a mount with an open file fails with
// EBUSY and leaves it mounted and serving; a lazy one detaches it at once,
// the open file still reads, and the server stops once it is closed.
func TestUnmountBusy(t *testing.T) {
	requireFUSE(t)
	dir := testDir(t)
	src := smallTree(t, dir)
	s := openStore(t, dir)
	tree := importTree(t, s, src)
	m := mountTree(t, s, tree, dir, "mnt", fusefs.Options{})
	mnt := m.Mountpoint()

	f, err := os.Open(filepath.Join(mnt, "sub/b"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	err = m.Unmount(false)
	if !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("unmount with a file open: %v, want EBUSY", err)
	}
	if _, ok := findMount(t, mnt); !ok {
		t.Fatal("a refused unmount took the mount away")
	}
	if b, err := os.ReadFile(filepath.Join(mnt, "a")); err != nil || string(b) != "a\n" {
		t.Errorf("reading after a refused unmount: %q, %v", b, err)
	}

	if err := m.Unmount(true); err != nil {
		t.Fatalf("lazy unmount: %v", err)
	}
	if _, ok := findMount(t, mnt); ok {
		t.Error("still in mountinfo after a lazy unmount")
	}
	want := fstree.RandomBytes("b", 300<<10)
	got, err := io.ReadAll(f)
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("reading the open file after a lazy unmount: %v (content equal: %v)", err, bytes.Equal(got, want))
	}
	select {
	case <-waitChan(m):
		t.Error("the server stopped while a file of the detached mount was open")
	case <-time.After(100 * time.Millisecond):
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-waitChan(m):
	case <-time.After(30 * time.Second):
		t.Fatal("the server has not stopped 30s after the last file of a lazily unmounted mount was closed")
	}
	if err := m.Unmount(false); err != nil {
		t.Errorf("unmounting again: %v, want nothing to do", err)
	}

	// Nothing open: a plain unmount succeeds and the server stops.
	m2 := mountTree(t, s, tree, dir, "mnt2", fusefs.Options{})
	if err := m2.Unmount(false); err != nil {
		t.Fatalf("unmount of an idle mount: %v", err)
	}
	select {
	case <-waitChan(m2):
	case <-time.After(30 * time.Second):
		t.Fatal("the server has not stopped 30s after unmount")
	}
}

func waitChan(m *fusefs.Mount) <-chan struct{} {
	c := make(chan struct{})
	go func() {
		m.Wait()
		close(c)
	}()
	return c
}

// TestMountOptions: Suid and Dev drop nosuid and nodev (build roots), Name
// is the mount's source, Statfs answers statfs, and without AllowOther
// other users are kept out.
func TestMountOptions(t *testing.T) {
	requireFUSE(t)
	dir := testDir(t)
	src := smallTree(t, dir)
	s := openStore(t, dir)
	tree := importTree(t, s, src)

	m := mountTree(t, s, tree, dir, "buildroot", fusefs.Options{
		Suid: true, Dev: true, Name: "forge:buildroot",
		Statfs: func() (blocks, bfree, files uint64) { return 1000, 400, 77 },
	})
	mi, ok := findMount(t, m.Mountpoint())
	if !ok {
		t.Fatal("not in mountinfo")
	}
	if mi.Source != "forge:buildroot" {
		t.Errorf("source %q, want forge:buildroot", mi.Source)
	}
	if !hasOption(mi.Options, "ro") || hasOption(mi.Options, "nosuid") || hasOption(mi.Options, "nodev") {
		t.Errorf("options %q: want ro, without nosuid and nodev", mi.Options)
	}
	if hasOption(mi.SuperOptions, "allow_other") {
		t.Errorf("superblock options %q: allow_other without AllowOther", mi.SuperOptions)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(m.Mountpoint(), &st); err != nil {
		t.Fatal(err)
	}
	if st.Blocks != 1000 || st.Bfree != 400 || st.Bavail != 400 || st.Files != 77 {
		t.Errorf("statfs: blocks %d, bfree %d, bavail %d, files %d; want 1000, 400, 400, 77", st.Blocks, st.Bfree, st.Bavail, st.Files)
	}
	if st.Flags&unix.ST_NOSUID != 0 || st.Flags&unix.ST_RDONLY == 0 {
		t.Errorf("statfs flags %#x: want ST_RDONLY without ST_NOSUID", st.Flags)
	}
	if code, out := runAs(t, 65534, 65534, "cat", filepath.Join(m.Mountpoint(), "a")); code == 0 {
		t.Errorf("another user read a mount made without AllowOther: %s", out)
	}
	if b, err := os.ReadFile(filepath.Join(m.Mountpoint(), "a")); err != nil || string(b) != "a\n" {
		t.Errorf("root reading its own mount: %q, %v", b, err)
	}

	// Device nodes open where Dev asks for it, and only there.
	for _, dev := range []bool{true, false} {
		m := mountTree(t, s, tree, dir, fmt.Sprintf("dev-%v", dev), fusefs.Options{Dev: dev})
		f, err := os.OpenFile(filepath.Join(m.Mountpoint(), "null"), os.O_WRONLY, 0)
		if err == nil {
			_, err = f.Write([]byte("discarded"))
			f.Close()
		}
		if dev && err != nil {
			t.Errorf("writing to a /dev/null node on a mount with Dev: %v", err)
		}
		if !dev && !errors.Is(err, syscall.EACCES) {
			t.Errorf("opening a device node on a nodev mount: %v, want EACCES", err)
		}
	}

	// Setuid bits work where Suid asks for them, and only there. The
	// binary runs through sh, so that the test process never execs a file
	// of its own mount (see go-fuse's notes on forking while serving).
	for _, c := range []struct {
		suid bool
		want string
	}{{true, "0"}, {false, "65534"}} {
		m := mountTree(t, s, tree, dir, fmt.Sprintf("suid-%v", c.suid), fusefs.Options{Suid: c.suid, AllowOther: true})
		code, out := runAs(t, 65534, 65534, "/bin/sh", "-c", "exec "+filepath.Join(m.Mountpoint(), "id-setuid")+" -u")
		if code != 0 || strings.TrimSpace(out) != c.want {
			t.Errorf("a setuid-root id run by nobody on a mount with Suid %v: exit %d, euid %q; want %s", c.suid, code, strings.TrimSpace(out), c.want)
		}
	}

	// A tree hash that is not in the store, and a root that is not a
	// directory, are refused before anything is mounted.
	unused := filepath.Join(dir, "unused")
	if err := os.Mkdir(unused, 0o755); err != nil {
		t.Fatal(err)
	}
	if _, err := fusefs.MountReadOnly(unused, s, digest.Sum([]byte("missing")), fusefs.Options{}); err == nil {
		t.Error("mounting a tree the store does not have succeeded")
	}
	root, err := s.Node(tree)
	if err != nil {
		t.Fatal(err)
	}
	fileHash := root.Entries[0].Hash // "a"
	if _, err := fusefs.MountReadOnly(unused, s, fileHash, fusefs.Options{}); err == nil {
		t.Error("mounting a file node as a tree succeeded")
	}
}
