package loopdev

import (
	"errors"
	"fmt"

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

// MakeNode creates name in the directory dirfd as a block device node for
// rdev with mode 0600, owned by owner. An existing block node for the same
// device is accepted as is (a devtmpfs /dev already has loopN); anything
// else in the way is an error. created says whether the node is new.
//
// The node is chowned through an O_PATH handle on the inode just checked,
// never by name: the client owns the directory and could swap the name for
// a link to some other file between the two calls.
func MakeNode(dirfd int, name string, rdev uint64, owner Owner) (created bool, err error) {
	const mode = unix.S_IFBLK | 0o600
	detail := fmt.Sprintf("rdev %d:%d", unix.Major(rdev), unix.Minor(rdev))
	err = unix.Mknodat(dirfd, name, mode, int(rdev))
	switch {
	case err == nil:
		created = true
	case errors.Is(err, unix.EEXIST):
		var st unix.Stat_t
		if serr := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); serr == nil &&
			st.Mode&unix.S_IFMT == unix.S_IFBLK && st.Rdev == rdev {
			return false, nil
		}
		return false, &OpError{Op: "mknodat", Path: name, Detail: detail, Err: fmt.Errorf("something else exists under that name: %w", err)}
	default:
		return false, &OpError{Op: "mknodat", Path: name, Detail: detail, Err: err}
	}
	if owner == (Owner{}) {
		return true, nil
	}
	fd, err := unix.Openat(dirfd, name, unix.O_PATH|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return true, &OpError{Op: "openat(O_PATH)", Path: name, Detail: detail, Err: err}
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return true, &OpError{Op: "fstat", Path: name, Detail: detail, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != rdev {
		return true, &OpError{Op: "fchown", Path: name, Detail: detail, Err: errors.New("node was replaced before it could be chowned")}
	}
	if err := unix.Fchownat(fd, "", int(owner.UID), int(owner.GID), unix.AT_EMPTY_PATH); err != nil {
		return true, &OpError{Op: "fchownat", Path: name, Detail: detail, Err: err}
	}
	return true, nil
}

// RemoveNode removes name from dirfd if it is still the block node for
// rdev, to undo a MakeNode of a request that then failed.
func RemoveNode(dirfd int, name string, rdev uint64) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &OpError{Op: "fstatat", Path: name, Err: err}
	}
	if st.Mode&unix.S_IFMT != unix.S_IFBLK || st.Rdev != rdev {
		return nil // not ours any more; leave the client's file alone
	}
	if err := unix.Unlinkat(dirfd, name, 0); err != nil {
		return &OpError{Op: "unlinkat", Path: name, Err: err}
	}
	return nil
}
