package cas

import (
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/node"
)

// The store works on directory file descriptors and names rather than
// paths, so trees deeper than PATH_MAX import and export, and a rename in
// the tree cannot redirect a write. Xattr calls have no *at form before
// Linux 6.13; /proc/self/fd/DIRFD/NAME gives them one.

func fdPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

func selfFdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// storedXattr reports whether an attribute namespace is part of a tree:
// user, trusted and security attributes and POSIX ACLs. Other system.*
// names are filesystem internals.
func storedXattr(name string) bool {
	return strings.HasPrefix(name, "user.") || strings.HasPrefix(name, "trusted.") ||
		strings.HasPrefix(name, "security.") ||
		name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

// readXattrs reads the attributes of path; follow says whether a final
// symlink (or /proc magic link) is followed.
func readXattrs(path string, follow bool) ([]node.Xattr, error) {
	list, get := unix.Llistxattr, unix.Lgetxattr
	if follow {
		list, get = unix.Listxattr, unix.Getxattr
	}
	var names []byte
	for size := 256; ; size *= 4 {
		buf := make([]byte, size)
		n, err := list(path, buf)
		if errors.Is(err, unix.ERANGE) {
			continue
		}
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		if err != nil {
			return nil, fmt.Errorf("listxattr: %w", err)
		}
		names = buf[:n]
		break
	}
	var xs []node.Xattr
	for _, name := range strings.Split(string(names), "\x00") {
		if name == "" || !storedXattr(name) {
			continue
		}
		var val []byte
		for size := 256; ; size *= 4 {
			buf := make([]byte, size)
			n, err := get(path, name, buf)
			if errors.Is(err, unix.ERANGE) && size < 1<<20 {
				continue
			}
			if errors.Is(err, unix.ENODATA) {
				break // removed since the listing
			}
			if err != nil {
				return nil, fmt.Errorf("getxattr %s: %w", name, err)
			}
			val = buf[:n:n]
			break
		}
		if val != nil {
			xs = append(xs, node.Xattr{Name: name, Value: val})
		}
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
	return xs, nil
}

// metaFromStat fills the metadata every node has.
func metaFromStat(st *unix.Stat_t, xattrs []node.Xattr) (*node.Node, error) {
	t, err := node.TypeOf(st.Mode)
	if err != nil {
		return nil, err
	}
	n := &node.Node{
		Type: t, Perm: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		MtimeSec: st.Mtim.Sec, MtimeNsec: uint32(st.Mtim.Nsec), Xattrs: xattrs,
	}
	if t != node.TypeDir {
		n.Nlink = 1 // the importer counts the names it finds
	}
	if t == node.TypeChar || t == node.TypeBlock {
		n.Rdev = st.Rdev
	}
	return n, nil
}

// QuotePath writes a path for people: as is when it is printable UTF-8
// without quotes or backslashes, else C-quoted in double quotes (git's
// core.quotePath style), so that every path is one line.
func QuotePath(p string) string {
	needs := false
	for i := 0; i < len(p); {
		r, size := utf8DecodeRune(p[i:])
		if r == 0xFFFD && size <= 1 || r < ' ' || r == 0x7f || r == '"' || r == '\\' {
			needs = true
			break
		}
		i += size
	}
	if !needs {
		return p
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(p); {
		r, size := utf8DecodeRune(p[i:])
		switch {
		case r == 0xFFFD && size <= 1:
			fmt.Fprintf(&b, "\\%03o", p[i])
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, "\\%03o", byte(r))
		default:
			b.WriteString(p[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}

func utf8DecodeRune(s string) (rune, int) { return utf8.DecodeRuneInString(s) }
