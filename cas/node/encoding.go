package node

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math"

	"github.com/forge-build/forge/cas/digest"
)

// version1 starts every encoded node. A later encoding takes another byte,
// so old and new nodes can share an index.
const version1 = 0xF1

// maxChunkSize bounds one chunk's size so that size<<1 fits a uint64.
const maxChunkSize = math.MaxInt64

// Encode returns the node's canonical encoding:
//
//	version byte 0xF1
//	uvarint type (S_IFMT >> 12), uvarint perm, uvarint uid, uvarint gid
//	varint mtime seconds, uvarint mtime nanoseconds
//	uvarint xattr count, each: uvarint len, name, uvarint len, value
//	not a directory: uvarint nlink
//	regular:   uvarint size, uvarint chunk count,
//	           each: uvarint size<<1|hole, then the 32-byte hash unless a hole
//	symlink:   uvarint len, target
//	device:    uvarint rdev
//	directory: uvarint entry count, each: uvarint len, name, 32-byte hash, uvarint link
//
// All integers are minimal varints; lists are sorted (see Validate).
func (n *Node) Encode() ([]byte, error) {
	if err := n.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, n.encodedSizeHint())
	b = append(b, version1)
	b = binary.AppendUvarint(b, uint64(n.Type)>>12)
	b = binary.AppendUvarint(b, uint64(n.Perm))
	b = binary.AppendUvarint(b, uint64(n.UID))
	b = binary.AppendUvarint(b, uint64(n.GID))
	b = binary.AppendVarint(b, n.MtimeSec)
	b = binary.AppendUvarint(b, uint64(n.MtimeNsec))
	b = binary.AppendUvarint(b, uint64(len(n.Xattrs)))
	for _, x := range n.Xattrs {
		b = appendBytes(b, []byte(x.Name))
		b = appendBytes(b, x.Value)
	}
	if n.Type != TypeDir {
		b = binary.AppendUvarint(b, uint64(n.Nlink))
	}
	switch n.Type {
	case TypeRegular:
		b = binary.AppendUvarint(b, n.Size)
		b = binary.AppendUvarint(b, uint64(len(n.Chunks)))
		for _, c := range n.Chunks {
			if c.Size > maxChunkSize {
				return nil, fmt.Errorf("%w: chunk of %d bytes", ErrInvalid, c.Size)
			}
			if c.IsHole() {
				b = binary.AppendUvarint(b, c.Size<<1|1)
				continue
			}
			b = binary.AppendUvarint(b, c.Size<<1)
			b = append(b, c.Hash[:]...)
		}
	case TypeSymlink:
		b = appendBytes(b, []byte(n.Target))
	case TypeChar, TypeBlock:
		b = binary.AppendUvarint(b, n.Rdev)
	case TypeDir:
		b = binary.AppendUvarint(b, uint64(len(n.Entries)))
		for _, e := range n.Entries {
			b = appendBytes(b, []byte(e.Name))
			b = append(b, e.Hash[:]...)
			b = binary.AppendUvarint(b, uint64(e.Link))
		}
	}
	return b, nil
}

// Hash encodes the node and returns the encoding and its hash.
func (n *Node) Hash() (digest.Hash, []byte, error) {
	b, err := n.Encode()
	if err != nil {
		return digest.Hash{}, nil, err
	}
	return digest.Sum(b), b, nil
}

func (n *Node) encodedSizeHint() int {
	size := 32
	for _, x := range n.Xattrs {
		size += len(x.Name) + len(x.Value) + 4
	}
	size += len(n.Chunks)*(digest.Size+4) + len(n.Target)
	for _, e := range n.Entries {
		size += len(e.Name) + digest.Size + 4
	}
	return size
}

func appendBytes(b, s []byte) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// Decode parses an encoded node. It accepts exactly the encodings Encode
// produces: anything else is ErrInvalid or ErrNonCanonical.
func Decode(b []byte) (*Node, error) {
	d := decoder{b: b}
	n, err := d.node()
	if err != nil {
		return nil, err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the node", ErrInvalid, len(d.b))
	}
	if err := n.Validate(); err != nil {
		return nil, err
	}
	// Re-encoding catches what parsing lets through: overlong varints.
	again, err := n.Encode()
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(again, b) {
		return nil, ErrNonCanonical
	}
	return n, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) fail(format string, args ...any) {
	if d.err == nil {
		d.err = fmt.Errorf("%w: "+format, append([]any{ErrInvalid}, args...)...)
	}
}

func (d *decoder) uvarint(what string) uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.fail("truncated or overflowing %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint(what string) int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.fail("truncated or overflowing %s", what)
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) uint32(what string) uint32 {
	v := d.uvarint(what)
	if v > math.MaxUint32 {
		d.fail("%s %d out of range", what, v)
		return 0
	}
	return uint32(v)
}

func (d *decoder) bytes(what string) []byte {
	l := d.uvarint(what + " length")
	if d.err != nil {
		return nil
	}
	if l > uint64(len(d.b)) {
		d.fail("%s of %d bytes, %d left", what, l, len(d.b))
		return nil
	}
	s := d.b[:l:l]
	d.b = d.b[l:]
	return s
}

func (d *decoder) hash(what string) digest.Hash {
	var h digest.Hash
	if d.err != nil {
		return h
	}
	if len(d.b) < digest.Size {
		d.fail("truncated %s", what)
		return h
	}
	copy(h[:], d.b)
	d.b = d.b[digest.Size:]
	return h
}

// count reads a list length and rejects one that the remaining bytes cannot
// hold, so a corrupt node cannot make Decode allocate without bound.
func (d *decoder) count(what string, minItemSize int) int {
	c := d.uvarint(what)
	if d.err != nil {
		return 0
	}
	if c > uint64(len(d.b)/minItemSize) {
		d.fail("%d %s in %d bytes", c, what, len(d.b))
		return 0
	}
	return int(c)
}

func (d *decoder) node() (*Node, error) {
	if len(d.b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrInvalid)
	}
	if d.b[0] != version1 {
		return nil, fmt.Errorf("%w: unknown version byte %#x", ErrInvalid, d.b[0])
	}
	d.b = d.b[1:]
	n := &Node{}
	t := d.uvarint("type")
	if t > typeMask>>12 {
		d.fail("type %d", t)
	}
	n.Type = Type(t << 12)
	n.Perm = d.uint32("permissions")
	n.UID = d.uint32("uid")
	n.GID = d.uint32("gid")
	n.MtimeSec = d.varint("mtime")
	n.MtimeNsec = d.uint32("mtime nanoseconds")
	if nx := d.count("xattrs", 2); nx > 0 {
		n.Xattrs = make([]Xattr, nx)
		for i := range n.Xattrs {
			n.Xattrs[i].Name = string(d.bytes("xattr name"))
			n.Xattrs[i].Value = d.bytes("xattr value")
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	if n.Type != TypeDir {
		n.Nlink = d.uint32("link count")
	}
	switch n.Type {
	case TypeRegular:
		n.Size = d.uvarint("size")
		if nc := d.count("chunks", 1); nc > 0 {
			n.Chunks = make([]Chunk, nc)
			for i := range n.Chunks {
				v := d.uvarint("chunk size")
				n.Chunks[i].Size = v >> 1
				if v&1 == 0 {
					n.Chunks[i].Hash = d.hash("chunk hash")
					if d.err == nil && n.Chunks[i].Hash.IsZero() {
						d.fail("chunk %d has the zero hash", i)
					}
				}
			}
		}
	case TypeSymlink:
		n.Target = string(d.bytes("symlink target"))
	case TypeChar, TypeBlock:
		n.Rdev = d.uvarint("device number")
	case TypeDir:
		if ne := d.count("entries", 2+digest.Size); ne > 0 {
			n.Entries = make([]Entry, ne)
			for i := range n.Entries {
				n.Entries[i].Name = string(d.bytes("entry name"))
				n.Entries[i].Hash = d.hash("entry hash")
				n.Entries[i].Link = d.uint32("entry link")
			}
		}
	}
	if d.err != nil {
		return nil, d.err
	}
	return n, nil
}

// Children calls fn for every node hash n refers to, and ChunkRefs for
// every stored chunk; they let GC and fsck walk a tree without knowing the
// encoding.
func (n *Node) Children(fn func(digest.Hash)) {
	for _, e := range n.Entries {
		fn(e.Hash)
	}
}

// ChunkRefs calls fn for every stored (non-hole) chunk of a regular file.
func (n *Node) ChunkRefs(fn func(Chunk)) {
	for _, c := range n.Chunks {
		if !c.IsHole() {
			fn(c)
		}
	}
}
