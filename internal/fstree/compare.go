package fstree

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"golang.org/x/sys/unix"
)

// Property names what a Difference is about.
type Property string

// The properties Compare checks.
const (
	PropMissing    Property = "missing"    // the path is in a, not in b
	PropExtra      Property = "extra"      // the path is in b, not in a
	PropType       Property = "type"       // file, directory, symlink, ...
	PropMode       Property = "mode"       // the 12 permission bits
	PropUID        Property = "uid"        // owner
	PropGID        Property = "gid"        // group
	PropSize       Property = "size"       // apparent size of a regular file
	PropRdev       Property = "rdev"       // device number of a device node
	PropMtime      Property = "mtime"      // modification time to the nanosecond
	PropTarget     Property = "target"     // symlink target
	PropXattr      Property = "xattr"      // names and values, POSIX ACLs included
	PropContent    Property = "content"    // bytes of a regular file
	PropAllocation Property = "allocation" // b is much less sparse than a
	PropHardLinks  Property = "hard links" // which names share the inode
)

// Difference is one property of one path on which two trees disagree.
type Difference struct {
	// Path is relative to the compared roots; the roots themselves are ".".
	Path     string
	Property Property
	// Detail says what each tree holds.
	Detail string
}

// String reads "path: property: detail", with the path quoted when it has
// bytes that would not print plainly, and shortened in the middle when it
// is longer than a screen (Path keeps it whole).
func (d Difference) String() string {
	return shortPath(QuotePath(d.Path)) + ": " + string(d.Property) + ": " + d.Detail
}

// shortPath keeps the start and the end of a path over 400 bytes; the end
// is what tells paths under one deep directory apart.
func shortPath(p string) string {
	const head, tail = 80, 240
	if len(p) <= head+tail+80 {
		return p
	}
	return fmt.Sprintf("%s…[%d bytes]…%s", p[:head], len(p)-head-tail, p[len(p)-tail:])
}

// DefaultSparseSlack is the allocation a file in b may have beyond its
// counterpart in a when Options.SparseSlack is zero: a few filesystem blocks
// of extent metadata.
const DefaultSparseSlack = 64 << 10

// Options select what Compare checks beyond the properties it always
// compares (type, mode, owner, size, rdev, mtime, symlink target, xattrs,
// content and hard-link structure of everything below the roots).
type Options struct {
	// CompareRootMeta also compares the roots' own mode, owner, mtime and
	// xattrs. Off by default: a root is often a directory the caller made.
	CompareRootMeta bool
	// CheckSparse reports a regular file that allocates more than
	// SparseSlack bytes beyond what its counterpart in a allocates: holes
	// that a copy filled in. Allocating less is never a difference.
	CheckSparse bool
	// SparseSlack is the extra allocation CheckSparse tolerates per file;
	// zero means DefaultSparseSlack.
	SparseSlack int64
}

// Compare walks the trees at a and b and returns every difference between
// them, in walk order (sorted by name, parents first), then the hard-link
// differences. An error means a tree could not be read, not that the trees
// differ. Symlinks are never followed, and paths longer than PATH_MAX work.
func Compare(a, b string, opts Options) ([]Difference, error) {
	if opts.SparseSlack == 0 {
		opts.SparseSlack = DefaultSparseSlack
	}
	fa, err := unix.Open(a, openDirFlags, 0)
	if err != nil {
		return nil, fmt.Errorf("compare: open %s: %w", a, err)
	}
	defer unix.Close(fa)
	fb, err := unix.Open(b, openDirFlags, 0)
	if err != nil {
		return nil, fmt.Errorf("compare: open %s: %w", b, err)
	}
	defer unix.Close(fb)

	c := &comparer{
		opts:   opts,
		inodeA: map[string]inodeKey{},
		inodeB: map[string]inodeKey{},
		namesA: map[inodeKey][]string{},
		namesB: map[inodeKey][]string{},
	}
	if opts.CompareRootMeta {
		var sa, sb unix.Stat_t
		if err := unix.Fstat(fa, &sa); err != nil {
			return nil, fmt.Errorf("compare: stat %s: %w", a, err)
		}
		if err := unix.Fstat(fb, &sb); err != nil {
			return nil, fmt.Errorf("compare: stat %s: %w", b, err)
		}
		c.compareMeta(".", &sa, &sb)
		if err := c.compareXattrs(fa, fb, ".", "."); err != nil {
			return nil, err
		}
	}
	if err := c.compareDir(fa, fb, "."); err != nil {
		return nil, err
	}
	c.compareLinks()
	return c.diffs, nil
}

type inodeKey struct{ dev, ino uint64 }

type comparer struct {
	opts  Options
	diffs []Difference
	// common lists the non-directory paths present in both trees, in walk
	// order; the hard-link check looks at those.
	common []string
	// inodeX maps a path whose inode has more than one link to that inode;
	// namesX maps the inode back to its names in the tree.
	inodeA, inodeB map[string]inodeKey
	namesA, namesB map[inodeKey][]string
}

func (c *comparer) add(path string, p Property, format string, args ...any) {
	c.diffs = append(c.diffs, Difference{Path: path, Property: p, Detail: fmt.Sprintf(format, args...)})
}

func (c *comparer) compareDir(fa, fb int, dir string) error {
	namesA, err := readDirNames(fa)
	if err != nil {
		return fmt.Errorf("compare: a/%s: %w", QuotePath(dir), err)
	}
	namesB, err := readDirNames(fb)
	if err != nil {
		return fmt.Errorf("compare: b/%s: %w", QuotePath(dir), err)
	}
	i, j := 0, 0
	for i < len(namesA) || j < len(namesB) {
		switch {
		case j == len(namesB) || (i < len(namesA) && namesA[i] < namesB[j]):
			c.add(joinPath(dir, namesA[i]), PropMissing, "in a, not in b")
			i++
		case i == len(namesA) || namesB[j] < namesA[i]:
			c.add(joinPath(dir, namesB[j]), PropExtra, "in b, not in a")
			j++
		default:
			if err := c.compareEntry(fa, fb, dir, namesA[i]); err != nil {
				return err
			}
			i++
			j++
		}
	}
	return nil
}

func (c *comparer) compareEntry(fa, fb int, dir, name string) error {
	rel := joinPath(dir, name)
	var sa, sb unix.Stat_t
	if err := unix.Fstatat(fa, name, &sa, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("compare: a/%s: stat: %w", QuotePath(rel), err)
	}
	if err := unix.Fstatat(fb, name, &sb, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("compare: b/%s: stat: %w", QuotePath(rel), err)
	}
	ta, tb := sa.Mode&unix.S_IFMT, sb.Mode&unix.S_IFMT
	if ta != tb {
		c.add(rel, PropType, "a: %s, b: %s", typeName(ta), typeName(tb))
		return nil
	}
	if ta != unix.S_IFDIR {
		c.common = append(c.common, rel)
		c.recordLink(c.inodeA, c.namesA, rel, &sa)
		c.recordLink(c.inodeB, c.namesB, rel, &sb)
	}
	c.compareMeta(rel, &sa, &sb)
	if err := c.compareXattrs(fa, fb, name, rel); err != nil {
		return err
	}
	switch ta {
	case unix.S_IFREG:
		return c.compareFile(fa, fb, name, rel, &sa, &sb)
	case unix.S_IFLNK:
		la, err := readlinkAt(fa, name)
		if err != nil {
			return fmt.Errorf("compare: a/%s: %w", QuotePath(rel), err)
		}
		lb, err := readlinkAt(fb, name)
		if err != nil {
			return fmt.Errorf("compare: b/%s: %w", QuotePath(rel), err)
		}
		if la != lb {
			c.add(rel, PropTarget, "a: %s, b: %s", describeValue([]byte(la)), describeValue([]byte(lb)))
		}
	case unix.S_IFCHR, unix.S_IFBLK:
		if sa.Rdev != sb.Rdev {
			c.add(rel, PropRdev, "a: %d:%d, b: %d:%d",
				unix.Major(sa.Rdev), unix.Minor(sa.Rdev), unix.Major(sb.Rdev), unix.Minor(sb.Rdev))
		}
	case unix.S_IFDIR:
		da, err := openDirAt(fa, name)
		if err != nil {
			return fmt.Errorf("compare: a/%s: %w", QuotePath(rel), err)
		}
		defer unix.Close(da)
		db, err := openDirAt(fb, name)
		if err != nil {
			return fmt.Errorf("compare: b/%s: %w", QuotePath(rel), err)
		}
		defer unix.Close(db)
		return c.compareDir(da, db, rel)
	}
	return nil
}

// compareMeta compares what every inode has. Symlink permission bits are
// always 0777 on Linux and not compared.
func (c *comparer) compareMeta(rel string, sa, sb *unix.Stat_t) {
	if sa.Mode&unix.S_IFMT != unix.S_IFLNK && sa.Mode&0o7777 != sb.Mode&0o7777 {
		c.add(rel, PropMode, "a: %#o, b: %#o", sa.Mode&0o7777, sb.Mode&0o7777)
	}
	if sa.Uid != sb.Uid {
		c.add(rel, PropUID, "a: %d, b: %d", sa.Uid, sb.Uid)
	}
	if sa.Gid != sb.Gid {
		c.add(rel, PropGID, "a: %d, b: %d", sa.Gid, sb.Gid)
	}
	if sa.Mtim != sb.Mtim {
		c.add(rel, PropMtime, "a: %s, b: %s", formatTime(sa.Mtim), formatTime(sb.Mtim))
	}
}

func (c *comparer) compareXattrs(fa, fb int, name, rel string) error {
	xa, err := readXattrs(fa, name)
	if err != nil {
		return fmt.Errorf("compare: a/%s: %w", QuotePath(rel), err)
	}
	xb, err := readXattrs(fb, name)
	if err != nil {
		return fmt.Errorf("compare: b/%s: %w", QuotePath(rel), err)
	}
	var keys []string
	for k := range xa {
		keys = append(keys, k)
	}
	for k := range xb {
		if _, ok := xa[k]; !ok {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		va, inA := xa[k]
		vb, inB := xb[k]
		switch {
		case !inB:
			c.add(rel, PropXattr, "%s: only in a (%s)", QuotePath(k), describeValue(va))
		case !inA:
			c.add(rel, PropXattr, "%s: only in b (%s)", QuotePath(k), describeValue(vb))
		case !bytes.Equal(va, vb):
			c.add(rel, PropXattr, "%s: a: %s, b: %s", QuotePath(k), describeValue(va), describeValue(vb))
		}
	}
	return nil
}

func readXattrs(dirfd int, name string) (map[string][]byte, error) {
	names, err := listXattrs(dirfd, name)
	if err != nil {
		return nil, err
	}
	m := make(map[string][]byte, len(names))
	for _, n := range names {
		v, err := getXattr(dirfd, name, n)
		if err != nil {
			return nil, err
		}
		m[n] = v
	}
	return m, nil
}

func (c *comparer) compareFile(fa, fb int, name, rel string, sa, sb *unix.Stat_t) error {
	if sa.Size != sb.Size {
		c.add(rel, PropSize, "a: %d, b: %d", sa.Size, sb.Size)
	} else if off, differ, err := firstDifference(fa, fb, name, sa.Size); err != nil {
		return fmt.Errorf("compare: %s: %w", QuotePath(rel), err)
	} else if differ {
		c.add(rel, PropContent, "first difference at byte %d", off)
	}
	if c.opts.CheckSparse {
		allocA, allocB := sa.Blocks*512, sb.Blocks*512
		if allocB > allocA+c.opts.SparseSlack {
			c.add(rel, PropAllocation, "a allocates %d bytes, b %d (slack %d): holes were filled",
				allocA, allocB, c.opts.SparseSlack)
		}
	}
	return nil
}

// firstDifference compares the two files, which have the same size, and
// returns the offset of the first byte that differs. Ranges that are holes
// in both files are skipped unread (a 1 GiB sparse file costs its data, not
// its size); anywhere else a hole reads as the zeros it stands for.
func firstDifference(fa, fb int, name string, size int64) (int64, bool, error) {
	ra, err := openFileAt(fa, name)
	if err != nil {
		return 0, false, fmt.Errorf("a: %w", err)
	}
	defer ra.Close()
	rb, err := openFileAt(fb, name)
	if err != nil {
		return 0, false, fmt.Errorf("b: %w", err)
	}
	defer rb.Close()
	const block = 1 << 20
	bufA, bufB := make([]byte, block), make([]byte, block)
	for off := int64(0); off < size; {
		dataA, endA, err := extentAt(ra, off, size)
		if err != nil {
			return 0, false, fmt.Errorf("a: %w", err)
		}
		dataB, endB, err := extentAt(rb, off, size)
		if err != nil {
			return 0, false, fmt.Errorf("b: %w", err)
		}
		end := min(endA, endB)
		if !dataA && !dataB {
			off = end
			continue
		}
		for off < end {
			n := int(min(block, end-off))
			if _, err := io.ReadFull(io.NewSectionReader(ra, off, int64(n)), bufA[:n]); err != nil {
				return 0, false, fmt.Errorf("a: read at %d: %w", off, err)
			}
			if _, err := io.ReadFull(io.NewSectionReader(rb, off, int64(n)), bufB[:n]); err != nil {
				return 0, false, fmt.Errorf("b: read at %d: %w", off, err)
			}
			if !bytes.Equal(bufA[:n], bufB[:n]) {
				for i := range n {
					if bufA[i] != bufB[i] {
						return off + int64(i), true, nil
					}
				}
			}
			off += int64(n)
		}
	}
	return 0, false, nil
}

// extentAt says whether off is in data or in a hole of f, and where that
// extent ends. A filesystem without SEEK_DATA reports all data.
func extentAt(f *os.File, off, size int64) (data bool, end int64, err error) {
	fd := int(f.Fd())
	next, err := unix.Seek(fd, off, unix.SEEK_DATA)
	switch {
	case err == unix.ENXIO:
		return false, size, nil // only hole from off to the end
	case err == unix.EINVAL || err == unix.EOPNOTSUPP:
		return true, size, nil
	case err != nil:
		return false, 0, fmt.Errorf("seek data at %d: %w", off, err)
	}
	if next > off {
		return false, min(next, size), nil
	}
	hole, err := unix.Seek(fd, off, unix.SEEK_HOLE)
	if err != nil {
		return false, 0, fmt.Errorf("seek hole at %d: %w", off, err)
	}
	return true, min(hole, size), nil
}

func openFileAt(dirfd int, name string) (*os.File, error) {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open: %w", err)
	}
	return os.NewFile(uintptr(fd), name), nil
}

func readlinkAt(dirfd int, name string) (string, error) {
	buf := make([]byte, unix.PathMax)
	n, err := unix.Readlinkat(dirfd, name, buf)
	if err != nil {
		return "", fmt.Errorf("readlink: %w", err)
	}
	return string(buf[:n]), nil
}

func (c *comparer) recordLink(inode map[string]inodeKey, names map[inodeKey][]string, rel string, st *unix.Stat_t) {
	if st.Nlink < 2 {
		return
	}
	k := inodeKey{dev: st.Dev, ino: st.Ino}
	inode[rel] = k
	names[k] = append(names[k], rel)
}

// compareLinks checks that each path present in both trees shares its
// inode with the same other paths in a as in b. Paths present in only one
// tree were reported already and are left out of the groups.
func (c *comparer) compareLinks() {
	inBoth := make(map[string]bool, len(c.common))
	for _, p := range c.common {
		inBoth[p] = true
	}
	partners := func(inode map[string]inodeKey, names map[inodeKey][]string, p string) []string {
		k, ok := inode[p]
		if !ok {
			return nil
		}
		var out []string
		for _, n := range names[k] {
			if n != p && inBoth[n] {
				out = append(out, n)
			}
		}
		slices.Sort(out)
		return out
	}
	for _, p := range c.common {
		pa := partners(c.inodeA, c.namesA, p)
		pb := partners(c.inodeB, c.namesB, p)
		if !slices.Equal(pa, pb) {
			c.add(p, PropHardLinks, "a: %s, b: %s", describeLinks(pa), describeLinks(pb))
		}
	}
}

func describeLinks(partners []string) string {
	if len(partners) == 0 {
		return "no other name"
	}
	q := make([]string, len(partners))
	for i, p := range partners {
		q[i] = QuotePath(p)
	}
	return "same inode as " + strings.Join(q, ", ")
}

func typeName(t uint32) string {
	switch t {
	case unix.S_IFREG:
		return "file"
	case unix.S_IFDIR:
		return "directory"
	case unix.S_IFLNK:
		return "symlink"
	case unix.S_IFIFO:
		return "fifo"
	case unix.S_IFSOCK:
		return "socket"
	case unix.S_IFCHR:
		return "char device"
	case unix.S_IFBLK:
		return "block device"
	}
	return fmt.Sprintf("type %#o", t)
}

func formatTime(ts unix.Timespec) string {
	return fmt.Sprintf("%s (%d.%09d)", time.Unix(ts.Sec, ts.Nsec).UTC().Format(time.RFC3339Nano), ts.Sec, ts.Nsec)
}

// describeValue shows a short printable value quoted and anything else by
// length and a quoted prefix.
func describeValue(v []byte) string {
	const show = 48
	if len(v) <= show && utf8.Valid(v) {
		return strconv.Quote(string(v))
	}
	if len(v) <= show {
		return fmt.Sprintf("%d bytes %q", len(v), v)
	}
	return fmt.Sprintf("%d bytes starting %q", len(v), v[:show])
}
