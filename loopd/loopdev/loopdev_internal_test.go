package loopdev

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const mib = 1 << 20

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices, BLKPG and mknod")
	}
}

func openControl(t *testing.T) *Control {
	t.Helper()
	c, err := OpenControl()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// backingFile creates a sparse file of size bytes and returns it open
// read-write, closed at the end of the test.
func backingFile(t *testing.T, size int64) *os.File {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(t.TempDir(), "backing.img"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return f
}

// attach attaches and schedules the detach, so a failing test leaves
// nothing behind.
func attach(t *testing.T, c *Control, f *os.File, o Options) *Device {
	t.Helper()
	d, err := c.Attach(context.Background(), int(f.Fd()), o)
	if err != nil {
		t.Fatalf("Attach %s: %v", f.Name(), err)
	}
	t.Cleanup(func() { d.Detach() })
	return d
}

// sysfsBacking returns what sysfs says backs loopN, "" if unbound.
func sysfsBacking(index int) string {
	b, err := os.ReadFile("/sys/block/loop" + strconv.Itoa(index) + "/loop/backing_file")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

func TestAttachDetach(t *testing.T) {
	needRoot(t)
	c := openControl(t)
	f := backingFile(t, 8*mib)
	d := attach(t, c, f, Options{Offset: 1 * mib, SizeLimit: 4 * mib})
	if got := sysfsBacking(d.Index); got != f.Name() {
		t.Fatalf("sysfs backing_file of %s = %q, want %q", d, got, f.Name())
	}
	info, err := unix.IoctlLoopGetStatus64(d.fd)
	if err != nil {
		t.Fatal(err)
	}
	if info.Flags&unix.LO_FLAGS_AUTOCLEAR == 0 || info.Offset != 1*mib || info.Sizelimit != 4*mib {
		t.Errorf("status: flags %s offset %d sizelimit %d", flagNames(info.Flags), info.Offset, info.Sizelimit)
	}
	if size, err := d.Size(); err != nil || size != 4*mib {
		t.Errorf("Size = %d, %v; want %d", size, err, 4*mib)
	}
	// Writes through the device land in the file at the offset.
	pattern := bytes.Repeat([]byte("forge"), 1000)
	if _, err := unix.Pwrite(d.fd, pattern, 4096); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fsync(d.fd); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(pattern))
	if _, err := f.ReadAt(got, 1*mib+4096); err != nil || !bytes.Equal(got, pattern) {
		t.Errorf("file at offset+4096 does not hold what was written through %s (%v)", d, err)
	}
	if !d.Bound() {
		t.Error("Bound() = false for an attached device")
	}
	if err := d.Detach(); err != nil {
		t.Fatalf("Detach: %v", err)
	}
	if got := sysfsBacking(d.Index); got != "" {
		t.Errorf("after Detach, %s is still backed by %q", d, got)
	}
	if err := d.Detach(); err != nil {
		t.Errorf("second Detach: %v", err)
	}
	if _, err := d.Size(); !errors.Is(err, os.ErrClosed) {
		t.Errorf("Size after Detach: %v, want os.ErrClosed", err)
	}
}

// TestAttachRetriesOnEBUSY forces the race Attach must survive: between
// LOOP_CTL_GET_FREE and LOOP_CONFIGURE another process binds the device.
// Here that other binder is this test, through its own fd on the same
// device, with LOOP_SET_FD: the kernel really answers EBUSY.
func TestAttachRetriesOnEBUSY(t *testing.T) {
	needRoot(t)
	c := openControl(t)
	ours := backingFile(t, 1*mib)
	theirs := backingFile(t, 1*mib)
	var calls []int
	stolen := -1
	c.beforeConfigure = func(index int) {
		calls = append(calls, index)
		if stolen >= 0 {
			return
		}
		fd, err := unix.Open("/dev/loop"+strconv.Itoa(index), unix.O_RDWR|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Errorf("open loop%d: %v", index, err)
			return
		}
		if err := unix.IoctlSetInt(fd, unix.LOOP_SET_FD, int(theirs.Fd())); err != nil {
			unix.Close(fd)
			t.Errorf("LOOP_SET_FD on loop%d: %v", index, err)
			return
		}
		stolen = index
		t.Cleanup(func() {
			unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
			unix.Close(fd)
		})
	}
	d := attach(t, c, ours, Options{})
	if stolen < 0 {
		t.Fatal("the device was never stolen")
	}
	if len(calls) < 2 {
		t.Fatalf("Attach did not retry: configure attempts on %v", calls)
	}
	if d.Index == stolen {
		t.Fatalf("Attach returned loop%d, which the other binder holds", stolen)
	}
	if got := sysfsBacking(d.Index); got != ours.Name() {
		t.Errorf("%s backed by %q, want %q", d, got, ours.Name())
	}
	if got := sysfsBacking(stolen); got != theirs.Name() {
		t.Errorf("stolen loop%d backed by %q, want %q (Attach must not touch it)", stolen, got, theirs.Name())
	}
}

func TestAttachCanceled(t *testing.T) {
	needRoot(t)
	c := openControl(t)
	f := backingFile(t, 1*mib)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if d, err := c.Attach(ctx, int(f.Fd()), Options{}); !errors.Is(err, context.Canceled) {
		if d != nil {
			d.Detach()
		}
		t.Fatalf("Attach with a canceled context: %v", err)
	}
}

func TestAttachErrorNamesDevice(t *testing.T) {
	needRoot(t)
	c := openControl(t)
	f := backingFile(t, 1*mib)
	// A sector size the kernel does not support: LOOP_CONFIGURE says EINVAL.
	_, err := c.Attach(context.Background(), int(f.Fd()), Options{SectorSize: 3000})
	var oe *OpError
	if !errors.As(err, &oe) {
		t.Fatalf("Attach with sector size 3000: %v, want an *OpError", err)
	}
	if !errors.Is(err, unix.EINVAL) || oe.Op != "LOOP_CONFIGURE" || !strings.HasPrefix(oe.Device, "/dev/loop") || oe.Path != f.Name() {
		t.Errorf("error %q: want EINVAL naming the device and %s", err, f.Name())
	}
}

// TestConfigureLegacy runs the pre-5.8 path (LOOP_SET_FD + LOOP_SET_STATUS64)
// against this kernel, which accepts both ioctls.
func TestConfigureLegacy(t *testing.T) {
	needRoot(t)
	c := openControl(t)
	f := backingFile(t, 8*mib)
	var d *Device
	for d == nil {
		index, err := unix.IoctlRetInt(c.fd, unix.LOOP_CTL_GET_FREE)
		if err != nil {
			t.Fatal(err)
		}
		dev, err := c.open(index)
		if err != nil {
			t.Fatal(err)
		}
		err = dev.configureLegacy(int(f.Fd()), Options{Offset: 2 * mib, SectorSize: 4096, Partscan: true})
		if errors.Is(err, unix.EBUSY) {
			unix.Close(dev.fd)
			continue // raced with another process: take the next device
		}
		if err != nil {
			unix.Close(dev.fd)
			t.Fatal(err)
		}
		if err := dev.recordBacking(); err != nil {
			t.Fatal(err)
		}
		d = dev
	}
	t.Cleanup(func() { d.Detach() })
	info, err := unix.IoctlLoopGetStatus64(d.fd)
	if err != nil {
		t.Fatal(err)
	}
	if info.Flags&unix.LO_FLAGS_AUTOCLEAR == 0 || info.Flags&unix.LO_FLAGS_PARTSCAN == 0 || info.Offset != 2*mib {
		t.Errorf("status: flags %s offset %d", flagNames(info.Flags), info.Offset)
	}
	if ss, err := d.SectorSize(); err != nil || ss != 4096 {
		t.Errorf("SectorSize = %d, %v; want 4096", ss, err)
	}
	// The legacy path cannot make a writable fd read-only: it must refuse.
	err = d.configureLegacy(int(f.Fd()), Options{ReadOnly: true})
	if err == nil || !strings.Contains(err.Error(), "read_only") {
		t.Errorf("legacy read_only with a writable fd: %v", err)
	}
	if err := d.Detach(); err != nil {
		t.Fatal(err)
	}
	if got := sysfsBacking(d.Index); got != "" {
		t.Errorf("after Detach backed by %q", got)
	}
}

func TestReadOnly(t *testing.T) {
	needRoot(t)
	c := openControl(t)
	f := backingFile(t, 1*mib)
	d := attach(t, c, f, Options{ReadOnly: true})
	ro, err := unix.IoctlGetInt(d.fd, unix.BLKROGET)
	if err != nil || ro != 1 {
		t.Errorf("BLKROGET = %d, %v; want 1", ro, err)
	}
}

func TestPartitions(t *testing.T) {
	needRoot(t)
	c := openControl(t)
	f := backingFile(t, 16*mib)
	d := attach(t, c, f, Options{Partscan: true})
	if err := d.AddPartition(1, 1*mib, 4*mib); err != nil {
		t.Fatal(err)
	}
	if err := d.AddPartition(3, 8*mib, 2*mib); err != nil {
		t.Fatal(err)
	}
	// Overlap: the kernel refuses, and says so through the error.
	err := d.AddPartition(2, 2*mib, 4*mib)
	if !errors.Is(err, unix.EBUSY) {
		t.Errorf("overlapping AddPartition: %v, want EBUSY", err)
	}
	parts, err := d.Partitions()
	if err != nil {
		t.Fatal(err)
	}
	if len(parts) != 2 || parts[0].Number != 1 || parts[1].Number != 3 ||
		parts[0].Start != 1*mib || parts[0].Size != 4*mib || parts[1].Start != 8*mib || parts[1].Size != 2*mib {
		t.Fatalf("Partitions = %+v", parts)
	}
	for _, p := range parts {
		if p.Name != d.PartitionName(p.Number) || p.Rdev == 0 {
			t.Errorf("partition %+v: want name %s and a device number", p, d.PartitionName(p.Number))
		}
		if _, err := os.Stat("/sys/class/block/" + p.Name); err != nil {
			t.Errorf("sysfs: %v", err)
		}
	}
	if err := d.Detach(); err != nil {
		t.Fatal(err)
	}
	for _, p := range parts {
		if _, err := os.Stat("/sys/class/block/" + p.Name); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s still exists after Detach (%v)", p.Name, err)
		}
	}
}

// TestDetachLeavesOthersDevice: Detach clears the device only while it is
// bound to the file Attach bound. (While we hold it open the kernel will not
// unbind it, but LOOP_CHANGE_FD can swap the file of a read-only device.)
// The swap is simulated by changing the inode we recorded; a second fd keeps
// the device bound once ours is closed, so we can see Detach left it bound.
func TestDetachLeavesOthersDevice(t *testing.T) {
	needRoot(t)
	c := openControl(t)
	f := backingFile(t, 1*mib)
	d := attach(t, c, f, Options{})
	other, err := unix.Open(d.Path(), unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if other >= 0 {
			unix.Close(other)
		}
	}()
	d.backingIno++
	if err := d.Detach(); err != nil {
		t.Fatal(err)
	}
	if got := sysfsBacking(d.Index); got != f.Name() {
		t.Errorf("Detach cleared a device bound to another file: backing now %q", got)
	}
	// Autoclear is set: closing the last fd unbinds it.
	unix.Close(other)
	other = -1
	if got := sysfsBacking(d.Index); got != "" {
		t.Errorf("after the last close, still backed by %q", got)
	}
}

func TestMakeNode(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	dirf, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer dirf.Close()
	dfd := int(dirf.Fd())
	rdev := unix.Mkdev(7, 200)

	n, err := MakeNode(dfd, "loop200", rdev, Owner{})
	if err != nil || n == nil {
		t.Fatalf("MakeNode = %v, %v", n, err)
	}
	defer n.Close()
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(dir, "loop200"), &st); err != nil {
		t.Fatal(err)
	}
	if st.Mode != unix.S_IFBLK|0o600 || st.Rdev != rdev || st.Uid != 0 {
		t.Errorf("node mode %o rdev %d:%d uid %d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Uid)
	}
	// Again: the same node is accepted as is, and is not ours to hold.
	if again, err := MakeNode(dfd, "loop200", rdev, Owner{}); err != nil || again != nil {
		t.Errorf("MakeNode over the same node = %v, %v; want nil, nil", again, err)
	}
	// A different node, or a file, in the way is an error.
	if _, err := MakeNode(dfd, "loop200", unix.Mkdev(7, 201), Owner{}); !errors.Is(err, unix.EEXIST) {
		t.Errorf("MakeNode over another device's node: %v, want EEXIST", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "loop9"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := MakeNode(dfd, "loop9", unix.Mkdev(7, 9), Owner{}); !errors.Is(err, unix.EEXIST) {
		t.Errorf("MakeNode over a file: %v, want EEXIST", err)
	}
	// A symlink in the way is not followed.
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(target, filepath.Join(dir, "loop8")); err != nil {
		t.Fatal(err)
	}
	if _, err := MakeNode(dfd, "loop8", unix.Mkdev(7, 8), Owner{UID: 65534, GID: 65534}); !errors.Is(err, unix.EEXIST) {
		t.Errorf("MakeNode over a symlink: %v, want EEXIST", err)
	}
	if err := unix.Stat(target, &st); err != nil || st.Uid != 0 {
		t.Errorf("symlink target chowned: uid %d (%v)", st.Uid, err)
	}
	// For a client other than root, the node is theirs.
	theirs, err := MakeNode(dfd, "loop201", unix.Mkdev(7, 201), Owner{UID: 65534, GID: 65534})
	if err != nil {
		t.Fatal(err)
	}
	defer theirs.Close()
	if err := unix.Stat(filepath.Join(dir, "loop201"), &st); err != nil || st.Uid != 65534 || st.Gid != 65534 {
		t.Errorf("node owner %d:%d (%v), want 65534:65534", st.Uid, st.Gid, err)
	}
	// Until Revoke, which reaches the inode through a hard link and a
	// rename too: root's, mode 0000, whatever the client did to it.
	link := filepath.Join(dir, "kept")
	if err := os.Link(filepath.Join(dir, "loop201"), link); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(link, 0o666); err != nil {
		t.Fatal(err)
	}
	if err := theirs.Revoke(); err != nil {
		t.Fatal(err)
	}
	if err := unix.Stat(link, &st); err != nil || st.Uid != 0 || st.Gid != 0 || st.Mode != unix.S_IFBLK {
		t.Errorf("after Revoke, the link is uid %d gid %d mode %o (%v); want root's, mode 0", st.Uid, st.Gid, st.Mode, err)
	}
	if links, err := theirs.Links(); err != nil || links != 2 {
		t.Errorf("Links = %d, %v; want 2", links, err)
	}
	// Remove removes the node's own name, not a name that is something
	// else now, and says so.
	if moved, err := theirs.Remove(dfd); err != nil || moved {
		t.Errorf("Remove = %v, %v; want false, nil", moved, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "loop201")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("loop201 still there: %v", err)
	}
	if err := os.Rename(filepath.Join(dir, "loop200"), filepath.Join(dir, "elsewhere")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "loop200"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if moved, err := n.Remove(dfd); err != nil || !moved {
		t.Errorf("Remove of a renamed node = %v, %v; want true, nil", moved, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "loop200")); err != nil {
		t.Errorf("Remove removed a regular file under the node's name: %v", err)
	}
}
