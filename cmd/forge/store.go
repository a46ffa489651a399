package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/forge-build/forge/cas"
)

const defaultStore = "/var/cache/forge"

func storeFlag(fs *pflag.FlagSet) {
	def := os.Getenv("FORGE_STORE")
	if def == "" {
		def = defaultStore
	}
	fs.String("store", def, "the store `DIR`; $FORGE_STORE when set")
}

func openStore(fs *pflag.FlagSet) (*cas.Store, error) {
	dir, _ := fs.GetString("store")
	if dir == "" {
		return nil, usagef("--store is empty")
	}
	return cas.Open(dir, cas.Options{})
}

// withStore opens the store, runs fn, and closes the store, keeping the
// first error.
func withStore(fs *pflag.FlagSet, fn func(*cas.Store) error) (err error) {
	s, err := openStore(fs)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := s.Close(); err == nil {
			err = cerr
		}
	}()
	return fn(s)
}

func storeCommands() []*command {
	return []*command{
		{
			name:    "store import",
			summary: "Store the directory tree at PATH; print its tree hash (last line of stdout).",
			usage:   "[--store DIR] [--ref NAME] PATH",
			example: "  forge store import --store /var/cache/forge --ref debian-base ./rootfs\n" +
				"  # → 3f1c…e9 (64 hex digits): export, diff or mount it by that hash or by debian-base",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.StringArray("ref", nil, "also point ref `NAME` at the tree (repeatable)")
			},
			run: runImport,
		},
		{
			name:    "store export",
			summary: "Recreate a stored tree at PATH, which must not exist or be an empty directory.",
			usage:   "[--store DIR] REF|HASH PATH",
			example: "  forge store export --store /var/cache/forge debian-base /tmp/rootfs",
			flags:   storeFlag,
			run:     runExport,
		},
		{
			name:    "store ls",
			summary: "List refs with their tree hash, logical size, and the bytes only that ref holds.",
			usage:   "[--store DIR] [--json]",
			example: "  forge store ls --store /var/cache/forge --json",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.Bool("json", false, "print a JSON array of {name, tree, logical_bytes, unique_bytes, last_used}")
			},
			run: runLs,
		},
		{
			name:    "store rm",
			summary: "Drop refs (their data is freed by the next gc). Drops none unless all exist.",
			usage:   "[--store DIR] REF...",
			example: "  forge store rm --store /var/cache/forge debian-base old-image",
			flags:   storeFlag,
			run:     runRm,
		},
		{
			name:    "store du",
			summary: "Show logical bytes, stored bytes, chunk count and dedup ratio of the store.",
			usage:   "[--store DIR] [--json]",
			example: "  forge store du --store /var/cache/forge",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.Bool("json", false, "print a JSON object of {logical_bytes, stored_bytes, pack_bytes, chunks, nodes, packs, refs, dedup_ratio}")
			},
			run: runDu,
		},
		{
			name: "store diff",
			summary: "List paths that differ between trees A and B: 'A path' added, 'D path' deleted, 'M path' modified.\n" +
				"Paths with control characters, quotes, backslashes or invalid UTF-8 are C-quoted in double quotes.",
			usage:   "[--store DIR] A B",
			example: "  forge store diff --store /var/cache/forge debian-base debian-ssh",
			flags:   storeFlag,
			run:     runDiff,
		},
		{
			name:    "store gc",
			summary: "Free what no ref holds; with --max-size, first drop least-recently-used refs until the store fits.",
			usage:   "[--store DIR] [--max-size SIZE] [--dry-run]",
			example: "  forge store gc --store /var/cache/forge --max-size 50G --dry-run",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.String("max-size", "", "drop least-recently-used refs until stored chunks fit in `SIZE` (e.g. 500M, 20G, 1T; powers of 1024)")
				fs.Bool("dry-run", false, "report what would be dropped and freed; change nothing")
			},
			run: runGC,
		},
		{
			name:    "store fsck",
			summary: "Re-hash every chunk and node and check every ref; exit 0 when clean, 1 listing each problem.",
			usage:   "[--store DIR] [--repair]",
			example: "  forge store fsck --store /var/cache/forge --repair",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.Bool("repair", false, "drop refs whose data cannot be read, and the index entries of corrupt data")
			},
			run: runFsck,
		},
	}
}

func runImport(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 1 {
		return usagef("want one PATH, got %d arguments", fs.NArg())
	}
	refs, _ := fs.GetStringArray("ref")
	for _, r := range refs {
		if err := cas.ValidRefName(r); err != nil {
			return usagef("%v", err)
		}
	}
	return withStore(fs, func(s *cas.Store) error {
		p := newProgress(e, "import")
		res, err := s.Import(ctx, fs.Arg(0), cas.ImportOptions{Refs: refs, Progress: p.update})
		p.done()
		if err != nil {
			return err
		}
		st := res.Stats
		fmt.Fprintf(e.stderr, "imported %d entries, %s in %s (%.0f MB/s; %s unchanged since an earlier import): %s new in %d chunks, %d new nodes\n",
			res.Entries, humanBytes(res.Bytes), res.Elapsed.Round(time.Millisecond),
			float64(res.Bytes)/1e6/max(res.Elapsed.Seconds(), 1e-9), humanBytes(res.ReusedBytes),
			humanBytes(st.NewBytes), st.NewChunks, st.NewNodes)
		fmt.Fprintln(e.stdout, res.Tree)
		return nil
	})
}

func runExport(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 2 {
		return usagef("want REF|HASH and PATH, got %d arguments", fs.NArg())
	}
	return withStore(fs, func(s *cas.Store) error {
		tree, err := s.Resolve(fs.Arg(0))
		if err != nil {
			return err
		}
		p := newProgress(e, "export")
		res, err := s.Export(ctx, tree, fs.Arg(1), cas.ExportOptions{Progress: p.update})
		p.done()
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "exported %d entries, %s in %s\n", res.Entries, humanBytes(res.Bytes), res.Elapsed.Round(time.Millisecond))
		return nil
	})
}

type refJSON struct {
	Name         string    `json:"name"`
	Tree         string    `json:"tree"`
	LogicalBytes int64     `json:"logical_bytes"`
	UniqueBytes  int64     `json:"unique_bytes"`
	LastUsed     time.Time `json:"last_used"`
}

func runLs(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 0 {
		return usagef("ls takes no arguments")
	}
	asJSON, _ := fs.GetBool("json")
	return withStore(fs, func(s *cas.Store) error {
		refs, err := s.RefUsage(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			out := make([]refJSON, len(refs))
			for i, r := range refs {
				out[i] = refJSON{r.Name, r.Tree.String(), r.LogicalBytes, r.UniqueBytes, r.LastUsed.UTC()}
			}
			return writeJSON(e, out)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REF\tTREE\tLOGICAL\tUNIQUE\tLAST USED")
		for _, r := range refs {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Tree.Short(), humanBytes(r.LogicalBytes),
				humanBytes(r.UniqueBytes), r.LastUsed.Local().Format("2006-01-02 15:04:05"))
		}
		return tw.Flush()
	})
}

func runRm(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() == 0 {
		return usagef("name at least one REF")
	}
	return withStore(fs, func(s *cas.Store) error {
		return s.DeleteRefs(fs.Args()...)
	})
}

type usageJSON struct {
	LogicalBytes int64   `json:"logical_bytes"`
	StoredBytes  int64   `json:"stored_bytes"`
	PackBytes    int64   `json:"pack_bytes"`
	Chunks       int64   `json:"chunks"`
	Nodes        int64   `json:"nodes"`
	Packs        int64   `json:"packs"`
	Refs         int64   `json:"refs"`
	DedupRatio   float64 `json:"dedup_ratio"`
}

func runDu(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 0 {
		return usagef("du takes no arguments")
	}
	asJSON, _ := fs.GetBool("json")
	return withStore(fs, func(s *cas.Store) error {
		u, err := s.Usage(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(e, usageJSON{u.LogicalBytes, u.StoredBytes, u.PackBytes, u.Chunks, u.Nodes, u.Packs, u.Refs, u.DedupRatio})
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "logical\t%s\t(%d refs)\n", humanBytes(u.LogicalBytes), u.Refs)
		fmt.Fprintf(tw, "stored\t%s\t(%d chunks, %d nodes)\n", humanBytes(u.StoredBytes), u.Chunks, u.Nodes)
		fmt.Fprintf(tw, "on disk\t%s\t(%d packs)\n", humanBytes(u.PackBytes), u.Packs)
		fmt.Fprintf(tw, "dedup ratio\t%.2f\n", u.DedupRatio)
		return tw.Flush()
	})
}

func runDiff(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 2 {
		return usagef("want two trees A and B, got %d arguments", fs.NArg())
	}
	return withStore(fs, func(s *cas.Store) error {
		a, err := s.Resolve(fs.Arg(0))
		if err != nil {
			return err
		}
		b, err := s.Resolve(fs.Arg(1))
		if err != nil {
			return err
		}
		return s.Diff(ctx, a, b, func(c cas.Change) error {
			_, err := fmt.Fprintf(e.stdout, "%c %s\n", c.Op, cas.QuotePath(c.Path))
			return err
		})
	})
}

func runGC(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 0 {
		return usagef("gc takes no arguments")
	}
	var opts cas.GCOptions
	if v, _ := fs.GetString("max-size"); v != "" {
		size, err := parseSize(v)
		if err != nil {
			return usagef("--max-size: %v", err)
		}
		opts.MaxSize = size
	}
	opts.DryRun, _ = fs.GetBool("dry-run")
	return withStore(fs, func(s *cas.Store) error {
		res, err := s.GC(ctx, opts)
		if err != nil {
			return err
		}
		verb := "freed"
		if opts.DryRun {
			verb = "would free"
			for _, r := range res.DroppedRefs {
				fmt.Fprintf(e.stdout, "would drop ref %s\n", r)
			}
		} else {
			for _, r := range res.DroppedRefs {
				fmt.Fprintf(e.stdout, "dropped ref %s\n", r)
			}
		}
		fmt.Fprintf(e.stdout, "%s %s: %d chunks (%s), %d nodes, %d packs deleted, %d rewritten, %d left by killed writers\n",
			verb, humanBytes(res.FreedBytes), res.Chunks, humanBytes(res.ChunkBytes), res.Nodes,
			res.PacksDeleted, res.PacksRewritten, res.OrphanPacks)
		return nil
	})
}

func runFsck(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 0 {
		return usagef("fsck takes no arguments")
	}
	repair, _ := fs.GetBool("repair")
	return withStore(fs, func(s *cas.Store) error {
		res, err := s.Fsck(ctx, cas.FsckOptions{Repair: repair})
		if err != nil {
			return err
		}
		for _, p := range res.Problems {
			fmt.Fprintln(e.stdout, p)
		}
		for _, r := range res.Repaired {
			fmt.Fprintln(e.stdout, "repaired: "+r)
		}
		fmt.Fprintf(e.stderr, "checked %d chunks, %d nodes, %d packs, %d refs: %d problems; garbage for gc: %d packs, %d nodes\n",
			res.Chunks, res.Nodes, res.Packs, res.Refs, len(res.Problems), res.GarbagePacks, res.GarbageNodes)
		if len(res.Problems) > 0 {
			return &exitError{code: 1}
		}
		return nil
	})
}

func writeJSON(e *env, v any) error {
	enc := json.NewEncoder(e.stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// progress shows a one-line counter on a terminal's stderr.
type progress struct {
	e    *env
	verb string
	any  bool
}

func newProgress(e *env, verb string) *progress { return &progress{e: e, verb: verb} }

func (p *progress) update(pr cas.Progress) {
	if !p.e.stderrIsTTY {
		return
	}
	p.any = true
	fmt.Fprintf(p.e.stderr, "\r\033[K%s: %d entries, %s", p.verb, pr.Entries, humanBytes(pr.Bytes))
	if pr.NewBytes > 0 {
		fmt.Fprintf(p.e.stderr, " (%s new)", humanBytes(pr.NewBytes))
	}
}

func (p *progress) done() {
	if p.any {
		fmt.Fprint(p.e.stderr, "\r\033[K")
	}
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// parseSize reads sizes such as 1048576, 500M, 20G, 1.5T or 64MiB (all
// powers of 1024).
func parseSize(s string) (int64, error) {
	t := strings.TrimSpace(strings.ToUpper(s))
	t = strings.TrimSuffix(strings.TrimSuffix(t, "B"), "I")
	mult := int64(1)
	if t != "" {
		if i := strings.IndexByte("KMGTPE", t[len(t)-1]); i >= 0 {
			mult = int64(1) << (10 * (i + 1))
			t = t[:len(t)-1]
		}
	}
	var v float64
	if _, err := fmt.Sscanf(t, "%g", &v); err != nil || v < 0 || t == "" {
		return 0, errors.New("want a size such as 500M, 20G or 1T, got " + fmt.Sprintf("%q", s))
	}
	return int64(v * float64(mult)), nil
}
