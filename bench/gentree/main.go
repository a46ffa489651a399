// Command gentree writes the mixed reference tree of bench/: a tree of a given
// total size whose files, contents, modes and mtimes follow only from a seed,
// so that every run of every machine benchmarks the same bytes.
//
// The mix: a few large incompressible files (100–400 MiB), medium files
// (100 KiB–2 MiB, half random, half text-like), many small files (1–16 KiB,
// mostly text-like), and copies of small and medium files in other
// directories, which a content-addressed store should store once.
//
// Usage: go run ./bench/gentree -out DIR [-size BYTES] [-seed N]
//
// DIR must not exist. bench/run writes into a temporary name and renames it
// when gentree has succeeded, so that an interrupted run leaves no half tree
// under the final name.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"syscall"
)

func main() {
	out := flag.String("out", "", "create the tree in this `directory` (must not exist)")
	size := flag.Int64("size", 2<<30, "total bytes of file content")
	seed := flag.Uint64("seed", 1, "seed of the tree: the same seed gives the same tree")
	workers := flag.Int("workers", runtime.NumCPU(), "files written at once")
	flag.Parse()
	if *out == "" || flag.NArg() != 0 || *size < 0 || *workers < 1 {
		flag.Usage()
		os.Exit(2)
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	plan := newPlan(*seed, *size)
	if err := plan.write(ctx, *out, *workers); err != nil {
		fmt.Fprintf(os.Stderr, "gentree: %v\n", err)
		os.Exit(1)
	}
	fmt.Println(plan.summary())
}
