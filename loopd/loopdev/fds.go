package loopdev

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// Owner is who a created node belongs to.
type Owner struct{ UID, GID uint32 }

// CheckBacking says whether fd may back a loop device: an open regular file
// or block device (not an O_PATH handle), readable, and writable unless the
// device is to be read-only. It never looks at a path, only at the fd.
func CheckBacking(fd int, readOnly bool) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &OpError{Op: "fstat", Path: "backing fd", Err: err}
	}
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFREG, unix.S_IFBLK:
	default:
		return fmt.Errorf("backing fd is a %s, not a regular file or block device: %w", fileType(st.Mode), ErrUnsuitable)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return &OpError{Op: "fcntl(F_GETFL)", Path: "backing fd", Err: err}
	}
	switch {
	case fl&unix.O_PATH != 0:
		return fmt.Errorf("backing fd was opened with O_PATH: %w", ErrUnsuitable)
	case fl&unix.O_ACCMODE == unix.O_WRONLY:
		return fmt.Errorf("backing fd is write-only: %w", ErrUnsuitable)
	case !readOnly && fl&unix.O_ACCMODE != unix.O_RDWR:
		return fmt.Errorf("backing fd is not open for writing (open it O_RDWR or ask for read_only): %w", ErrUnsuitable)
	}
	return nil
}

// CheckDir says whether fd is a directory that nodes may be created in for
// a client: a directory, and for a client other than root one it owns, so
// that a client cannot have device nodes planted where it could not write
// itself.
func CheckDir(fd int, client Owner) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return &OpError{Op: "fstat", Path: "dir fd", Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("dir fd is a %s, not a directory: %w", fileType(st.Mode), ErrUnsuitable)
	}
	if client.UID != 0 && st.Uid != client.UID {
		return fmt.Errorf("dir fd is owned by uid %d, not by the client (uid %d): %w", st.Uid, client.UID, ErrUnsuitable)
	}
	return nil
}

func fileType(mode uint32) string {
	switch mode & unix.S_IFMT {
	case unix.S_IFREG:
		return "regular file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFBLK:
		return "block device"
	case unix.S_IFCHR:
		return "character device"
	case unix.S_IFIFO:
		return "pipe"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFLNK:
		return "symlink"
	}
	// Anonymous inodes (eventfd, pidfd, …) have no file type bits.
	return fmt.Sprintf("file of mode %#o", mode)
}

// Node is a device node MakeNode created in a client's directory, held by
// an O_PATH handle on its inode (not by name: the client owns the directory
// and may rename the node, or link it elsewhere). The handle opens nothing
// (the device does not count it as an opener); it lets Revoke reach the
// inode wherever its names are. Close releases the handle.
type Node struct {
	Name string
	Rdev uint64

	fd       int // O_PATH on the inode; -1 once closed
	dev, ino uint64
}

// MakeNode creates name in the directory dirfd as a block device node for
// rdev with mode 0600, owned by owner, and returns it held. An existing
// block node for the same device is accepted as is (a devtmpfs /dev already
// has loopN): MakeNode then returns a nil Node and no error, as there is
// nothing of loopd's to remove later. Anything else in the way is an error.
//
// The node is checked and chowned through the O_PATH handle, never by name:
// the client owns the directory and could swap the name for a link to some
// other file between two calls. If the handle cannot be had, the node just
// made is removed again (if it is still under its name) before the error is
// returned.
func MakeNode(dirfd int, name string, rdev uint64, owner Owner) (*Node, error) {
	const mode = unix.S_IFBLK | 0o600
	detail := fmt.Sprintf("rdev %d:%d", unix.Major(rdev), unix.Minor(rdev))
	err := unix.Mknodat(dirfd, name, mode, int(rdev))
	switch {
	case err == nil:
	case errors.Is(err, unix.EEXIST):
		var st unix.Stat_t
		if serr := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil &&
			st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == rdev {
			return nil, nil
		}
		return nil, &OpError{Op: "mknodat", Path: name, Detail: detail, Err: fmt.Errorf("something else exists under that name: %w", err)}
	default:
		return nil, &OpError{Op: "mknodat", Path: name, Detail: detail, Err: err}
	}
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &OpError{Op: "openat(O_PATH)", Path: name, Detail: detail, Err: err}
	}
	n := &Node{Name: name, Rdev: rdev, fd: fd}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		n.Close()
		return nil, &OpError{Op: "fstat", Path: name, Detail: detail, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != rdev {
		// Not the node just made: the client swapped the name. Ours is
		// somewhere else in its directory, root's and 0600: useless to it.
		n.Close()
		return nil, &OpError{Op: "openat(O_PATH)", Path: name, Detail: detail, Err: errors.New("node was replaced before it could be held")}
	}
	n.dev, n.ino = st.Dev, st.Ino
	if owner != (Owner{}) {
		if err := unix.Fchownat(fd, "", int(owner.UID), int(owner.GID), unix.AT_EMPTY_PATH); err != nil {
			n.Remove(dirfd)
			n.Close()
			return nil, &OpError{Op: "fchownat", Path: name, Detail: detail, Err: err}
		}
	}
	return n, nil
}

// Revoke takes every access to the node's inode away from its client,
// through every name the inode has (hard links, a rename) and every O_PATH
// fd that could be reopened through /proc: the inode becomes root's, mode
// 0000 (which also masks any ACL entry the client added: the ACL mask
// follows the group bits). Only root can open it after that, and it is
// checked afterwards. Someone who opened the device before Revoke keeps
// that open file, and with it the device bound to the same backing file
// (the kernel clears an autoclear device on its last close), so that does
// not reach the next user of the device either.
func (n *Node) Revoke() error {
	if n.fd < 0 {
		return &OpError{Op: "revoke", Path: n.Name, Err: os.ErrClosed}
	}
	// The owner first: once it is root's, the client can no longer chmod.
	if err := unix.Fchownat(n.fd, "", 0, 0, unix.AT_EMPTY_PATH); err != nil {
		return &OpError{Op: "fchownat", Path: n.Name, Detail: "uid 0 gid 0", Err: err}
	}
	err := unix.Fchmodat(n.fd, "", 0, unix.AT_EMPTY_PATH)
	if err != nil {
		// fchmodat2 with AT_EMPTY_PATH needs a recent kernel; the magic
		// link reaches the same inode on older kernels.
		err = unix.Chmod("/proc/self/fd/"+strconv.Itoa(n.fd), 0)
	}
	if err != nil {
		return &OpError{Op: "chmod", Path: n.Name, Detail: "mode 0", Err: err}
	}
	var st unix.Stat_t
	if err := unix.Fstat(n.fd, &st); err != nil {
		return &OpError{Op: "fstat", Path: n.Name, Err: err}
	}
	if st.Uid != 0 || st.Gid != 0 || st.Mode&0o7777 != 0 {
		return &OpError{Op: "revoke", Path: n.Name, Err: fmt.Errorf("node is still uid %d gid %d mode %o", st.Uid, st.Gid, st.Mode&0o7777)}
	}
	return nil
}

// Remove unlinks the node's name from dirfd if that name is still this
// inode; a name the client reused for something else is left alone. moved
// says the name was gone or not the node (the client renamed it, or
// removed it itself, as osbuild's client does).
func (n *Node) Remove(dirfd int) (moved bool, err error) {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, n.Name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return true, nil
		}
		return false, &OpError{Op: "fstatat", Path: n.Name, Err: err}
	}
	if st.Dev != n.dev || st.Ino != n.ino {
		return true, nil
	}
	if err := unix.Unlinkat(dirfd, n.Name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
		return false, &OpError{Op: "unlinkat", Path: n.Name, Err: err}
	}
	return false, nil
}

// Links is the inode's link count: its names left anywhere on its
// filesystem.
func (n *Node) Links() (uint64, error) {
	var st unix.Stat_t
	if err := unix.Fstat(n.fd, &st); err != nil {
		return 0, &OpError{Op: "fstat", Path: n.Name, Err: err}
	}
	return uint64(st.Nlink), nil
}

// Close releases the handle on the inode.
func (n *Node) Close() error {
	if n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	return err
}
