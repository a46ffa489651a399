// Package treecopy copies a file tree into a directory with every property
// an inode can have on Linux: type (sockets included), content with its
// holes, owner, the 12 mode bits, nanosecond mtime and atime, every xattr
// (user.*, trusted.*, security.* with file capabilities, POSIX ACLs) and
// the hard-link structure. Assemblers use it to fill the filesystems of
// images, and the stage org.osbuild.copy to copy a tree into a new one.
//
// It replaces osbuild's `cp -a`: GNU cp and tar fail on paths longer than
// PATH_MAX, and tar drops sockets. treecopy walks both trees by file
// descriptor (openat, mkdirat, fstatat, /proc/self/fd/N/NAME for xattrs),
// so depth does not matter, and it never follows a symlink inside either
// tree.
package treecopy

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/treestream"
)

// openDirFlags open a directory without following a symlink in its place.
const openDirFlags = unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC

// Copy copies everything below the directory src into the directory dst,
// then gives dst the metadata of src. dst must exist; directories already
// in it (a mount point, lost+found) are merged into, anything else in the
// way is an error. Hard links are recreated where src has them; a link
// that cannot span two filesystems mounted below dst becomes a copy.
func Copy(ctx context.Context, src, dst string) error {
	srcfd, err := unix.Open(src, openDirFlags, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: src, Err: err}
	}
	defer unix.Close(srcfd)
	dstfd, err := unix.Open(dst, openDirFlags, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dst, Err: err}
	}
	defer unix.Close(dstfd)

	c := &copier{ctx: ctx, dstRoot: dstfd, links: map[inodeKey]linkSite{}, buf: make([]byte, copyBufSize), writeback: onLoopDevice(dstfd)}
	if err := c.copyDir(srcfd, dstfd, nil); err != nil {
		return err
	}
	var st unix.Stat_t
	if err := unix.Fstat(srcfd, &st); err != nil {
		return &os.PathError{Op: "fstat", Path: src, Err: err}
	}
	// The roots have no parent fd to name them by; they are named through
	// their own fds instead, which reach the same calls.
	if err := c.copyMeta(srcfd, "", dstfd, "", &st); err != nil {
		return fmt.Errorf("copy %s to %s: %w", src, dst, err)
	}
	return nil
}

type inodeKey struct{ dev, ino uint64 }

// linkSite is where the first copy of a multiply linked inode went: the
// path components of its directory below the destination root, and its
// name. Components rather than a path, so that a depth beyond PATH_MAX
// is reached by openat, one step at a time.
type linkSite struct {
	dir  []string
	name string
}

type copier struct {
	ctx     context.Context
	dstRoot int
	links   map[inodeKey]linkSite
	buf     []byte
	// writeback starts each file's writeback once it is written: the
	// destination is on a loop device (onLoopDevice).
	writeback bool
}

// copyDir copies the entries of the directory srcfd into dstfd; dir names
// both, relative to the roots.
func (c *copier) copyDir(srcfd, dstfd int, dir []string) error {
	names, err := readDirNames(srcfd)
	if err != nil {
		return &copyError{relPath(dir, ""), err}
	}
	for _, name := range names {
		if err := c.ctx.Err(); err != nil {
			return err
		}
		if err := c.copyEntry(srcfd, dstfd, dir, name); err != nil {
			var ce *copyError
			if errors.As(err, &ce) || errors.Is(err, c.ctx.Err()) {
				return err // named where it happened, deeper down
			}
			return &copyError{relPath(dir, name), err}
		}
	}
	return nil
}

// copyError is an error about one entry of the tree, named once by its
// path, however deep it happened.
type copyError struct {
	path string
	err  error
}

func (e *copyError) Error() string { return "copy " + e.path + ": " + e.err.Error() }
func (e *copyError) Unwrap() error { return e.err }

func (c *copier) copyEntry(srcfd, dstfd int, dir []string, name string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(srcfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("fstatat: %w", err)
	}
	typ := st.Mode & unix.S_IFMT
	key := inodeKey{st.Dev, st.Ino}
	linked := typ != unix.S_IFDIR && st.Nlink > 1
	if linked {
		if site, ok := c.links[key]; ok {
			done, err := c.link(site, dstfd, name)
			if err != nil || done {
				return err
			}
			// Across a mount point: a copy of its own, as cp makes.
		}
	}
	switch typ {
	case unix.S_IFDIR:
		return c.copySubdir(srcfd, dstfd, dir, name, &st)
	case unix.S_IFREG:
		if err := c.copyFile(srcfd, name, dstfd, name, &st); err != nil {
			return err
		}
	case unix.S_IFLNK:
		target, err := readlinkAt(srcfd, name)
		if err != nil {
			return err
		}
		if err := unix.Symlinkat(target, dstfd, name); err != nil {
			return fmt.Errorf("symlinkat: %w", err)
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		// mknod makes a socket inode too, as a bind would; nothing listens
		// on it in the copy either.
		if err := unix.Mknodat(dstfd, name, typ|0o600, int(st.Rdev)); err != nil {
			return fmt.Errorf("mknodat: %w", err)
		}
	default:
		return fmt.Errorf("unknown file type %#o", typ)
	}
	if err := c.copyMeta(srcfd, name, dstfd, name, &st); err != nil {
		return err
	}
	if linked {
		if _, ok := c.links[key]; !ok {
			c.links[key] = linkSite{dir: slices.Clone(dir), name: name}
		}
	}
	return nil
}

// copySubdir creates (or reuses) the directory name, copies into it, and
// only then sets its metadata: its children change its mtime, and a mode
// like 0500 is for after the filling.
func (c *copier) copySubdir(srcfd, dstfd int, dir []string, name string, st *unix.Stat_t) error {
	dsub, err := makeDir(dstfd, name)
	if err != nil {
		return err
	}
	defer unix.Close(dsub)
	sub, err := unix.Openat(srcfd, name, openDirFlags, 0)
	if err != nil {
		return fmt.Errorf("open: %w", err)
	}
	defer unix.Close(sub)
	if err := c.copyDir(sub, dsub, append(slices.Clip(dir), name)); err != nil {
		return err
	}
	return c.copyMeta(srcfd, name, dstfd, name, st)
}

// makeDir creates the directory name in dstfd, or takes the one there
// (a mount point, lost+found), and opens it.
func makeDir(dstfd int, name string) (int, error) {
	if err := unix.Mkdirat(dstfd, name, 0o700); err != nil {
		if !errors.Is(err, unix.EEXIST) {
			return -1, fmt.Errorf("mkdirat: %w", err)
		}
		var dst unix.Stat_t
		if serr := unix.Fstatat(dstfd, name, &dst, unix.AT_SYMLINK_NOFOLLOW); serr != nil || dst.Mode&unix.S_IFMT != unix.S_IFDIR {
			return -1, fmt.Errorf("mkdirat: %w (and it is not a directory)", err)
		}
	}
	fd, err := unix.Openat(dstfd, name, openDirFlags, 0)
	if err != nil {
		return -1, fmt.Errorf("open copy: %w", err)
	}
	return fd, nil
}

// link makes name in dstfd another name of the inode at site. done is
// false, with no error, when the two are on different filesystems.
func (c *copier) link(site linkSite, dstfd int, name string) (done bool, err error) {
	parent, err := c.openDstDir(site.dir)
	if err != nil {
		return false, fmt.Errorf("open the directory of its first name %s: %w", relPath(site.dir, site.name), err)
	}
	defer unix.Close(parent)
	if err := unix.Linkat(parent, site.name, dstfd, name, 0); err != nil {
		if errors.Is(err, unix.EXDEV) {
			return false, nil
		}
		return false, fmt.Errorf("link to %s: %w", relPath(site.dir, site.name), err)
	}
	return true, nil
}

// openDstDir opens the directory at the path components dir below the
// destination root.
func (c *copier) openDstDir(dir []string) (int, error) {
	fd, err := unix.Dup(c.dstRoot)
	if err != nil {
		return -1, err
	}
	for _, comp := range dir {
		next, err := unix.Openat(fd, comp, openDirFlags|unix.O_PATH, 0)
		unix.Close(fd)
		if err != nil {
			return -1, err
		}
		fd = next
	}
	return fd, nil
}

// meta is what applyMeta gives a copy: its source's owner, permission
// bits, times and xattrs.
type meta struct {
	uid, gid     uint32
	mode         uint32 // st_mode
	atime, mtime unix.Timespec
	xattrs       []treestream.Xattr
}

// sourceMeta reads the metadata of srcName in srcfd, whose stat is st (an
// empty name: the directory srcfd itself).
func sourceMeta(srcfd int, srcName string, st *unix.Stat_t) (meta, error) {
	m := meta{uid: st.Uid, gid: st.Gid, mode: st.Mode, atime: st.Atim, mtime: st.Mtim}
	src := xattrTarget{srcfd, srcName}
	names, err := listXattrs(src)
	if err != nil {
		return m, err
	}
	for _, name := range names {
		value, err := getXattr(src, name)
		if err != nil {
			return m, err
		}
		m.xattrs = append(m.xattrs, treestream.Xattr{Name: name, Value: value})
	}
	return m, nil
}

// copyMeta gives the copy dstName in dstfd the metadata of srcName in
// srcfd, whose stat is st.
func (c *copier) copyMeta(srcfd int, srcName string, dstfd int, dstName string, st *unix.Stat_t) error {
	m, err := sourceMeta(srcfd, srcName, st)
	if err != nil {
		return err
	}
	return applyMeta(dstfd, dstName, m)
}

// applyMeta gives the copy dstName in dstfd the metadata m. An empty name
// means the directory fd itself. The order matters: chown clears setuid,
// setgid and security.capability, so it comes first; an ACL rewrites the
// group bits, so the exact mode comes after the xattrs; times come last,
// as every other change touches ctime only but creating children touched
// the mtime. An xattr the destination refuses is an error: the copy would
// not be faithful.
func applyMeta(dstfd int, dstName string, m meta) error {
	flags := unix.AT_SYMLINK_NOFOLLOW
	if dstName == "" {
		flags |= unix.AT_EMPTY_PATH
	}
	if err := unix.Fchownat(dstfd, dstName, int(m.uid), int(m.gid), flags); err != nil {
		return fmt.Errorf("chown %d:%d: %w", m.uid, m.gid, err)
	}
	dst := xattrTarget{dstfd, dstName}
	for _, x := range m.xattrs {
		if err := dst.set(x.Name, x.Value); err != nil {
			return fmt.Errorf("setxattr %s: %w", x.Name, err)
		}
	}
	if m.mode&unix.S_IFMT != unix.S_IFLNK {
		// fchmodat cannot take AT_EMPTY_PATH before Linux 6.6; the proc
		// path reaches the same inode.
		if err := unix.Chmod(procPath(dstfd, dstName), m.mode&0o7777); err != nil {
			return fmt.Errorf("chmod %#o: %w", m.mode&0o7777, err)
		}
	}
	ts := []unix.Timespec{m.atime, m.mtime}
	if err := unix.UtimesNanoAt(dstfd, dstName, ts, flags); err != nil {
		return fmt.Errorf("utimensat: %w", err)
	}
	return nil
}

// procPath names the entry name of the directory open at dirfd (or the
// directory itself when name is empty) by a short path, however deep the
// directory is. The l* xattr calls do not follow the last component.
func procPath(dirfd int, name string) string {
	p := "/proc/self/fd/" + strconv.Itoa(dirfd)
	if name != "" {
		p += "/" + name
	}
	return p
}

// relPath is the path of name in dir, relative to the roots, for errors.
func relPath(dir []string, name string) string {
	p := strings.Join(dir, "/")
	switch {
	case p == "" && name == "":
		return "."
	case p == "":
		return strconv.Quote(name)
	case name == "":
		return strconv.Quote(p)
	}
	return strconv.Quote(p + "/" + name)
}

// readDirNames lists the entries of the directory open at fd, without "."
// and "..", sorted, so that the copy creates inodes in the same order every
// time and two images of one tree come out alike.
func readDirNames(fd int) ([]string, error) {
	if _, err := unix.Seek(fd, 0, 0); err != nil {
		return nil, fmt.Errorf("rewind directory: %w", err)
	}
	var names []string
	buf := make([]byte, 64<<10)
	for {
		n, err := unix.Getdents(fd, buf)
		if errors.Is(err, unix.EINTR) {
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
	slices.Sort(names)
	return names, nil
}

// readlinkAt reads the target of the symlink name in dirfd, whatever its
// length.
func readlinkAt(dirfd int, name string) (string, error) {
	for size := 4096; ; size *= 2 {
		buf := make([]byte, size)
		n, err := unix.Readlinkat(dirfd, name, buf)
		if err != nil {
			return "", fmt.Errorf("readlinkat: %w", err)
		}
		if n < size {
			return string(buf[:n]), nil
		}
	}
}
