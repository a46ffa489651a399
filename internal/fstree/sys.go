package fstree

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/xattr"
)

// openDirFlags open a directory without following a symlink in its place.
const openDirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// openDirAt opens the directory name inside the directory dirfd.
func openDirAt(dirfd int, name string) (int, error) {
	for {
		fd, err := unix.Openat(dirfd, name, openDirFlags, 0)
		if err == unix.EINTR {
			continue
		}
		return fd, err
	}
}

// readDirNames lists the entries of the directory open at fd, without "."
// and "..", sorted bytewise so that walks are deterministic.
func readDirNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, fmt.Errorf("rewind directory: %w", err)
	}
	var names []string
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("getdents: %w", err)
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	sort.Strings(names)
	return names, nil
}

// procPath names the entry name of the directory open at dirfd by a path
// short enough for any syscall, however deep the directory is. The kernel
// follows the /proc/self/fd/N magic link but, with the l* xattr calls, not
// the last component, so symlinks are not followed.
func procPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// listXattrs returns the xattr names of the entry name in dirfd, sorted.
func listXattrs(dirfd int, name string) ([]string, error) {
	p := procPath(dirfd, name)
	names, err := xattr.List(func(buf []byte) (int, error) { return unix.Llistxattr(p, buf) })
	if err != nil {
		return nil, fmt.Errorf("llistxattr: %w", err)
	}
	sort.Strings(names)
	return names, nil
}

// getXattr returns the value of the xattr attr of the entry name in dirfd.
func getXattr(dirfd int, name, attr string) ([]byte, error) {
	p := procPath(dirfd, name)
	value, err := xattr.Get(func(buf []byte) (int, error) { return unix.Lgetxattr(p, attr, buf) })
	if err != nil {
		return nil, fmt.Errorf("lgetxattr %s: %w", attr, err)
	}
	return value, nil
}

// setXattr sets the xattr attr of the entry name in dirfd without following
// a symlink.
func setXattr(dirfd int, name, attr string, value []byte) error {
	if err := unix.Lsetxattr(procPath(dirfd, name), attr, value, 0); err != nil {
		return fmt.Errorf("lsetxattr %s: %w", attr, err)
	}
	return nil
}

// QuotePath returns p as it is when every byte of it prints plainly, and as
// a Go-quoted string otherwise (invalid UTF-8, control characters, quotes or
// backslashes), so a difference report never carries raw control bytes.
func QuotePath(p string) string {
	if !utf8.ValidString(p) || strings.ContainsAny(p, `"\`) || strings.IndexFunc(p, func(r rune) bool { return !unicode.IsPrint(r) && r != ' ' }) >= 0 {
		return strconv.Quote(p)
	}
	return p
}

// joinPath joins a tree-relative directory path and an entry name; the root
// is ".".
func joinPath(dir, name string) string {
	if dir == "." {
		return name
	}
	return dir + "/" + name
}
