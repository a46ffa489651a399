package cowfs_test

import (
	"archive/tar"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/fstree"
)

// The benchmarks below run write-heavy work on a directory on the disk and
// on a copy-on-write mount served by this process, so that
// `go test -cpuprofile` sees the server's side of every request:
//
//	go test -run XXX -bench 'Untar|BigWrite|RoundTrip' ./integration/cowfs/
//
// The untar's tarball is made like bench/areas/cow.sh's (files of 1–8 KiB,
// about 67 a directory, owned by root, one mtime); FORGE_BENCH_UNTAR_FILES
// sets how many files it holds (default 5000; bench/run uses 20000).
// FORGE_BENCH_COUNT_OPS=1 logs every FUSE request of the mount and reports
// how many of each kind it served per file (go-fuse's debug log, which
// slows the mount down: counts, not times); FORGE_BENCH_OPLOG=FILE also
// writes the log to FILE.

func untarFiles() int {
	if v, err := strconv.Atoi(os.Getenv("FORGE_BENCH_UNTAR_FILES")); err == nil && v > 0 {
		return v
	}
	return 5000
}

// writeBall writes the tarball of n files to path, sorted by name as
// `tar --sort=name` writes it: a directory, then what it holds.
func writeBall(b *testing.B, path string, n int) {
	b.Helper()
	f, err := os.Create(path)
	must(b, err)
	tw := tar.NewWriter(f)
	mtime := time.Unix(1704067200, 0)
	byDir := map[string][]int{}
	var dirs []string
	for i := 0; i < n; i++ {
		d := fmt.Sprintf("d%02d/e%02d", i%20, i/20%15)
		if byDir[d] == nil {
			dirs = append(dirs, d)
		}
		byDir[d] = append(byDir[d], i)
	}
	sort.Strings(dirs)
	header := func(h *tar.Header) {
		h.ModTime, h.Format = mtime, tar.FormatGNU
		must(b, tw.WriteHeader(h))
	}
	header(&tar.Header{Typeflag: tar.TypeDir, Name: "./", Mode: 0o755})
	made := map[string]bool{}
	for _, d := range dirs {
		if top := filepath.Dir(d); !made[top] {
			made[top] = true
			header(&tar.Header{Typeflag: tar.TypeDir, Name: "./" + top + "/", Mode: 0o755})
		}
		header(&tar.Header{Typeflag: tar.TypeDir, Name: "./" + d + "/", Mode: 0o755})
		for _, i := range byDir[d] {
			rel := fmt.Sprintf("%s/f%05d", d, i)
			size := 1024 + (i*7919)%7169
			line := "forge bench untar file " + rel + "\n"
			header(&tar.Header{Typeflag: tar.TypeReg, Name: "./" + rel, Mode: 0o644, Size: int64(size)})
			_, err := tw.Write([]byte(strings.Repeat(line, size/len(line)+1)[:size]))
			must(b, err)
		}
	}
	must(b, tw.Close())
	must(b, f.Close())
}

// benchEnv is a store, and a tarball for the untar benchmarks.
type benchEnv struct {
	work, ball string
	store      *cas.Store
	n          int // files in the tarball (1 without one)
}

// newBenchEnv makes a store on the disk, and the tarball when withBall.
func newBenchEnv(b *testing.B, withBall bool) *benchEnv {
	b.Helper()
	if os.Geteuid() != 0 {
		b.Skip("needs root: mounts FUSE")
	}
	work := fstree.DiskTempDir(b)
	s, err := cas.Open(filepath.Join(work, "store"), cas.Options{})
	must(b, err)
	b.Cleanup(func() { s.Close() })
	e := &benchEnv{work: work, store: s, n: 1}
	if withBall {
		if _, err := exec.LookPath("tar"); err != nil {
			b.Skipf("needs tar: %v", err)
		}
		e.ball, e.n = filepath.Join(work, "ball.tar"), untarFiles()
		writeBall(b, e.ball, e.n)
	}
	return e
}

// mountEmpty mounts an empty tree writable (kindFUSE or kindOverlay) below
// work; the returned function unmounts it.
func (e *benchEnv) mountEmpty(b *testing.B, name, kind string) (string, writable, func()) {
	b.Helper()
	mp := filepath.Join(e.work, name)
	must(b, os.Mkdir(mp, 0o755))
	scratch := filepath.Join(e.store.Dir(), "tmp", "mount-"+name)
	must(b, os.MkdirAll(scratch, 0o700))
	opts := fusefs.Options{AllowOther: true, Suid: true, Dev: true, Logf: b.Logf}
	var ops *opCounter
	if os.Getenv("FORGE_BENCH_COUNT_OPS") != "" {
		ops = &opCounter{counts: map[string]int{}}
		opts.Debug, opts.Logf = true, ops.logf
	}
	m, err := mountKind(kind, mp, e.store, digest.Zero, scratch, opts)
	must(b, err)
	return mp, m, func() {
		must(b, m.Unmount(true))
		m.Wait()
		os.RemoveAll(scratch)
		if ops != nil {
			b.Log(ops.report(e.n))
			if p := os.Getenv("FORGE_BENCH_OPLOG"); p != "" {
				must(b, os.WriteFile(p, []byte(strings.Join(ops.lines, "\n")+"\n"), 0o644))
			}
		}
	}
}

// opCounter counts the FUSE requests a mount logs with Debug set, by
// opcode.
type opCounter struct {
	mu     sync.Mutex
	counts map[string]int
	lines  []string
}

func (c *opCounter) logf(format string, args ...any) {
	line := fmt.Sprintf(format, args...)
	f := strings.Fields(line)
	c.mu.Lock()
	if len(c.lines) < 2000000 {
		c.lines = append(c.lines, line)
	}
	if len(f) >= 3 && f[0] == "rx" {
		c.counts[f[2]]++
	}
	c.mu.Unlock()
}

// report lists the counts divided by files (per file; 1: totals), most
// frequent first.
func (c *opCounter) report(files int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	type kv struct {
		op string
		n  int
	}
	var all []kv
	total := 0
	for op, n := range c.counts {
		all = append(all, kv{op, n})
		total += n
	}
	sort.Slice(all, func(i, j int) bool { return all[i].n > all[j].n })
	var sb strings.Builder
	per := "per file"
	if files == 1 {
		per = "in all"
	}
	fmt.Fprintf(&sb, "FUSE requests %s: %.2f:", per, float64(total)/float64(files))
	for _, x := range all {
		fmt.Fprintf(&sb, " %s %.2f", x.op, float64(x.n)/float64(files))
	}
	return sb.String()
}

func untar(b *testing.B, ball, dir string) {
	b.Helper()
	out, err := exec.Command("tar", "xf", ball, "-C", dir).CombinedOutput()
	if err != nil {
		b.Fatalf("tar xf into %s: %v: %s", dir, err, out)
	}
}

// BenchmarkUntar untars the tarball into a new directory on the disk
// (with and without syncing it, as bench/run times ext4 with sync -f) and
// into a new copy-on-write mount of an empty tree; ns/file is the figure
// to compare.
func BenchmarkUntar(b *testing.B) {
	e := newBenchEnv(b, true)
	run := 0
	b.Run("ext4", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			run++
			dir := filepath.Join(e.work, "ext4-"+strconv.Itoa(run))
			must(b, os.Mkdir(dir, 0o755))
			unix.Sync()
			b.StartTimer()
			untar(b, e.ball, dir)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*e.n), "ns/file")
	})
	b.Run("ext4+sync", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			run++
			dir := filepath.Join(e.work, "ext4-"+strconv.Itoa(run))
			must(b, os.Mkdir(dir, 0o755))
			unix.Sync()
			b.StartTimer()
			untar(b, e.ball, dir)
			fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY, 0)
			must(b, err)
			must(b, unix.Syncfs(fd))
			unix.Close(fd)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*e.n), "ns/file")
	})
	for _, kind := range []string{kindFUSE, kindOverlay} {
		b.Run(kind, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				run++
				mp, _, unmount := e.mountEmpty(b, "mnt-"+strconv.Itoa(run), kind)
				unix.Sync()
				b.StartTimer()
				untar(b, e.ball, mp)
				b.StopTimer()
				unmount()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*e.n), "ns/file")
		})
	}
}

// BenchmarkUntarCommit untars into a copy-on-write mount and commits it:
// the commit must read files wherever the mount keeps them.
func BenchmarkUntarCommit(b *testing.B) {
	e := newBenchEnv(b, true)
	run := 0
	for _, kind := range []string{kindFUSE, kindOverlay} {
		b.Run(kind, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				run++
				mp, m, unmount := e.mountEmpty(b, "mnt-"+strconv.Itoa(run), kind)
				untar(b, e.ball, mp)
				unix.Sync()
				b.StartTimer()
				_, err := m.Commit(b.Context(), func() (fusefs.Writer, error) {
					w, err := e.store.NewWriter()
					return casWriter{w}, err
				})
				must(b, err)
				b.StopTimer()
				unmount()
				b.StartTimer()
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*e.n), "ns/file")
		})
	}
}

// BenchmarkRoundTrip times a FUSE request that does next to nothing (a
// getxattr of a missing name, which the kernel never caches) made by
// another process, against the same call on the disk: the floor under
// every request of the mount. ns/call is per call, in python3.
func BenchmarkRoundTrip(b *testing.B) {
	if _, err := exec.LookPath("python3"); err != nil {
		b.Skipf("needs python3: %v", err)
	}
	e := newBenchEnv(b, false)
	mp, _, unmount := e.mountEmpty(b, "mnt-rt", kindFUSE)
	defer unmount()
	for _, where := range []string{e.work, mp} {
		must(b, os.WriteFile(filepath.Join(where, "f"), []byte("x"), 0o644))
	}
	const calls = 20000
	for _, tc := range []struct{ name, dir string }{{"ext4", e.work}, {"cow", mp}} {
		b.Run(tc.name, func(b *testing.B) {
			script := fmt.Sprintf(`import os,time
p=%q
t=time.perf_counter()
for i in range(%d):
    try: os.getxattr(p, "user.none")
    except OSError: pass
print((time.perf_counter()-t)/%d*1e9)`, filepath.Join(tc.dir, "f"), calls, calls)
			var total float64
			for i := 0; i < b.N; i++ {
				out, err := exec.Command("python3", "-c", script).CombinedOutput()
				if err != nil {
					b.Fatalf("python3: %v: %s", err, out)
				}
				ns, err := strconv.ParseFloat(strings.TrimSpace(string(out)), 64)
				must(b, err)
				total += ns
			}
			b.ReportMetric(total/float64(b.N), "ns/call")
		})
	}
}

// BenchmarkBigWrite writes one new file of 256 MiB with dd (bs=1M,
// conv=fsync) into a directory on the disk and into a copy-on-write mount.
func BenchmarkBigWrite(b *testing.B) {
	e := newBenchEnv(b, false)
	src := filepath.Join(e.work, "big-src")
	data := make([]byte, 1<<20)
	f, err := os.Create(src)
	must(b, err)
	for i := 0; i < 256; i++ {
		for j := range data {
			data[j] = byte(i*7 + j*13 + j>>8)
		}
		_, err := f.Write(data)
		must(b, err)
	}
	must(b, f.Close())
	dd := func(b *testing.B, dst string) {
		out, err := exec.Command("dd", "if="+src, "of="+dst, "bs=1M", "conv=fsync").CombinedOutput()
		if err != nil {
			b.Fatalf("dd: %v: %s", err, out)
		}
	}
	run := 0
	b.Run("ext4", func(b *testing.B) {
		b.SetBytes(256 << 20)
		for i := 0; i < b.N; i++ {
			run++
			dd(b, filepath.Join(e.work, "big-"+strconv.Itoa(run)))
		}
	})
	for _, kind := range []string{kindFUSE, kindOverlay} {
		b.Run(kind, func(b *testing.B) {
			b.SetBytes(256 << 20)
			for i := 0; i < b.N; i++ {
				b.StopTimer()
				run++
				mp, _, unmount := e.mountEmpty(b, "mnt-"+strconv.Itoa(run), kind)
				b.StartTimer()
				dd(b, filepath.Join(mp, "big"))
				b.StopTimer()
				unmount()
				b.StartTimer()
			}
		})
	}
}
