package fusefs

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/internal/fstree"
)

// The tests below run the same operations on an ext4 copy of a stored tree
// and on a copy-on-write mount of it, with new files placed in memory and
// then in scratch files (cowFS.createQuiet decides), and require the same
// results, the same trees, and the same tree after a commit.

// cowEnv is a stored tree, its ext4 copy and a copy-on-write mount of it.
type cowEnv struct {
	t     *testing.T
	store *cas.Store
	work  string
	ref   string // the ext4 copy
	mp    string // the mount
	m     *CowMount
}

const cowTestSec = 1614834367

func requireMount(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
}

func check(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// newCowEnv stores a small tree with a few kinds of files, exports a copy
// to ext4 and mounts it with tune applied to the mount's state.
func newCowEnv(t *testing.T, tune func(*cowFS)) *cowEnv {
	t.Helper()
	requireMount(t)
	unix.Umask(0o022)
	work := fstree.DiskTempDir(t)
	s, err := cas.Open(filepath.Join(work, "store"), cas.Options{})
	check(t, err)
	t.Cleanup(func() { s.Close() })
	src := filepath.Join(work, "src")
	check(t, os.MkdirAll(filepath.Join(src, "d"), 0o755))
	check(t, os.WriteFile(filepath.Join(src, "small"), []byte(strings.Repeat("small file\n", 9)), 0o644))
	check(t, os.WriteFile(filepath.Join(src, "d/big"), fstree.RandomBytes("big", 3<<20), 0o644))
	writeSparse := func(name string, size int64, parts map[int64]string) {
		f, err := os.Create(filepath.Join(src, name))
		check(t, err)
		check(t, f.Truncate(size))
		for off, s := range parts {
			_, err := f.WriteAt([]byte(s), off)
			check(t, err)
		}
		check(t, f.Close())
	}
	writeSparse("tailhole", 100000, map[int64]string{0: strings.Repeat("t", 3000)})
	writeSparse("innerhole", 300000, map[int64]string{0: "start", 200000: "middle"})
	setTimes(t, src)
	res, err := s.Import(context.Background(), src, cas.ImportOptions{})
	check(t, err)
	e := &cowEnv{t: t, store: s, work: work, ref: filepath.Join(work, "ref")}
	_, err = s.Export(context.Background(), res.Tree, e.ref, cas.ExportOptions{})
	check(t, err)
	e.mp = filepath.Join(work, "mnt")
	check(t, os.Mkdir(e.mp, 0o755))
	scratch := filepath.Join(s.Dir(), "tmp", "mount-test")
	check(t, os.MkdirAll(scratch, 0o700))
	e.m, err = MountCopyOnWrite(e.mp, NewCache(s, 0), res.Tree, CowOptions{
		Options: Options{AllowOther: true, Suid: true, Dev: true, Logf: t.Logf},
		Scratch: scratch,
	})
	check(t, err)
	t.Cleanup(func() {
		if err := e.m.Unmount(true); err != nil {
			t.Errorf("unmount: %v", err)
		}
		e.m.Wait()
		os.RemoveAll(scratch)
	})
	if tune != nil {
		e.m.fsys.mu.Lock()
		tune(e.m.fsys)
		e.m.fsys.mu.Unlock()
	}
	return e
}

// setTimes sets every mtime below dir (and dir's) to cowTestSec.
func setTimes(t *testing.T, dir string) {
	t.Helper()
	var paths []string
	check(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		paths = append(paths, p)
		return err
	}))
	ts := []unix.Timespec{{Sec: cowTestSec}, {Sec: cowTestSec}}
	for i := len(paths) - 1; i >= 0; i-- {
		check(t, unix.UtimesNanoAt(unix.AT_FDCWD, paths[i], ts, unix.AT_SYMLINK_NOFOLLOW))
	}
}

// sameTrees requires a and b to hold the same, holes included.
func sameTrees(t *testing.T, what, a, b string) {
	t.Helper()
	diffs, err := fstree.Compare(a, b, fstree.Options{CheckSparse: true})
	check(t, err)
	for _, d := range diffs {
		t.Errorf("%s: differs from ext4: %s", what, d)
	}
}

// commit commits the mount with w (a new store writer when nil).
func (e *cowEnv) commit(w Writer) (digest.Hash, error) {
	return e.m.Commit(context.Background(), func() (Writer, error) {
		if w != nil {
			return w, nil
		}
		return e.store.NewWriter()
	})
}

// export exports h next to the trees.
func (e *cowEnv) export(h digest.Hash, name string) string {
	dst := filepath.Join(e.work, name)
	_, err := e.store.Export(context.Background(), h, dst, cas.ExportOptions{})
	check(e.t, err)
	return dst
}

// transcript records what a sequence of calls returned.
type transcript struct {
	root string
	sb   strings.Builder
}

func (r *transcript) p(rel string) string { return filepath.Join(r.root, rel) }

func (r *transcript) note(format string, args ...any) {
	fmt.Fprintf(&r.sb, format+"\n", args...)
}

func (r *transcript) err(step string, err error) {
	if err == nil {
		r.note("%s: ok", step)
		return
	}
	var errno unix.Errno
	if errors.As(err, &errno) {
		r.note("%s: %s", step, unix.ErrnoName(errno))
		return
	}
	r.note("%s: %v", step, strings.ReplaceAll(err.Error(), r.root, "ROOT"))
}

func (r *transcript) open(rel string, flags int, mode uint32) int {
	fd, err := unix.Open(r.p(rel), flags|unix.O_CLOEXEC, mode)
	r.err("open "+rel, err)
	return fd
}

func (r *transcript) pwrite(fd int, data []byte, off int64) {
	_, err := unix.Pwrite(fd, data, off)
	r.err(fmt.Sprintf("pwrite %d at %d", len(data), off), err)
}

func (r *transcript) pread(fd int, size int, off int64) {
	buf := make([]byte, size)
	n, err := unix.Pread(fd, buf, off)
	r.err(fmt.Sprintf("pread %d at %d: %d bytes %x", size, off, n, sha256.Sum256(buf[:max(n, 0)])), err)
}

func (r *transcript) seek(fd int, off int64, whence int) {
	pos, err := unix.Seek(fd, off, whence)
	r.err(fmt.Sprintf("lseek %d whence %d: %d", off, whence, pos), err)
}

func (r *transcript) stat(rel string) {
	var st unix.Stat_t
	err := unix.Lstat(r.p(rel), &st)
	r.err(fmt.Sprintf("stat %s: size %d mode %o nlink %d", rel, st.Size, st.Mode, st.Nlink), err)
}

func (r *transcript) writeFile(rel string, data []byte, perm os.FileMode) {
	r.err("write "+rel, os.WriteFile(r.p(rel), data, perm))
}

func (r *transcript) content(rel string) {
	b, err := os.ReadFile(r.p(rel))
	r.err(fmt.Sprintf("content %s: %d bytes %x", rel, len(b), sha256.Sum256(b)), err)
}

// memOps are the operations both trees go through.
var memOps = []struct {
	name string
	do   func(r *transcript)
}{
	{"new files of many sizes", func(r *transcript) {
		for i, size := range []int{0, 1, 100, 4095, 4096, 5000, 70000, 300000} {
			name := fmt.Sprintf("d/new%d", i)
			r.writeFile(name, fstree.RandomBytes(name, size), 0o644)
			r.content(name)
			r.stat(name)
		}
	}},
	{"a file written in small pieces", func(r *transcript) {
		fd := r.open("pieces", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
		for i := range 300 {
			r.pwrite(fd, []byte(fmt.Sprintf("line %03d of a file written in pieces\n", i)), int64(i*37))
		}
		r.err("close", unix.Close(fd))
		r.content("pieces")
	}},
	{"a new file grows past what memory keeps", func(r *transcript) {
		fd := r.open("grows", unix.O_RDWR|unix.O_CREAT, 0o644)
		for i := range 3 {
			r.pwrite(fd, fstree.RandomBytes(fmt.Sprint("grows", i), 600<<10), int64(i)*600<<10)
		}
		r.pread(fd, 4096, 0)
		r.pread(fd, 4096, memFileMax-100)
		r.err("close", unix.Close(fd))
		r.content("grows")
	}},
	{"a write far past the end leaves a hole", func(r *transcript) {
		fd := r.open("far", unix.O_RDWR|unix.O_CREAT, 0o644)
		r.pwrite(fd, []byte("near"), 0)
		r.pwrite(fd, []byte("far away"), 200000)
		r.pread(fd, 4096, 100000)
		r.seek(fd, 0, unix.SEEK_HOLE)
		r.seek(fd, 100000, unix.SEEK_DATA)
		r.err("close", unix.Close(fd))
		r.content("far")
	}},
	{"truncate down and up, then write", func(r *transcript) {
		fd := r.open("trunc", unix.O_RDWR|unix.O_CREAT, 0o644)
		r.pwrite(fd, fstree.RandomBytes("trunc", 10000), 0)
		r.err("ftruncate 100", unix.Ftruncate(fd, 100))
		r.err("ftruncate 50000", unix.Ftruncate(fd, 50000))
		r.pread(fd, 200, 0)
		r.seek(fd, 0, unix.SEEK_HOLE)
		r.seek(fd, 10000, unix.SEEK_DATA)
		r.pwrite(fd, []byte("tail"), 49990)
		r.pread(fd, 100, 49950)
		r.err("close", unix.Close(fd))
		r.content("trunc")
		r.stat("trunc")
	}},
	{"fallocate", func(r *transcript) {
		fd := r.open("alloc", unix.O_RDWR|unix.O_CREAT, 0o644)
		r.pwrite(fd, []byte("data"), 0)
		r.err("fallocate 0+20000", unix.Fallocate(fd, 0, 0, 20000))
		r.pread(fd, 100, 19950)
		r.err("close", unix.Close(fd))
		fd = r.open("keep", unix.O_RDWR|unix.O_CREAT, 0o644)
		r.pwrite(fd, []byte("data"), 0)
		r.err("fallocate KEEP_SIZE", unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, 100000))
		r.err("close", unix.Close(fd))
		fd = r.open("punch", unix.O_RDWR|unix.O_CREAT, 0o644)
		r.pwrite(fd, fstree.RandomBytes("punch", 20000), 0)
		r.err("punch", unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 4096, 8192))
		r.pread(fd, 20000, 0)
		r.err("close", unix.Close(fd))
		r.stat("alloc")
		r.stat("keep")
	}},
	{"an unlinked file stays open", func(r *transcript) {
		fd := r.open("gone", unix.O_RDWR|unix.O_CREAT, 0o644)
		r.pwrite(fd, []byte("still here"), 0)
		r.err("unlink", unix.Unlink(r.p("gone")))
		r.pwrite(fd, []byte(" and more"), 10)
		r.pread(fd, 100, 0)
		r.err("close", unix.Close(fd))
		r.stat("gone")
	}},
	{"hard links and a rename over an open file", func(r *transcript) {
		r.writeFile("la", []byte("linked"), 0o644)
		r.err("link", unix.Link(r.p("la"), r.p("d/lb")))
		fd := r.open("d/lb", unix.O_WRONLY|unix.O_APPEND, 0)
		r.pwrite(fd, []byte(" twice"), 6)
		r.err("close", unix.Close(fd))
		r.content("la")
		fd = r.open("la", unix.O_RDONLY, 0)
		r.writeFile("lc", []byte("replacement"), 0o644)
		r.err("rename over", unix.Rename(r.p("lc"), r.p("la")))
		r.pread(fd, 100, 0)
		r.err("close", unix.Close(fd))
		r.content("la")
		r.stat("d/lb")
	}},
	{"a shared mapping", func(r *transcript) {
		fd := r.open("mapped", unix.O_RDWR|unix.O_CREAT, 0o644)
		r.err("ftruncate", unix.Ftruncate(fd, 8192))
		h, err := startMmapHelper(mmapSpec{Path: r.p("mapped"), Size: 8192, Writes: []mmapWrite{
			{Off: 100, Data: "written through the mapping", Sync: true},
			{Off: 5000, Data: "written, not synced"},
		}})
		if err == nil {
			err = h.finish()
		}
		r.err("write through a shared mapping", err)
		r.pread(fd, 8192, 0)
		r.err("close", unix.Close(fd))
	}},
	{"stored files change", func(r *transcript) {
		fd := r.open("small", unix.O_WRONLY|unix.O_APPEND, 0)
		r.pwrite(fd, []byte("appended\n"), 99)
		r.err("close", unix.Close(fd))
		fd = r.open("tailhole", unix.O_RDWR, 0)
		r.pwrite(fd, []byte("T"), 10)
		r.pread(fd, 100, 90000)
		r.seek(fd, 0, unix.SEEK_HOLE)
		r.err("close", unix.Close(fd))
		fd = r.open("innerhole", unix.O_RDWR, 0)
		r.pwrite(fd, []byte("I"), 1)
		r.err("close", unix.Close(fd))
		fd = r.open("d/big", unix.O_RDWR, 0)
		r.pwrite(fd, []byte("B"), 2<<20)
		r.err("close", unix.Close(fd))
		r.writeFile("d/big", []byte("now small"), 0o600)
		r.content("small")
		r.content("tailhole")
		r.content("innerhole")
		r.content("d/big")
	}},
}

// placements put new files in memory or in scratch files.
var placements = []struct {
	name string
	tune func(*cowFS)
}{
	{"memory", func(fsys *cowFS) { fsys.createQuiet = time.Hour; fsys.lastCreate = time.Now() }},
	{"scratch", func(fsys *cowFS) { fsys.createQuiet = 0 }},
	{"small budget", func(fsys *cowFS) { fsys.createQuiet = time.Hour; fsys.lastCreate = time.Now(); fsys.memMax = 64 << 10 }},
}

func TestCowMemoryAndScratch(t *testing.T) {
	for _, pl := range placements {
		t.Run(pl.name, func(t *testing.T) {
			e := newCowEnv(t, pl.tune)
			for _, op := range memOps {
				want, got := &transcript{root: e.ref}, &transcript{root: e.mp}
				op.do(want)
				op.do(got)
				if got.sb.String() != want.sb.String() {
					t.Errorf("%s: the mount says\n%s\next4 says\n%s", op.name, got.sb.String(), want.sb.String())
				}
			}
			setTimes(t, e.ref)
			setTimes(t, e.mp)
			sameTrees(t, "the mount", e.ref, e.mp)
			e.m.fsys.mu.Lock()
			used, budget := e.m.fsys.memUsed, e.m.fsys.memMax
			e.m.fsys.mu.Unlock()
			if used > budget {
				t.Errorf("files hold %d bytes of memory, over the budget of %d", used, budget)
			}

			h, err := e.commit(nil)
			check(t, err)
			sameTrees(t, "the commit", e.ref, e.export(h, "export1"))
			// What a commit stored, no open file holds in memory.
			e.m.fsys.mu.Lock()
			used = e.m.fsys.memUsed
			e.m.fsys.mu.Unlock()
			if used != 0 {
				t.Errorf("after the commit files still hold %d bytes of memory", used)
			}

			// Committed files change again, through the same mount.
			for _, root := range []string{e.ref, e.mp} {
				check(t, os.WriteFile(filepath.Join(root, "d/new3"), []byte("changed after the commit"), 0o644))
				f, err := os.OpenFile(filepath.Join(root, "pieces"), os.O_WRONLY|os.O_APPEND, 0)
				check(t, err)
				_, err = f.WriteString("one more line\n")
				check(t, errors.Join(err, f.Close()))
			}
			setTimes(t, e.ref)
			setTimes(t, e.mp)
			sameTrees(t, "the mount after the commit", e.ref, e.mp)
			h2, err := e.commit(nil)
			check(t, err)
			sameTrees(t, "the second commit", e.ref, e.export(h2, "export2"))
		})
	}
}

// failWriter fails every PutFile, like a full disk.
type failWriter struct{ *cas.Writer }

var errFull = errors.New("no space left (test)")

func (failWriter) PutFile(context.Context, *os.File, int64) ([]node.Chunk, uint64, error) {
	return nil, 0, errFull
}

// TestCowCommitReadsMemory: a commit stores content that only the server's
// memory holds, including that of a file still open for writing and pages
// of a shared mapping never synced; a failed commit keeps it all.
func TestCowCommitReadsMemory(t *testing.T) {
	e := newCowEnv(t, placements[0].tune)
	var fds []int
	var helpers []*mmapHelper
	defer func() {
		for _, h := range helpers {
			h.finish()
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for _, root := range []string{e.ref, e.mp} {
		check(t, os.WriteFile(filepath.Join(root, "closed"), []byte("closed file"), 0o644))
		fd, err := unix.Open(filepath.Join(root, "open"), unix.O_RDWR|unix.O_CREAT|unix.O_CLOEXEC, 0o644)
		check(t, err)
		fds = append(fds, fd)
		_, err = unix.Write(fd, []byte("open file"))
		check(t, err)
		check(t, unix.Ftruncate(fd, 4096))
		// Mapped until the end: the kernel writes the page back at
		// munmap, and only the commit can make it do so before.
		h, err := startMmapHelper(mmapSpec{Path: filepath.Join(root, "open"), Size: 4096, Hold: true,
			Writes: []mmapWrite{{Off: 1000, Data: "through a mapping, not synced"}}})
		check(t, err)
		helpers = append(helpers, h)
	}
	setTimes(t, e.ref)
	setTimes(t, e.mp)

	w, err := e.store.NewWriter()
	check(t, err)
	if _, err := e.commit(failWriter{w}); !errors.Is(err, errFull) {
		t.Fatalf("commit with a failing writer: %v", err)
	}
	h, err := e.commit(nil)
	check(t, err)
	// Contents only: the page written through the mapping reaches the
	// server at the commit, which sets the file's mtime then, where ext4
	// set it at the first write to the page.
	export := e.export(h, "export")
	for _, name := range []string{"closed", "open"} {
		want, err := os.ReadFile(filepath.Join(e.ref, name))
		check(t, err)
		for _, where := range []string{export, e.mp} {
			got, err := os.ReadFile(filepath.Join(where, name))
			check(t, err)
			if string(got) != string(want) {
				t.Errorf("%s in %s after the commit differs from ext4 (%d bytes, %x; want %d bytes, %x)",
					name, where, len(got), sha256.Sum256(got), len(want), sha256.Sum256(want))
			}
		}
	}
}

// A process must not touch a mapping of a file on a FUSE mount that it
// serves itself: the page fault waits for the server, whose goroutines a
// garbage collection may have stopped while it waits for the faulting one.
// The mapping cases run in a child: the test binary, with mmapHelperEnv
// set, runs TestMmapHelper only.
const mmapHelperEnv = "FORGE_FUSEFS_MMAP_HELPER"

type mmapWrite struct {
	Off  int
	Data string
	Sync bool // msync after it
}

// mmapSpec is what the helper does: map Size bytes of Path shared, make the
// writes, and with Hold, say "ready" and keep the mapping until its stdin
// closes.
type mmapSpec struct {
	Path   string
	Size   int
	Writes []mmapWrite
	Hold   bool
}

type mmapHelper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	out   *bytes.Buffer
}

// startMmapHelper runs the helper and, with spec.Hold, returns once the
// writes are made.
func startMmapHelper(spec mmapSpec) (*mmapHelper, error) {
	b, err := json.Marshal(spec)
	if err != nil {
		return nil, err
	}
	h := &mmapHelper{cmd: exec.Command(os.Args[0], "-test.run=^TestMmapHelper$"), out: &bytes.Buffer{}}
	h.cmd.Env = append(os.Environ(), mmapHelperEnv+"="+string(b))
	h.cmd.Stderr = h.out
	if h.stdin, err = h.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	stdout, err := h.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := h.cmd.Start(); err != nil {
		return nil, err
	}
	if spec.Hold {
		line, err := bufio.NewReader(stdout).ReadString('\n')
		if line != "ready\n" {
			h.finish()
			return nil, fmt.Errorf("mmap helper: %q, %v: %s", line, err, h.out)
		}
	}
	go io.Copy(io.Discard, stdout)
	return h, nil
}

// finish lets the helper unmap and exit, and waits for it.
func (h *mmapHelper) finish() error {
	h.stdin.Close()
	if err := h.cmd.Wait(); err != nil {
		return fmt.Errorf("mmap helper: %w: %s", err, h.out)
	}
	return nil
}

// TestMmapHelper is the helper process of the mapping cases; it skips
// when run as a test.
func TestMmapHelper(t *testing.T) {
	spec := os.Getenv(mmapHelperEnv)
	if spec == "" {
		t.Skip("the helper process of the cases that write through a shared mapping")
	}
	if err := runMmapHelper(spec); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func runMmapHelper(specJSON string) error {
	var spec mmapSpec
	if err := json.Unmarshal([]byte(specJSON), &spec); err != nil {
		return err
	}
	fd, err := unix.Open(spec.Path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", spec.Path, err)
	}
	defer unix.Close(fd)
	m, err := unix.Mmap(fd, 0, spec.Size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return fmt.Errorf("mmap %s: %w", spec.Path, err)
	}
	for _, w := range spec.Writes {
		copy(m[w.Off:], w.Data)
		if w.Sync {
			if err := unix.Msync(m, unix.MS_SYNC); err != nil {
				return fmt.Errorf("msync %s: %w", spec.Path, err)
			}
		}
	}
	if spec.Hold {
		fmt.Println("ready")
		io.Copy(io.Discard, os.Stdin)
	}
	return unix.Munmap(m)
}
