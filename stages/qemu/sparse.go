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
func canonicalHoles(name string) error {
	f, err := os.OpenFile(name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, 1<<20)
	zero := make([]byte, holeBlock)
	var off int64
	for {
		n, err := io.ReadFull(f, buf)
		for i := 0; i+holeBlock <= n; i += holeBlock {
			if bytes.Equal(buf[i:i+holeBlock], zero) {
				if perr := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off+int64(i), holeBlock); perr != nil {
					return fmt.Errorf("punch a hole in %s at %d: %w", name, off+int64(i), perr)
				}
			}
		}
		off += int64(n)
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return f.Sync()
		}
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
	}
}
