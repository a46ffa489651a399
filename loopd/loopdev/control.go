package loopdev

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// loopMajor is the block major of whole loop devices.
const loopMajor = 7

// maxAttempts bounds the retries of Attach when other processes keep taking
// the free device first. Each retry follows a real EBUSY, so even a busy
// host rarely needs more than a couple.
const maxAttempts = 100

// Control is an open /dev/loop-control. It is safe for concurrent use.
type Control struct {
	fd     int
	devDir string
	// legacy: the kernel predates LOOP_CONFIGURE (Linux 5.8).
	legacy bool

	// beforeConfigure, set only by tests, runs between LOOP_CTL_GET_FREE and
	// LOOP_CONFIGURE: the window in which another process can take the
	// device, which Attach must survive.
	beforeConfigure func(index int)
}

// OpenControl opens /dev/loop-control.
func OpenControl() (*Control, error) {
	const path = "/dev/loop-control"
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &OpError{Op: "open", Path: path, Err: err}
	}
	return &Control{fd: fd, devDir: "/dev", legacy: !kernelAtLeast(5, 8)}, nil
}

// kernelAtLeast compares the running kernel's release with major.minor.
// Asking the kernel is the only reliable test for LOOP_CONFIGURE: an old
// kernel answers EINVAL to it, but so does a new one to bad parameters.
func kernelAtLeast(major, minor int) bool {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return true
	}
	var ma, mi int
	if _, err := fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &ma, &mi); err != nil {
		return true
	}
	return ma > major || (ma == major && mi >= minor)
}

// Close closes the control device. Devices already attached stay attached.
func (c *Control) Close() error {
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// Options are the parameters of a loop device.
type Options struct {
	// Offset is where the device starts in the backing file, in bytes.
	Offset uint64
	// SizeLimit caps the device size in bytes; 0 means up to the end.
	SizeLimit uint64
	// SectorSize is the logical block size (512…4096); 0 means 512.
	SectorSize uint32
	// ReadOnly makes the device read-only even if the fd is writable.
	ReadOnly bool
	// Partscan sets LO_FLAGS_PARTSCAN: the kernel scans (with whatever
	// parsers it has) and, more importantly, drops every partition of the
	// device when it is finally cleared.
	Partscan bool
	// Lock takes an exclusive flock (LOCK_EX) on the device before it is
	// configured, held on the Device's fd until Detach: udev does not
	// probe a device locked so, and osbuild's loop.py asks for it.
	Lock bool
}

func (o Options) flags() uint32 {
	f := uint32(unix.LO_FLAGS_AUTOCLEAR)
	if o.ReadOnly {
		f |= unix.LO_FLAGS_READ_ONLY
	}
	if o.Partscan {
		f |= unix.LO_FLAGS_PARTSCAN
	}
	return f
}

func (o Options) String() string {
	return fmt.Sprintf("offset=%d sizelimit=%d sector_size=%d flags=%s", o.Offset, o.SizeLimit, o.SectorSize, flagNames(o.flags()))
}

func flagNames(f uint32) string {
	var names []string
	for _, n := range []struct {
		bit  uint32
		name string
	}{
		{unix.LO_FLAGS_READ_ONLY, "READ_ONLY"},
		{unix.LO_FLAGS_AUTOCLEAR, "AUTOCLEAR"},
		{unix.LO_FLAGS_PARTSCAN, "PARTSCAN"},
		{unix.LO_FLAGS_DIRECT_IO, "DIRECT_IO"},
	} {
		if f&n.bit != 0 {
			names = append(names, n.name)
		}
	}
	if len(names) == 0 {
		return "0"
	}
	return strings.Join(names, "|")
}

// Attach binds the open file backing to a free loop device with autoclear
// set, and returns the device held open. backing is not closed and may be
// closed as soon as Attach returns: the kernel keeps its own reference.
//
// Getting a free device and binding it are two steps; another process may
// bind the device in between, and the kernel then answers EBUSY. Attach
// takes the next free device, up to maxAttempts times, or until ctx ends.
func (c *Control) Attach(ctx context.Context, backing int, opts Options) (*Device, error) {
	var last error
	for attempt := range maxAttempts {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		index, err := unix.IoctlRetInt(c.fd, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return nil, &OpError{Op: "LOOP_CTL_GET_FREE", Device: "/dev/loop-control", Err: err}
		}
		d, err := c.open(index)
		if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENXIO) {
			// Removed (LOOP_CTL_REMOVE) between the two calls: try again.
			last = err
			continue
		}
		if err != nil {
			return nil, err
		}
		if opts.Lock {
			if err := unix.Flock(d.fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
				// Someone holds it (udev probing it, briefly): as osbuild
				// does, try again with another device, or later.
				unix.Close(d.fd)
				last = &OpError{Op: "flock", Device: d.Path(), Err: err}
				if !errors.Is(err, unix.EWOULDBLOCK) {
					return nil, last
				}
				time.Sleep(10 * time.Millisecond)
				continue
			}
		}
		if c.beforeConfigure != nil {
			c.beforeConfigure(index)
		}
		err = d.configure(backing, opts, c.legacy)
		if err == nil {
			d.Retries = attempt
			return d, nil
		}
		unix.Close(d.fd)
		if !errors.Is(err, unix.EBUSY) {
			return nil, err
		}
		last = err
	}
	return nil, fmt.Errorf("loopdev: no loop device could be bound after %d attempts: %w", maxAttempts, last)
}

// open opens /dev/loopN and makes sure it is what it claims: a block device
// of major 7 that sysfs knows as loopN, not something put in its place.
func (c *Control) open(index int) (*Device, error) {
	name := "loop" + strconv.Itoa(index)
	path := filepath.Join(c.devDir, name)
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CLOEXEC|unix.O_NOFOLLOW, 0)
	if err != nil {
		return nil, &OpError{Op: "open", Device: path, Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		unix.Close(fd)
		return nil, &OpError{Op: "fstat", Device: path, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || unix.Major(st.Rdev) != loopMajor {
		unix.Close(fd)
		return nil, &OpError{Op: "open", Device: path, Err: fmt.Errorf("not a loop block device (mode %o, rdev %d:%d)", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))}
	}
	sys := fmt.Sprintf("/sys/dev/block/%d:%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
	target, err := os.Readlink(sys)
	if err != nil || filepath.Base(target) != name {
		unix.Close(fd)
		return nil, &OpError{Op: "readlink", Device: path, Path: sys, Err: fmt.Errorf("device number belongs to %q, not %s (%v)", filepath.Base(target), name, err)}
	}
	return &Device{Index: index, Rdev: st.Rdev, fd: fd}, nil
}

// configure binds backing to the device: LOOP_CONFIGURE, or on kernels
// before 5.8 the older LOOP_SET_FD + LOOP_SET_STATUS64 pair.
func (d *Device) configure(backing int, o Options, legacy bool) error {
	var err error
	if legacy {
		err = d.configureLegacy(backing, o)
	} else {
		cfg := unix.LoopConfig{
			Fd:   uint32(backing),
			Size: o.SectorSize,
			Info: unix.LoopInfo64{Offset: o.Offset, Sizelimit: o.SizeLimit, Flags: o.flags()},
		}
		if err = unix.IoctlLoopConfigure(d.fd, &cfg); err != nil {
			err = &OpError{Op: "LOOP_CONFIGURE", Device: d.Path(), Path: FDPath(backing), Detail: o.String(), Err: err}
		}
	}
	if err != nil {
		return err
	}
	return d.recordBacking()
}

// configureLegacy is the pre-5.8 way: bind, then set the status. It cannot
// make a device read-only when the fd is writable (LOOP_SET_STATUS64 cannot
// set that flag), so it refuses rather than hand out a writable device.
func (d *Device) configureLegacy(backing int, o Options) error {
	fail := func(op string, err error) error {
		return &OpError{Op: op, Device: d.Path(), Path: FDPath(backing), Detail: o.String(), Err: err}
	}
	if o.ReadOnly {
		fl, err := unix.FcntlInt(uintptr(backing), unix.F_GETFL, 0)
		if err != nil {
			return fail("fcntl(F_GETFL)", err)
		}
		if fl&unix.O_ACCMODE != unix.O_RDONLY {
			return fail("LOOP_SET_FD", errors.New("read_only with a writable fd needs LOOP_CONFIGURE (Linux 5.8)"))
		}
	}
	if err := unix.IoctlSetInt(d.fd, unix.LOOP_SET_FD, backing); err != nil {
		return fail("LOOP_SET_FD", err)
	}
	undo := func(op string, err error) error {
		unix.IoctlSetInt(d.fd, unix.LOOP_CLR_FD, 0)
		return fail(op, err)
	}
	if o.SectorSize != 0 {
		if err := unix.IoctlSetInt(d.fd, unix.LOOP_SET_BLOCK_SIZE, int(o.SectorSize)); err != nil {
			return undo("LOOP_SET_BLOCK_SIZE", err)
		}
	}
	info := unix.LoopInfo64{Offset: o.Offset, Sizelimit: o.SizeLimit, Flags: o.flags() &^ unix.LO_FLAGS_READ_ONLY}
	if err := unix.IoctlLoopSetStatus64(d.fd, &info); err != nil {
		return undo("LOOP_SET_STATUS64", err)
	}
	return nil
}

// FDPath names an open file descriptor for messages: its /proc/self/fd link
// (read from our own fd table; nothing is opened).
func FDPath(fd int) string {
	p, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(fd))
	if err != nil {
		return "fd " + strconv.Itoa(fd)
	}
	return p
}
