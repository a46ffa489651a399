package main

import (
	"bytes"
	"compress/flate"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"testing"
)

func TestPlanSizesAndMix(t *testing.T) {
	tests := []struct {
		name  string
		total int64
		large bool // whether the tree is big enough for large files
	}{
		{"empty", 0, false},
		{"tiny", 5000, false},
		{"small", 8 << 20, false},
		{"with large files", 1 << 30, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newPlan(7, tt.total)
			var sum int64
			seen := map[string]bool{}
			for _, f := range p.files {
				sum += f.size
				if seen[f.path] {
					t.Errorf("path %s planned twice", f.path)
				}
				seen[f.path] = true
			}
			if sum != tt.total || p.bytes != tt.total {
				t.Errorf("planned %d bytes (counted %d), want %d", sum, p.bytes, tt.total)
			}
			if got := p.large > 0; got != tt.large {
				t.Errorf("large files: %d, want some: %v", p.large, tt.large)
			}
			if tt.total >= 8<<20 && (p.dups == 0 || p.small == 0 || p.medium == 0) {
				t.Errorf("mix lacks a class: %s", p.summary())
			}
		})
	}
}

func TestDuplicatesAreInOtherDirectories(t *testing.T) {
	p := newPlan(3, 16<<20)
	dirs := map[uint64]map[string]bool{}
	for _, f := range p.files {
		if dirs[f.id] == nil {
			dirs[f.id] = map[string]bool{}
		}
		dirs[f.id][path.Dir(f.path)] = true
	}
	across := 0
	for _, d := range dirs {
		if len(d) > 1 {
			across++
		}
	}
	if across == 0 {
		t.Fatalf("no content appears in two directories: %s", p.summary())
	}
}

func TestContentCompressibility(t *testing.T) {
	tests := []struct {
		name     string
		text     bool
		minRatio float64 // compressed size / size, lower bound
		maxRatio float64
	}{
		{"random is incompressible", false, 0.99, 1.01},
		{"text compresses", true, 0.1, 0.6},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const size = 1 << 20
			data, err := io.ReadAll(io.LimitReader(newContentReader(content{id: 42, size: size, text: tt.text}), size))
			if err != nil {
				t.Fatal(err)
			}
			var buf bytes.Buffer
			w, _ := flate.NewWriter(&buf, flate.BestSpeed)
			w.Write(data)
			w.Close()
			r := float64(buf.Len()) / size
			if r < tt.minRatio || r > tt.maxRatio {
				t.Errorf("compressed to %.2f of its size, want %.2f–%.2f", r, tt.minRatio, tt.maxRatio)
			}
		})
	}
}

func TestWriteIsDeterministic(t *testing.T) {
	dir := t.TempDir()
	digest := func(seed uint64, name string, workers int) string {
		t.Helper()
		root := filepath.Join(dir, name)
		p := newPlan(seed, 4<<20)
		if err := p.write(context.Background(), root, workers); err != nil {
			t.Fatalf("write seed %d: %v", seed, err)
		}
		return treeDigest(t, root)
	}
	a := digest(1, "a", 1)
	b := digest(1, "b", 4)
	c := digest(2, "c", 2)
	if a != b {
		t.Errorf("seed 1 gave two different trees")
	}
	if a == c {
		t.Errorf("seeds 1 and 2 gave the same tree")
	}
}

func TestWriteRefusesExistingDirectory(t *testing.T) {
	root := t.TempDir()
	if err := newPlan(1, 1000).write(context.Background(), root, 1); err == nil {
		t.Fatal("write into an existing directory succeeded")
	}
}

// treeDigest hashes every entry's path, mode, size, mtime and content.
func treeDigest(t *testing.T, root string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		fmt.Fprintf(h, "%s %v %d %d\n", rel, info.Mode(), info.Size(), info.ModTime().UnixNano())
		if info.Mode().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			h.Write(data)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", root, err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}
