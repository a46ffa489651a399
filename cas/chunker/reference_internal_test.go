package chunker

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// referenceCut is FastCDC with normalized chunking written straight from the
// definition in the package comment, one byte at a time, with the masks
// built bit by bit: the optimised Cut must find exactly the same cut points.
// It assumes atEOF.
func referenceCut(data []byte, p Params) int {
	if len(data) <= p.Min {
		return len(data)
	}
	log2Avg := 0
	for 1<<log2Avg < p.Avg {
		log2Avg++
	}
	// Masks: the given number of one bits counting down from bit 62.
	mask := func(ones int) uint64 {
		var m uint64
		for k := range ones {
			m |= 1 << (62 - k)
		}
		return m
	}
	small, large := mask(log2Avg+2), mask(log2Avg-2)
	var fp uint64
	for i := p.Min; i < len(data) && i < p.Max; i++ {
		fp = fp*2 + referenceGearTable[data[i]]
		m := large
		if i < p.Avg {
			m = small
		}
		if fp&m == 0 {
			return i + 1
		}
	}
	return min(len(data), p.Max)
}

// referenceGearTable is filled from referenceGear, once.
var referenceGearTable = func() (g [256]uint64) {
	for i := range g {
		g[i] = referenceGear(byte(i))
	}
	return g
}()

// referenceGear derives a gear table entry as documented, independently of
// the package's table.
func referenceGear(b byte) uint64 {
	h := sha256.New()
	h.Write([]byte("forge/cas/chunker gear v1"))
	h.Write([]byte{b})
	return binary.BigEndian.Uint64(h.Sum(nil))
}

func TestGearTableMatchesDocumentedDerivation(t *testing.T) {
	for i := range 256 {
		if got, want := gear[i], referenceGear(byte(i)); got != want {
			t.Fatalf("gear[%d] = %#x, want %#x", i, got, want)
		}
		if got, want := gearShifted[i], gear[i]<<1; got != want {
			t.Fatalf("gearShifted[%d] = %#x, want %#x", i, got, want)
		}
	}
}

func TestCutMatchesReference(t *testing.T) {
	// Low-entropy inputs make boundaries fall at every offset parity and
	// in both mask regions; the small params give many cuts per input.
	rng := rand.New(rand.NewPCG(1, 2))
	inputs := map[string]func(n int) []byte{
		"random": func(n int) []byte {
			b := make([]byte, n)
			for i := range b {
				b[i] = byte(rng.Uint32())
			}
			return b
		},
		"four symbols": func(n int) []byte {
			b := make([]byte, n)
			for i := range b {
				b[i] = "ACGT"[rng.IntN(4)]
			}
			return b
		},
	}
	for _, p := range []Params{
		{Min: 64, Avg: 256, Max: 1024},
		{Min: 0, Avg: 64, Max: 65},
		{Min: 1000, Avg: 1024, Max: 5000},
		{Min: 2 << 10, Avg: 8 << 10, Max: 64 << 10},
		DefaultParams,
	} {
		for name, gen := range inputs {
			data := gen(max(3*p.Max, 300*p.Avg) + 17)
			var offsets int
			for off := 0; off < len(data); {
				// Every length up to the tail, odd and even, so the unrolled
				// loop's remainder handling is covered too.
				for _, n := range []int{len(data) - off, min(len(data)-off, p.Min+1), min(len(data)-off, p.Avg+3)} {
					got, want := Cut(data[off:off+n], p, true), referenceCut(data[off:off+n], p)
					if got != want {
						t.Fatalf("%+v %s: Cut(data[%d:%d]) = %d, reference %d", p, name, off, off+n, got, want)
					}
				}
				off += referenceCut(data[off:], p)
				offsets++
			}
			t.Logf("%+v %s: %d chunks compared", p, name, offsets)
		}
	}
}

func TestResetKeepsBuffer(t *testing.T) {
	c := New(nil, DefaultParams)
	buf := &c.buf[0]
	for _, n := range []int{0, 1, 5 << 20} {
		c.Reset(bytes.NewReader(make([]byte, n)))
		for {
			if _, err := c.Next(); err != nil {
				break
			}
		}
		if &c.buf[0] != buf {
			t.Fatalf("after a %d-byte stream the buffer was reallocated", n)
		}
	}
}
