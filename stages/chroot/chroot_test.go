package chroot

import (
	"bytes"
	"context"
	"debug/elf"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv makes the test binary, copied into a tree, a program to run
// there: "view" checks what Setup gave the chroot, "sleep" stays around.
const helperEnv = "FORGE_CHROOT_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "view":
		os.Exit(checkView(os.Stdout))
	case "sleep":
		fmt.Println("sleeping")
		time.Sleep(time.Hour)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// checkView runs inside the chroot and reports what is not as Setup
// promises.
func checkView(w io.Writer) int {
	var bad []string
	fail := func(format string, a ...any) { bad = append(bad, fmt.Sprintf(format, a...)) }
	if wd, err := os.Getwd(); err != nil || wd != "/" {
		fail("working directory %q (%v), want /", wd, err)
	}
	for _, n := range devNodes {
		st, err := os.Stat("/dev/" + n)
		if err != nil || st.Mode()&os.ModeCharDevice == 0 {
			fail("/dev/%s: %v, want a character device", n, err)
		}
	}
	if err := os.WriteFile("/dev/null", []byte("x"), 0); err != nil {
		fail("write /dev/null: %v", err)
	}
	zero := make([]byte, 8)
	if f, err := os.Open("/dev/zero"); err != nil {
		fail("open /dev/zero: %v", err)
	} else {
		zero[0] = 1
		if _, err := io.ReadFull(f, zero); err != nil || !bytes.Equal(zero, make([]byte, 8)) {
			fail("read /dev/zero: %v %v", zero, err)
		}
		f.Close()
	}
	var fs unix.Statfs_t
	if err := unix.Statfs("/dev/pts", &fs); err != nil || fs.Type != unix.DEVPTS_SUPER_MAGIC {
		fail("/dev/pts: type %#x (%v), want devpts", fs.Type, err)
	}
	if f, err := os.OpenFile("/dev/ptmx", os.O_RDWR, 0); err != nil {
		fail("open /dev/ptmx (a new pty): %v", err)
	} else {
		f.Close()
	}
	if err := unix.Statfs("/sys", &fs); err != nil || fs.Type != unix.SYSFS_MAGIC || fs.Flags&unix.ST_RDONLY == 0 {
		fail("/sys: type %#x flags %#x (%v), want read-only sysfs", fs.Type, fs.Flags, err)
	}
	if err := unix.Statfs("/proc", &fs); err != nil || fs.Type != unix.PROC_SUPER_MAGIC {
		fail("/proc: type %#x (%v), want proc", fs.Type, err)
	}
	if _, err := os.Stat("/proc/self/exe"); err != nil {
		fail("/proc/self/exe: %v", err)
	}
	if st, err := os.Stat("/dev/shm"); err != nil || st.Mode() != os.ModeDir|os.ModeSticky|0o777 {
		fail("/dev/shm: %v (%v), want a 1777 directory", st.Mode(), err)
	}
	if target, err := os.Readlink("/dev/fd"); err != nil || target != "/proc/self/fd" {
		fail("/dev/fd: %q (%v), want a link to /proc/self/fd", target, err)
	}
	if len(bad) == 0 {
		fmt.Fprintln(w, "view ok")
		return 0
	}
	fmt.Fprintln(w, strings.Join(bad, "\n"))
	return 1
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts /proc, /sys and /dev into a tree")
	}
}

// treeWithHelper makes a tree holding only a copy of the test binary, as
// /helper, to run inside the chroot.
func treeWithHelper(t *testing.T) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	f, err := elf.Open(exe)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatalf("the test binary %s is dynamically linked; it cannot run in an empty tree (build with CGO_ENABLED=0)", exe)
		}
	}
	f.Close()
	tree := t.TempDir()
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "helper"), b, 0o755); err != nil {
		t.Fatal(err)
	}
	return tree
}

// mountedBelow lists the mountpoints strictly below dir.
func mountedBelow(t *testing.T, dir string) []string {
	t.Helper()
	ms, err := readMounts()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, m := range mountsBelow(ms, dir) {
		out = append(out, m.Point)
	}
	return out
}

// teardownAtEnd makes sure a failing test leaves nothing mounted.
func teardownAtEnd(t *testing.T, c *Chroot) {
	t.Cleanup(func() {
		if err := c.Teardown(); err != nil {
			t.Errorf("teardown at the end: %v", err)
		}
	})
}

func TestSetupTeardown(t *testing.T) {
	requireRoot(t)
	tree := treeWithHelper(t)
	var log bytes.Buffer
	c, err := Setup(tree, &log)
	if err != nil {
		t.Fatal(err)
	}
	teardownAtEnd(t, c)

	if got := mountedBelow(t, tree); len(got) != 3+len(devNodes)+1 {
		t.Errorf("mounted below the tree: %v, want proc, sys, dev, %d device nodes and dev/pts", got, len(devNodes))
	}
	var out bytes.Buffer
	err = c.Run(context.Background(), Command{
		Args: []string{"/helper"}, Env: []string{helperEnv + "=view"}, Stdout: &out, Stderr: &out,
	})
	if err != nil || strings.TrimSpace(out.String()) != "view ok" {
		t.Errorf("inside the chroot: %v\n%s", err, out.String())
	}

	if err := c.Teardown(); err != nil {
		t.Fatalf("teardown: %v", err)
	}
	if got := mountedBelow(t, tree); len(got) != 0 {
		t.Errorf("still mounted after teardown: %v", got)
	}
	entries, _ := os.ReadDir(tree)
	if len(entries) != 1 || entries[0].Name() != "helper" {
		t.Errorf("the tree after teardown holds %v, want only the helper (the mountpoints Setup made removed)", entries)
	}
	if err := c.Teardown(); err != nil {
		t.Errorf("second teardown: %v", err)
	}
}

// The tree's own /dev is hidden, not changed, and its mountpoints stay.
func TestSetupKeepsTreeDev(t *testing.T) {
	requireRoot(t)
	tree := t.TempDir()
	for _, d := range []string{"proc", "sys", "dev"} {
		if err := os.Mkdir(filepath.Join(tree, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(tree, "dev/mine"), []byte("tree's"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Setup(tree, nil)
	if err != nil {
		t.Fatal(err)
	}
	teardownAtEnd(t, c)
	if _, err := os.Stat(filepath.Join(tree, "dev/mine")); !os.IsNotExist(err) {
		t.Errorf("the tree's /dev shows through the chroot's: %v", err)
	}
	if err := c.Teardown(); err != nil {
		t.Fatal(err)
	}
	if readFile(t, filepath.Join(tree, "dev/mine")) != "tree's" {
		t.Error("the tree's /dev changed")
	}
	for _, d := range []string{"proc", "sys", "dev"} {
		if st, err := os.Stat(filepath.Join(tree, d)); err != nil || !st.IsDir() {
			t.Errorf("the tree's own mountpoint %s after teardown: %v", d, err)
		}
	}
}

// A mountpoint that is a symlink is refused, whatever it points at, and
// nothing stays mounted.
func TestSetupRefusesSymlinkMountpoint(t *testing.T) {
	requireRoot(t)
	tree := t.TempDir()
	if err := os.Mkdir(filepath.Join(tree, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	target := t.TempDir()
	if err := os.Symlink(target, filepath.Join(tree, "sys")); err != nil {
		t.Fatal(err)
	}
	c, err := Setup(tree, nil)
	if err == nil {
		c.Teardown()
		t.Fatal("Setup with sys a symlink: no error")
	}
	if !strings.Contains(err.Error(), "sys") {
		t.Errorf("error %q does not name the mountpoint", err)
	}
	if got := mountedBelow(t, tree); len(got) != 0 {
		t.Errorf("mounted below the tree after the failed Setup: %v", got)
	}
	if got := mountedBelow(t, target); len(got) != 0 || func() bool { ms, _ := readMounts(); return anyAt(ms, target) }() {
		t.Errorf("Setup mounted on the symlink's target %s", target)
	}
}

func anyAt(ms []mount, p string) bool {
	for _, m := range ms {
		if m.Point == p {
			return true
		}
	}
	return false
}

// Teardown undoes what commands in the chroot left: a process still
// running there (in a session of its own, out of reach of the process
// group) and mounts made below the tree, nested ones included; mounts
// below the tree from before Setup stay.
func TestTeardownCleansLeftovers(t *testing.T) {
	requireRoot(t)
	tree := treeWithHelper(t)
	before := filepath.Join(tree, "before")
	if err := os.Mkdir(before, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", before, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Unmount(before, unix.MNT_DETACH) })

	var log bytes.Buffer
	c, err := Setup(tree, &log)
	if err != nil {
		t.Fatal(err)
	}
	teardownAtEnd(t, c)

	daemon := exec.Command("/helper")
	daemon.Env = []string{helperEnv + "=sleep"}
	daemon.SysProcAttr = &syscall.SysProcAttr{Chroot: tree, Setsid: true}
	daemon.Dir = "/"
	out, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	// Wait until it runs in the tree: it says so.
	if _, err := out.Read(make([]byte, 16)); err != nil {
		t.Fatal(err)
	}

	run := filepath.Join(tree, "run")
	if err := os.Mkdir(run, 0o755); err != nil {
		t.Fatal(err)
	}
	// Two stacked on /run, one on a directory of the chroot's /proc (as a
	// package mounting binfmt_misc would).
	for _, m := range []string{run, filepath.Join(tree, "proc/sys/fs/binfmt_misc"), run} {
		if err := unix.Mount("tmpfs", m, "tmpfs", 0, "size=1m"); err != nil {
			t.Fatalf("mount tmpfs on %s: %v", m, err)
		}
	}
	nested := filepath.Join(run, "lock")
	if err := os.Mkdir(nested, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("tmpfs", nested, "tmpfs", 0, ""); err != nil {
		t.Fatal(err)
	}

	if err := c.Teardown(); err != nil {
		t.Fatalf("teardown: %v\nlog:\n%s", err, log.String())
	}
	if !gone(t, daemon.Process.Pid) {
		t.Errorf("the process left in the tree (%d) still runs", daemon.Process.Pid)
	}
	if !strings.Contains(log.String(), fmt.Sprintf("killing process %d", daemon.Process.Pid)) {
		t.Errorf("the log does not name the process it killed:\n%s", log.String())
	}
	if got := mountedBelow(t, tree); len(got) != 1 || got[0] != before {
		t.Errorf("mounted below the tree after teardown: %v, want only %s, mounted before Setup", got, before)
	}
}

// Watch mounts nothing and cleans up what a tool mounted after it.
func TestWatch(t *testing.T) {
	requireRoot(t)
	tree := t.TempDir()
	c, err := Watch(tree, nil)
	if err != nil {
		t.Fatal(err)
	}
	teardownAtEnd(t, c)
	if got := mountedBelow(t, tree); len(got) != 0 {
		t.Fatalf("Watch mounted %v", got)
	}
	proc := filepath.Join(tree, "proc")
	if err := os.Mkdir(proc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", proc, "proc", 0, ""); err != nil {
		t.Fatal(err)
	}
	if err := c.Teardown(); err != nil {
		t.Fatal(err)
	}
	if got := mountedBelow(t, tree); len(got) != 0 {
		t.Errorf("mounted after teardown: %v", got)
	}
	if _, err := os.Stat(proc); err != nil {
		t.Errorf("Teardown removed a directory Watch did not make: %v", err)
	}
}
