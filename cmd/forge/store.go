package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/daemon"
	"github.com/forge-build/forge/daemon/client"
)

const defaultStore = "/var/cache/forge"

func storeFlag(fs *pflag.FlagSet) {
	def := os.Getenv("FORGE_STORE")
	if def == "" {
		def = defaultStore
	}
	fs.String("store", def, "the store `DIR`; $FORGE_STORE when set")
}

// connect returns a client of the store's daemon, starting the daemon
// when none runs.
func connect(ctx context.Context, fs *pflag.FlagSet) (*client.Client, error) {
	dir, _ := fs.GetString("store")
	if dir == "" {
		return nil, usagef("--store is empty")
	}
	var opts client.SpawnOptions
	if v := os.Getenv("FORGE_DAEMON_IDLE_TIMEOUT"); v != "" {
		opts.Args = append(opts.Args, "--idle-timeout", v)
	}
	return client.Connect(ctx, dir, opts)
}

// withClient connects, runs fn, and closes the client.
func withClient(ctx context.Context, fs *pflag.FlagSet, fn func(*client.Client) error) error {
	c, err := connect(ctx, fs)
	if err != nil {
		return err
	}
	defer c.Close()
	return fn(c)
}

func absArg(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("%s: %w", p, err)
	}
	return abs, nil
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
			name: "store compression",
			summary: "Show or set how new chunks are stored: zstd (compressed where that saves an eighth or more) or none.\n" +
				"Chunks stored already stay as they are; every store reads both. The next import or commit takes the change.",
			usage: "[--store DIR] [none|zstd]",
			example: "  forge store compression --store /var/cache/forge zstd\n" +
				"  forge store compression --store /var/cache/forge   # prints the setting",
			flags: storeFlag,
			run:   runCompression,
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
			name: "store gc",
			summary: "Free what no ref holds; with --max-size, first drop least-recently-used refs until the store fits.\n" +
				"With --remote, collect the remote's bucket instead: what no ref, no stage pushed or taken by a host within --retention and\n" +
				"no host's lease reaches is condemned, and deleted by a later run once condemned for --grace.",
			usage: "[--store DIR] [--max-size SIZE] [--dry-run]\n" +
				"       forge store gc [--store DIR] --remote NAME [--retention DUR] [--grace DUR] [--dry-run]",
			example: "  forge store gc --store /var/cache/forge --max-size 50G --dry-run\n" +
				"  forge store gc --store /var/cache/forge --remote shared --retention 720h",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.String("max-size", "", "drop least-recently-used refs until stored chunks fit in `SIZE` (e.g. 500M, 20G, 1T; powers of 1024)")
				fs.Bool("dry-run", false, "report what would be dropped and freed; change nothing")
				fs.String("remote", "", "collect the bucket of remote `NAME` rather than the store")
				fs.Duration("retention", 30*24*time.Hour, "with --remote: keep stages pushed, or taken by a host (pulled, mounted, pushed again), within `DUR` (refs are kept whatever their age)")
				fs.Duration("grace", time.Hour, "with --remote: delete what has been condemned for `DUR` (longer than any push takes)")
			},
			run: runGC,
		},
		{
			name: "store mount",
			summary: "Mount a stored tree at MOUNTPOINT, read-only or (--rw) copy-on-write.\n" +
				"Read-only: any user may look; modes apply. With --rw a copy-on-write view (of an empty tree when no REF|HASH is given) whose changes\n" +
				"'forge store commit' stores: overlayfs over the tree's read-only mount, its changes under <store>/tmp/ (forge's own\n" +
				"copy-on-write FUSE filesystem where the store's filesystem cannot hold them). The mount stays after this command exits,\n" +
				"until 'forge store umount'. Mounts are nosuid,nodev unless --build-root; MOUNTPOINT must be outside the store.\n" +
				"With --remote, a tree of that remote's bucket (a stage ID, tree hash or ref there), read-only: at once, whatever its size;\n" +
				"its files' chunks are fetched when first read, checked against their hashes and kept in the store.",
			usage: "[--store DIR] [--rw] [--build-root] [--remote NAME] [REF|HASH|STAGE-ID] MOUNTPOINT",
			example: "  mkdir -p /mnt/base && forge store mount --store /var/cache/forge debian-base /mnt/base\n" +
				"  forge store mount --store /var/cache/forge --rw debian-base /mnt/stage\n" +
				"  forge store mount --store /var/cache/forge --remote shared 1a5b90983a46d0f36aef9799d8d46df9b5ed0fe3f0840d411a3289975cf1a75a /mnt/remote",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.Bool("rw", false, "mount copy-on-write: changes stay under <store>/tmp/ until committed")
				fs.Bool("build-root", false, "honour set-id bits and device nodes (suid,dev), as a build root needs; "+
					"anyone who can reach MOUNTPOINT can then run the tree's set-id programs and open its devices: "+
					"mount where only root can")
				fs.String("remote", "", "mount a tree of remote `NAME`'s bucket, read lazily")
			},
			run: runMount,
		},
		{
			name: "store commit",
			summary: "Store what a writable mount holds now; the last line of stdout is the new tree hash.\n" +
				"The mount stays writable, and the next commit stores only what changed since this one.\n" +
				"Commit when nothing writes to the mount: a file written meanwhile is stored as the commit reads it.",
			usage:   "[--store DIR] [--ref NAME] MOUNTPOINT",
			example: "  forge store commit --store /var/cache/forge --ref stage-1 /mnt/stage",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.StringArray("ref", nil, "also point ref `NAME` at the tree (repeatable)")
			},
			run: runCommit,
		},
		{
			name:    "store umount",
			summary: "Unmount a forge mount; fails while files are open there unless --lazy.",
			usage:   "[--store DIR] [--lazy] MOUNTPOINT",
			example: "  forge store umount --store /var/cache/forge /mnt/base",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.Bool("lazy", false, "detach now even if busy; the mount goes away when the last file is closed")
			},
			run: runUmount,
		},
		{
			name:    "store mounts",
			summary: "List the store's mounts with their tree, ref and age.",
			usage:   "[--store DIR] [--json]",
			example: "  forge store mounts --store /var/cache/forge",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.Bool("json", false, "print a JSON array of {mountpoint, tree, name, created}")
			},
			run: runMounts,
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

// refFlags returns the values of the repeatable --ref flag, each a valid
// ref name. pflag's GetStringArray loses a lone empty value (it round-trips
// through CSV), and --ref "" must be refused, not read as no ref.
func refFlags(fs *pflag.FlagSet) ([]string, error) {
	f := fs.Lookup("ref")
	if f == nil || !f.Changed {
		return nil, nil
	}
	refs := f.Value.(pflag.SliceValue).GetSlice()
	for _, r := range refs {
		if err := cas.ValidRefName(r); err != nil {
			return nil, usagef("%v", err)
		}
	}
	return refs, nil
}

func runImport(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 1 {
		return usagef("want one PATH, got %d arguments", fs.NArg())
	}
	refs, err := refFlags(fs)
	if err != nil {
		return err
	}
	path, err := absArg(fs.Arg(0))
	if err != nil {
		return err
	}
	return withClient(ctx, fs, func(c *client.Client) error {
		p := newProgress(e, "import")
		res, err := c.Import(ctx, client.ImportRequest{Path: client.Path(path), Refs: refs}, p.update)
		p.done()
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "imported %d entries, %s in %.3fs (%.0f MB/s; %s unchanged since an earlier import): %s new in %d chunks, %d new nodes\n",
			res.Entries, humanBytes(res.Bytes), res.ElapsedSec, float64(res.Bytes)/1e6/max(res.ElapsedSec, 1e-9),
			humanBytes(res.Reused), humanBytes(res.NewBytes), res.NewChunks, res.NewNodes)
		fmt.Fprintln(e.stdout, res.Tree)
		return nil
	})
}

func runExport(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 2 {
		return usagef("want REF|HASH and PATH, got %d arguments", fs.NArg())
	}
	path, err := absArg(fs.Arg(1))
	if err != nil {
		return err
	}
	return withClient(ctx, fs, func(c *client.Client) error {
		p := newProgress(e, "export")
		res, err := c.Export(ctx, client.ExportRequest{Tree: fs.Arg(0), Path: client.Path(path)}, p.update)
		p.done()
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "exported %d entries, %s in %.3fs\n", res.Entries, humanBytes(res.Bytes), res.ElapsedSec)
		return nil
	})
}

func runLs(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 0 {
		return usagef("ls takes no arguments")
	}
	asJSON, _ := fs.GetBool("json")
	return withClient(ctx, fs, func(c *client.Client) error {
		refs, err := c.Refs(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			if refs == nil {
				refs = []client.RefInfo{}
			}
			return writeJSON(e, refs)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "REF\tTREE\tLOGICAL\tUNIQUE\tLAST USED")
		unreadable := 0
		for _, r := range refs {
			logical, unique := humanBytes(r.LogicalBytes), humanBytes(r.UniqueBytes)
			if r.Unreadable != "" {
				logical, unique = "?", "?"
				unreadable++
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Name, r.Tree[:12], logical,
				unique, r.LastUsed.Local().Format("2006-01-02 15:04:05"))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
		if unreadable > 0 {
			fmt.Fprintf(e.stderr, "%d refs' trees cannot be read (sizes \"?\"): forge store fsck says why\n", unreadable)
		}
		return nil
	})
}

func runRm(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() == 0 {
		return usagef("name at least one REF")
	}
	err := withClient(ctx, fs, func(c *client.Client) error {
		return c.Remove(ctx, fs.Args()...)
	})
	if errors.Is(err, cas.ErrInvalidArgument) {
		// A name that cannot be a ref is a usage error (exit 2), as
		// for import --ref and commit --ref.
		return usagef("%v", err)
	}
	return err
}

func runDu(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 0 {
		return usagef("du takes no arguments")
	}
	asJSON, _ := fs.GetBool("json")
	return withClient(ctx, fs, func(c *client.Client) error {
		u, err := c.Usage(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(e, u)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintf(tw, "logical\t%s\t(%d refs)\n", humanBytes(u.LogicalBytes), u.Refs)
		fmt.Fprintf(tw, "stored\t%s\t(%d chunks, %d nodes)\n", humanBytes(u.StoredBytes), u.Chunks, u.Nodes)
		fmt.Fprintf(tw, "on disk\t%s\t(%d packs)\n", humanBytes(u.PackBytes), u.Packs)
		fmt.Fprintf(tw, "dedup ratio\t%.2f\n", u.DedupRatio)
		return tw.Flush()
	})
}

func runCompression(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() > 1 {
		return usagef("want at most one setting (none or zstd), got %d arguments", fs.NArg())
	}
	dir, err := storeDir(fs)
	if err != nil {
		return err
	}
	if fs.NArg() == 0 {
		c, err := cas.ReadCompression(dir)
		if err != nil {
			return err
		}
		_, err = fmt.Fprintln(e.stdout, c)
		return err
	}
	c, err := cas.ParseCompression(fs.Arg(0))
	if err != nil {
		return usagef("%v", err)
	}
	// Before a store's first use too: its directory is made as Open
	// makes it.
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return cas.SetCompression(dir, c)
}

func runDiff(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 2 {
		return usagef("want two trees A and B, got %d arguments", fs.NArg())
	}
	return withClient(ctx, fs, func(c *client.Client) error {
		return c.Diff(ctx, client.DiffRequest{A: fs.Arg(0), B: fs.Arg(1)}, func(ch client.Change) error {
			_, err := fmt.Fprintf(e.stdout, "%s %s\n", ch.Op, cas.QuotePath(string(ch.Path)))
			return err
		})
	})
}

func runGC(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 0 {
		return usagef("gc takes no arguments")
	}
	if name, _ := fs.GetString("remote"); name != "" {
		if v, _ := fs.GetString("max-size"); v != "" {
			return usagef("--max-size is for the store, not --remote")
		}
		return runRemoteGC(ctx, e, fs)
	}
	var req client.GCRequest
	if v, _ := fs.GetString("max-size"); v != "" {
		size, err := parseSize(v)
		if err != nil {
			return usagef("--max-size: %v", err)
		}
		req.MaxSize = size
	}
	req.DryRun, _ = fs.GetBool("dry-run")
	return withClient(ctx, fs, func(c *client.Client) error {
		res, err := c.GC(ctx, req)
		if err != nil {
			return err
		}
		verb, drop := "freed", "dropped"
		if req.DryRun {
			verb, drop = "would free", "would drop"
		}
		for _, r := range res.DroppedRefs {
			fmt.Fprintf(e.stdout, "%s ref %s\n", drop, r)
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
	return withClient(ctx, fs, func(c *client.Client) error {
		res, err := c.Fsck(ctx, client.FsckRequest{Repair: repair})
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
			if !repair {
				fmt.Fprintln(e.stderr, "forge store fsck --repair rebuilds the index from the packs and the ref log, drops what cannot be read and the refs that need it")
			}
			return &exitError{code: 1}
		}
		return nil
	})
}

func runMount(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	rw, _ := fs.GetBool("rw")
	var req client.MountRequest
	switch {
	case fs.NArg() == 2:
		req.Tree = fs.Arg(0)
	case fs.NArg() == 1 && rw:
		// An empty tree.
	default:
		return usagef("want REF|HASH and MOUNTPOINT (REF|HASH is optional with --rw), got %d arguments", fs.NArg())
	}
	mp, err := absArg(fs.Arg(fs.NArg() - 1))
	if err != nil {
		return err
	}
	// The daemon refuses it too; here it is a usage error (exit 2).
	store, _ := fs.GetString("store")
	if err := daemon.CheckMountpoint(store, mp); errors.Is(err, cas.ErrInvalidArgument) {
		return usagef("%v", err)
	}
	req.Mountpoint, req.Writable = client.Path(mp), rw
	req.BuildRoot, _ = fs.GetBool("build-root")
	if name, _ := fs.GetString("remote"); name != "" {
		if rw || req.Tree == "" {
			return usagef("--remote mounts one tree, read-only: want REF|HASH|STAGE-ID and MOUNTPOINT, without --rw")
		}
		spec, err := remoteSpec(ctx, fs)
		if err != nil {
			return err
		}
		req.Remote = &spec
	}
	return withClient(ctx, fs, func(c *client.Client) error {
		info, err := c.Mount(ctx, req)
		if err != nil {
			return err
		}
		what, how := "tree "+info.Tree, "read-only"
		if info.Tree == "" {
			what = "an empty tree"
		}
		if rw {
			how = "copy-on-write (" + info.Kind + ")"
		}
		fmt.Fprintf(e.stderr, "mounted %s %s at %s\n", what, how, cas.QuotePath(string(info.Mountpoint)))
		return nil
	})
}

func runCommit(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 1 {
		return usagef("want one MOUNTPOINT, got %d arguments", fs.NArg())
	}
	refs, err := refFlags(fs)
	if err != nil {
		return err
	}
	mp, err := absArg(fs.Arg(0))
	if err != nil {
		return err
	}
	return withClient(ctx, fs, func(c *client.Client) error {
		res, err := c.Commit(ctx, client.CommitRequest{Mountpoint: client.Path(mp), Refs: refs})
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "committed %s in %.3fs\n", cas.QuotePath(mp), res.ElapsedSec)
		fmt.Fprintln(e.stdout, res.Tree)
		return nil
	})
}

func runUmount(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 1 {
		return usagef("want one MOUNTPOINT, got %d arguments", fs.NArg())
	}
	mp, err := absArg(fs.Arg(0))
	if err != nil {
		return err
	}
	lazy, _ := fs.GetBool("lazy")
	return withClient(ctx, fs, func(c *client.Client) error {
		_, err := c.Unmount(ctx, client.UnmountRequest{Mountpoint: client.Path(mp), Lazy: lazy})
		return err
	})
}

func runMounts(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 0 {
		return usagef("mounts takes no arguments")
	}
	asJSON, _ := fs.GetBool("json")
	return withClient(ctx, fs, func(c *client.Client) error {
		mounts, err := c.Mounts(ctx)
		if err != nil {
			return err
		}
		if asJSON {
			return writeJSON(e, mounts)
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "MOUNTPOINT\tTREE\tREF\tMODE\tAGE")
		for _, m := range mounts {
			tree, mode := "(empty)", "ro"
			if m.Tree != "" {
				tree = m.Tree[:12]
			}
			if m.Writable {
				mode = "rw:" + m.Kind
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", cas.QuotePath(string(m.Mountpoint)), tree, m.Name, mode, time.Since(m.Created).Round(time.Second))
		}
		return tw.Flush()
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

func (p *progress) update(pr client.Progress) {
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
