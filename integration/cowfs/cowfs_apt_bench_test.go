package cowfs_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/fstree"
)

// BenchmarkAptGet installs packages with apt-get in a chroot of a Debian
// tree on a copy-on-write mount served by this process, as bench/run cow's
// apt row does with the daemon, so that -cpuprofile and
// FORGE_BENCH_COUNT_OPS see the server's side. It needs what bench/run
// caches: FORGE_BENCH_APT_TREE (a debootstrap tree) and
// FORGE_BENCH_APT_CACHE (a directory with apt's lists/ and archives/ holding
// the .debs of FORGE_BENCH_APT_PKGS, default "openssh-server python3 perl").
// FORGE_BENCH_APT_EXT4=1 runs the same on a cp -a copy on the disk instead;
// FORGE_BENCH_APT_KIND=fuse on forge's copy-on-write FUSE filesystem
// instead of an overlay.
func BenchmarkAptGet(b *testing.B) {
	tree, cache := os.Getenv("FORGE_BENCH_APT_TREE"), os.Getenv("FORGE_BENCH_APT_CACHE")
	if tree == "" || cache == "" {
		b.Skip("needs FORGE_BENCH_APT_TREE and FORGE_BENCH_APT_CACHE (see bench/areas/cow.sh)")
	}
	if os.Geteuid() != 0 {
		b.Skip("needs root: mounts FUSE and chroots")
	}
	pkgs := os.Getenv("FORGE_BENCH_APT_PKGS")
	if pkgs == "" {
		pkgs = "openssh-server python3 perl"
	}
	work := fstree.DiskTempDir(b)
	s, err := cas.Open(filepath.Join(work, "store"), cas.Options{})
	must(b, err)
	b.Cleanup(func() { s.Close() })
	res, err := s.Import(context.Background(), tree, cas.ImportOptions{})
	must(b, err)
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		var root string
		var unmount func()
		if os.Getenv("FORGE_BENCH_APT_EXT4") != "" {
			root = filepath.Join(work, "ext4-"+itoa(i))
			out, err := exec.Command("cp", "-a", tree, root).CombinedOutput()
			if err != nil {
				b.Fatalf("cp -a: %v: %s", err, out)
			}
			unmount = func() {}
		} else {
			root = filepath.Join(work, "mnt-"+itoa(i))
			must(b, os.Mkdir(root, 0o755))
			scratch := filepath.Join(s.Dir(), "tmp", "mount-"+itoa(i))
			must(b, os.MkdirAll(scratch, 0o700))
			opts := fusefs.Options{AllowOther: true, Suid: true, Dev: true, Logf: b.Logf}
			var ops *opCounter
			if os.Getenv("FORGE_BENCH_COUNT_OPS") != "" {
				ops = &opCounter{counts: map[string]int{}}
				opts.Debug, opts.Logf = true, ops.logf
			}
			kind := kindOverlay
			if os.Getenv("FORGE_BENCH_APT_KIND") == kindFUSE {
				kind = kindFUSE
			}
			m, err := mountKind(kind, root, s, res.Tree, scratch, opts)
			must(b, err)
			unmount = func() {
				if err := m.Unmount(true); err != nil {
					b.Errorf("unmount: %v", err)
				}
				m.Wait()
				os.RemoveAll(scratch)
				if ops != nil {
					b.Log(ops.report(1))
					if p := os.Getenv("FORGE_BENCH_OPLOG"); p != "" {
						must(b, os.WriteFile(p, []byte(strings.Join(ops.lines, "\n")), 0o644))
					}
				}
			}
		}
		binds := chrootSetup(b, root, cache)
		unix.Sync()
		b.StartTimer()
		cmd := exec.Command("chroot", root, "/bin/sh", "-c", "apt-get install -y --no-install-recommends --no-download "+pkgs)
		cmd.Env = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "HOME=/root", "LC_ALL=C", "DEBIAN_FRONTEND=noninteractive"}
		out, err := cmd.CombinedOutput()
		b.StopTimer()
		for i := len(binds) - 1; i >= 0; i-- {
			if err := unix.Unmount(binds[i], 0); err != nil {
				unix.Unmount(binds[i], unix.MNT_DETACH)
			}
		}
		if err != nil {
			b.Fatalf("apt-get install: %v: %s", err, out)
		}
		unmount()
		b.StartTimer()
	}
}

// chrootSetup prepares root for apt-get as bench/areas/cow.sh does and
// returns the bind mounts it made.
func chrootSetup(b *testing.B, root, cache string) []string {
	b.Helper()
	resolv, err := os.ReadFile("/etc/resolv.conf")
	must(b, err)
	os.Remove(filepath.Join(root, "etc/resolv.conf"))
	must(b, os.WriteFile(filepath.Join(root, "etc/resolv.conf"), resolv, 0o644))
	must(b, os.WriteFile(filepath.Join(root, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 101\n"), 0o755))
	var binds []string
	for _, d := range []struct{ src, dst string }{
		{"/proc", "proc"}, {"/sys", "sys"}, {"/dev", "dev"},
		{filepath.Join(cache, "lists"), "var/lib/apt/lists"},
		{filepath.Join(cache, "archives"), "var/cache/apt/archives"},
	} {
		dst := filepath.Join(root, d.dst)
		must(b, os.MkdirAll(dst, 0o755))
		must(b, unix.Mount(d.src, dst, "", unix.MS_BIND, ""))
		binds = append(binds, dst)
	}
	b.Cleanup(func() {
		for i := len(binds) - 1; i >= 0; i-- {
			unix.Unmount(binds[i], unix.MNT_DETACH)
		}
	})
	return binds
}
