package loopdev

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Device is a loop device this process attached and holds open. Its methods
// are safe for concurrent use; after Detach they fail.
type Device struct {
	// Index is N in loopN.
	Index int
	// Rdev is the device number of /dev/loopN, for mknod.
	Rdev uint64
	// Retries counts the devices Attach found taken by another process
	// (EBUSY) or removed before it got this one.
	Retries int

	mu sync.Mutex
	fd int // -1 once detached
	// backingDev and backingIno identify the file the device was bound to,
	// as LOOP_GET_STATUS64 reports it, so Detach never clears a device that
	// someone else unbound and rebound in the meantime.
	backingDev, backingIno uint64
	// added lists the partition numbers this process added with BLKPG.
	added []int
}

// Name is "loopN".
func (d *Device) Name() string { return "loop" + strconv.Itoa(d.Index) }

// Path is "/dev/loopN" in the host's /dev.
func (d *Device) Path() string { return "/dev/" + d.Name() }

func (d *Device) String() string { return d.Path() }

// PartitionName is the kernel's name of partition n: "loopNpM".
func (d *Device) PartitionName(n int) string { return d.Name() + "p" + strconv.Itoa(n) }

func (d *Device) recordBacking() error {
	info, err := unix.IoctlLoopGetStatus64(d.fd)
	if err != nil {
		return &OpError{Op: "LOOP_GET_STATUS64", Device: d.Path(), Err: err}
	}
	d.backingDev, d.backingIno = info.Device, info.Inode
	return nil
}

// withFD runs f on the open fd, or fails if the device was detached.
func (d *Device) withFD(op string, f func(fd int) error) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return &OpError{Op: op, Device: d.Path(), Err: os.ErrClosed}
	}
	return f(d.fd)
}

// Size is the size of the device in bytes (offset and sizelimit applied).
func (d *Device) Size() (int64, error) {
	var size uint64
	err := d.withFD("BLKGETSIZE64", func(fd int) (err error) {
		size, err = unix.IoctlGetUint64(fd, unix.BLKGETSIZE64)
		return err
	})
	if err != nil {
		return 0, wrapOp("BLKGETSIZE64", d.Path(), err)
	}
	return int64(size), nil
}

// SectorSize is the logical block size of the device.
func (d *Device) SectorSize() (int, error) {
	var ss int
	err := d.withFD("BLKSSZGET", func(fd int) (err error) {
		ss, err = unix.IoctlGetInt(fd, unix.BLKSSZGET)
		return err
	})
	if err != nil {
		return 0, wrapOp("BLKSSZGET", d.Path(), err)
	}
	return ss, nil
}

// ReadAt reads the device, for the partition table.
func (d *Device) ReadAt(p []byte, off int64) (int, error) {
	var n int
	err := d.withFD("pread", func(fd int) error {
		for n < len(p) {
			m, err := unix.Pread(fd, p[n:], off+int64(n))
			if err == unix.EINTR {
				continue
			}
			if err != nil {
				return err
			}
			if m == 0 {
				return io.EOF
			}
			n += m
		}
		return nil
	})
	if err == io.EOF {
		return n, err
	}
	if err != nil {
		return n, wrapOp("pread", d.Path(), err)
	}
	return n, nil
}

// Partition is a partition of a loop device as sysfs shows it.
type Partition struct {
	Number      int
	Name        string // "loopNpM"
	Start, Size int64  // bytes
	Rdev        uint64
}

// Partitions lists the partitions the kernel has for the device, whoever
// added them, in number order.
func (d *Device) Partitions() ([]Partition, error) {
	dir := "/sys/class/block/" + d.Name()
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, &OpError{Op: "readdir", Device: d.Path(), Path: dir, Err: err}
	}
	var parts []Partition
	prefix := d.Name() + "p"
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), prefix) {
			continue
		}
		p, err := readSysfsPartition(filepath.Join(dir, e.Name()))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // removed while we looked
			}
			return nil, &OpError{Op: "read", Device: d.Path(), Path: filepath.Join(dir, e.Name()), Err: err}
		}
		p.Name = e.Name()
		parts = append(parts, p)
	}
	slices.SortFunc(parts, func(a, b Partition) int { return a.Number - b.Number })
	return parts, nil
}

func readSysfsPartition(dir string) (Partition, error) {
	var p Partition
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b)), err
	}
	num, err := read("partition")
	if err != nil {
		return p, err
	}
	if p.Number, err = strconv.Atoi(num); err != nil {
		return p, err
	}
	// start and size are always in 512-byte units in sysfs.
	for _, f := range []struct {
		name string
		dst  *int64
	}{{"start", &p.Start}, {"size", &p.Size}} {
		s, err := read(f.name)
		if err != nil {
			return p, err
		}
		v, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return p, err
		}
		*f.dst = v * 512
	}
	dev, err := read("dev")
	if err != nil {
		return p, err
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(dev, "%d:%d", &major, &minor); err != nil {
		return p, fmt.Errorf("dev %q: %w", dev, err)
	}
	p.Rdev = unix.Mkdev(major, minor)
	return p, nil
}

// AddPartition adds partition n (start and size in bytes, multiples of the
// logical block size) with BLKPG_ADD_PARTITION, and remembers it so that
// Detach removes it.
func (d *Device) AddPartition(n int, start, size int64) error {
	err := d.withFD("BLKPG_ADD_PARTITION", func(fd int) error {
		if err := blkpg(fd, unix.BLKPG_ADD_PARTITION, n, start, size); err != nil {
			return err
		}
		d.added = append(d.added, n)
		return nil
	})
	if err != nil {
		return wrapOpDetail("BLKPG_ADD_PARTITION", d.Path(), fmt.Sprintf("partition %d start=%d size=%d", n, start, size), err)
	}
	return nil
}

func blkpg(fd int, op int32, n int, start, size int64) error {
	part := unix.BlkpgPartition{Start: start, Length: size, Pno: int32(n)}
	arg := unix.BlkpgIoctlArg{
		Op:      op,
		Datalen: int32(unsafe.Sizeof(part)),
		Data:    (*byte)(unsafe.Pointer(&part)),
	}
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKPG, uintptr(unsafe.Pointer(&arg)))
	runtime.KeepAlive(&part)
	if errno != 0 {
		return errno
	}
	return nil
}

// Detach undoes Attach: it removes the partitions this process added,
// clears the device if it is still bound to the file Attach bound, and
// closes it. A device still open elsewhere (a mounted partition, say) is
// unbound by the kernel when its last user closes it, thanks to autoclear.
// Detach is idempotent; errors are returned after everything was tried.
func (d *Device) Detach() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.fd < 0 {
		return nil
	}
	var errs []error
	if d.stillOurs() {
		for _, n := range slices.Backward(d.added) {
			err := blkpg(d.fd, unix.BLKPG_DEL_PARTITION, n, 0, 0)
			if err != nil && err != unix.ENXIO {
				errs = append(errs, &OpError{Op: "BLKPG_DEL_PARTITION", Device: d.Path(), Detail: "partition " + strconv.Itoa(n), Err: err})
			}
		}
		if err := unix.IoctlSetInt(d.fd, unix.LOOP_CLR_FD, 0); err != nil && err != unix.ENXIO {
			errs = append(errs, &OpError{Op: "LOOP_CLR_FD", Device: d.Path(), Err: err})
		}
	}
	d.added = nil
	if err := unix.Close(d.fd); err != nil {
		errs = append(errs, &OpError{Op: "close", Device: d.Path(), Err: err})
	}
	d.fd = -1
	return errors.Join(errs...)
}

// stillOurs reports whether the device is still bound to the file we bound.
// Someone with the rights to do so (losetup -d) may have unbound it and
// someone else bound it again; clearing it then would break their device.
func (d *Device) stillOurs() bool {
	info, err := unix.IoctlLoopGetStatus64(d.fd)
	return err == nil && info.Device == d.backingDev && info.Inode == d.backingIno
}

// Bound reports whether the device is still bound to the file Attach bound.
func (d *Device) Bound() bool {
	return d.withFD("LOOP_GET_STATUS64", func(int) error {
		if !d.stillOurs() {
			return unix.ENXIO
		}
		return nil
	}) == nil
}

func wrapOp(op, dev string, err error) error { return wrapOpDetail(op, dev, "", err) }

func wrapOpDetail(op, dev, detail string, err error) error {
	var oe *OpError
	if errors.As(err, &oe) {
		return err
	}
	return &OpError{Op: op, Device: dev, Detail: detail, Err: err}
}
