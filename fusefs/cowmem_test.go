package fusefs

import (
	"bytes"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// memNode is a regular file in memory on a mount-less cowFS with a budget.
func memNode(fsys *cowFS) *cowNode {
	return &cowNode{fsys: fsys, file: &cowFile{copied: true, inMem: true, fd: -1}}
}

// memAll reads the whole of n's content.
func memAll(n *cowNode) []byte {
	f := n.file
	return f.memRead(make([]byte, f.memSize+10), 0)
}

func TestMemContent(t *testing.T) {
	type step struct {
		write []byte
		off   int64
		trunc int64 // truncate to this size when write is nil and !alloc
		alloc bool
		size  uint64
		mode  uint32
		spill bool // the step must refuse: the file would spill
	}
	w := func(off int64, s string) step { return step{write: []byte(s), off: off} }
	big := bytes.Repeat([]byte("b"), memFileMax)
	for _, tc := range []struct {
		name   string
		steps  []step
		want   string // content; "Z<n>" runs are expanded below
		blocks uint64
	}{
		{"append", []step{w(0, "hello "), w(6, "world")}, "hello world", 8},
		{"overwrite the middle", []step{w(0, "hello world"), w(2, "LL")}, "heLLo world", 8},
		{"a small gap is written zeros", []step{w(0, "ab"), w(10, "cd")}, "ab\x00\x00\x00\x00\x00\x00\x00\x00cd", 8},
		{"a wide gap would be a hole", []step{w(0, "ab"), {write: []byte("x"), off: 2 + memGap + 1, spill: true}}, "ab", 8},
		{"too large", []step{{write: big, off: 1, spill: true}}, "", 0},
		{"exactly the largest", []step{{write: big[:memFileMax-1], off: 1}}, "\x00" + string(big[:memFileMax-1]), memFileMax / 512},
		{"truncate down", []step{w(0, "hello world"), {trunc: 5}}, "hello", 8},
		{"truncate up leaves a hole", []step{w(0, "hello"), {trunc: 9000}}, "hello" + string(make([]byte, 8995)), 8},
		{"truncate down then up reads zeros", []step{w(0, "hello world"), {trunc: 2}, {trunc: 6}}, "he\x00\x00\x00\x00", 8},
		{"write into the hole near the data", []step{w(0, "he"), {trunc: 9000}, w(3, "X")}, "he\x00X" + string(make([]byte, 8996)), 8},
		{"write far into the hole would spill", []step{w(0, "he"), {trunc: 90000}, {write: []byte("X"), off: 80000, spill: true}}, "he" + string(make([]byte, 89998)), 8},
		{"fallocate allocates zeros", []step{w(0, "he"), {alloc: true, size: 10000}}, "he" + string(make([]byte, 9998)), 24},
		{"fallocate within the data changes nothing", []step{w(0, "hello"), {alloc: true, size: 3}}, "hello", 8},
		{"fallocate KEEP_SIZE would spill", []step{w(0, "he"), {alloc: true, size: 10000, mode: unix.FALLOC_FL_KEEP_SIZE, spill: true}}, "he", 8},
		{"punching a hole would spill", []step{w(0, "hello"), {alloc: true, size: 2, mode: unix.FALLOC_FL_PUNCH_HOLE | unix.FALLOC_FL_KEEP_SIZE, spill: true}}, "hello", 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := &cowFS{memMax: 16 << 20}
			n := memNode(fsys)
			for i, s := range tc.steps {
				var ok bool
				switch {
				case s.write != nil:
					ok = n.memWrite(s.write, s.off)
				case s.alloc:
					ok = n.memAllocate(uint64(s.off), s.size, s.mode)
				default:
					n.file.memTruncate(uint64(s.trunc))
					ok = true
				}
				if ok == s.spill {
					t.Fatalf("step %d: accepted %v, want %v", i, ok, !s.spill)
				}
			}
			if got := memAll(n); string(got) != tc.want {
				t.Errorf("content %q (%d bytes), want %q (%d bytes)", trim(got), len(got), trim([]byte(tc.want)), len(tc.want))
			}
			if got := n.file.memBlocks(); got != tc.blocks {
				t.Errorf("blocks %d, want %d", got, tc.blocks)
			}
			if fsys.memUsed != int64(cap(n.file.mem)) {
				t.Errorf("the budget counts %d bytes, the file holds %d", fsys.memUsed, cap(n.file.mem))
			}
			n.memFree()
			if fsys.memUsed != 0 {
				t.Errorf("after memFree the budget counts %d bytes", fsys.memUsed)
			}
		})
	}
}

func trim(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

// TestMemRead reads across the written bytes and the hole after them into
// a buffer full of junk: what the file does not hold must read as zeros.
func TestMemRead(t *testing.T) {
	fsys := &cowFS{memMax: 1 << 20}
	n := memNode(fsys)
	n.memWrite([]byte("0123456789"), 0)
	n.file.memTruncate(20)
	for _, tc := range []struct {
		off  int64
		size int
		want string
	}{
		{0, 4, "0123"},
		{8, 4, "89\x00\x00"},
		{12, 100, "\x00\x00\x00\x00\x00\x00\x00\x00"},
		{20, 4, ""},
		{25, 4, ""},
		{-1, 4, ""},
	} {
		dest := bytes.Repeat([]byte{0xff}, tc.size)
		if got := n.file.memRead(dest, tc.off); string(got) != tc.want {
			t.Errorf("read %d at %d: %q, want %q", tc.size, tc.off, got, tc.want)
		}
	}
}

// TestMemSeek: the blocks the written bytes touch are data, as ext4
// reports them, the rest up to the size a hole.
func TestMemSeek(t *testing.T) {
	fsys := &cowFS{memMax: 1 << 20}
	n := memNode(fsys)
	n.memWrite(bytes.Repeat([]byte("x"), 5000), 0)
	n.file.memTruncate(20000)
	dense := memNode(fsys)
	dense.memWrite([]byte("abc"), 0)
	for _, tc := range []struct {
		n      *cowNode
		off    uint64
		whence uint32
		want   uint64
		errno  syscall.Errno
	}{
		{n, 0, unix.SEEK_DATA, 0, 0},
		{n, 4999, unix.SEEK_DATA, 4999, 0},
		{n, 8191, unix.SEEK_DATA, 8191, 0},
		{n, 8192, unix.SEEK_DATA, 0, syscall.ENXIO},
		{n, 0, unix.SEEK_HOLE, 8192, 0},
		{n, 9000, unix.SEEK_HOLE, 9000, 0},
		{n, 20000, unix.SEEK_HOLE, 0, syscall.ENXIO},
		{dense, 0, unix.SEEK_HOLE, 3, 0},
		{dense, 1, unix.SEEK_DATA, 1, 0},
		{dense, 3, unix.SEEK_DATA, 0, syscall.ENXIO},
	} {
		got, errno := tc.n.file.memSeek(tc.off, tc.whence)
		if got != tc.want || errno != tc.errno {
			t.Errorf("seek %d whence %d: %d (%v), want %d (%v)", tc.off, tc.whence, got, errno, tc.want, tc.errno)
		}
	}
}

// TestMemBudget: a file that would take the mount past its budget must
// spill, and what a file gives back lets the next one in.
func TestMemBudget(t *testing.T) {
	fsys := &cowFS{memMax: 12 << 10}
	a, b := memNode(fsys), memNode(fsys)
	if !a.memWrite(make([]byte, 8<<10), 0) {
		t.Fatal("8 KiB of a 12 KiB budget refused")
	}
	if b.memWrite(make([]byte, 8<<10), 0) {
		t.Fatal("8 KiB more accepted over a 12 KiB budget")
	}
	if fsys.memUsed > fsys.memMax {
		t.Fatalf("the budget counts %d bytes of %d", fsys.memUsed, fsys.memMax)
	}
	a.memFree()
	if !b.memWrite(make([]byte, 8<<10), 0) {
		t.Fatal("8 KiB refused after the first file let go of its memory")
	}
}
