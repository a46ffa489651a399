package codec

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/forge-build/forge/cas/pack"
)

func TestCompressDecode(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	random := make([]byte, 1<<20)
	r := rand.New(rand.NewPCG(1, 2))
	for i := range random {
		random[i] = byte(r.Uint32())
	}
	tests := []struct {
		name       string
		data       []byte
		compressed bool
	}{
		{"text", bytes.Repeat([]byte("a line of text, again and again\n"), 20000), true},
		{"zeros", make([]byte, 64<<10), true},
		{"random", random, false},
		{"tiny", []byte("hi"), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		stored, flags := c.Compress(tt.data, nil)
		if got := flags == pack.FlagZstd; got != tt.compressed {
			t.Errorf("%s: compressed %v, want %v (%d → %d bytes)", tt.name, got, tt.compressed, len(tt.data), len(stored))
		}
		out, err := c.Decode(stored, flags, uint32(len(tt.data)), []byte("prefix"))
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if !bytes.Equal(out, append([]byte("prefix"), tt.data...)) {
			t.Errorf("%s: decoded bytes differ", tt.name)
		}
	}
}

// TestDecodeRefusesDamage: damaged frames, a wrong size and a frame that
// would decode to more than it says are errors wrapping ErrCorrupt.
func TestDecodeRefusesDamage(t *testing.T) {
	c, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := bytes.Repeat([]byte("abcdefgh"), 64<<10) // 512 KiB
	stored, flags := c.Compress(data, nil)
	if flags != pack.FlagZstd {
		t.Fatal("not compressed")
	}
	flipped := bytes.Clone(stored)
	flipped[len(flipped)/2] ^= 0xff
	tests := []struct {
		name   string
		stored []byte
		raw    uint32
	}{
		{"flipped byte", flipped, uint32(len(data))},
		{"truncated", stored[:len(stored)/2], uint32(len(data))},
		{"says shorter: a bomb", stored, 4096},
		{"says longer", stored, uint32(len(data)) + 1},
		{"says more than a blob", stored, pack.MaxBlob + 1},
		{"not zstd", []byte("plain bytes, flagged"), 20},
	}
	for _, tt := range tests {
		out, err := c.Decode(tt.stored, pack.FlagZstd, tt.raw, nil)
		if !errors.Is(err, ErrCorrupt) {
			// A flipped byte may still decode: then the bytes differ, and
			// the caller's hash check catches it.
			if tt.name == "flipped byte" && err == nil && !bytes.Equal(out, data) {
				continue
			}
			t.Errorf("%s: %v, want ErrCorrupt", tt.name, err)
		}
		if cap(out) > int(pack.MaxBlob) {
			t.Errorf("%s: allocated %d bytes", tt.name, cap(out))
		}
	}
}
