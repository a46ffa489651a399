package overlay

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/internal/xattr"
)

// What overlayfs records in the upper layer (Documentation/filesystems/
// overlayfs.rst): a whiteout is a 0/0 character device (or, from kernels
// that nest overlays, an empty file with trusted.overlay.whiteout); an
// opaque directory hides the lower one; a redirect names the lower
// directory (or, for a metacopy file, the lower file) a renamed object came
// from, absolute from the layer's root or a name in the parent's lower
// directory; a metacopy file has its data in the lower file.
const (
	xattrOpaque   = "trusted.overlay.opaque"
	xattrRedirect = "trusted.overlay.redirect"
	xattrMetacopy = "trusted.overlay.metacopy"
	xattrWhiteout = "trusted.overlay.whiteout"
)

// upperEntry is one name of the upper layer.
type upperEntry struct {
	st       unix.Stat_t
	whiteout bool
	opaque   bool   // directories: the lower directory is hidden
	redirect string // where in the lower layer a renamed object came from
	metacopy bool   // regular files: the data is still the lower file's

	dir *upperDir // directories

	// committed is what the last commit stored for this inode, when it
	// has not changed since (see committedEntry).
	committed *committedEntry
}

// upperKey names an inode of the upper layer.
type upperKey struct{ dev, ino uint64 }

// committedEntry is what a commit stored for an upper inode that is not a
// directory and has one name: its node, and what overlayfs had recorded of
// it. Every change to the inode (data, metadata, xattrs, names) moves its
// ctime, and the base below never changes: while ctime, mtime and size stay,
// the next commit takes the node as it is, without reading the merged view.
type committedEntry struct {
	ctime, mtime unix.Timespec
	size         int64
	metacopy     bool
	redirect     string
	hash         digest.Hash
}

func (c *committedEntry) matches(st *unix.Stat_t) bool {
	return c.ctime == st.Ctim && c.mtime == st.Mtim && c.size == st.Size
}

// upperDir is a directory of the upper layer, and where the merged
// directory it is part of finds its lower entries.
type upperDir struct {
	entries map[string]*upperEntry
	// lower is the directory of the base tree merged below it, nil if
	// none (a new or opaque directory); lowerPath is its path there.
	lower     *node.Node
	lowerPath string
}

// scanUpper reads the upper layer's directory at dirfd and everything
// below it. It reads only what overlayfs wrote: names, stat, and its own
// xattrs.
func scanUpper(dirfd int, where string, committed map[upperKey]committedEntry) (*upperDir, error) {
	names, err := readDirNames(dirfd)
	if err != nil {
		return nil, fmt.Errorf("read upper %s: %w", where, err)
	}
	d := &upperDir{entries: make(map[string]*upperEntry, len(names))}
	for _, name := range names {
		e := &upperEntry{}
		if err := unix.Fstatat(dirfd, name, &e.st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return nil, fmt.Errorf("stat upper %s: %w", join(where, name), err)
		}
		d.entries[name] = e
		typ := e.st.Mode & unix.S_IFMT
		if typ == unix.S_IFCHR && e.st.Rdev == 0 {
			e.whiteout = true
			continue
		}
		if typ != unix.S_IFDIR && e.st.Nlink == 1 {
			if c, ok := committed[upperKey{e.st.Dev, e.st.Ino}]; ok && c.matches(&e.st) {
				e.committed = &c
				e.metacopy, e.redirect = c.metacopy, c.redirect
				continue
			}
		}
		if typ != unix.S_IFDIR && typ != unix.S_IFREG {
			continue
		}
		p := fdPath(dirfd, name)
		attrs, err := xattr.List(func(buf []byte) (int, error) { return unix.Llistxattr(p, buf) })
		if err != nil {
			return nil, fmt.Errorf("list xattrs of upper %s: %w", join(where, name), err)
		}
		for _, a := range attrs {
			switch a {
			case xattrWhiteout:
				e.whiteout = typ == unix.S_IFREG
			case xattrMetacopy:
				e.metacopy = typ == unix.S_IFREG
			case xattrOpaque:
				v, err := xattr.Get(func(buf []byte) (int, error) { return unix.Lgetxattr(p, a, buf) })
				if err != nil && !errors.Is(err, unix.ENODATA) {
					return nil, fmt.Errorf("read %s of upper %s: %w", a, join(where, name), err)
				}
				// "y": opaque; "x": holds whiteouts of the nested kind,
				// and is not opaque.
				e.opaque = string(v) == "y"
			case xattrRedirect:
				v, err := xattr.Get(func(buf []byte) (int, error) { return unix.Lgetxattr(p, a, buf) })
				if err != nil && !errors.Is(err, unix.ENODATA) {
					return nil, fmt.Errorf("read %s of upper %s: %w", a, join(where, name), err)
				}
				e.redirect = string(v)
			}
		}
		if typ == unix.S_IFDIR && !e.whiteout {
			fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				return nil, fmt.Errorf("open upper %s: %w", join(where, name), err)
			}
			e.dir, err = scanUpper(fd, join(where, name), committed)
			unix.Close(fd)
			if err != nil {
				return nil, err
			}
		}
	}
	return d, nil
}

// lowerOf says where in the base tree the lower side of upper entry e of
// a directory whose lower side is at parentPath comes from: its redirect
// (absolute, or a name beside it), else its own name there. ok is false
// when it has none.
func lowerOf(e *upperEntry, parentPath, name string) (path string, ok bool) {
	switch {
	case e.opaque:
		return "", false
	case strings.HasPrefix(e.redirect, "/"):
		return strings.TrimPrefix(e.redirect, "/"), true
	case parentPath == noLower:
		return "", false
	case e.redirect != "":
		return join(parentPath, e.redirect), true
	}
	return join(parentPath, name), true
}

// noLower is the lowerPath of a directory with no lower side.
const noLower = "\x00"

// join is a relative path below the root ("" is the root).
func join(dir, name string) string {
	if dir == "" {
		return name
	}
	return dir + "/" + name
}

// fdPath names dirfd's entry name for the xattr calls, which have no *at
// form before Linux 6.13.
func fdPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

// readDirNames lists the directory open at dirfd, sorted.
func readDirNames(dirfd int) ([]string, error) {
	var names []string
	buf := make([]byte, 32<<10)
	if _, err := unix.Seek(dirfd, 0, 0); err != nil {
		return nil, err
	}
	for {
		n, err := unix.Getdents(dirfd, buf)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, err
		}
		if n <= 0 {
			break
		}
		_, _, names = unix.ParseDirent(buf[:n], -1, names)
	}
	sort.Strings(names)
	return names, nil
}
