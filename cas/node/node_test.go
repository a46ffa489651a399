package node

import (
	"bytes"
	"errors"
	"testing"

	"github.com/forge-build/forge/cas/digest"
)

func h(s string) digest.Hash { return digest.Sum([]byte(s)) }

func sampleNodes() map[string]*Node {
	return map[string]*Node{
		"empty file":   {Type: TypeRegular, Perm: 0o644, Nlink: 1},
		"setuid file":  {Type: TypeRegular, Perm: 0o4755, UID: 1234, GID: 5678, MtimeSec: 1700000000, MtimeNsec: 123456789, Nlink: 1, Size: 10, Chunks: []Chunk{{Hash: h("a"), Size: 10}}},
		"sparse file":  {Type: TypeRegular, Perm: 0o600, Nlink: 2, Size: 1 << 30, Chunks: []Chunk{{Size: 1<<30 - 4096}, {Hash: h("tail"), Size: 4096}}},
		"pre-1970":     {Type: TypeRegular, Perm: 0o644, MtimeSec: -86400 * 365, MtimeNsec: 999999999, Nlink: 1},
		"symlink":      {Type: TypeSymlink, Perm: 0o777, Nlink: 2, Target: "../a b\nc", Xattrs: []Xattr{{Name: "trusted.x", Value: []byte{0, 1, 2}}}},
		"char device":  {Type: TypeChar, Perm: 0o666, Nlink: 1, Rdev: 0x103},
		"block device": {Type: TypeBlock, Perm: 0o660, Nlink: 1, Rdev: 0x7c8},
		"fifo":         {Type: TypeFIFO, Perm: 0o644, Nlink: 1},
		"socket":       {Type: TypeSocket, Perm: 0o755, Nlink: 3},
		"empty dir":    {Type: TypeDir, Perm: 0o1777},
		"dir": {Type: TypeDir, Perm: 0o755, Xattrs: []Xattr{
			{Name: "security.selinux", Value: []byte("system_u:object_r:etc_t:s0\x00")},
			{Name: "system.posix_acl_default", Value: []byte{2, 0, 0, 0}},
			{Name: "user.empty"},
		}, Entries: []Entry{
			{Name: "a", Hash: h("2"), Link: 1},
			{Name: "b", Hash: h("2"), Link: 1},
			{Name: string(bytes.Repeat([]byte("n"), 255)), Hash: h("3")},
			{Name: "\xff\xfe not utf-8", Hash: h("1")},
		}},
	}
}

func TestRoundTrip(t *testing.T) {
	for name, n := range sampleNodes() {
		t.Run(name, func(t *testing.T) {
			b, err := n.Encode()
			if err != nil {
				t.Fatalf("Encode: %v", err)
			}
			got, err := Decode(b)
			if err != nil {
				t.Fatalf("Decode: %v", err)
			}
			again, err := got.Encode()
			if err != nil {
				t.Fatalf("Encode after Decode: %v", err)
			}
			if !bytes.Equal(b, again) {
				t.Fatalf("round trip changed the encoding:\n%x\n%x", b, again)
			}
			if got.Mode() != n.Mode() || got.Size != n.Size || got.Target != n.Target || len(got.Entries) != len(n.Entries) {
				t.Fatalf("round trip changed the node: %+v, want %+v", got, n)
			}
		})
	}
}

func TestEncodingsDiffer(t *testing.T) {
	seen := map[digest.Hash]string{}
	for name, n := range sampleNodes() {
		hash, _, err := n.Hash()
		if err != nil {
			t.Fatal(err)
		}
		if other, dup := seen[hash]; dup {
			t.Fatalf("%s and %s hash the same", name, other)
		}
		seen[hash] = name
	}
}

func TestValidateRejects(t *testing.T) {
	tests := []struct {
		name string
		node Node
	}{
		{"unknown type", Node{Type: 0o170000}},
		{"perm beyond 07777", Node{Type: TypeRegular, Perm: 0o10000, Nlink: 1}},
		{"nanoseconds ≥ 1e9", Node{Type: TypeFIFO, Nlink: 1, MtimeNsec: 1e9}},
		{"unsorted xattrs", Node{Type: TypeFIFO, Nlink: 1, Xattrs: []Xattr{{Name: "user.b"}, {Name: "user.a"}}}},
		{"repeated xattr", Node{Type: TypeFIFO, Nlink: 1, Xattrs: []Xattr{{Name: "user.a"}, {Name: "user.a"}}}},
		{"empty xattr name", Node{Type: TypeFIFO, Nlink: 1, Xattrs: []Xattr{{Name: ""}}}},
		{"file without links", Node{Type: TypeRegular}},
		{"size mismatch", Node{Type: TypeRegular, Nlink: 1, Size: 5, Chunks: []Chunk{{Hash: h("x"), Size: 4}}}},
		{"empty chunk", Node{Type: TypeRegular, Nlink: 1, Chunks: []Chunk{{Hash: h("x")}}}},
		{"adjacent holes", Node{Type: TypeRegular, Nlink: 1, Size: 2, Chunks: []Chunk{{Size: 1}, {Size: 1}}}},
		{"dir with content", Node{Type: TypeDir, Size: 1}},
		{"symlink without target", Node{Type: TypeSymlink, Nlink: 1}},
		{"fifo without links", Node{Type: TypeFIFO}},
		{"directory with a link count", Node{Type: TypeDir, Nlink: 1}},
		{"fifo with rdev", Node{Type: TypeFIFO, Nlink: 1, Rdev: 1}},
		{"entry with slash", Node{Type: TypeDir, Entries: []Entry{{Name: "a/b", Hash: h("x")}}}},
		{"entry dot-dot", Node{Type: TypeDir, Entries: []Entry{{Name: "..", Hash: h("x")}}}},
		{"entry too long", Node{Type: TypeDir, Entries: []Entry{{Name: string(bytes.Repeat([]byte("n"), 256)), Hash: h("x")}}}},
		{"unsorted entries", Node{Type: TypeDir, Entries: []Entry{{Name: "b", Hash: h("x")}, {Name: "a", Hash: h("x")}}}},
		{"entry without hash", Node{Type: TypeDir, Entries: []Entry{{Name: "a"}}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := tt.node.Encode(); !errors.Is(err, ErrInvalid) {
				t.Fatalf("Encode: got %v, want ErrInvalid", err)
			}
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	good, err := sampleNodes()["dir"].Encode()
	if err != nil {
		t.Fatal(err)
	}
	overlong := []byte{version1, 0x81, 0x00} // type 1 as a two-byte varint
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"unknown version", append([]byte{0xF2}, good[1:]...)},
		{"truncated", good[:len(good)-1]},
		{"trailing bytes", append(append([]byte{}, good...), 0)},
		{"overlong varint", overlong},
		{"huge entry count", []byte{version1, 4, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n, err := Decode(tt.b); err == nil {
				t.Fatalf("Decode accepted %x as %+v", tt.b, n)
			}
		})
	}
}

func TestLookup(t *testing.T) {
	n := sampleNodes()["dir"]
	if i, ok := n.Lookup("b"); !ok || n.Entries[i].Name != "b" {
		t.Fatalf("Lookup(b) = %d, %v", i, ok)
	}
	if _, ok := n.Lookup("c"); ok {
		t.Fatal("Lookup(c) found an entry")
	}
	if v, ok := n.Xattr("security.selinux"); !ok || len(v) == 0 {
		t.Fatal("Xattr(security.selinux) missing")
	}
}

// FuzzDecode checks that Decode never panics and that what it accepts
// re-encodes to the same bytes: the store's hashes depend on it.
func FuzzDecode(f *testing.F) {
	for _, n := range sampleNodes() {
		b, err := n.Encode()
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Add([]byte{version1})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := Decode(b)
		if err != nil {
			return
		}
		again, err := n.Encode()
		if err != nil {
			t.Fatalf("decoded node does not encode: %v", err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("decoded %x re-encodes as %x", b, again)
		}
	})
}
