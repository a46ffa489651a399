package main

import (
	"fmt"
	"math/rand/v2"
	"path"
	"sort"
	"time"
)

// Size classes of the mix. A class gets a share of the total size; what a
// class cannot use (a large file does not fit in a small tree) goes to the
// next one, and the last file takes the remainder so that the tree's content
// is exactly the requested size.
const (
	kib = 1 << 10
	mib = 1 << 20

	smallMin, smallMax   = 1 * kib, 16 * kib
	mediumMin, mediumMax = 100 * kib, 2 * mib
	largeMin, largeMax   = 100 * mib, 400 * mib

	largeShare, mediumShare, smallShare = 0.40, 0.40, 0.10 // duplicates: the rest
)

// content says how to produce a file's bytes; two files with equal content
// values have equal bytes.
type content struct {
	id   uint64 // seeds the generator of the bytes
	size int64
	text bool // text-like (compressible) rather than random bytes
}

type file struct {
	path  string // relative to the tree's root
	mode  uint32
	mtime time.Time
	content
}

// plan is the whole tree, decided before anything is written so that the
// tree does not depend on the order in which workers write the files.
type plan struct {
	seed  uint64
	dirs  []string // parents before children
	files []file
	// counts for the summary
	large, medium, small, dups int
	bytes                      int64
}

// epoch is the mtime of the tree's oldest entry; fixed so that the tree's
// metadata is as reproducible as its contents.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

func newPlan(seed uint64, total int64) *plan {
	rng := rand.New(rand.NewPCG(seed, 0x6765_6e74_7265_65)) // "gentree"
	p := &plan{seed: seed}
	p.dirs = makeDirs(rng)

	var nextID uint64
	add := func(c content, dir string) {
		i := len(p.files)
		ext := ".bin"
		if c.text {
			ext = ".txt"
		}
		mode := uint32(0o644)
		if rng.IntN(20) == 0 {
			mode = 0o755
		}
		p.files = append(p.files, file{
			path:    path.Join(dir, fmt.Sprintf("f%06d%s", i, ext)),
			mode:    mode,
			mtime:   epoch.Add(time.Duration(i) * time.Second).Add(time.Duration(rng.IntN(1e9))),
			content: c,
		})
		p.bytes += c.size
	}
	newContent := func(size int64, text bool) content {
		nextID++
		return content{id: nextID, size: size, text: text}
	}
	randomDir := func() string { return p.dirs[rng.IntN(len(p.dirs))] }
	between := func(lo, hi int64) int64 { return lo + rng.Int64N(hi-lo+1) }

	// fill adds files of one class while they fit in the class's budget and
	// returns what the class left unused.
	fill := func(budget, lo, hi int64, text func() bool, count *int) int64 {
		for {
			size := between(lo, hi)
			if size > budget {
				if budget < lo {
					return budget
				}
				size = budget
			}
			add(newContent(size, text()), randomDir())
			*count++
			budget -= size
		}
	}
	left := fill(int64(float64(total)*largeShare), largeMin, largeMax,
		func() bool { return false }, &p.large)
	left = fill(left+int64(float64(total)*mediumShare), mediumMin, mediumMax,
		func() bool { return rng.IntN(2) == 0 }, &p.medium)
	left = fill(left+int64(float64(total)*smallShare), smallMin, smallMax,
		func() bool { return rng.IntN(10) < 7 }, &p.small)

	// Duplicates: copies of small and medium files in another directory.
	dupBudget := total - p.bytes
	var sources []content
	for _, f := range p.files {
		if f.size <= mediumMax {
			sources = append(sources, f.content)
		}
	}
	for len(sources) > 0 {
		c := sources[rng.IntN(len(sources))]
		if c.size > dupBudget {
			break
		}
		add(c, randomDir())
		p.dups++
		dupBudget -= c.size
	}
	// The remainder (less than one file) makes the total exact.
	if rest := total - p.bytes; rest > 0 {
		add(newContent(rest, true), randomDir())
		p.small++
	}
	// Write the largest files first so that the workers finish together.
	sort.SliceStable(p.files, func(i, j int) bool { return p.files[i].size > p.files[j].size })
	return p
}

// makeDirs returns a tree of directories 1 to 3 levels deep, parents first.
func makeDirs(rng *rand.Rand) []string {
	var dirs []string
	for a := range 12 {
		top := fmt.Sprintf("d%02d", a)
		dirs = append(dirs, top)
		for b := range 2 + rng.IntN(10) {
			mid := path.Join(top, fmt.Sprintf("s%02d", b))
			dirs = append(dirs, mid)
			for c := range rng.IntN(4) {
				dirs = append(dirs, path.Join(mid, fmt.Sprintf("t%02d", c)))
			}
		}
	}
	return dirs
}

func (p *plan) summary() string {
	return fmt.Sprintf("seed %d: %d bytes in %d files (%d large, %d medium, %d small, %d duplicates) and %d directories",
		p.seed, p.bytes, len(p.files), p.large, p.medium, p.small, p.dups, len(p.dirs))
}
