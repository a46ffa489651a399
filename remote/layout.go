// Package remote shares a store's trees through a bucket of an S3
// object store (package objstore): push copies a tree's chunks and nodes
// into the bucket, pull copies them back into another host's store. Each
// host keeps its own store, index and daemon; the bucket holds immutable
// objects, and nothing read from it is used or stored before it is hashed.
//
// The bucket's layout, under the remote's prefix:
//
//	packs/HASH.pack   forge's pack format (package pack), footer included;
//	                  HASH is the SHA-256 of the whole object. Written once
//	                  (If-None-Match: *), holding only chunks the bucket
//	                  lacked when it was pushed.
//	trees/HASH        a tree object: every node of tree HASH, and the packs
//	                  that hold its chunks (with their sizes, so a reader
//	                  fetches a footer with one ranged GET).
//	stages/ID         a pointer (JSON) to the tree of stage ID; create-only,
//	                  written last.
//	refs/NAME         a pointer to a named tree; replaced by compare-and-swap
//	                  (If-Match).
//
// A push writes packs, then the tree object, then the pointers, so a
// reader that finds a pointer finds everything it names. Chunks are found
// through the footers of the packs a tree object lists: there is no
// global index for every host to download.
package remote

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/errdefs"
	"github.com/forge-build/forge/cas/node"
)

// Key prefixes of the layout.
const (
	packsPrefix  = "packs/"
	treesPrefix  = "trees/"
	stagesPrefix = "stages/"
	refsPrefix   = "refs/"
	packSuffix   = ".pack"
)

func packKey(h digest.Hash) string { return packsPrefix + h.String() + packSuffix }
func treeKey(h digest.Hash) string { return treesPrefix + h.String() }
func stageKey(id string) string    { return stagesPrefix + id }
func usedKey(id string) string     { return usedPrefix + id }
func refKey(name string) string    { return refsPrefix + name }
func isHex64(s string) bool        { _, err := digest.Parse(s); return err == nil && len(s) == 64 }
func packFromKey(key string) (digest.Hash, bool) {
	s, ok := strings.CutPrefix(key, packsPrefix)
	if !ok {
		return digest.Hash{}, false
	}
	s, ok = strings.CutSuffix(s, packSuffix)
	if !ok || !isHex64(s) {
		return digest.Hash{}, false
	}
	h, err := digest.Parse(s)
	return h, err == nil
}

// packRef is a pack a tree object lists.
type packRef struct {
	Hash       digest.Hash
	Size       int64 // the whole object
	FooterSize int64 // its footer (entries and trailer)
}

// treeObject is what trees/HASH holds.
type treeObject struct {
	Tree  digest.Hash
	Packs []packRef
	// Nodes are the tree's nodes, root first, each encoded; every node
	// appears once however often the tree names it.
	Nodes [][]byte
}

var treeMagic = []byte("FORGETR1")

// Bounds a tree object is checked against before anything is allocated
// for it.
const (
	maxTreePacks = 1 << 20
	maxTreeNodes = 1 << 24
	maxNodeBytes = 16 << 20
)

// encode is the object's bytes: the magic, the packs (hash, size, footer
// size), the nodes (length, bytes), and the SHA-256 of all that.
func (o *treeObject) encode() []byte {
	b := append([]byte(nil), treeMagic...)
	b = binary.AppendUvarint(b, uint64(len(o.Packs)))
	for _, p := range o.Packs {
		b = append(b, p.Hash[:]...)
		b = binary.AppendUvarint(b, uint64(p.Size))
		b = binary.AppendUvarint(b, uint64(p.FooterSize))
	}
	b = binary.AppendUvarint(b, uint64(len(o.Nodes)))
	for _, n := range o.Nodes {
		b = binary.AppendUvarint(b, uint64(len(n)))
		b = append(b, n...)
	}
	sum := sha256.Sum256(b)
	return append(b, sum[:]...)
}

// decodeTreeObject parses and checks the object read from trees/TREE:
// its checksum, that every node decodes and is named by its hash, that
// the first node is TREE and that every node the tree names is there. It
// returns the nodes by hash, too.
func decodeTreeObject(tree digest.Hash, b []byte) (*treeObject, map[digest.Hash]*node.Node, error) {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("tree object %s: %s", treeKey(tree), fmt.Sprintf(format, args...))
	}
	if len(b) < len(treeMagic)+sha256.Size || !bytes.Equal(b[:len(treeMagic)], treeMagic) {
		return nil, nil, bad("not a tree object")
	}
	body, sum := b[:len(b)-sha256.Size], b[len(b)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], sum) {
		return nil, nil, bad("checksum mismatch: the object is damaged")
	}
	r := bytes.NewReader(body[len(treeMagic):])
	uv := func(what string, max uint64) (uint64, error) {
		v, err := binary.ReadUvarint(r)
		if err != nil || v > max {
			return 0, bad("bad %s", what)
		}
		return v, nil
	}
	o := &treeObject{Tree: tree}
	np, err := uv("pack count", maxTreePacks)
	if err != nil {
		return nil, nil, err
	}
	for range np {
		var p packRef
		if _, err := r.Read(p.Hash[:]); err != nil {
			return nil, nil, bad("truncated pack list")
		}
		size, err := uv("pack size", 1<<40)
		if err != nil {
			return nil, nil, err
		}
		fs, err := uv("footer size", size)
		if err != nil {
			return nil, nil, err
		}
		p.Size, p.FooterSize = int64(size), int64(fs)
		o.Packs = append(o.Packs, p)
	}
	nn, err := uv("node count", maxTreeNodes)
	if err != nil {
		return nil, nil, err
	}
	// Not sized by nn: the count is the object's word, the bytes are not.
	nodes := map[digest.Hash]*node.Node{}
	for i := range nn {
		l, err := uv("node length", maxNodeBytes)
		if err != nil {
			return nil, nil, err
		}
		if uint64(r.Len()) < l {
			return nil, nil, bad("truncated node %d", i)
		}
		enc := make([]byte, l)
		r.Read(enc)
		n, err := node.Decode(enc)
		if err != nil {
			return nil, nil, bad("node %d: %v", i, err)
		}
		h := digest.Sum(enc)
		if i == 0 && h != tree {
			return nil, nil, bad("its first node is %s, not the tree", h.Short())
		}
		nodes[h] = n
		o.Nodes = append(o.Nodes, enc)
	}
	if r.Len() != 0 {
		return nil, nil, bad("%d bytes after the nodes", r.Len())
	}
	if len(o.Nodes) == 0 {
		return nil, nil, bad("no nodes")
	}
	for h, n := range nodes {
		var missing error
		n.Children(func(c digest.Hash) {
			if _, ok := nodes[c]; !ok && missing == nil {
				missing = bad("node %s names node %s, which the object lacks", h.Short(), c.Short())
			}
		})
		if missing != nil {
			return nil, nil, missing
		}
	}
	return o, nodes, nil
}

// pointer is what stages/ID and refs/NAME hold.
type pointer struct {
	Tree string `json:"tree"`
	// Host is the host that pushed it, for people reading the bucket.
	Host string `json:"host,omitempty"`
}

func encodePointer(tree digest.Hash, host string) []byte {
	b, _ := json.Marshal(pointer{Tree: tree.String(), Host: host})
	return append(b, '\n')
}

func decodePointer(key string, b []byte) (digest.Hash, error) {
	var p pointer
	if err := json.Unmarshal(b, &p); err != nil {
		return digest.Hash{}, fmt.Errorf("%s: not a pointer to a tree: %v", key, err)
	}
	if !isHex64(p.Tree) {
		return digest.Hash{}, fmt.Errorf("%s: tree %q is not a SHA-256", key, p.Tree)
	}
	h, err := digest.Parse(p.Tree)
	if err != nil {
		return digest.Hash{}, fmt.Errorf("%s: %w", key, err)
	}
	return h, nil
}

// ErrNotInBucket says a name is not in the bucket (as a stage, a tree or
// a ref, as the caller asked). It is a cas.ErrNotFound, so that the
// daemon's clients can tell it from a failure.
var ErrNotInBucket = fmt.Errorf("%w in the bucket", errdefs.ErrNotFound)
