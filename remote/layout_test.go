package remote

import (
	"bytes"
	"strings"
	"testing"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// sampleTree is a directory holding one file of two chunks, encoded.
func sampleTree(t *testing.T) (digest.Hash, [][]byte) {
	t.Helper()
	file := &node.Node{Type: node.TypeRegular, Perm: 0o644, Nlink: 1, Size: 5,
		Chunks: []node.Chunk{{Hash: digest.Sum([]byte("ab")), Size: 2}, {Hash: digest.Sum([]byte("cde")), Size: 3}}}
	fh, fenc, err := file.Hash()
	if err != nil {
		t.Fatal(err)
	}
	dir := &node.Node{Type: node.TypeDir, Perm: 0o755, Entries: []node.Entry{{Name: "f", Hash: fh}}}
	dh, denc, err := dir.Hash()
	if err != nil {
		t.Fatal(err)
	}
	return dh, [][]byte{denc, fenc}
}

func TestTreeObjectRoundTrip(t *testing.T) {
	tree, nodes := sampleTree(t)
	o := &treeObject{Tree: tree, Nodes: nodes, Packs: []packRef{{Hash: digest.Sum([]byte("p")), Size: 1 << 20, FooterSize: 114}}}
	got, byHash, err := decodeTreeObject(tree, o.encode())
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Packs) != 1 || got.Packs[0] != o.Packs[0] {
		t.Errorf("packs %+v, want %+v", got.Packs, o.Packs)
	}
	if len(got.Nodes) != 2 || !bytes.Equal(got.Nodes[0], nodes[0]) || len(byHash) != 2 {
		t.Errorf("nodes do not round-trip")
	}
	if _, ok := byHash[tree]; !ok {
		t.Errorf("the root is not among the nodes by hash")
	}
}

// TestTreeObjectRejects: whatever the bucket holds, a damaged or forged
// tree object is refused before anything of it is used.
func TestTreeObjectRejects(t *testing.T) {
	tree, nodes := sampleTree(t)
	good := (&treeObject{Tree: tree, Nodes: nodes}).encode()
	flip := func(i int) []byte { b := bytes.Clone(good); b[i] ^= 1; return b }
	otherTree, otherNodes := func() (digest.Hash, [][]byte) {
		n := &node.Node{Type: node.TypeDir, Perm: 0o700}
		h, enc, _ := n.Hash()
		return h, [][]byte{enc}
	}()
	tests := []struct {
		name string
		tree digest.Hash
		obj  []byte
		want string
	}{
		{"empty", tree, nil, "not a tree object"},
		{"another magic", tree, append([]byte("FORGETR9"), good[8:]...), "not a tree object"},
		{"a flipped bit in a node", tree, flip(20), "checksum mismatch"},
		{"a flipped bit in the checksum", tree, flip(len(good) - 1), "checksum mismatch"},
		{"the object of another tree", otherTree, good, "not the tree"},
		{"a node missing", tree, (&treeObject{Tree: tree, Nodes: nodes[:1]}).encode(), "lacks"},
		{"no nodes", tree, (&treeObject{Tree: tree}).encode(), "no nodes"},
		{"a node that is not canonical", tree, (&treeObject{Tree: tree, Nodes: [][]byte{append(bytes.Clone(nodes[0]), 0)}}).encode(), "node 0"},
		{"right object, asked as another tree", tree, (&treeObject{Tree: otherTree, Nodes: otherNodes}).encode(), "not the tree"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := decodeTreeObject(tt.tree, tt.obj)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestPointer(t *testing.T) {
	h := digest.Sum([]byte("tree"))
	got, err := decodePointer("stages/x", encodePointer(h, "host-a"))
	if err != nil || got != h {
		t.Fatalf("round trip: %v, %v", got, err)
	}
	for _, bad := range []string{``, `{}`, `{"tree":"abc"}`, `{"tree":"` + strings.Repeat("g", 64) + `"}`, `[1]`} {
		if _, err := decodePointer("refs/x", []byte(bad)); err == nil {
			t.Errorf("pointer %q accepted", bad)
		}
	}
}

func TestPackKeys(t *testing.T) {
	h := digest.Sum([]byte("p"))
	if got, ok := packFromKey(packKey(h)); !ok || got != h {
		t.Fatalf("packFromKey(packKey(h)) = %v, %v", got, ok)
	}
	for _, k := range []string{"packs/x.pack", "packs/" + h.String(), "trees/" + h.String() + ".pack", "packs/" + h.String() + ".pack.tmp"} {
		if _, ok := packFromKey(k); ok {
			t.Errorf("%q taken for a pack", k)
		}
	}
}

// TestPlanRanges: neighbours in a pack are read with one GET unless the
// gap or the range grows too large; packs are never merged.
func TestPlanRanges(t *testing.T) {
	p1, p2 := digest.Sum([]byte("p1")), digest.Sum([]byte("p2"))
	idx := &chunkIndex{chunks: map[digest.Hash]chunkAt{}}
	var want []digest.Hash
	add := func(name string, p digest.Hash, off int64, n uint32) {
		h := digest.Sum([]byte(name))
		idx.chunks[h] = chunkAt{pack: p, off: off, length: n}
		want = append(want, h)
	}
	add("a", p1, 8, 100)
	add("b", p1, 108, 100)             // adjacent: same range
	add("c", p1, 208+maxGap-1, 100)    // gap just under the limit: same range
	add("d", p1, 10<<20, 100)          // far: a new range
	add("e", p2, 8, 100)               // another pack: its own range
	add("f", p1, 10<<20+100, maxRange) // would make the range too long
	ranges, total, err := planRanges(idx, want)
	if err != nil {
		t.Fatal(err)
	}
	if total != 500+maxRange {
		t.Errorf("total %d", total)
	}
	if len(ranges) != 4 {
		for _, r := range ranges {
			t.Logf("range %s %d-%d: %d chunks", r.pack.Short(), r.off, r.end, len(r.chunks))
		}
		t.Fatalf("%d ranges, want 4", len(ranges))
	}
	counts := map[int]int{}
	for _, r := range ranges {
		counts[len(r.chunks)]++
		for _, c := range r.chunks {
			if c.at.pack != r.pack || c.at.off < r.off || c.at.off+int64(c.at.length) > r.end {
				t.Errorf("chunk %s outside its range", c.hash.Short())
			}
		}
	}
	if counts[3] != 1 || counts[1] != 3 {
		t.Errorf("range sizes %v, want one of 3 chunks and three of 1", counts)
	}
	if _, _, err := planRanges(idx, []digest.Hash{digest.Sum([]byte("nowhere"))}); err == nil {
		t.Error("a chunk in no pack was planned")
	}
}
