package chunker_test

import (
	"bytes"
	"crypto/sha256"
	"io"
	"sync"
	"testing"

	"github.com/forge-build/forge/cas/chunker"
)

var benchData = sync.OnceValue(func() []byte { return randomBytes(64<<20, 1) })

func BenchmarkNext(b *testing.B) {
	data := benchData()
	c := chunker.New(nil, chunker.DefaultParams)
	r := bytes.NewReader(nil)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r.Reset(data)
		c.Reset(r)
		drain(b, c, nil)
	}
}

func BenchmarkNextSHA256(b *testing.B) {
	data := benchData()
	c := chunker.New(nil, chunker.DefaultParams)
	r := bytes.NewReader(nil)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		r.Reset(data)
		c.Reset(r)
		drain(b, c, func(chunk []byte) { sha256.Sum256(chunk) })
	}
}

// BenchmarkParallelNextSHA256 runs one Chunker per goroutine (GOMAXPROCS of
// them), each over the whole input, as the store does when importing several
// files at once. Use a time -benchtime (e.g. 3s): with a count like 3x the
// iterations cannot be split evenly between goroutines.
func BenchmarkParallelNextSHA256(b *testing.B) {
	data := benchData()
	b.SetBytes(int64(len(data)))
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		c := chunker.New(nil, chunker.DefaultParams)
		r := bytes.NewReader(nil)
		for pb.Next() {
			r.Reset(data)
			c.Reset(r)
			drain(b, c, func(chunk []byte) { sha256.Sum256(chunk) })
		}
	})
}

func drain(b *testing.B, c *chunker.Chunker, each func([]byte)) {
	for {
		chunk, err := c.Next()
		if err == io.EOF {
			return
		}
		if err != nil {
			b.Fatal(err)
		}
		if each != nil {
			each(chunk)
		}
	}
}
