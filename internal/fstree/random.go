package fstree

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// RandomTree fills dir (created if missing) with about totalBytes of files
// of mixed sizes in nested directories: many small files, some medium, a
// few large; most random, some compressible text, a few duplicates of
// earlier files and some symlinks, all with fixed mtimes. The same seed
// gives the same tree;
// different seeds share no file content, so a store cannot dedup one
// against the other. It returns the bytes of file content written.
func RandomTree(dir string, seed uint64, totalBytes int64) (int64, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return 0, fmt.Errorf("random tree %s: %w", dir, err)
	}
	rng := rand.New(rand.NewPCG(seed, 0x666f726765))
	dirs := []string{"."}
	var files []string
	var written int64
	for i := 0; written < totalBytes; i++ {
		// Now and then open a new directory below an existing one, at most
		// four levels deep.
		if i%16 == 0 {
			parent := dirs[rng.IntN(len(dirs))]
			if depth(parent) < 4 {
				d := filepath.Join(parent, fmt.Sprintf("d%04d", i))
				if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
					return written, fmt.Errorf("random tree %s: %w", dir, err)
				}
				dirs = append(dirs, d)
			}
		}
		parent := dirs[rng.IntN(len(dirs))]
		name := filepath.Join(parent, fmt.Sprintf("f%05d", i))
		var content []byte
		switch k := rng.IntN(100); {
		case k < 3 && len(files) > 0:
			// A duplicate of an earlier file.
			src := files[rng.IntN(len(files))]
			b, err := os.ReadFile(filepath.Join(dir, src))
			if err != nil {
				return written, fmt.Errorf("random tree %s: %w", dir, err)
			}
			content = b
		case k < 8 && len(files) > 0:
			if err := os.Symlink(filepath.Base(files[rng.IntN(len(files))]), filepath.Join(dir, name)); err != nil {
				return written, fmt.Errorf("random tree %s: %w", dir, err)
			}
			continue
		default:
			content = randomContent(rng, seed, i, totalBytes-written)
		}
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			return written, fmt.Errorf("random tree %s: %w", dir, err)
		}
		files = append(files, name)
		written += int64(len(content))
	}
	// Fixed mtimes make the tree a function of the seed alone.
	rootfd, err := unix.Open(dir, openDirFlags, 0)
	if err != nil {
		return written, fmt.Errorf("random tree %s: %w", dir, err)
	}
	defer unix.Close(rootfd)
	b := &fixtureBuilder{rootfd: rootfd, mtimes: map[string]unix.Timespec{}}
	if b.applyMtimes(); b.err != nil {
		return written, fmt.Errorf("random tree %s: %w", dir, b.err)
	}
	return written, nil
}

// randomContent draws a file: 70% small (< 16 KiB), 25% medium (16 KiB to
// 1 MiB), 5% large (1 to 16 MiB), capped at what is left to write; one
// file in five is text that compresses.
func randomContent(rng *rand.Rand, seed uint64, i int, left int64) []byte {
	var n int64
	switch k := rng.IntN(100); {
	case k < 70:
		n = rng.Int64N(16 << 10)
	case k < 95:
		n = 16<<10 + rng.Int64N(1<<20-16<<10)
	default:
		n = 1<<20 + rng.Int64N(15<<20)
	}
	n = max(min(n, left), 1)
	if rng.IntN(5) == 0 {
		line := fmt.Appendf(nil, "seed %d file %d: the quick brown fox jumps over the lazy dog\n", seed, i)
		return bytes.Repeat(line, int(n)/len(line)+1)[:n]
	}
	return RandomBytes(fmt.Sprintf("random tree %d/%d", seed, i), int(n))
}

func depth(rel string) int {
	if rel == "." {
		return 0
	}
	return strings.Count(rel, "/") + 1
}
