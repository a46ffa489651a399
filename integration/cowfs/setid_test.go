package cowfs_test

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/fstree"
	"github.com/forge-build/forge/internal/mountinfo"
	"github.com/forge-build/forge/overlay"
)

// TestNosuidNodevUnlessAsked is issue 14's attack on writable mounts, in
// process: uid 65534 runs a setuid-root copy of id(1) from a writable
// mount (stored in the tree, or copied in by root) and must keep euid
// 65534; a device node there does not open. Both kinds are nosuid,nodev
// (and an overlay's lower mount too) unless Suid and Dev are asked for:
// then a device node made in the mount works, and set-id bits do.
func TestNosuidNodevUnlessAsked(t *testing.T) {
	eachKind(t, func(t *testing.T, kind string) {
		requireFUSE(t)
		id, err := exec.LookPath("id")
		if err != nil {
			t.Skipf("needs id(1): %v", err)
		}
		work := fstree.DiskTempDir(t)
		must(t, os.Chmod(work, 0o755)) // uid 65534 must reach the mounts
		s, err := cas.Open(filepath.Join(work, "store"), cas.Options{})
		must(t, err)
		t.Cleanup(func() { s.Close() })
		src := filepath.Join(work, "src")
		must(t, os.MkdirAll(filepath.Join(src, "bin"), 0o755))
		copySetuidRoot(t, id, filepath.Join(src, "bin/id"))
		must(t, unix.Mknod(filepath.Join(src, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
		must(t, unix.Chmod(filepath.Join(src, "null"), 0o666))
		res, err := s.Import(context.Background(), src, cas.ImportOptions{})
		must(t, err)

		for _, asked := range []bool{false, true} {
			name := "plain"
			if asked {
				name = "suid-dev"
			}
			mp := filepath.Join(work, name)
			must(t, os.Mkdir(mp, 0o755))
			scratch := filepath.Join(s.Dir(), "tmp", "mount-"+name)
			must(t, os.MkdirAll(scratch, 0o700))
			m, err := mountKind(kind, mp, s, res.Tree, scratch, fusefs.Options{AllowOther: true, Suid: asked, Dev: asked, Logf: t.Logf})
			must(t, err)
			t.Cleanup(func() {
				if err := m.Unmount(true); err != nil {
					t.Errorf("unmount: %v", err)
				}
				m.Wait()
				os.RemoveAll(scratch)
			})
			points := []string{mp}
			if kind == kindOverlay {
				points = append(points, filepath.Join(scratch, "lower"))
			}
			for _, p := range points {
				opts := mountOptions(t, p)
				if has := hasOpt(opts, "nosuid") && hasOpt(opts, "nodev"); has == asked {
					t.Errorf("%s (Suid, Dev: %v) has options %q", p, asked, opts)
				}
			}
			copySetuidRoot(t, id, filepath.Join(mp, "bin/id2"))
			must(t, unix.Mknod(filepath.Join(mp, "null2"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
			want := "65534"
			if asked {
				want = "0"
			}
			for _, prog := range []string{"bin/id", "bin/id2"} {
				if got := euidAsNobody(t, filepath.Join(mp, prog)); got != want {
					t.Errorf("setuid-root %s of a mount with Suid %v, run by uid 65534: euid %s, want %s", prog, asked, got, want)
				}
			}
			for _, dev := range []string{"null", "null2"} {
				f, err := os.OpenFile(filepath.Join(mp, dev), os.O_RDWR, 0)
				switch {
				case asked && err != nil:
					t.Errorf("open device node %s of a mount with Dev: %v", dev, err)
				case asked:
					if _, err := f.Write([]byte("x")); err != nil {
						t.Errorf("write device node %s: %v", dev, err)
					}
					f.Close()
				case err == nil:
					f.Close()
					t.Errorf("root opened device node %s of a mount without Dev", dev)
				case !errors.Is(err, unix.EACCES):
					t.Errorf("open device node %s of a mount without Dev: %v, want EACCES", dev, err)
				}
			}
		}
	})
}

// TestOverlayScratchMustBePrivate: the upper layer keeps the mount's
// files as they are (set-id bits and device nodes on a filesystem that
// honours them), so overlay.New refuses a scratch directory that others
// may enter.
func TestOverlayScratchMustBePrivate(t *testing.T) {
	requireFUSE(t)
	work := fstree.DiskTempDir(t)
	s, err := cas.Open(filepath.Join(work, "store"), cas.Options{})
	must(t, err)
	t.Cleanup(func() { s.Close() })
	src := filepath.Join(work, "src")
	must(t, os.Mkdir(src, 0o755))
	res, err := s.Import(context.Background(), src, cas.ImportOptions{})
	must(t, err)
	mp, scratch := filepath.Join(work, "mnt"), filepath.Join(work, "scratch")
	must(t, os.Mkdir(mp, 0o755))
	must(t, os.Mkdir(scratch, 0o755))
	must(t, os.Chmod(scratch, 0o755))
	m, err := overlay.New(mp, fusefs.NewCache(s, 0), res.Tree, overlay.Options{Scratch: scratch, Logf: t.Logf})
	if err == nil {
		m.Unmount(true)
		m.Wait()
		t.Fatal("overlay.New took a scratch directory of mode 0755")
	}
	if !strings.Contains(err.Error(), scratch) {
		t.Errorf("overlay.New's refusal %q does not name the scratch directory", err)
	}
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
}

// euidAsNobody runs the id program at prog as uid 65534 and returns the
// effective uid it reports.
//
// prog lives on a mount this test process serves, and Go starts a child
// with vfork: the parent's thread waits in clone, holding its P, until
// the child's execve is done, and the execve of prog asks the FUSE server
// (this process) for prog's xattrs. If the runtime then stops the world,
// the server can never answer, and the test hangs for good (it did in
// two of this day's runs). So the child execs env(1) from the host, and env execs
// prog as a process of its own, after the parent is free again.
func euidAsNobody(t *testing.T, prog string) string {
	t.Helper()
	env, err := exec.LookPath("env")
	if err != nil {
		t.Skipf("needs env(1): %v", err)
	}
	cmd := exec.Command(env, prog, "-u")
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s -u as uid 65534: %v\n%s", prog, err, out)
	}
	return strings.TrimSpace(string(out))
}

// mountOptions returns the per-mount options of what is mounted at p.
func mountOptions(t *testing.T, p string) string {
	t.Helper()
	ms, err := mountinfo.Read()
	must(t, err)
	for i := len(ms) - 1; i >= 0; i-- {
		if ms[i].Point == p {
			return ms[i].Options
		}
	}
	t.Fatalf("nothing is mounted at %s", p)
	return ""
}

func hasOpt(opts, opt string) bool {
	for _, o := range strings.Split(opts, ",") {
		if o == opt {
			return true
		}
	}
	return false
}
