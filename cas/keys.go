package cas

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/pack"
)

// Index keys are a prefix byte and the key proper. Each prefix is its own
// keyspace; iterating one never sees another.
const (
	prefixChunk = 'c' // chunk hash → chunkLoc in a pack
	prefixNode  = 'n' // node hash → chunkLoc of the encoded node in a pack, and a copy of a small node
	prefixUsed  = 'u' // ref name → last use, unix nanoseconds (LRU for gc --max-size)
	prefixPack  = 'p' // pack ID → packMeta
	prefixStat  = 's' // (device, inode) of an imported file → statEntry
	prefixMeta  = 'v' // the key alone: the index's version (indexVersion)

	// Keys of format 1, read only to convert such a store: ref name → tree
	// hash; node hash → encoded node.
	prefixRef = 'r'
)

// statEntry remembers what an imported file was, so that importing it
// again, unchanged, reuses its chunk list instead of reading and hashing
// it (git's index does the same). A file is unchanged while its size,
// mtime and ctime are: ctime cannot be set from user space, and every
// write, chmod, chown or xattr change moves it.
type statEntry struct {
	Size      int64
	MtimeSec  int64
	MtimeNsec int64
	CtimeSec  int64
	CtimeNsec int64
	Node      digest.Hash // the file's node, whose chunks it reuses
}

func statKey(dev, ino uint64) []byte {
	k := make([]byte, 1, 17)
	k[0] = prefixStat
	k = binary.BigEndian.AppendUint64(k, dev)
	return binary.BigEndian.AppendUint64(k, ino)
}

func (e statEntry) encode() []byte {
	b := make([]byte, 0, 40+digest.Size)
	for _, v := range []int64{e.Size, e.MtimeSec, e.MtimeNsec, e.CtimeSec, e.CtimeNsec} {
		b = binary.AppendVarint(b, v)
	}
	return append(b, e.Node[:]...)
}

func decodeStatEntry(b []byte) (statEntry, bool) {
	var e statEntry
	for _, v := range []*int64{&e.Size, &e.MtimeSec, &e.MtimeNsec, &e.CtimeSec, &e.CtimeNsec} {
		x, n := binary.Varint(b)
		if n <= 0 {
			return e, false
		}
		*v, b = x, b[n:]
	}
	if len(b) != digest.Size {
		return e, false
	}
	copy(e.Node[:], b)
	return e, true
}

func hashKey(prefix byte, h digest.Hash) []byte {
	k := make([]byte, 1+digest.Size)
	k[0] = prefix
	copy(k[1:], h[:])
	return k
}

func nameKey(prefix byte, name string) []byte {
	return append([]byte{prefix}, name...)
}

// prefixBounds returns the iterator bounds covering one keyspace.
func prefixBounds(prefix byte) (lower, upper []byte) {
	return []byte{prefix}, []byte{prefix + 1}
}

// packID names a pack file: 16 random bytes, as 32 hex digits on disk.
type packID [16]byte

func (p packID) String() string { return hex.EncodeToString(p[:]) }

func parsePackID(s string) (packID, bool) {
	var p packID
	if len(s) != 2*len(p) {
		return p, false
	}
	_, err := hex.Decode(p[:], []byte(s))
	return p, err == nil
}

// chunkLoc says where a chunk's bytes are.
type chunkLoc struct {
	Pack      packID
	Offset    int64
	Length    uint32
	RawLength uint32
	Flags     uint8
}

func (l chunkLoc) encode() []byte {
	b := make([]byte, 0, 16+3*binary.MaxVarintLen64+1)
	b = append(b, l.Pack[:]...)
	b = binary.AppendUvarint(b, uint64(l.Offset))
	b = binary.AppendUvarint(b, uint64(l.Length))
	b = binary.AppendUvarint(b, uint64(l.RawLength))
	return append(b, l.Flags)
}

func decodeChunkLoc(b []byte) (chunkLoc, error) {
	loc, _, err := decodeBlobRecord(b)
	return loc, err
}

// A blob's index record is its chunkLoc, then for a node of at most
// inlineNodeMax bytes a copy of the node's encoding. The copy is a cache
// like the rest of the index (the pack holds the node, and a rebuild
// writes the copy again): it saves the pread and the page of pack a node
// read would cost, which an unchanged re-import pays for every file whose
// chunk list it reuses.
const inlineNodeMax = 64 << 10

// encodeBlobRecord is the index record of a blob stored at loc; data is
// the blob, copied in for a small node.
func encodeBlobRecord(loc chunkLoc, data []byte) []byte {
	b := loc.encode()
	if loc.Flags == pack.FlagNode && len(data) <= inlineNodeMax && len(data) == int(loc.Length) {
		b = append(b, data...)
	}
	return b
}

// decodeBlobRecord splits an index record into the location and the
// inline copy of a node (nil if none). The copy is not verified here:
// readers hash it against the key.
func decodeBlobRecord(b []byte) (chunkLoc, []byte, error) {
	var l chunkLoc
	if len(b) < 16+4 {
		return l, nil, fmt.Errorf("chunk location of %d bytes: %w", len(b), ErrCorrupt)
	}
	copy(l.Pack[:], b)
	b = b[16:]
	var vals [3]uint64
	for i := range vals {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return l, nil, fmt.Errorf("chunk location: bad varint: %w", ErrCorrupt)
		}
		vals[i] = v
		b = b[n:]
	}
	if len(b) < 1 || vals[1] > 1<<32-1 || vals[2] > 1<<32-1 || vals[0] > 1<<62 {
		return l, nil, fmt.Errorf("chunk location: bad fields: %w", ErrCorrupt)
	}
	l.Offset, l.Length, l.RawLength, l.Flags = int64(vals[0]), uint32(vals[1]), uint32(vals[2]), b[0]
	inline := b[1:]
	if len(inline) == 0 {
		return l, nil, nil
	}
	if l.Flags != pack.FlagNode || len(inline) != int(l.Length) || len(inline) > inlineNodeMax {
		return l, nil, fmt.Errorf("index record: %d bytes after the location of a blob of %d bytes with flags %#x: %w", len(inline), l.Length, l.Flags, ErrCorrupt)
	}
	return l, inline, nil
}

// packMeta records a pack the index points into.
type packMeta struct {
	Size    int64
	Created int64 // unix nanoseconds
}

func (m packMeta) encode() []byte {
	b := binary.AppendUvarint(nil, uint64(m.Size))
	return binary.AppendVarint(b, m.Created)
}

func decodePackMeta(b []byte) (packMeta, error) {
	size, n := binary.Uvarint(b)
	if n <= 0 {
		return packMeta{}, fmt.Errorf("pack record: %w", ErrCorrupt)
	}
	created, m := binary.Varint(b[n:])
	if m <= 0 || n+m != len(b) {
		return packMeta{}, fmt.Errorf("pack record: %w", ErrCorrupt)
	}
	return packMeta{Size: int64(size), Created: created}, nil
}
