// Package diskfs fills filesystems inside an image file: for each one it
// gets a loop device over its byte range from loopd, makes the filesystem,
// mounts it where it belongs under a temporary root, copies the tree in
// (package treecopy) and unmounts everything again. Fill closes its loopd
// connection before it returns, which makes loopd detach the devices.
//
// Assemblers run in a build root with a private /dev and no loop-control,
// hence loopd; and with their own mount namespace, so mounting there is
// theirs alone. Fill still unmounts and releases everything on every path.
package diskfs

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/forge-build/forge/assemblers/internal/command"
	"github.com/forge-build/forge/internal/treecopy"
	"github.com/forge-build/forge/loopd"
	"golang.org/x/sys/unix"
)

// DefaultSocket is where osbuild's build root offers loopd (remoteloop).
const DefaultSocket = "/run/osbuild/api/remoteloop"

// SocketEnv overrides DefaultSocket, for running assemblers outside a build
// root (tests).
const SocketEnv = "FORGE_LOOPD_SOCKET"

// SocketPath is the loopd socket to use: $FORGE_LOOPD_SOCKET or
// DefaultSocket.
func SocketPath() string {
	if p := os.Getenv(SocketEnv); p != "" {
		return p
	}
	return DefaultSocket
}

// devDir is where loopd creates the device nodes: the build root's /dev,
// a tmpfs of its own.
const devDir = "/dev"

// Filesystem is one filesystem to make in the image.
type Filesystem struct {
	Type  string // only "ext4"
	UUID  string
	Label string // optional
	// Mountpoint is where it goes in the tree: "/" for the root.
	Mountpoint string
	// Offset and Size delimit it in the image, in bytes.
	Offset, Size int64
}

var uuidPattern = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// CheckUUID reports whether s is a UUID in its usual text form, as mkfs
// takes it.
func CheckUUID(s string) error {
	if !uuidPattern.MatchString(s) {
		return fmt.Errorf("%q is not a UUID like 9c6ae55b-cf88-45b8-84e8-64990759f39d", s)
	}
	return nil
}

// CheckType reports whether Fill can make filesystems of type t.
func CheckType(t string) error {
	if t != "ext4" {
		return fmt.Errorf("%q is not supported: forge makes ext4 only", t)
	}
	return nil
}

// maxLabel is ext4's volume label limit.
const maxLabel = 16

// Check validates fs on its own; errors name the field.
func (fs Filesystem) Check() error {
	if err := CheckType(fs.Type); err != nil {
		return fmt.Errorf("type: %w", err)
	}
	if err := CheckUUID(fs.UUID); err != nil {
		return fmt.Errorf("uuid: %w", err)
	}
	if len(fs.Label) > maxLabel {
		return fmt.Errorf("label: %q is longer than %d bytes", fs.Label, maxLabel)
	}
	if strings.ContainsRune(fs.Label, 0) {
		return fmt.Errorf("label: %q contains a NUL byte", fs.Label)
	}
	if err := CheckMountpoint(fs.Mountpoint); err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	if fs.Offset < 0 || fs.Size <= 0 || fs.Offset%512 != 0 || fs.Size%512 != 0 {
		return fmt.Errorf("byte range %d+%d: want a positive size, both in whole 512-byte sectors", fs.Offset, fs.Size)
	}
	return nil
}

// CheckMountpoint reports whether p is an absolute, clean path.
func CheckMountpoint(p string) error {
	if !strings.HasPrefix(p, "/") || filepath.Clean(p) != p || strings.ContainsRune(p, 0) {
		return fmt.Errorf("%q is not a clean absolute path", p)
	}
	return nil
}

// Fill makes the filesystems in the image file img, mounts them under a
// temporary root (parents before children), copies tree into them and
// unmounts them. One of them must be mounted at "/".
func Fill(ctx context.Context, img *os.File, filesystems []Filesystem, tree string) (err error) {
	if err := checkLayout(filesystems); err != nil {
		return err
	}
	// Parents first: a mount point is made inside the filesystem above it.
	ordered := slices.Clone(filesystems)
	slices.SortStableFunc(ordered, func(a, b Filesystem) int {
		return cmp.Compare(depth(a.Mountpoint), depth(b.Mountpoint))
	})

	socket := SocketPath()
	client, err := loopd.Dial(ctx, socket)
	if err != nil {
		return err
	}
	// Closing the connection detaches every device loopd gave us; it comes
	// after the unmounts below (defers run in reverse).
	defer func() {
		if cerr := client.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("loopd %s: close: %w", socket, cerr)
		}
	}()
	dev, err := os.OpenFile(devDir, os.O_RDONLY|unix.O_DIRECTORY, 0)
	if err != nil {
		return err
	}
	defer dev.Close()

	root, err := os.MkdirTemp("", "forge-assemble-")
	if err != nil {
		return err
	}
	var mounted []string
	defer func() {
		// Children before parents; a failure to unmount keeps the
		// directory, which must not be removed with a filesystem in it.
		uerr := unmountAll(mounted)
		if uerr == nil {
			uerr = os.Remove(root)
		}
		err = errors.Join(err, uerr)
	}()

	nodes := make([]string, len(ordered))
	for i, fs := range ordered {
		node, err := attach(ctx, client, img, dev, fs)
		if err != nil {
			return err
		}
		nodes[i] = node
		if err := makeFS(ctx, node, fs); err != nil {
			return err
		}
		mp := filepath.Join(root, fs.Mountpoint)
		if err := os.MkdirAll(mp, 0o755); err != nil {
			return err
		}
		// nodelalloc: blocks are allocated as the copy writes, in its
		// order, not when writeback happens to run, so the same tree
		// gives the same image (see makeFS).
		if err := unix.Mount(node, mp, fs.Type, unix.MS_NOATIME, "nodelalloc"); err != nil {
			return &os.PathError{Op: "mount " + node + " (" + fs.Type + ") on", Path: mp, Err: err}
		}
		mounted = append(mounted, mp)
	}
	if err := pinToOneCPU(); err != nil {
		return err
	}
	if err := treecopy.Copy(ctx, tree, root); err != nil {
		return err
	}
	uerr := unmountAll(mounted)
	mounted = nil
	if uerr != nil {
		return uerr
	}
	// Each filesystem gets its journal once it is filled (see makeFS):
	// it starts out empty, zeros that the store keeps as holes.
	for _, node := range nodes {
		if err := (command.Cmd{Name: "tune2fs", Args: []string{"-O", "has_journal", node}, Env: []string{fakeTime}}).Run(ctx); err != nil {
			return err
		}
	}
	return nil
}

// checkLayout checks each filesystem and that they fit together: one root,
// no mount point twice, no overlapping byte ranges.
func checkLayout(filesystems []Filesystem) error {
	roots := 0
	seen := map[string]bool{}
	for i, fs := range filesystems {
		if err := fs.Check(); err != nil {
			return fmt.Errorf("filesystem %d: %w", i, err)
		}
		if seen[fs.Mountpoint] {
			return fmt.Errorf("filesystem %d: mountpoint %q is used twice", i, fs.Mountpoint)
		}
		seen[fs.Mountpoint] = true
		if fs.Mountpoint == "/" {
			roots++
		}
		for j, other := range filesystems[:i] {
			if fs.Offset < other.Offset+other.Size && other.Offset < fs.Offset+fs.Size {
				return fmt.Errorf("filesystems %d and %d overlap", j, i)
			}
		}
	}
	if roots != 1 {
		return fmt.Errorf("want one filesystem mounted at \"/\", got %d", roots)
	}
	return nil
}

func depth(mountpoint string) int {
	if mountpoint == "/" {
		return 0
	}
	return strings.Count(mountpoint, "/")
}

// attach gets a loop device over fs's byte range of img and checks that
// the node loopd made is that device.
func attach(ctx context.Context, client *loopd.Client, img, dev *os.File, fs Filesystem) (string, error) {
	a, err := client.Attach(ctx, img, dev, loopd.AttachOptions{Offset: uint64(fs.Offset), SizeLimit: uint64(fs.Size)})
	if err != nil {
		return "", err
	}
	node := filepath.Join(dev.Name(), a.Devname)
	f, err := os.OpenFile(node, os.O_RDONLY, 0)
	if err != nil {
		return "", fmt.Errorf("loop device for %s: %w", fs.Mountpoint, err)
	}
	defer f.Close()
	size, err := unix.IoctlGetUint64(int(f.Fd()), unix.BLKGETSIZE64)
	if err != nil {
		return "", &os.PathError{Op: "ioctl(BLKGETSIZE64)", Path: node, Err: err}
	}
	if int64(size) != fs.Size {
		return "", fmt.Errorf("loop device %s for %s has %d bytes, want %d", node, fs.Mountpoint, size, fs.Size)
	}
	return node, nil
}

// fakeTime makes e2fsprogs write a fixed time into what it creates
// (superblock and journal times) instead of now.
const fakeTime = "E2FSPROGS_FAKE_TIME=1"

// makeFS runs mkfs on node. Block size 4096 and 256-byte inodes, whatever
// the size: mke2fs's profile for filesystems under 512 MiB takes 1 KiB
// blocks, which cap a symlink's target at 1023 bytes, and 128-byte inodes,
// which have no room for nanosecond times nor dates past 2038.
//
// The same tree must give nearly the same image, so that a stored image
// dedups against the one before it (an image differing in one file should
// cost the store little more than that file): the directory hash seed is
// the filesystem's UUID (ext4 also spreads top-level directories over
// block groups by that hash, else at random), inode tables are zeroed now
// rather than by the kernel in the background while the tree is copied,
// and the journal is added only after the copy (addJournal), as logging
// the copy's metadata would fill it with blocks that differ every time.
func makeFS(ctx context.Context, node string, fs Filesystem) error {
	args := []string{"-q", "-F", "-b", "4096", "-I", "256", "-U", fs.UUID,
		"-O", "^has_journal", "-E", "hash_seed=" + fs.UUID + ",lazy_itable_init=0"}
	if fs.Label != "" {
		args = append(args, "-L", fs.Label)
	}
	args = append(args, node)
	return command.Cmd{Name: "mkfs.ext4", Args: args, Env: []string{fakeTime}}.Run(ctx)
}

// unmountAll unmounts the mount points, last first. One that is busy is
// detached lazily, so that nothing stays visible, and reported.
func unmountAll(mounted []string) error {
	var errs []error
	for i := len(mounted) - 1; i >= 0; i-- {
		if err := unix.Unmount(mounted[i], unix.UMOUNT_NOFOLLOW); err != nil {
			errs = append(errs, &os.PathError{Op: "umount", Path: mounted[i], Err: err})
			if derr := unix.Unmount(mounted[i], unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); derr != nil {
				errs = append(errs, &os.PathError{Op: "umount (lazy)", Path: mounted[i], Err: derr})
			}
		}
	}
	return errors.Join(errs...)
}

// pinToOneCPU keeps every thread of this process (and those made later,
// which inherit it) on one CPU. ext4 places small files in per-CPU
// locality groups: a copy whose threads move between CPUs lays the same
// tree out differently each time, and an image that changed only in one
// file would then share little with the one before it in the store
// (measured: 600 MB of 4 KiB blocks differed between two 3 GiB images of
// one tree; pinned, 0.1 MB). The copy is one goroutine writing one file at
// a time, so one CPU costs it nothing.
func pinToOneCPU() error {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		return fmt.Errorf("sched_getaffinity: %w", err)
	}
	cpu := -1
	for i := 0; i < len(allowed)*64; i++ {
		if allowed.IsSet(i) {
			cpu = i
			break
		}
	}
	if cpu < 0 {
		return errors.New("sched_getaffinity: no CPU allowed")
	}
	var one unix.CPUSet
	one.Set(cpu)
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		// A thread that ended meanwhile is no matter.
		if err := unix.SchedSetaffinity(tid, &one); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("sched_setaffinity of thread %d: %w", tid, err)
		}
	}
	return nil
}
