package pack

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/forge-build/forge/cas/digest"
)

func writePack(t *testing.T, blobs ...[]byte) ([]byte, []Entry) {
	t.Helper()
	var buf bytes.Buffer
	w, err := NewWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range blobs {
		if _, err := w.Add(digest.Sum(b), b, len(b), 0); err != nil {
			t.Fatal(err)
		}
	}
	entries, err := w.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return buf.Bytes(), entries
}

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name  string
		blobs [][]byte
	}{
		{"empty pack", nil},
		{"one blob", [][]byte{[]byte("hello")}},
		{"several", [][]byte{[]byte("a"), bytes.Repeat([]byte("b"), 70000), []byte("c")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, written := writePack(t, tt.blobs...)
			got, err := ReadIndex(bytes.NewReader(p), int64(len(p)))
			if err != nil {
				t.Fatalf("ReadIndex: %v", err)
			}
			if len(got) != len(tt.blobs) {
				t.Fatalf("%d entries, want %d", len(got), len(tt.blobs))
			}
			for i, e := range got {
				if e != written[i] {
					t.Fatalf("entry %d = %+v, written %+v", i, e, written[i])
				}
				blob := p[e.Offset : e.Offset+int64(e.Length)]
				if !bytes.Equal(blob, tt.blobs[i]) || digest.Sum(blob) != e.Hash {
					t.Fatalf("blob %d reads back wrong", i)
				}
			}
		})
	}
}

func TestReadIndexRejects(t *testing.T) {
	good, _ := writePack(t, []byte("one"), []byte("two"))
	flip := func(off int) []byte {
		b := append([]byte{}, good...)
		b[off] ^= 0x40
		return b
	}
	tests := []struct {
		name string
		p    []byte
	}{
		{"too short", good[:10]},
		{"bad header", flip(0)},
		{"unfinished", good[:len(good)-1]},
		{"footer bit flip", flip(len(good) - trailerSize - 3)},
		{"count bit flip", flip(len(good) - trailerSize)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ReadIndex(bytes.NewReader(tt.p), int64(len(tt.p)))
			var invalid *InvalidError
			if !errors.As(err, &invalid) {
				t.Fatalf("got %v, want an InvalidError", err)
			}
		})
	}
}

type failWriter struct{ after int }

func (f *failWriter) Write(p []byte) (int, error) {
	if f.after <= 0 {
		return 0, errors.New("disk on fire")
	}
	f.after--
	return len(p), nil
}

func TestWriterKeepsFirstError(t *testing.T) {
	w, err := NewWriter(&failWriter{after: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Add(digest.Sum([]byte("x")), []byte("x"), 1, 0); err == nil {
		t.Fatal("Add succeeded on a failing writer")
	}
	if _, err := w.Add(digest.Sum([]byte("y")), []byte("y"), 1, 0); !errors.Is(err, ErrBroken) {
		t.Fatalf("second Add: %v, want ErrBroken", err)
	}
	if _, err := w.Finish(); !errors.Is(err, ErrBroken) {
		t.Fatalf("Finish: %v, want ErrBroken", err)
	}
}

// TestParseTail: the footer of a pack known only by its end, as a ranged
// read of a remote pack returns it.
func TestParseTail(t *testing.T) {
	p, written := writePack(t, []byte("a"), bytes.Repeat([]byte("b"), 70000), []byte("c"))
	footer := FooterSize(len(written))
	flipped := bytes.Clone(p)
	flipped[len(p)-trailerSize-3] ^= 1 // inside the last entry
	// A trailer asking for 4e9 entries of a pack said to be 1 TiB: a
	// TailError, with nothing allocated for them.
	huge := make([]byte, 1<<10)
	copy(huge[len(huge)-8:], trailerMagic[:])
	binary.LittleEndian.PutUint32(huge[len(huge)-16:], 4_000_000_000)
	// An entry whose offset wraps past 2^63 to land in the blob area.
	wrapped := bytes.Clone(p)
	last := len(p) - trailerSize - entrySize
	binary.LittleEndian.PutUint64(wrapped[last+digest.Size:], 1<<63-10)
	crc := crc32.Checksum(wrapped[len(p)-int(footer):len(p)-trailerSize], castagnoli)
	binary.LittleEndian.PutUint32(wrapped[len(p)-12:], crc)
	tests := []struct {
		name     string
		pack     []byte
		tailLen  int64
		wantNeed int64 // a *TailError asking for this many bytes
		wantErr  bool
	}{
		{"exactly the footer", p, footer, 0, false},
		{"more than the footer", p, footer + 100, 0, false},
		{"the whole pack", p, int64(len(p)), 0, false},
		{"the trailer alone", p, trailerSize, footer, false},
		{"less than the trailer", p, 4, trailerSize, false},
		{"one byte short", p, footer - 1, footer, false},
		{"a flipped bit in an entry", flipped, footer, 0, true},
		{"a trailer claiming 4e9 entries", huge, trailerSize, FooterSize(4_000_000_000), false},
		{"an offset that wraps", wrapped, footer, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			size := int64(len(tt.pack))
			if tt.name == "a trailer claiming 4e9 entries" {
				size = 1 << 40
			}
			got, err := ParseTail(tt.pack[int64(len(tt.pack))-tt.tailLen:], size)
			var te *TailError
			switch {
			case tt.wantNeed != 0:
				if !errors.As(err, &te) || te.Need != tt.wantNeed {
					t.Fatalf("err %v, want a TailError needing %d bytes", err, tt.wantNeed)
				}
			case tt.wantErr:
				var ie *InvalidError
				if !errors.As(err, &ie) {
					t.Fatalf("err %v, want an InvalidError", err)
				}
			case err != nil:
				t.Fatal(err)
			default:
				if len(got) != len(written) {
					t.Fatalf("%d entries, want %d", len(got), len(written))
				}
				for i := range got {
					if got[i] != written[i] {
						t.Fatalf("entry %d = %+v, written %+v", i, got[i], written[i])
					}
				}
			}
		})
	}
}
