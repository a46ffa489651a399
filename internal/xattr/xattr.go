// Package xattr reads extended attributes through the calls that answer
// into a caller's buffer (listxattr, getxattr and their l- and f-
// variants), growing the buffer until the answer fits. Callers pass the
// variant that names their inode (a path, a /proc/self/fd path, an fd)
// and wrap the error with it.
package xattr

import (
	"bytes"
	"errors"

	"golang.org/x/sys/unix"
)

// List returns the names list (a listxattr call into buf) gives, in the
// kernel's order. A filesystem without xattrs (ENOTSUP) has none.
func List(list func(buf []byte) (int, error)) ([]string, error) {
	for size := 1024; ; size *= 4 {
		buf := make([]byte, size)
		n, err := list(buf)
		switch {
		case errors.Is(err, unix.ERANGE):
			continue
		case errors.Is(err, unix.ENOTSUP):
			return nil, nil
		case err != nil:
			return nil, err
		}
		var names []string
		for _, b := range bytes.Split(buf[:n], []byte{0}) {
			if len(b) > 0 {
				names = append(names, string(b))
			}
		}
		return names, nil
	}
}

// Get returns the value get (a getxattr call into buf) gives. Most values
// (SELinux labels, capabilities, ACLs) are short: it tries a small buffer
// first, so that they cost one call, and asks for the size only when that
// is too small (again when the value grew in between).
func Get(get func(buf []byte) (int, error)) ([]byte, error) {
	buf := make([]byte, 256)
	for {
		n, err := get(buf)
		if errors.Is(err, unix.ERANGE) {
			if n, err = get(nil); err != nil {
				return nil, err
			}
			buf = make([]byte, n)
			continue
		}
		if err != nil {
			return nil, err
		}
		return buf[:n:n], nil
	}
}
