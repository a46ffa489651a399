package fusefs

import (
	"fmt"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// Small files of a copy-on-write mount keep their content in the server's
// memory rather than in a scratch file of their own: new files created in
// a burst (cowscratch.go), and stored files of at most memFileMax when they
// are copied up. Creating a scratch file costs an inode on the scratch disk,
// opens, and the registration of a passthrough backing file with the
// kernel: far more than everything else a small file costs (untar on the
// mount: about 10 FUSE requests per file, which took less time than its
// scratch file). A file moves to a scratch file ("spills") when it grows
// past memFileMax, when the mount's memory budget is spent, when it would
// get a hole worth keeping, when fallocate asks for more than plain
// allocation, and when it loses its last name while open. Handles opened
// while it is in memory are served by the server (no passthrough), and keep
// the kernel's page cache (openFlags); handles opened once it is in a
// scratch file are passed through as before. A commit stores the memory
// and, for files no handle holds, lets it go: the file then reads from the
// store like a stored one.
const (
	// memFileMax is the largest content kept in memory.
	memFileMax = 1 << 20
	// memGap is the largest run of zeros a write past the end of an
	// in-memory file fills in; a wider gap is a hole, which a scratch file
	// keeps unallocated.
	memGap = 4096
)

// memBudget is how much memory one mount may hold in file content: a
// 32nd of the machine's RAM (a daemon serves several mounts), between 16
// and 256 MiB. The untar of bench/run (20k files, 90 MB) fits in 256 MiB.
func memBudget() int64 {
	const lo, hi = 16 << 20, 256 << 20
	var si unix.Sysinfo_t
	if err := unix.Sysinfo(&si); err != nil {
		return lo
	}
	return min(max(int64(si.Totalram)*int64(si.Unit)/32, lo), hi)
}

// memHas reports whether file content of n is in memory; fsys.mu is held.
func (f *cowFile) memHas() bool { return f.copied && f.inMem }

// memBlocks is the allocation stat reports for in-memory content, in
// 512-byte units: its written bytes in 4 KiB blocks, as ext4 shows them.
func (f *cowFile) memBlocks() uint64 { return (uint64(len(f.mem)) + 4095) / 4096 * 8 }

// memReserve makes room for end bytes in n's memory, within memFileMax and
// the mount's budget; false means the file must spill. fsys.mu is held.
func (n *cowNode) memReserve(end uint64) bool {
	f := n.file
	if end > memFileMax {
		return false
	}
	if end <= uint64(cap(f.mem)) {
		return true
	}
	fsys := n.fsys
	// Grow by doubling, so that a file written in small pieces is copied
	// a few times, not once per piece.
	want := min(max(end, 2*uint64(cap(f.mem)), 512), memFileMax)
	for _, c := range []uint64{want, end} {
		grow := int64(c) - int64(cap(f.mem))
		if fsys.memUsed+grow > fsys.memMax {
			continue
		}
		mem := make([]byte, len(f.mem), c)
		copy(mem, f.mem)
		f.mem = mem
		fsys.memUsed += grow
		return true
	}
	return false
}

// memExtend makes n's written bytes reach end, zeros after what was
// written; memReserve(end) succeeded. fsys.mu is held.
func (f *cowFile) memExtend(end uint64) {
	if l := uint64(len(f.mem)); end > l {
		f.mem = f.mem[:end]
		clear(f.mem[l:])
	}
	f.memSize = max(f.memSize, end)
}

// memFree lets n's memory go. fsys.mu is held.
func (n *cowNode) memFree() {
	f := n.file
	n.fsys.memUsed -= int64(cap(f.mem))
	f.mem = nil
}

// memWrite writes data at off into n's memory; false means the file must
// spill first. fsys.mu is held.
func (n *cowNode) memWrite(data []byte, off int64) bool {
	f := n.file
	if off < 0 || uint64(off) > uint64(len(f.mem))+memGap {
		return false
	}
	end := uint64(off) + uint64(len(data))
	if !n.memReserve(end) {
		return false
	}
	f.memExtend(end)
	copy(f.mem[off:], data)
	f.memChanged = true
	return true
}

// memTruncate sets the size of in-memory content: what goes past the
// written bytes is a hole, which takes no memory. fsys.mu is held.
func (f *cowFile) memTruncate(size uint64) {
	if size < uint64(len(f.mem)) {
		f.mem = f.mem[:size]
	}
	f.memSize = size
	f.memChanged = true
}

// memAllocate is plain fallocate (mode 0) on in-memory content: the range
// becomes written zeros where it was not written; false means the file
// must spill first (other modes, or too much). fsys.mu is held.
func (n *cowNode) memAllocate(off, size uint64, mode uint32) bool {
	f := n.file
	if mode != 0 || off > uint64(len(f.mem))+memGap {
		return false
	}
	end := off + size
	if end <= uint64(len(f.mem)) {
		return true
	}
	if !n.memReserve(end) {
		return false
	}
	f.memExtend(end)
	f.memChanged = true
	return true
}

// memRead copies what n's memory holds at off into dest and returns it;
// the hole after the written bytes reads as zeros. fsys.mu is held.
func (f *cowFile) memRead(dest []byte, off int64) []byte {
	if off < 0 || uint64(off) >= f.memSize {
		return dest[:0]
	}
	n := min(uint64(len(dest)), f.memSize-uint64(off))
	dest = dest[:n]
	c := 0
	if uint64(off) < uint64(len(f.mem)) {
		c = copy(dest, f.mem[off:])
	}
	clear(dest[c:])
	return dest
}

// memSeek answers SEEK_DATA and SEEK_HOLE for in-memory content: the
// 4 KiB blocks its written bytes touch are data, the rest a hole, as ext4
// reports it. fsys.mu is held.
func (f *cowFile) memSeek(off uint64, whence uint32) (uint64, syscall.Errno) {
	if off >= f.memSize {
		return 0, syscall.ENXIO
	}
	data := min((uint64(len(f.mem))+4095)/4096*4096, f.memSize)
	switch whence {
	case unix.SEEK_DATA:
		if off < data {
			return off, 0
		}
		return 0, syscall.ENXIO
	case unix.SEEK_HOLE:
		if off < data {
			return data, 0
		}
		return off, 0
	}
	return 0, syscall.EINVAL
}

// spill moves n's in-memory content into a new scratch file. fsys.mu is
// held.
func (n *cowNode) spill() error {
	f := n.file
	if !f.memHas() {
		return nil
	}
	fd, err := n.scratchFD()
	if err != nil {
		return fmt.Errorf("%s: moving its content out of memory: %w", n.path(), err)
	}
	fail := func(err error) error {
		n.discardScratchFD(fd)
		return fmt.Errorf("%s: moving its content out of memory: %w", n.path(), err)
	}
	for done := 0; done < len(f.mem); {
		w, err := unix.Pwrite(fd, f.mem[done:], int64(done))
		if err != nil {
			return fail(err)
		}
		done += w
	}
	if f.memSize > uint64(len(f.mem)) {
		if err := unix.Ftruncate(fd, int64(f.memSize)); err != nil {
			return fail(err)
		}
	}
	mt := unix.Timespec{Sec: n.meta.MtimeSec, Nsec: int64(n.meta.MtimeNsec)}
	if err := futimens(fd, []unix.Timespec{{Nsec: unix.UTIME_OMIT}, mt}); err != nil {
		return fail(err)
	}
	n.memFree()
	f.memSize, f.memChanged, f.storedCopied = 0, false, false
	n.adoptScratch(fd)
	return nil
}

// copyUpToMem copies the first size bytes of a stored file into memory, if
// they fit and hold no hole before their last data (a scratch file keeps
// holes unallocated). fsys.mu is held.
func (n *cowNode) copyUpToMem(size uint64) (bool, error) {
	f := n.file
	info := f.content
	// Up to where the data ends: a hole after it stays a hole.
	var end uint64
	for i, ch := range info.node.Chunks {
		start := info.offsets[i]
		if start >= size {
			break
		}
		if ch.IsHole() {
			continue
		}
		if start > end+memGap {
			return false, nil
		}
		end = min(start+ch.Size, size)
	}
	if !n.memReserve(end) {
		return false, nil
	}
	f.mem = f.mem[:end]
	clear(f.mem)
	for i, ch := range info.node.Chunks {
		start := info.offsets[i]
		if start >= end {
			break
		}
		if ch.IsHole() {
			continue
		}
		data, err := n.fsys.cache.chunkData(ch)
		if err != nil {
			n.memFree()
			return false, fmt.Errorf("copy up %s: %w", n.path(), err)
		}
		copy(f.mem[start:end], data)
	}
	f.copied, f.inMem, f.content = true, true, nil
	f.memSize, f.memChanged = size, true
	return true, nil
}

// memStored turns an in-memory file that a commit stored, and that no
// handle holds, into a stored one: its memory goes, and it reads from the
// store from now on. rec is the node the commit stored as h. fsys.mu is
// held.
func (n *cowNode) memStored(h digest.Hash, rec *node.Node) {
	f := n.file
	info := newNodeInfo(h, rec)
	n.memFree()
	f.copied, f.inMem, f.content = false, false, info
	f.memSize, f.memChanged, f.storedCopied = 0, false, false
	f.chunks, f.size = nil, 0
}

// touchData marks a change of n's content made by the server: mtime and
// ctime now.
func (n *cowNode) touchData() {
	now := tsNow(time.Now())
	n.meta.MtimeSec, n.meta.MtimeNsec = now.Sec, uint32(now.Nsec)
	n.ctime = now
}
