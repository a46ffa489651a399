// Package node defines the objects of the store's Merkle tree and their
// canonical binary encoding.
//
// A Node is one inode: a regular file (its metadata and the list of chunks
// that make up its content), a symlink, a device, a FIFO, a socket, or a
// directory (its metadata and its sorted entries, each naming a child node by
// hash). The encoding is canonical: a tree always encodes, and so hashes, to
// the same bytes, and Decode accepts only bytes that Encode would produce, so
// a node that decodes is exactly the node that was hashed.
//
// Hard links: every inode but a directory records Nlink, the number of
// names it has in the tree. The names of one inode are directory entries that carry the same node
// hash and the same non-zero Entry.Link. Link numbers only tell apart inodes
// whose nodes are identical (same content, same metadata, same Nlink), so they
// are local: adding a hard link in one place never renumbers another.
package node

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"sort"
	"strings"

	"github.com/forge-build/forge/cas/digest"
)

// Type is the kind of inode a node describes, as in st_mode's S_IFMT bits.
type Type uint32

// The inode types, with their S_IFMT values.
const (
	TypeFIFO    Type = 0o010000
	TypeChar    Type = 0o020000
	TypeDir     Type = 0o040000
	TypeBlock   Type = 0o060000
	TypeRegular Type = 0o100000
	TypeSymlink Type = 0o120000
	TypeSocket  Type = 0o140000

	typeMask = 0o170000
	permMask = 0o7777
)

func (t Type) String() string {
	switch t {
	case TypeFIFO:
		return "fifo"
	case TypeChar:
		return "char device"
	case TypeDir:
		return "directory"
	case TypeBlock:
		return "block device"
	case TypeRegular:
		return "file"
	case TypeSymlink:
		return "symlink"
	case TypeSocket:
		return "socket"
	}
	return fmt.Sprintf("type %#o", uint32(t))
}

// TypeOf is the type of a file of mode (st_mode: the type bits are
// POSIX's S_IFMT values, which Type's constants are).
func TypeOf(mode uint32) (Type, error) {
	t := Type(mode & typeMask)
	if !t.valid() {
		return 0, fmt.Errorf("unknown file type %#o", mode&typeMask)
	}
	return t, nil
}

func (t Type) valid() bool {
	switch t {
	case TypeFIFO, TypeChar, TypeDir, TypeBlock, TypeRegular, TypeSymlink, TypeSocket:
		return true
	}
	return false
}

// Xattr is one extended attribute. POSIX ACLs are the xattrs
// system.posix_acl_access and system.posix_acl_default.
type Xattr struct {
	Name  string
	Value []byte
}

// Chunk is one piece of a regular file's content. A hole (a run of zeros the
// file does not store) has a zero Hash.
type Chunk struct {
	Hash digest.Hash
	Size uint64
}

// IsHole reports whether c is a run of zeros stored as nothing.
func (c Chunk) IsHole() bool { return c.Hash.IsZero() }

// Entry is one name in a directory.
type Entry struct {
	Name string
	Hash digest.Hash
	// Link is 0 for a name that is its inode's only name in the tree, and
	// otherwise a number shared by the names of one inode and by no other
	// inode whose node has the same hash.
	Link uint32
}

// Node is one inode of a stored tree.
type Node struct {
	Type Type
	Perm uint32 // permission bits with setuid, setgid and sticky (07777)
	UID  uint32
	GID  uint32
	// Mtime is the modification time as seconds and nanoseconds since the
	// epoch; seconds may be negative.
	MtimeSec  int64
	MtimeNsec uint32
	Xattrs    []Xattr // sorted by name, names unique

	Nlink   uint32  // everything but directories: names in the tree (≥ 1)
	Size    uint64  // regular files: content length, the sum of Chunks' sizes
	Chunks  []Chunk // regular files
	Target  string  // symlinks
	Rdev    uint64  // devices
	Entries []Entry // directories: sorted by name, names unique
}

// Mode is the node's st_mode: type and permission bits.
func (n *Node) Mode() uint32 { return uint32(n.Type) | n.Perm }

// FileMode is Mode as an io/fs.FileMode, for messages and listings.
func (n *Node) FileMode() fs.FileMode {
	m := fs.FileMode(n.Perm & 0o777)
	if n.Perm&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if n.Perm&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if n.Perm&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch n.Type {
	case TypeDir:
		m |= fs.ModeDir
	case TypeSymlink:
		m |= fs.ModeSymlink
	case TypeFIFO:
		m |= fs.ModeNamedPipe
	case TypeSocket:
		m |= fs.ModeSocket
	case TypeChar:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case TypeBlock:
		m |= fs.ModeDevice
	}
	return m
}

// Xattr returns the value of the named attribute.
func (n *Node) Xattr(name string) ([]byte, bool) {
	i := sort.Search(len(n.Xattrs), func(i int) bool { return n.Xattrs[i].Name >= name })
	if i < len(n.Xattrs) && n.Xattrs[i].Name == name {
		return n.Xattrs[i].Value, true
	}
	return nil, false
}

// Lookup returns the index of the entry called name.
func (n *Node) Lookup(name string) (int, bool) {
	i := sort.Search(len(n.Entries), func(i int) bool { return n.Entries[i].Name >= name })
	return i, i < len(n.Entries) && n.Entries[i].Name == name
}

// Sort puts Xattrs and Entries in canonical order. Encode requires it.
func (n *Node) Sort() {
	sort.Slice(n.Xattrs, func(i, j int) bool { return n.Xattrs[i].Name < n.Xattrs[j].Name })
	sort.Slice(n.Entries, func(i, j int) bool { return n.Entries[i].Name < n.Entries[j].Name })
}

// Errors of Encode and Decode; they are wrapped with details.
var (
	ErrInvalid      = errors.New("invalid node")
	ErrNonCanonical = errors.New("node encoding is not canonical")
)

// MaxNameLen is the longest file name Linux allows, and so the store.
const MaxNameLen = 255

// ValidName reports whether name can be a directory entry.
func ValidName(name string) bool {
	return name != "" && name != "." && name != ".." && len(name) <= MaxNameLen &&
		!strings.ContainsAny(name, "/\x00")
}

// Validate checks the invariants Encode relies on.
func (n *Node) Validate() error {
	if !n.Type.valid() {
		return fmt.Errorf("%w: unknown type %#o", ErrInvalid, uint32(n.Type))
	}
	if n.Perm&^permMask != 0 {
		return fmt.Errorf("%w: permission bits %#o", ErrInvalid, n.Perm)
	}
	if n.MtimeNsec >= 1e9 {
		return fmt.Errorf("%w: mtime nanoseconds %d", ErrInvalid, n.MtimeNsec)
	}
	for i, x := range n.Xattrs {
		if x.Name == "" || strings.IndexByte(x.Name, 0) >= 0 {
			return fmt.Errorf("%w: xattr name %q", ErrInvalid, x.Name)
		}
		if i > 0 && n.Xattrs[i-1].Name >= x.Name {
			return fmt.Errorf("%w: xattrs not sorted or repeated at %q", ErrInvalid, x.Name)
		}
	}
	if n.Type != TypeRegular && (n.Size != 0 || len(n.Chunks) != 0) {
		return fmt.Errorf("%w: %s with file content", ErrInvalid, n.Type)
	}
	if (n.Type == TypeDir) != (n.Nlink == 0) {
		// Directories' link counts follow from their entries; every
		// other inode says how many names it has, hard links included.
		return fmt.Errorf("%w: %s with link count %d", ErrInvalid, n.Type, n.Nlink)
	}
	if n.Type != TypeSymlink && n.Target != "" {
		return fmt.Errorf("%w: %s with a symlink target", ErrInvalid, n.Type)
	}
	if n.Type != TypeChar && n.Type != TypeBlock && n.Rdev != 0 {
		return fmt.Errorf("%w: %s with a device number", ErrInvalid, n.Type)
	}
	if n.Type != TypeDir && len(n.Entries) != 0 {
		return fmt.Errorf("%w: %s with entries", ErrInvalid, n.Type)
	}
	switch n.Type {
	case TypeRegular:
		var sum uint64
		for i, c := range n.Chunks {
			if c.Size == 0 {
				return fmt.Errorf("%w: empty chunk %d", ErrInvalid, i)
			}
			if c.IsHole() && i > 0 && n.Chunks[i-1].IsHole() {
				// Adjacent holes are one hole, or the same file could
				// encode two ways.
				return fmt.Errorf("%w: adjacent holes at chunk %d", ErrInvalid, i)
			}
			sum += c.Size
			if sum < c.Size {
				return fmt.Errorf("%w: chunk sizes overflow", ErrInvalid)
			}
		}
		if sum != n.Size {
			return fmt.Errorf("%w: chunks hold %d bytes, size is %d", ErrInvalid, sum, n.Size)
		}
	case TypeSymlink:
		if n.Target == "" || strings.IndexByte(n.Target, 0) >= 0 {
			return fmt.Errorf("%w: symlink target %q", ErrInvalid, n.Target)
		}
	case TypeDir:
		for i, e := range n.Entries {
			if !ValidName(e.Name) {
				return fmt.Errorf("%w: entry name %q", ErrInvalid, e.Name)
			}
			if i > 0 && n.Entries[i-1].Name >= e.Name {
				return fmt.Errorf("%w: entries not sorted or repeated at %q", ErrInvalid, e.Name)
			}
			if e.Hash.IsZero() {
				return fmt.Errorf("%w: entry %q has no node", ErrInvalid, e.Name)
			}
		}
	}
	return nil
}

// Equal reports whether a and b encode the same.
func Equal(a, b *Node) bool {
	ea, erra := a.Encode()
	eb, errb := b.Encode()
	return erra == nil && errb == nil && bytes.Equal(ea, eb)
}
