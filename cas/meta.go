package cas

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/internal/xattr"
)

// What the store keeps of a file besides its content. The importer and
// overlay's incremental commit both build nodes from a stat and the xattrs
// of an inode; they must agree, or a tree committed from a mount would
// hash differently from the same tree imported from a directory.

// StoredXattr reports whether an attribute namespace is part of a tree:
// user, trusted and security attributes and POSIX ACLs. Other system.*
// names are filesystem internals (overlayfs also keeps its own
// trusted.overlay.* out of a merged view).
func StoredXattr(name string) bool {
	return strings.HasPrefix(name, "user.") || strings.HasPrefix(name, "trusted.") ||
		strings.HasPrefix(name, "security.") ||
		name == "system.posix_acl_access" || name == "system.posix_acl_default"
}

// ReadXattrs reads the stored attributes of one inode, sorted by name.
// list and get are the listxattr and getxattr calls that name the inode
// (by path, /proc/self/fd path or fd); callers wrap the error with it.
func ReadXattrs(list func(buf []byte) (int, error), get func(name string, buf []byte) (int, error)) ([]node.Xattr, error) {
	names, err := xattr.List(list)
	if err != nil {
		return nil, fmt.Errorf("listxattr: %w", err)
	}
	var xs []node.Xattr
	for _, name := range names {
		if !StoredXattr(name) {
			continue
		}
		v, err := xattr.Get(func(buf []byte) (int, error) { return get(name, buf) })
		if errors.Is(err, unix.ENODATA) {
			continue // removed since the listing
		}
		if err != nil {
			return nil, fmt.Errorf("getxattr %s: %w", name, err)
		}
		xs = append(xs, node.Xattr{Name: name, Value: v})
	}
	sort.Slice(xs, func(i, j int) bool { return xs[i].Name < xs[j].Name })
	return xs, nil
}

// ReadPathXattrs is ReadXattrs for a path; follow says whether a final
// symlink (or /proc magic link) is followed.
func ReadPathXattrs(path string, follow bool) ([]node.Xattr, error) {
	list, get := unix.Llistxattr, unix.Lgetxattr
	if follow {
		list, get = unix.Listxattr, unix.Getxattr
	}
	return ReadXattrs(func(buf []byte) (int, error) { return list(path, buf) },
		func(name string, buf []byte) (int, error) { return get(path, name, buf) })
}

// NodeFromStat is the metadata every node has: type, permissions, owner,
// mtime, device number and xattrs. Content, entries and the link count are
// the caller's: only it knows how many names an inode has in the tree.
func NodeFromStat(st *unix.Stat_t, xs []node.Xattr) (*node.Node, error) {
	t, err := node.TypeOf(st.Mode)
	if err != nil {
		return nil, err
	}
	n := &node.Node{
		Type: t, Perm: st.Mode & 0o7777, UID: st.Uid, GID: st.Gid,
		MtimeSec: st.Mtim.Sec, MtimeNsec: uint32(st.Mtim.Nsec), Xattrs: xs,
	}
	if t == node.TypeChar || t == node.TypeBlock {
		n.Rdev = st.Rdev
	}
	return n, nil
}
