package daemon_test

// The attacks of issue 14 on mounts: a set-id program in a writable mount
// run by any user, device nodes there, a build's suid,dev mounts within
// other users' reach, and a mountpoint inside the store.

import (
	"bufio"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/internal/fstree"
	"github.com/forge-build/forge/internal/mountinfo"
)

var nobody = &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}

// writableKinds names each kind of writable mount and makes, under work, a
// store whose --rw mounts are of that kind.
var writableKinds = []struct {
	kind  string
	store func(t *testing.T, work string) string
}{
	{"overlay", func(t *testing.T, work string) string { return storeDir(t) }},
	{"fuse", overlayStoreDir},
}

// setIDTree makes a tree at src holding bin/id, a copy of id(1) that is
// setuid root, and dev/null, a char device 1:3 that anyone may open.
func setIDTree(t *testing.T, src string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(src, "bin"), 0o755))
	must(t, os.MkdirAll(filepath.Join(src, "dev"), 0o755))
	copySetuidRoot(t, idPath(t), filepath.Join(src, "bin/id"))
	must(t, unix.Mknod(filepath.Join(src, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	must(t, unix.Chmod(filepath.Join(src, "dev/null"), 0o666))
}

func idPath(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("id")
	if err != nil {
		t.Skipf("needs id(1): %v", err)
	}
	return p
}

// copySetuidRoot copies the program at from to a new file to, owned by
// root and mode 04755.
func copySetuidRoot(t *testing.T, from, to string) {
	t.Helper()
	b, err := os.ReadFile(from)
	must(t, err)
	must(t, os.WriteFile(to, b, 0o755))
	must(t, os.Chown(to, 0, 0))
	// unix.Chmod: os.Chmod takes set-id bits as os.ModeSetuid only.
	must(t, unix.Chmod(to, 0o4755))
	var st unix.Stat_t
	must(t, unix.Stat(to, &st))
	if st.Mode&unix.S_ISUID == 0 || st.Uid != 0 {
		t.Fatalf("%s: mode %#o, owner %d: want setuid root", to, st.Mode, st.Uid)
	}
}

// euidAsNobody runs the id program at prog as uid 65534 and returns the
// effective uid it reports.
func euidAsNobody(t *testing.T, prog string) string {
	t.Helper()
	cmd := exec.Command(prog, "-u")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -u as uid 65534: %v\n%s", prog, err, out)
	}
	return strings.TrimSpace(string(out))
}

// mountOf returns the mount table's line for mountpoint mp.
func mountOf(t *testing.T, mp string) mountinfo.Mount {
	t.Helper()
	ms, err := mountinfo.Read()
	must(t, err)
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Point == mp {
			return ms[i]
		}
	}
	t.Fatalf("nothing is mounted at %s", mp)
	return mountinfo.Mount{}
}

func hasOption(m mountinfo.Mount, opt string) bool {
	for _, o := range strings.Split(m.Options, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// mountCLI runs forge store mount with args (the last is the mountpoint,
// made first) and unmounts it when the test ends.
func mountCLI(t *testing.T, store string, args ...string) {
	t.Helper()
	mp := args[len(args)-1]
	must(t, os.MkdirAll(mp, 0o755))
	t.Cleanup(func() {
		if mountsAt(mp) {
			if _, _, err := forge(t, "store", "umount", "--store", store, "--lazy", mp); err != nil {
				unix.Unmount(mp, unix.MNT_DETACH)
			}
		}
	})
	mustForge(t, append([]string{"store", "mount", "--store", store}, args...)...)
}

// mountsAt reports whether anything is mounted at mp.
func mountsAt(mp string) bool {
	for _, m := range itest.MountsUnder(mp) {
		if m == mp {
			return true
		}
	}
	return false
}

// TestWritableMountRunsNoSetIDProgram is the attack of issue 14 part 2: a
// setuid-root program in a --rw mount (stored in the tree, or copied in by
// root after mounting), run by uid 65534, must not run with euid 0, and a
// device node there must not open; both kinds of writable mount are
// nosuid,nodev. Asked for with --build-root, the mount honours both: the
// device nodes root makes there work (and the set-id bits).
func TestWritableMountRunsNoSetIDProgram(t *testing.T) {
	for _, k := range writableKinds {
		t.Run(k.kind, func(t *testing.T) {
			work := fstree.DiskTempDir(t)
			// uid 65534 must reach the mounts.
			must(t, os.Chmod(work, 0o755))
			store := k.store(t, work)
			src := filepath.Join(work, "src")
			setIDTree(t, src)
			importTree(t, store, src, "t")

			mp := filepath.Join(work, "rw")
			mountCLI(t, store, "--rw", "t", mp)
			m := mountOf(t, mp)
			if got := kindOf(m); got != k.kind {
				t.Fatalf("the --rw mount is %s (%s), want %s", got, m.FSType, k.kind)
			}
			if !hasOption(m, "nosuid") || !hasOption(m, "nodev") {
				t.Errorf("the --rw mount's options are %q in /proc/self/mountinfo; want nosuid and nodev", m.Options)
			}
			copySetuidRoot(t, idPath(t), filepath.Join(mp, "bin/id2"))
			for _, prog := range []string{"bin/id", "bin/id2"} {
				if euid := euidAsNobody(t, filepath.Join(mp, prog)); euid != "65534" {
					t.Errorf("a setuid-root %s in a --rw mount, run by uid 65534, ran with euid %s", prog, euid)
				}
			}
			must(t, unix.Mknod(filepath.Join(mp, "dev/null2"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
			for _, dev := range []string{"dev/null", "dev/null2"} {
				f, err := os.OpenFile(filepath.Join(mp, dev), os.O_RDWR, 0)
				if err == nil {
					f.Close()
					t.Errorf("root opened device node %s of a --rw mount without --build-root", dev)
				} else if !errors.Is(err, unix.EACCES) {
					t.Errorf("open device node %s of a --rw mount: %v, want EACCES (nodev)", dev, err)
				}
			}

			br := filepath.Join(work, "rw-build-root")
			mountCLI(t, store, "--rw", "--build-root", "t", br)
			if m := mountOf(t, br); hasOption(m, "nosuid") || hasOption(m, "nodev") {
				t.Errorf("the --rw --build-root mount's options are %q; want neither nosuid nor nodev", m.Options)
			}
			must(t, unix.Mknod(filepath.Join(br, "dev/null2"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
			for _, dev := range []string{"dev/null", "dev/null2"} {
				checkDevNull(t, filepath.Join(br, dev))
			}
			if euid := euidAsNobody(t, filepath.Join(br, "bin/id")); euid != "0" {
				t.Errorf("a setuid-root id in a --build-root mount ran with euid %s, want 0: set-id bits asked for are not honoured", euid)
			}
		})
	}
}

// kindOf names the kind of a writable mount from its mount table line.
func kindOf(m mountinfo.Mount) string {
	if m.FSType == "overlay" {
		return "overlay"
	}
	if strings.HasPrefix(m.FSType, "fuse") {
		return "fuse"
	}
	return m.FSType
}

// checkDevNull opens path, which must be a char device 1:3, writes to it
// and reads nothing back.
func checkDevNull(t *testing.T, path string) {
	t.Helper()
	var st unix.Stat_t
	must(t, unix.Stat(path, &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 3 {
		t.Errorf("%s: mode %#o, rdev %d:%d; want a char device 1:3", path, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
		return
	}
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Errorf("open device node %s: %v", path, err)
		return
	}
	defer f.Close()
	if _, err := f.Write([]byte("into the void\n")); err != nil {
		t.Errorf("write %s: %v", path, err)
	}
	if n, err := f.Read(make([]byte, 16)); n != 0 || err != io.EOF {
		t.Errorf("read %s: %d bytes, %v; want 0 bytes and EOF", path, n, err)
	}
}

// TestMountpointInsideTheStoreIsRefused is the attack of issue 14 part 3:
// a mount over STORE/packs (or the index, or the store) hides the store's
// files, and a later fsck --repair took them for lost. The CLI refuses
// such mountpoints with exit 2, symlinks resolved, and so does the daemon
// for any client, naming the mountpoint and the store.
func TestMountpointInsideTheStoreIsRefused(t *testing.T) {
	store := storeDir(t)
	work := filepath.Dir(store)
	src := filepath.Join(work, "src")
	must(t, os.MkdirAll(src, 0o755))
	must(t, os.WriteFile(filepath.Join(src, "f"), []byte("f\n"), 0o644))
	importTree(t, store, src, "t1")
	link := filepath.Join(work, "packs-link")
	must(t, os.Symlink(filepath.Join(store, "packs"), link))
	runDir := filepath.Join(store, "buildroots")
	must(t, os.MkdirAll(runDir, 0o700))

	bad := []string{
		filepath.Join(store, "packs"),
		filepath.Join(store, "index"),
		store,
		link,
		runDir,
		filepath.Dir(store), // above the store: it would hide it all
	}
	for _, mp := range bad {
		for _, rw := range [][]string{nil, {"--rw"}} {
			args := append(append([]string{"store", "mount", "--store", store}, rw...), "t1", mp)
			_, stderr, err := forge(t, args...)
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Errorf("forge %s: %v; want exit status 2", strings.Join(args, " "), err)
			}
			if !strings.Contains(stderr, mp) || !strings.Contains(stderr, store) {
				t.Errorf("forge %s said %q; want it to name %s and the store %s", strings.Join(args, " "), stderr, mp, store)
			}
			if mountsAt(mp) {
				unix.Unmount(mp, unix.MNT_DETACH)
				t.Errorf("forge %s mounted", strings.Join(args, " "))
			}
		}
	}

	// The daemon refuses too, whatever the client checked.
	c := client.NewClient(store)
	defer c.Close()
	for _, mp := range bad {
		for _, writable := range []bool{false, true} {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			_, err := c.Mount(ctx, client.MountRequest{Tree: "t1", Mountpoint: client.Path(mp), Writable: writable})
			cancel()
			if !errors.Is(err, cas.ErrInvalidArgument) {
				t.Errorf("the daemon, asked to mount at %s (writable %v): %v; want an invalid argument", mp, writable, err)
			} else if !strings.Contains(err.Error(), mp) || !strings.Contains(err.Error(), store) {
				t.Errorf("the daemon's refusal %q does not name %s and the store %s", err, mp, store)
			}
			if mountsAt(mp) {
				unix.Unmount(mp, unix.MNT_DETACH)
				t.Errorf("the daemon mounted at %s", mp)
			}
		}
	}
	if out, _, err := forge(t, "store", "fsck", "--store", store); err != nil {
		t.Errorf("fsck after the refused mounts: %v\n%s", err, out)
	}
}

// TestRunMountsAreOnlyRootsToReach: the trees a forge run mounts on the
// host honour set-id bits and device nodes (a build root needs them), so
// they live where no other user can reach them, even in a store that
// others may traverse and whose run directory an older forge made 0755.
func TestRunMountsAreOnlyRootsToReach(t *testing.T) {
	store := storeDir(t)
	work := filepath.Dir(store)
	must(t, os.Chmod(work, 0o755))
	src := filepath.Join(work, "src")
	setIDTree(t, src)
	importTree(t, store, src, "t")
	must(t, os.Chmod(store, 0o755))
	runDir := filepath.Join(store, "buildroots")
	must(t, os.MkdirAll(runDir, 0o755))
	must(t, os.Chmod(runDir, 0o755))

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	cmd := exec.CommandContext(ctx, forgeBin, "run", "--store", store, "--tree", "t", "--",
		"sh", "-c", "mknod /run/osbuild/tree/dev/null2 c 1 3 && echo x > /run/osbuild/tree/dev/null2 && echo ready; read line; exit 0")
	stdin, err := cmd.StdinPipe()
	must(t, err)
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	var stderr itest.LockedBuffer
	cmd.Stderr = &stderr
	cmd.WaitDelay = 10 * time.Second
	must(t, cmd.Start())
	t.Cleanup(func() {
		defer cancel()
		stdin.Close()
		if err := cmd.Wait(); err != nil {
			t.Errorf("forge run: %v\n%s", err, stderr.String())
		}
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		t.Fatalf("forge run printed %q (%v), want ready: a device node in the run's tree did not work\n%s", line, err, stderr.String())
	}

	fi, err := os.Stat(runDir)
	must(t, err)
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("%s has mode %#o during a run, want 0700", runDir, fi.Mode().Perm())
	}
	mps := itest.MountsUnder(runDir)
	if len(mps) == 0 {
		t.Fatalf("forge run mounts nothing under %s", runDir)
	}
	ms, err := mountinfo.Read()
	must(t, err)
	var tmpMounts []string
	for _, m := range ms {
		if rel, err := filepath.Rel(filepath.Join(store, "tmp"), m.Point); err == nil && !strings.HasPrefix(rel, "..") {
			tmpMounts = append(tmpMounts, m.Point)
		}
	}
	for _, mp := range append(mps, tmpMounts...) {
		cmd := exec.Command("stat", mp)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "Permission denied") {
			t.Errorf("uid 65534 can reach %s, a run's mount: stat said %v\n%s", mp, err, out)
		}
	}
}
