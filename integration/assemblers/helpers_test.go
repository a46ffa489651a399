package assemblers_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/internal/fstree"
	"github.com/forge-build/forge/loopd"
	"golang.org/x/sys/unix"
)

// patience bounds the wait for loopd to detach a device after its client
// went away: generous, as it is only reached when something is wrong.
const patience = 20 * time.Second

const (
	mib      = 1 << 20
	rootUUID = "9c6ae55b-cf88-45b8-84e8-64990759f39d"
	ptuuid   = "0x14fc63d2"
)

// env is one test's world: a directory on disk holding everything the
// test makes, a loopd serving a socket in it, the fixture, and a TMPDIR
// for the assembler (where it mounts), all below dir.
type env struct {
	dir    string
	socket string
	tmp    string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices, mount, chown and mknod in the fixture")
	}
	e := &env{dir: fstree.DiskTempDir(t)}
	e.tmp = e.mkdir(t, "tmp")
	e.socket = startLoopd(t, e.dir)
	return e
}

func (e *env) mkdir(t *testing.T, name string) string {
	t.Helper()
	p := filepath.Join(e.dir, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// fixture builds the fidelity fixture and returns it, and a read-only bind
// mount of it: the assemblers get the tree read-only, as from the
// builder's mount.
func (e *env) fixture(t *testing.T) (fixture, readOnly string) {
	t.Helper()
	fixture = filepath.Join(e.dir, "fixture")
	fstree.MustBuildFixture(t, fixture)
	return fixture, e.readOnly(t, fixture)
}

func (e *env) readOnly(t *testing.T, dir string) string {
	t.Helper()
	ro := e.mkdir(t, "tree-ro")
	if err := unix.Mount(dir, ro, "", unix.MS_BIND, ""); err != nil {
		t.Fatalf("bind mount %s: %v", dir, err)
	}
	t.Cleanup(func() { unmount(t, ro) })
	if err := unix.Mount("", ro, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("remount %s read-only: %v", ro, err)
	}
	return ro
}

func unmount(t *testing.T, dir string) {
	t.Helper()
	if err := unix.Unmount(dir, 0); err != nil {
		t.Errorf("umount %s: %v", dir, err)
	}
}

// startLoopd serves loopd on a socket in dir until the test ends. Before
// it stops, every loop device backed by a file in dir must be gone.
func startLoopd(t *testing.T, dir string) string {
	t.Helper()
	sock := filepath.Join(dir, "loopd.sock")
	var log itest.LockedBuffer
	srv, err := loopd.NewServer(loopd.Config{Logger: slog.New(slog.NewTextHandler(&log, nil))})
	if err != nil {
		t.Fatal(err)
	}
	l, err := loopd.ListenSeqpacket(sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, l, nil) }()
	t.Cleanup(func() {
		waitUnbound(t, dir)
		cancel()
		if err := <-done; err != nil {
			t.Errorf("loopd: %v", err)
		}
		if t.Failed() {
			t.Logf("loopd log:\n%s", log.String())
		}
	})
	return sock
}

// run runs the assembler name as the builder would, with tree and options,
// writing into out. After it, nothing may be mounted below the
// assembler's TMPDIR and no loop device may stay attached to a file of
// the test.
func (e *env) run(t *testing.T, name, tree, out string, options any) (output string, err error) {
	t.Helper()
	cmd, err := itest.StageCommand(t.Context(), libDir, "assemblers/"+name,
		map[string]any{"tree": tree, "options": options, "output_dir": out})
	if err != nil {
		t.Fatal(err)
	}
	cmd.Env = append(os.Environ(), "FORGE_LOOPD_SOCKET="+e.socket, "TMPDIR="+e.tmp)
	// In a mount namespace of its own, with private propagation (Go
	// remounts / rprivate for Unshareflags), as in the builder's
	// buildroot: in the test's namespace, a process of another test
	// package making a mount namespace meanwhile took a copy of the
	// image's filesystem mount, which kept it in use after the
	// assembler's umount (tune2fs: Device or resource busy).
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Unshareflags: syscall.CLONE_NEWNS}
	b, err := cmd.CombinedOutput()
	if m := itest.MountsUnder(e.tmp); len(m) > 0 {
		t.Errorf("%s left mounts: %v", name, m)
		for _, mp := range slices.Backward(m) {
			unix.Unmount(mp, unix.MNT_DETACH)
		}
	}
	if left, _ := os.ReadDir(e.tmp); len(left) > 0 {
		t.Errorf("%s left %d entries in its TMPDIR", name, len(left))
	}
	waitUnbound(t, e.dir)
	return string(b), err
}

// mustRun runs the assembler and fails the test if it fails.
func (e *env) mustRun(t *testing.T, name, tree, out string, options any) {
	t.Helper()
	output, err := e.run(t, name, tree, out, options)
	if err != nil {
		t.Fatalf("%s: %v\n%s", name, err, output)
	}
}

// waitUnbound waits until no loop device is backed by a file under prefix:
// loopd detaches a client's devices once it sees the connection close.
func waitUnbound(t *testing.T, prefix string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for len(itest.LoopsBackedUnder(prefix)) > 0 {
		if time.Now().After(deadline) {
			t.Errorf("loop devices still attached %v after the client went away: %v", patience, itest.LoopsBackedUnder(prefix))
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// attachReadOnly gets a read-only loop device over [offset, offset+size)
// of img from the test's loopd, for the test's own inspection; it goes
// when the test ends.
func (e *env) attachReadOnly(t *testing.T, img string, offset, size int64) string {
	t.Helper()
	c, err := loopd.Dial(t.Context(), e.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	f, err := os.Open(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dev, err := os.Open("/dev")
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	a, err := c.Attach(t.Context(), f, dev, loopd.AttachOptions{Offset: uint64(offset), SizeLimit: uint64(size), ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	return "/dev/" + a.Devname
}

// mountReadOnly mounts the ext4 on node read-only at a new directory until
// the test ends.
func (e *env) mountReadOnly(t *testing.T, node, name string) string {
	t.Helper()
	mp := e.mkdir(t, name)
	if err := unix.Mount(node, mp, "ext4", unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("mount %s read-only: %v", node, err)
	}
	t.Cleanup(func() { unmount(t, mp) })
	return mp
}

// sh runs a tool and returns its standard output, failing the test if it
// fails.
func sh(t *testing.T, name string, args ...string) string {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return string(out)
}

// blkidExport is `blkid -p -o export`'s KEY=value lines of the image (at
// offset bytes into it).
func blkidExport(t *testing.T, img string, offset int64) map[string]string {
	t.Helper()
	out := sh(t, "blkid", "-p", "-o", "export", "--offset", fmt.Sprint(offset), img)
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			m[k] = v
		}
	}
	return m
}

// fsckClean runs a forced read-only fsck.ext4 on node, which must find
// nothing to fix, and checks that the filesystem has its journal (the
// assemblers add it after the copy).
func fsckClean(t *testing.T, node string) {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "fsck.ext4", "-n", "-f", node).CombinedOutput()
	if err != nil {
		t.Errorf("fsck.ext4 -n -f %s: %v\n%s", node, err, out)
	}
	out, err = exec.CommandContext(t.Context(), "dumpe2fs", "-h", node).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "has_journal") {
		t.Errorf("dumpe2fs -h %s: %v; want the feature has_journal in\n%s", node, err, out)
	}
}

// expectDiffs compares the fixture with a copy of it and checks that the
// differences are exactly want, as "path: property".
func expectDiffs(t *testing.T, fixture, copied string, want ...string) {
	t.Helper()
	diffs, err := fstree.Compare(fixture, copied, fstree.Options{CompareRootMeta: true, CheckSparse: true})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range diffs {
		got = append(got, d.Path+": "+string(d.Property))
	}
	if !slices.Equal(got, want) {
		var all strings.Builder
		for _, d := range diffs {
			all.WriteString("\n\t" + d.String())
		}
		t.Errorf("differences from the fixture: %q, want %q:%s", got, want, all.String())
	}
}

// outputFiles lists the names in the output directory.
func outputFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// allocated is the disk space a file takes.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks * 512
}
