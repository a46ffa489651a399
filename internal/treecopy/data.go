package treecopy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	"golang.org/x/sys/unix"
)

const (
	copyBufSize = 1 << 20
	// zeroBlock is the granularity at which runs of zeros become holes:
	// the block size of the filesystems assemblers make.
	zeroBlock = 4096
)

var zeros = make([]byte, zeroBlock)

// copyFile creates dstName in dstfd with the content of srcName in srcfd,
// whose stat is st. Of a source that may have holes (fewer blocks allocated than
// its size needs) only the data extents are read (SEEK_DATA/SEEK_HOLE);
// one that has none is read whole, without asking: through a FUSE source
// each lseek is a round trip, two per file, a third of the requests for a
// tree of small files. Blocks of zeros are not written either way, so the
// copy is at least as sparse as the source, as `cp --sparse=always` makes
// it.
func (c *copier) copyFile(srcfd int, srcName string, dstfd int, dstName string, st *unix.Stat_t) (err error) {
	in, err := unix.Openat(srcfd, srcName, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(in)
	return c.withNewFile(dstfd, dstName, func(out int) error { return c.copyContent(in, out, st) })
}

// withNewFile creates the regular file name in dstfd and runs write on it.
func (c *copier) withNewFile(dstfd int, name string, write func(out int) error) (err error) {
	out, err := unix.Openat(dstfd, name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("create: %w", err)
	}
	defer func() {
		if cerr := unix.Close(out); cerr != nil && err == nil {
			err = fmt.Errorf("close: %w", cerr)
		}
	}()
	if err := write(out); err != nil {
		return err
	}
	if c.writeback {
		// Start writing the file's pages back now, without waiting for
		// them: on a loop device, writeback is the loop worker's copy
		// into the backing file, and done while the copy goes on it runs
		// beside it (on another CPU), rather than all of it when the
		// filesystem is unmounted, after the copy. Where the filesystem
		// cannot, nothing is lost but that.
		unix.SyncFileRange(out, 0, 0, unix.SYNC_FILE_RANGE_WRITE)
	}
	return nil
}

// loopMajor is the loop driver's block major number (LOOP_MAJOR).
const loopMajor = 7

// onLoopDevice reports whether the filesystem of the directory open at fd
// is on a loop device, or a partition of one. Elsewhere (a tree on the
// store's disk, an overlay's scratch upper layer) starting writeback
// early would only write to disk what may never need to be there.
func onLoopDevice(fd int) bool {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false
	}
	major, minor := unix.Major(st.Dev), unix.Minor(st.Dev)
	if major == loopMajor {
		return true
	}
	// A partition (partscan) has the extended major; its parent in sysfs
	// is the loop device. Not joined with filepath: ".." must follow the
	// sysfs link, not cancel it.
	dev := fmt.Sprintf("/sys/dev/block/%d:%d", major, minor)
	_, err := os.Stat(dev + "/../loop")
	return err == nil
}

// copyContent copies the content of in, whose stat is st, to out.
func (c *copier) copyContent(in, out int, st *unix.Stat_t) (err error) {
	size := st.Size
	mayHaveHoles := st.Blocks*512 < size
	for off := int64(0); off < size; {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		start, end := off, size
		if mayHaveHoles {
			if start, end, err = nextData(in, off, size); err != nil {
				return err
			}
		}
		if start >= size {
			break
		}
		if err := c.copyRange(in, out, start, end); err != nil {
			return err
		}
		off = end
	}
	// The size comes from the metadata: a hole at the end has no data to
	// write.
	if err := unix.Ftruncate(out, size); err != nil {
		return fmt.Errorf("ftruncate %d: %w", size, err)
	}
	return nil
}

// nextData returns the data extent at or after off, [start, end), clamped
// to size; start is size when only holes remain. A filesystem without
// SEEK_DATA is all data.
func nextData(fd int, off, size int64) (start, end int64, err error) {
	start, err = unix.Seek(fd, off, unix.SEEK_DATA)
	switch {
	case errors.Is(err, unix.ENXIO):
		return size, size, nil
	case errors.Is(err, unix.EINVAL), errors.Is(err, unix.EOPNOTSUPP):
		return off, size, nil
	case err != nil:
		return 0, 0, fmt.Errorf("lseek(SEEK_DATA, %d): %w", off, err)
	}
	end, err = unix.Seek(fd, start, unix.SEEK_HOLE)
	if err != nil {
		return 0, 0, fmt.Errorf("lseek(SEEK_HOLE, %d): %w", start, err)
	}
	return min(start, size), min(end, size), nil
}

// copyRange copies [start, end) from in to out at the same offsets,
// skipping aligned blocks of zeros.
func (c *copier) copyRange(in, out int, start, end int64) error {
	for off := start; off < end; {
		want := int(min(int64(len(c.buf)), end-off))
		n, err := unix.Pread(in, c.buf[:want], off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("read at %d: %w", off, err)
		}
		if n == 0 {
			return fmt.Errorf("read at %d: %w: the file is shorter than its size", off, io.ErrUnexpectedEOF)
		}
		if err := writeNonZero(out, c.buf[:n], off); err != nil {
			return err
		}
		off += int64(n)
	}
	return nil
}

// writeNonZero writes b at off, leaving out the blocks (aligned in the
// file) that are all zeros, and writing each run of other blocks at once.
func writeNonZero(out int, b []byte, off int64) error {
	runStart := -1
	flush := func(end int) error {
		if runStart < 0 {
			return nil
		}
		err := pwriteAll(out, b[runStart:end], off+int64(runStart))
		runStart = -1
		return err
	}
	for i := 0; i < len(b); {
		// The block boundary is aligned in the file, not in b.
		n := zeroBlock - int((off+int64(i))%zeroBlock)
		n = min(n, len(b)-i)
		if bytes.Equal(b[i:i+n], zeros[:n]) {
			if err := flush(i); err != nil {
				return err
			}
		} else if runStart < 0 {
			runStart = i
		}
		i += n
	}
	return flush(len(b))
}

func pwriteAll(fd int, b []byte, off int64) error {
	for len(b) > 0 {
		n, err := unix.Pwrite(fd, b, off)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return fmt.Errorf("write at %d: %w", off, err)
		}
		b, off = b[n:], off+int64(n)
	}
	return nil
}
