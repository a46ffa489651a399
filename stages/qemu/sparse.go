package qemu

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

// holeBlock is the unit canonicalHoles works in: the block size of the
// filesystems a tree lives on.
const holeBlock = 4096

// canonicalHoles makes every all-zero, block-aligned block of the file a
// hole, and no other: qemu-img leaves some zero regions of its output as
// holes and writes others, and which depends on the timing of its
// parallel writes. The bytes are the same either way, but forge's store
// cuts a file's chunks within each of its data extents, so two outputs
// with the same bytes could be stored as two trees. After this the hole
// layout, and so the stored tree, is a function of the bytes.
//
// Only the data extents are read (a hole is zeros already), and each run
// of zero blocks is punched with one call: a 780 MB qcow2 of the Debian
// sample has ~14,000 zero blocks, in far fewer runs. Nothing is synced:
// the store reads the file back through the same page cache, and a file
// lost in a crash is a stage to run again.
func canonicalHoles(name string) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	fd := int(f.Fd())
	buf := make([]byte, 1<<20)
	zero := make([]byte, holeBlock)
	// [runStart, runEnd) is the run of zero blocks not punched yet.
	var runStart, runEnd int64
	flush := func() error {
		if runEnd > runStart {
			if err := unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, runStart, runEnd-runStart); err != nil {
				return fmt.Errorf("punch a hole in %s at %d: %w", name, runStart, err)
			}
		}
		runStart, runEnd = 0, 0
		return nil
	}
	for off := int64(0); off < size; {
		data, hole, err := nextData(fd, off, size)
		if err != nil {
			return fmt.Errorf("find the data of %s after %d: %w", name, off, err)
		}
		if data >= size {
			break
		}
		// Blocks are the file's aligned 4 KiB blocks: start at the one
		// the extent begins in (its part before data is a hole: zeros).
		data -= data % holeBlock
		for pos := data; pos < hole; {
			want := min(int64(len(buf)), hole-pos)
			n, err := f.ReadAt(buf[:want], pos)
			if err != nil && !errors.Is(err, io.EOF) {
				return fmt.Errorf("read %s: %w", name, err)
			}
			if n == 0 {
				break
			}
			for i := 0; i+holeBlock <= n; i += holeBlock {
				at := pos + int64(i)
				if !bytes.Equal(buf[i:i+holeBlock], zero) {
					if err := flush(); err != nil {
						return err
					}
					continue
				}
				if runEnd != at {
					if err := flush(); err != nil {
						return err
					}
					runStart = at
				}
				runEnd = at + holeBlock
			}
			pos += int64(n)
		}
		off = hole
	}
	return flush()
}

// nextData returns the data extent at or after off: its start and the
// hole after it (size when the file ends first). A data start of size or
// more means no data is left. Filesystems without SEEK_DATA report the
// whole file as one extent.
func nextData(fd int, off, size int64) (data, hole int64, err error) {
	data, err = unix.Seek(fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		return size, size, nil
	case errors.Is(err, unix.EINVAL) || errors.Is(err, unix.EOPNOTSUPP):
		return off, size, nil
	case err != nil:
		return 0, 0, err
	}
	hole, err = unix.Seek(fd, data, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, err
	}
	return data, min(hole, size), nil
}
