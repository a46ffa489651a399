package cas

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// ExportOptions tune Export.
type ExportOptions struct {
	// Workers write file content in parallel. Default GOMAXPROCS.
	Workers int
	// Progress, if set, is called about twice a second and at the end.
	Progress func(Progress)
}

// ExportResult describes a finished export.
type ExportResult struct {
	Entries int64
	Bytes   int64
	Elapsed time.Duration
}

type exporter struct {
	s      *Store
	ctx    context.Context
	cancel context.CancelCauseFunc
	root   string
	owner  bool // restore ownership (we are root)

	jobs chan exportJob
	// links holds, for each hard-linked inode already created, an O_PATH
	// descriptor of it and how many names it still lacks.
	links map[linkKey]*linkState

	entries, bytes atomic.Int64
}

type linkKey struct {
	hash digest.Hash
	link uint32
}

type linkState struct {
	fd        int
	remaining uint32
}

type exportJob struct {
	f    *os.File
	n    *node.Node
	path string
}

// Export recreates the tree named h at dest, which must not exist or be an
// empty directory. Everything a node records is restored: content (holes
// stay holes), ownership (when run as root), permissions with setuid,
// setgid and sticky bits, nanosecond mtimes, xattrs and ACLs, devices,
// FIFOs, sockets, symlinks and hard links. Every chunk is verified as it is
// read.
func (s *Store) Export(ctx context.Context, h digest.Hash, dest string, opts ExportOptions) (ExportResult, error) {
	start := time.Now()
	if opts.Workers <= 0 {
		opts.Workers = runtime.GOMAXPROCS(0)
	}
	root, err := s.Node(h)
	if err != nil {
		return ExportResult{}, err
	}
	if root.Type != node.TypeDir {
		return ExportResult{}, fmt.Errorf("export %s: %w: not a directory tree", h, ErrInvalidArgument)
	}
	if err := prepareDest(dest); err != nil {
		return ExportResult{}, err
	}
	rootFd, err := unix.Open(dest, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return ExportResult{}, fmt.Errorf("export to %s: %w", dest, err)
	}
	defer unix.Close(rootFd)

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	ex := &exporter{
		s: s, ctx: ctx, cancel: cancel, root: dest, owner: os.Geteuid() == 0,
		jobs:  make(chan exportJob, 4*opts.Workers),
		links: map[linkKey]*linkState{},
	}
	defer func() {
		for _, l := range ex.links {
			unix.Close(l.fd)
		}
	}()
	var workers sync.WaitGroup
	for range opts.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			ex.worker()
		}()
	}
	stop := reportProgress(opts.Progress, func() Progress {
		return Progress{Entries: ex.entries.Load(), Bytes: ex.bytes.Load()}
	})
	walkErr := ex.dir(rootFd, "", root)
	close(ex.jobs)
	workers.Wait()
	stop()
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return ExportResult{}, err
	}
	if walkErr != nil {
		return ExportResult{}, walkErr
	}
	// The root's own metadata last: creating its entries changed its mtime.
	if err := ex.setMeta(-1, selfFdPath(rootFd), root, true); err != nil {
		return ExportResult{}, fmt.Errorf("export to %s: %w", dest, err)
	}
	res := ExportResult{Entries: ex.entries.Load() + 1, Bytes: ex.bytes.Load(), Elapsed: time.Since(start)}
	if opts.Progress != nil {
		opts.Progress(Progress{Entries: res.Entries, Bytes: res.Bytes})
	}
	return res, nil
}

func prepareDest(dest string) error {
	err := os.Mkdir(dest, 0o700)
	if err == nil || !errors.Is(err, os.ErrExist) {
		if err != nil {
			return fmt.Errorf("export to %s: %w", dest, err)
		}
		return nil
	}
	f, err := os.Open(dest)
	if err != nil {
		return fmt.Errorf("export to %s: %w", dest, err)
	}
	defer f.Close()
	names, err := f.Readdirnames(1)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("export to %s: %w", dest, err)
	}
	if len(names) > 0 {
		return fmt.Errorf("export to %s: %w: destination exists and is not empty", dest, ErrInvalidArgument)
	}
	return nil
}

func (ex *exporter) where(rel string) string {
	return QuotePath(filepath.Join(ex.root, rel))
}

// dir creates the entries of directory n inside dirfd, recursing into
// subdirectories; file content is written by the workers.
func (ex *exporter) dir(dirfd int, rel string, n *node.Node) error {
	for _, e := range n.Entries {
		if err := ex.ctx.Err(); err != nil {
			return context.Cause(ex.ctx)
		}
		path := filepath.Join(rel, e.Name)
		if err := ex.entry(dirfd, path, e); err != nil {
			return fmt.Errorf("export %s: %w", ex.where(path), err)
		}
		ex.entries.Add(1)
	}
	return nil
}

func (ex *exporter) entry(dirfd int, path string, e node.Entry) error {
	if e.Link != 0 {
		if l, ok := ex.links[linkKey{e.Hash, e.Link}]; ok {
			// Another name of an inode already created. AT_EMPTY_PATH
			// links what the O_PATH descriptor holds, a symlink or a
			// device as well as a file, but needs CAP_DAC_READ_SEARCH;
			// following the /proc link works without it for files.
			err := unix.Linkat(l.fd, "", dirfd, e.Name, unix.AT_EMPTY_PATH)
			if err != nil && (errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOENT)) {
				err = unix.Linkat(unix.AT_FDCWD, selfFdPath(l.fd), dirfd, e.Name, unix.AT_SYMLINK_FOLLOW)
			}
			if err != nil {
				return fmt.Errorf("link: %w", err)
			}
			if l.remaining--; l.remaining == 0 {
				unix.Close(l.fd)
				delete(ex.links, linkKey{e.Hash, e.Link})
			}
			return nil
		}
	}
	n, err := ex.s.Node(e.Hash)
	if err != nil {
		return err
	}
	switch n.Type {
	case node.TypeDir:
		if err := unix.Mkdirat(dirfd, e.Name, 0o700); err != nil {
			return fmt.Errorf("mkdir: %w", err)
		}
		fd, err := unix.Openat(dirfd, e.Name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := ex.dir(fd, path, n); err != nil {
			return err
		}
		return ex.setMeta(-1, selfFdPath(fd), n, true)
	case node.TypeRegular:
		fd, err := unix.Openat(dirfd, e.Name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		if err := ex.firstLink(dirfd, e, n); err != nil {
			unix.Close(fd)
			return err
		}
		// The os.File owns the descriptor from here on (see queueFile).
		f := os.NewFile(uintptr(fd), e.Name)
		select {
		case ex.jobs <- exportJob{f: f, n: n, path: path}:
			return nil
		case <-ex.ctx.Done():
			f.Close()
			return context.Cause(ex.ctx)
		}
	case node.TypeSymlink:
		if err := unix.Symlinkat(n.Target, dirfd, e.Name); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
	default:
		mode := n.Mode()
		if err := unix.Mknodat(dirfd, e.Name, mode, int(n.Rdev)); err != nil {
			return fmt.Errorf("mknod: %w", err)
		}
	}
	if err := ex.firstLink(dirfd, e, n); err != nil {
		return err
	}
	return ex.setMeta(dirfd, e.Name, n, false)
}

// firstLink remembers the first name of an inode with more names to come,
// as an O_PATH descriptor to link them to.
func (ex *exporter) firstLink(dirfd int, e node.Entry, n *node.Node) error {
	if e.Link == 0 || n.Nlink <= 1 {
		return nil
	}
	pfd, err := unix.Openat(dirfd, e.Name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	ex.links[linkKey{e.Hash, e.Link}] = &linkState{fd: pfd, remaining: n.Nlink - 1}
	return nil
}

func (ex *exporter) worker() {
	var buf []byte
	for job := range ex.jobs {
		if ex.ctx.Err() != nil {
			job.f.Close()
			continue
		}
		var err error
		buf, err = ex.writeFile(job, buf[:0])
		if cerr := job.f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			ex.cancel(fmt.Errorf("export %s: %w", ex.where(job.path), err))
		}
	}
}

// writeFile writes a file's chunks at their offsets, leaving holes
// unwritten, then sets its metadata. A large file's chunks are read,
// verified and written by several goroutines, each a run of them at a
// time: a tree of one disk image would otherwise be one worker's.
func (ex *exporter) writeFile(job exportJob, buf []byte) ([]byte, error) {
	chunks := job.n.Chunks
	offsets := make([]int64, len(chunks)+1)
	for i, c := range chunks {
		offsets[i+1] = offsets[i] + int64(c.Size)
	}
	size := offsets[len(chunks)]
	writeRun := func(lo, hi int, buf []byte) ([]byte, error) {
		for i := lo; i < hi; i++ {
			if chunks[i].IsHole() {
				continue
			}
			var err error
			if buf, err = ex.s.ReadChunk(chunks[i].Hash, buf[:0]); err != nil {
				return buf, err
			}
			if _, err := job.f.WriteAt(buf, offsets[i]); err != nil {
				return buf, err
			}
			ex.bytes.Add(int64(len(buf)))
		}
		return buf, nil
	}
	var err error
	if workers := runtime.GOMAXPROCS(0); size >= parallelFileMin && workers > 1 {
		err = ex.writeRuns(len(chunks), offsets, workers, writeRun)
	} else {
		buf, err = writeRun(0, len(chunks), buf)
	}
	if err != nil {
		return buf, err
	}
	if err := job.f.Truncate(size); err != nil {
		return buf, err
	}
	return buf, ex.setMeta(-1, selfFdPath(int(job.f.Fd())), job.n, true)
}

// parallelFileMin is the size from which one file's chunks are exported
// by several goroutines, in runs of about parallelRun bytes.
const (
	parallelFileMin = 16 << 20
	parallelRun     = 4 << 20
)

// writeRuns cuts chunks [0, n) into runs of about parallelRun bytes and
// has workers goroutines write them; it returns the first error.
func (ex *exporter) writeRuns(n int, offsets []int64, workers int, writeRun func(lo, hi int, buf []byte) ([]byte, error)) error {
	type run struct{ lo, hi int }
	runs := make(chan run)
	var (
		wg       sync.WaitGroup
		errOnce  sync.Once
		firstErr error
		failed   = make(chan struct{})
	)
	for range workers {
		wg.Go(func() {
			var buf []byte
			for r := range runs {
				var err error
				if buf, err = writeRun(r.lo, r.hi, buf); err != nil {
					errOnce.Do(func() { firstErr = err; close(failed) })
				}
			}
		})
	}
feed:
	for lo := 0; lo < n; {
		hi := lo + 1
		for hi < n && offsets[hi]-offsets[lo] < parallelRun {
			hi++
		}
		select {
		case runs <- run{lo, hi}:
		case <-failed:
			break feed
		case <-ex.ctx.Done():
			break feed
		}
		lo = hi
	}
	close(runs)
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return context.Cause(ex.ctx)
}

// setMeta restores ownership, xattrs, permissions and mtime, in the order
// that keeps each: chown clears setuid bits and file capabilities, so it
// comes first; setting an access ACL rewrites the group bits, so chmod
// comes after the xattrs; the mtime comes last.
//
// With dirfd -1, name is a /proc/self/fd path to follow; otherwise it is a
// name in dirfd, not followed (symlinks, devices, FIFOs, sockets).
func (ex *exporter) setMeta(dirfd int, name string, n *node.Node, follow bool) error {
	at, path, flags := dirfd, name, unix.AT_SYMLINK_NOFOLLOW
	if follow {
		at, flags = unix.AT_FDCWD, 0
	} else {
		path = fdPath(dirfd, name)
	}
	if ex.owner {
		if err := unix.Fchownat(at, name, int(n.UID), int(n.GID), flags); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	set := unix.Lsetxattr
	if follow {
		set = unix.Setxattr
	}
	for _, x := range n.Xattrs {
		if err := set(path, x.Name, x.Value, 0); err != nil {
			return fmt.Errorf("setxattr %s: %w", x.Name, err)
		}
	}
	if n.Type != node.TypeSymlink {
		// fchmodat cannot skip symlinks, and symlinks have no mode.
		if err := unix.Fchmodat(at, name, n.Perm, 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	ts := []unix.Timespec{
		{Sec: n.MtimeSec, Nsec: int64(n.MtimeNsec)}, // atime: the mtime, as good as any
		{Sec: n.MtimeSec, Nsec: int64(n.MtimeNsec)},
	}
	if err := unix.UtimesNanoAt(at, name, ts, flags); err != nil {
		return fmt.Errorf("set mtime: %w", err)
	}
	return nil
}
