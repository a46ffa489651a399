package treecopy

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/xattr"
)

// xattrTarget is an inode whose xattrs are read or written: the entry name
// of the directory fd, or, with an empty name, the directory fd itself.
type xattrTarget struct {
	fd   int
	name string
}

func (x xattrTarget) list(buf []byte) (int, error) {
	if x.name == "" {
		return unix.Flistxattr(x.fd, buf)
	}
	return unix.Llistxattr(procPath(x.fd, x.name), buf)
}

func (x xattrTarget) get(attr string, buf []byte) (int, error) {
	if x.name == "" {
		return unix.Fgetxattr(x.fd, attr, buf)
	}
	return unix.Lgetxattr(procPath(x.fd, x.name), attr, buf)
}

// set sets one xattr.
func (x xattrTarget) set(attr string, value []byte) error {
	if x.name == "" {
		return unix.Fsetxattr(x.fd, attr, value, 0)
	}
	return unix.Lsetxattr(procPath(x.fd, x.name), attr, value, 0)
}

func listXattrs(x xattrTarget) ([]string, error) {
	names, err := xattr.List(x.list)
	if err != nil {
		return nil, fmt.Errorf("listxattr: %w", err)
	}
	return names, nil
}

// getXattr reads one value; a value that grew between the size probe and
// the read is read again.
func getXattr(x xattrTarget, name string) ([]byte, error) {
	value, err := xattr.Get(func(buf []byte) (int, error) { return x.get(name, buf) })
	if err != nil {
		return nil, fmt.Errorf("getxattr %s: %w", name, err)
	}
	return value, nil
}
