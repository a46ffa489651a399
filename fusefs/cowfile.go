package fusefs

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"
)

// cowHandle is an open regular file of a copy-on-write mount. The node
// serves its I/O; the handle offers the kernel the scratch file for FUSE
// passthrough.
type cowHandle struct {
	n *cowNode
	// passthrough is set when the handle offers the kernel the scratch
	// file. The kernel refuses (EIO) to open a file for passthrough while
	// it has it open with its page cache, and the other way round, so a
	// handle opened while cached handles are open goes through the server.
	passthrough bool
}

var _ = (fs.FilePassthroughFder)((*cowHandle)(nil))

// PassthroughFd lets the kernel read and write a copied-up file itself.
// Files with set-id bits or file capabilities are left to the server: the
// kernel clears those on a write only when the write comes through FUSE.
func (h *cowHandle) PassthroughFd() (int, bool) {
	n := h.n
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if !h.passthrough || n.file.fd < 0 {
		return -1, false
	}
	return n.file.fd, true
}

// passthroughOK reports whether a new handle on n may be passed through:
// only a scratch file can be. fsys.mu is held.
func (n *cowNode) passthroughOK() bool {
	f := n.file
	if !f.copied || f.inMem || f.cachedOpens > 0 {
		return false
	}
	if n.meta.Perm&(unix.S_ISUID|unix.S_ISGID) != 0 {
		return false
	}
	_, hasCaps := n.meta.Xattr("security.capability")
	return !hasCaps
}

// openHandle opens a handle on regular file n, with its scratch file open
// if it has one. fsys.mu is held.
func (n *cowNode) openHandle() (*cowHandle, error) {
	f := n.file
	if f.copied && !f.inMem && f.fd < 0 {
		fd, err := unix.Open(n.scratchName(), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, &os.PathError{Op: "open", Path: n.scratchName(), Err: err}
		}
		f.fd = fd
	}
	f.opens++
	h := &cowHandle{n: n, passthrough: n.passthroughOK()}
	if !h.passthrough {
		if n.fsys.cachedFiles == nil {
			n.fsys.cachedFiles = map[*cowNode]struct{}{}
		}
		n.fsys.cachedFiles[n] = struct{}{}
		f.cachedOpens++
	}
	return h, nil
}

// closeHandle undoes openHandle. fsys.mu is held.
func (n *cowNode) closeHandle(h *cowHandle) {
	f := n.file
	if h != nil && !h.passthrough {
		if f.cachedOpens--; f.cachedOpens <= 0 {
			delete(n.fsys.cachedFiles, n)
		}
	}
	f.opens--
	if f.opens <= 0 {
		f.opens = 0
		if f.fd >= 0 {
			unix.Close(f.fd)
			f.fd = -1
		}
	}
}

// withScratch runs fn on n's scratch file, opening it for the call when no
// handle holds it open. fsys.mu is held.
func (n *cowNode) withScratch(fn func(fd int) error) error {
	if fd := n.file.fd; fd >= 0 {
		return fn(fd)
	}
	fd, err := unix.Open(n.scratchName(), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: n.scratchName(), Err: err}
	}
	defer unix.Close(fd)
	return fn(fd)
}

// copyUp makes the first size bytes of a stored file's content the
// mount's own: in memory when they fit (cowmem.go), else in a scratch
// file, written chunk by chunk at their offsets so that holes stay holes.
// fsys.mu is held.
func (n *cowNode) copyUp(size uint64) error {
	f := n.file
	if f.copied {
		return nil
	}
	if ok, err := n.copyUpToMem(size); ok || err != nil {
		return err
	}
	info := f.content
	fd, err := n.scratchFD()
	if err != nil {
		return fmt.Errorf("copy up %s: %w", n.path(), err)
	}
	fail := func(err error) error {
		n.discardScratchFD(fd)
		return fmt.Errorf("copy up %s: %w", n.path(), err)
	}
	for i, ch := range info.node.Chunks {
		start := info.offsets[i]
		if start >= size {
			break
		}
		if ch.IsHole() {
			continue
		}
		data, err := n.fsys.cache.chunkData(ch)
		if err != nil {
			return fail(err)
		}
		if end := start + uint64(len(data)); end > size {
			data = data[:size-start]
		}
		for done := 0; done < len(data); {
			w, err := unix.Pwrite(fd, data[done:], int64(start)+int64(done))
			if err != nil {
				return fail(err)
			}
			done += w
		}
	}
	if err := unix.Ftruncate(fd, int64(size)); err != nil {
		return fail(err)
	}
	mt := unix.Timespec{Sec: n.meta.MtimeSec, Nsec: int64(n.meta.MtimeNsec)}
	if err := futimens(fd, []unix.Timespec{{Nsec: unix.UTIME_OMIT}, mt}); err != nil {
		return fail(err)
	}
	n.adoptScratch(fd)
	return nil
}

// truncate sets a regular file's size, copying up what stays of it.
// fsys.mu is held.
func (n *cowNode) truncate(size uint64) error {
	f := n.file
	if !f.copied {
		if err := n.copyUp(min(size, f.content.node.Size)); err != nil {
			return err
		}
	}
	if f.inMem {
		f.memTruncate(size)
		return nil
	}
	return n.withScratch(func(fd int) error { return unix.Ftruncate(fd, int64(size)) })
}

var _ = (fs.NodeOpener)((*cowNode)(nil))

// Open copies a stored file up when it is opened for writing (with O_TRUNC
// the kernel has already truncated it, which copied nothing).
func (n *cowNode) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	fsys := n.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if n.file == nil {
		return nil, 0, 0
	}
	if flags&syscall.O_ACCMODE != syscall.O_RDONLY && !n.file.copied {
		size := n.file.content.node.Size
		if flags&syscall.O_TRUNC != 0 {
			size = 0
		}
		if err := n.copyUp(size); err != nil {
			return nil, 0, fsys.errno(n.path()+": open", err)
		}
	}
	h, err := n.openHandle()
	if err != nil {
		return nil, 0, fsys.errno(n.path()+": open", err)
	}
	return h, n.openFlags(), 0
}

// openFlags are the FOPEN flags of a new handle on regular file n: the
// kernel may keep what it cached of the content (FOPEN_KEEP_CACHE) when
// every change to it goes through the kernel's cache, which holds for
// stored content (it never changes) and for content in memory (written,
// truncated and allocated only through this mount's cached handles). Without
// it every open drops the cache, and every read afterwards is a request
// that also makes the kernel ask for the attributes again (reads
// invalidate atime on a writable FUSE mount). A scratch file may have been
// written past the cache through passthrough handles. fsys.mu is held.
func (n *cowNode) openFlags() uint32 {
	if f := n.file; !f.copied || f.inMem {
		return fuse.FOPEN_KEEP_CACHE
	}
	return 0
}

var _ = (fs.NodeReleaser)((*cowNode)(nil))

func (n *cowNode) Release(ctx context.Context, fh fs.FileHandle) syscall.Errno {
	if n.file == nil {
		return 0
	}
	n.fsys.mu.Lock()
	h, _ := fh.(*cowHandle)
	n.closeHandle(h)
	// A file made by O_TMPFILE and never linked goes with its last handle.
	forget := n.nlink == 0 && n.file.opens == 0 && !n.forgotten
	if forget {
		n.forgotten = true
	}
	n.fsys.mu.Unlock()
	if forget {
		n.ForgetPersistent()
	}
	return 0
}

var _ = (fs.NodeReader)((*cowNode)(nil))

// Read serves a stored file from the store's chunks and a copied-up one
// from its scratch file (when the kernel does not read it itself).
func (n *cowNode) Read(ctx context.Context, fh fs.FileHandle, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	fsys := n.fsys
	fsys.mu.Lock()
	f := n.file
	if f == nil {
		fsys.mu.Unlock()
		return nil, syscall.EISDIR
	}
	if !f.copied {
		info := f.content
		fsys.mu.Unlock()
		if off >= 0 {
			f.ra.advance(fsys.cache, info, uint64(off), uint64(off)+uint64(len(dest)))
		}
		data, err := fsys.cache.read(info, dest, off)
		if err != nil {
			fsys.logf("%s: %s: read %d bytes at %d: %v", fsys.name, n.path(), len(dest), off, err)
			return nil, syscall.EIO
		}
		return fuse.ReadResultData(data), 0
	}
	defer fsys.mu.Unlock()
	if f.inMem {
		return fuse.ReadResultData(f.memRead(dest, off)), 0
	}
	var nr int
	err := n.withScratch(func(fd int) error {
		var err error
		nr, err = unix.Pread(fd, dest, off)
		return err
	})
	if err != nil {
		return nil, fsys.errno(n.path()+": read", err)
	}
	return fuse.ReadResultData(dest[:nr]), 0
}

var _ = (fs.NodeWriter)((*cowNode)(nil))

func (n *cowNode) Write(ctx context.Context, fh fs.FileHandle, data []byte, off int64) (uint32, syscall.Errno) {
	fsys := n.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if n.file == nil {
		return 0, syscall.EISDIR
	}
	if err := n.copyUp(n.size()); err != nil {
		return 0, fsys.errno(n.path()+": write", err)
	}
	n.killPrivs(ctx, unprivileged(ctx))
	if n.file.inMem {
		if n.memWrite(data, off) {
			n.touchData()
			return uint32(len(data)), 0
		}
		if err := n.spill(); err != nil {
			return 0, fsys.errno(n.path()+": write", err)
		}
	}
	var nw int
	err := n.withScratch(func(fd int) error {
		var err error
		nw, err = unix.Pwrite(fd, data, off)
		return err
	})
	if err != nil {
		return uint32(nw), fsys.errno(n.path()+": write", err)
	}
	return uint32(nw), 0
}

// size is a regular file's length; fsys.mu is held.
func (n *cowNode) size() uint64 {
	f := n.file
	if !f.copied {
		return f.content.node.Size
	}
	if f.inMem {
		return f.memSize
	}
	var st unix.Stat_t
	if err := n.scratchStat(&st); err != nil {
		return 0
	}
	return uint64(st.Size)
}

var _ = (fs.NodeAllocater)((*cowNode)(nil))

// Allocate is fallocate on the scratch file: reserving space, extending
// (or not, KEEP_SIZE), punching and zeroing ranges.
func (n *cowNode) Allocate(ctx context.Context, fh fs.FileHandle, off uint64, size uint64, mode uint32) syscall.Errno {
	fsys := n.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if n.file == nil {
		return syscall.ENODEV
	}
	if err := n.copyUp(n.size()); err != nil {
		return fsys.errno(n.path()+": fallocate", err)
	}
	n.killPrivs(ctx, unprivileged(ctx))
	if n.file.inMem {
		if n.memAllocate(off, size, mode) {
			if off+size > n.file.memSize {
				n.touchData()
			} else {
				n.ctime = tsNow(time.Now())
			}
			return 0
		}
		if err := n.spill(); err != nil {
			return fsys.errno(n.path()+": fallocate", err)
		}
	}
	err := n.withScratch(func(fd int) error { return unix.Fallocate(fd, mode, int64(off), int64(size)) })
	if err != nil {
		return fsys.errno(n.path()+": fallocate", err)
	}
	n.ctime = tsNow(time.Now())
	return 0
}

var _ = (fs.NodeLseeker)((*cowNode)(nil))

// Lseek answers SEEK_DATA and SEEK_HOLE, from the chunk list of a stored
// file and from the scratch file of a copied-up one.
func (n *cowNode) Lseek(ctx context.Context, fh fs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	fsys := n.fsys
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	if n.file == nil {
		return 0, syscall.EINVAL
	}
	if !n.file.copied {
		pos, err := seekData(n.file.content, off, int(whence))
		if err != nil {
			return 0, fs.ToErrno(err)
		}
		return pos, 0
	}
	if n.file.inMem {
		return n.file.memSeek(off, whence)
	}
	var pos int64
	err := n.withScratch(func(fd int) error {
		var err error
		pos, err = unix.Seek(fd, int64(off), int(whence))
		return err
	})
	if err != nil {
		return 0, fs.ToErrno(err)
	}
	return uint64(pos), 0
}

var _ = (fs.NodeOnForgetter)((*cowNode)(nil))

// OnForget frees what a node with no names and no users holds: its
// scratch file.
func (n *cowNode) OnForget() {
	n.fsys.mu.Lock()
	defer n.fsys.mu.Unlock()
	if f := n.file; f != nil && f.copied {
		if f.inMem {
			n.memFree()
			return
		}
		n.dropScratch()
	}
}

// The mount handles HANDLE_KILLPRIV_V2: the kernel leaves clearing the
// set-id bits to the server, and in exchange asks for no attributes
// before a chown (a GETATTR per file that untar and dpkg change the owner
// of) and checks a file for security.capability once rather than at
// every write. What ext4 clears, this clears too: on a change of owner,
// S_ISUID and (with group-exec) S_ISGID; on a write, truncate or fallocate
// by a caller without CAP_FSETID (taken as: not root), the same, and
// S_ISGID without group-exec when the caller is outside the file's group.
// security.capability the kernel still removes itself (REMOVEXATTR). Set-id
// files are never passed through, so their writes come here.

// killSetid clears S_ISUID, and S_ISGID where group-exec is set. fsys.mu
// is held.
func (n *cowNode) killSetid() {
	p := n.meta.Perm
	if p&unix.S_ISUID == 0 && p&(unix.S_ISGID|unix.S_IXGRP) != unix.S_ISGID|unix.S_IXGRP {
		return
	}
	n.meta.Perm &^= unix.S_ISUID
	if p&unix.S_IXGRP != 0 {
		n.meta.Perm &^= unix.S_ISGID
	}
	n.touch(tsNow(time.Now()))
}

// unprivileged reports whether the caller of a request lacks CAP_FSETID,
// taken as: is not root.
func unprivileged(ctx context.Context) bool {
	c, ok := ctx.(*fuse.Context)
	return ok && c.Caller.Uid != 0
}

// killPrivs clears what a write, truncate or fallocate by the caller clears
// (see above). setid: the kernel asked for S_ISUID and S_ISGID to go (for a
// truncate it says so, FATTR_KILL_SUIDGID; for a write it would, in a flag
// go-fuse does not pass on). fsys.mu is held.
func (n *cowNode) killPrivs(ctx context.Context, setid bool) {
	if setid {
		n.killSetid()
	}
	n.killSgid(ctx)
}

// killSgid clears S_ISGID on a write or truncate by a caller outside the
// file's group and without CAP_FSETID (taken as: not root), as ext4 does
// (setattr_should_drop_sgid), also where group-exec is not set. fsys.mu is
// held.
func (n *cowNode) killSgid(ctx context.Context) {
	if n.meta.Perm&(unix.S_ISGID|unix.S_IXGRP) != unix.S_ISGID {
		return
	}
	c, ok := ctx.(*fuse.Context)
	if !ok || c.Caller.Uid == 0 || c.Caller.Gid == n.meta.GID || inGroups(c.Caller.Pid, n.meta.GID) {
		return
	}
	n.meta.Perm &^= unix.S_ISGID
	n.touch(tsNow(time.Now()))
}

// inGroups reports whether process pid has gid among its supplementary
// groups.
func inGroups(pid uint32, gid uint32) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "Groups:"); ok {
			for _, g := range strings.Fields(rest) {
				if g == strconv.FormatUint(uint64(gid), 10) {
					return true
				}
			}
		}
	}
	return false
}
