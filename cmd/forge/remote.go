package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/spf13/pflag"

	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/remote"
	"github.com/forge-build/forge/remote/objstore"
)

func remoteCommands() []*command {
	remoteFlag := func(fs *pflag.FlagSet) {
		storeFlag(fs)
		fs.String("remote", "", "the remote `NAME` ('forge store remote ls'); may be left out when the store has one remote")
	}
	return []*command{
		{
			name: "store remote add",
			summary: "Name a bucket of an S3 object store that hosts share trees through.\n" +
				"Any S3-compatible engine works (AWS S3, Ceph RGW, SeaweedFS, MinIO, Garage…). Only where the bucket is is kept (in <store>/remotes.json); credentials are read when the remote is used, the way\n" +
				"the AWS tools read them: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE and the shared credentials file.",
			usage: "[--store DIR] NAME s3://BUCKET[/PREFIX] [--endpoint URL] [--region R] [--ca-cert FILE]",
			example: "  forge store remote add --store /var/cache/forge shared s3://forge-cache/builds --endpoint https://s3.example.net:8333\n" +
				"  AWS_ACCESS_KEY_ID=… AWS_SECRET_ACCESS_KEY=… forge store push --store /var/cache/forge debian-base",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.String("endpoint", "", "the server's `URL` (http[s]://HOST[:PORT]); leave out for AWS S3 itself")
				fs.String("region", "", "the `REGION` to sign requests for (default us-east-1; most other engines take any)")
				fs.String("ca-cert", "", "a PEM `FILE` of certificate authorities to trust for the endpoint, besides the system's")
			},
			run: runRemoteAdd,
		},
		{
			name:    "store remote ls",
			summary: "List the store's remotes.",
			usage:   "[--store DIR] [--json]",
			example: "  forge store remote ls --store /var/cache/forge",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.Bool("json", false, "print a JSON array of {name, url, endpoint, region, ca_cert}")
			},
			run: runRemoteLs,
		},
		{
			name:    "store remote rm",
			summary: "Forget a remote (nothing in its bucket is touched).",
			usage:   "[--store DIR] NAME",
			example: "  forge store remote rm --store /var/cache/forge shared",
			flags:   storeFlag,
			run:     runRemoteRm,
		},
		{
			name: "store push",
			summary: "Copy stored trees into a remote's bucket, sending only the chunks it lacks.\n" +
				"A ref is pushed under its name (a build's stage ID as that stage, any other name as a ref of the bucket);\n" +
				"a bare tree hash as that tree. The tree hash of each is printed on stdout.",
			usage:   "[--store DIR] [--remote NAME] REF|HASH...",
			example: "  forge store push --store /var/cache/forge --remote shared debian-base",
			flags:   remoteFlag,
			run:     runPush,
		},
		{
			name: "store pull",
			summary: "Copy trees from a remote's bucket into the store, each chunk checked against its hash.\n" +
				"NAME is looked up as a stage ID, a tree hash, then a ref of the bucket, and the tree is stored under that name.",
			usage:   "[--store DIR] [--remote NAME] NAME...",
			example: "  forge store pull --store /var/cache/forge --remote shared debian-base",
			flags:   remoteFlag,
			run:     runPull,
		},
	}
}

func storeDir(fs *pflag.FlagSet) (string, error) {
	dir, _ := fs.GetString("store")
	if dir == "" {
		return "", usagef("--store is empty")
	}
	return filepath.Abs(dir)
}

func runRemoteAdd(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 2 {
		return usagef("want NAME and s3://BUCKET[/PREFIX], got %d arguments", fs.NArg())
	}
	dir, err := storeDir(fs)
	if err != nil {
		return err
	}
	c := remote.Config{Name: fs.Arg(0), URL: fs.Arg(1)}
	c.Endpoint, _ = fs.GetString("endpoint")
	c.Region, _ = fs.GetString("region")
	c.CACert, _ = fs.GetString("ca-cert")
	if c.CACert != "" {
		if c.CACert, err = filepath.Abs(c.CACert); err != nil {
			return err
		}
	}
	if err := c.Validate(); err != nil {
		return usagef("%v", err)
	}
	// The store is opened (made, on a new machine) by its daemon first:
	// a remote is added to a store, not to a directory.
	if err := withClient(ctx, fs, func(cl *client.Client) error { _, err := cl.Ping(ctx); return err }); err != nil {
		return err
	}
	cs, err := remote.LoadConfigs(dir)
	if err != nil {
		return err
	}
	if _, err := cs.Find(c.Name); err == nil {
		return fmt.Errorf("a remote named %q exists: 'forge store remote rm %s' first", c.Name, c.Name)
	}
	cs.Remotes = append(cs.Remotes, c)
	return cs.Save(dir)
}

func runRemoteLs(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 0 {
		return usagef("remote ls takes no arguments")
	}
	dir, err := storeDir(fs)
	if err != nil {
		return err
	}
	cs, err := remote.LoadConfigs(dir)
	if err != nil {
		return err
	}
	if asJSON, _ := fs.GetBool("json"); asJSON {
		if cs.Remotes == nil {
			cs.Remotes = []remote.Config{}
		}
		return writeJSON(e, cs.Remotes)
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tURL\tENDPOINT\tREGION")
	for _, r := range cs.Remotes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", r.Name, r.URL, r.Endpoint, r.Region)
	}
	return tw.Flush()
}

func runRemoteRm(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 1 {
		return usagef("want one NAME, got %d arguments", fs.NArg())
	}
	dir, err := storeDir(fs)
	if err != nil {
		return err
	}
	cs, err := remote.LoadConfigs(dir)
	if err != nil {
		return err
	}
	if _, err := cs.Find(fs.Arg(0)); err != nil {
		return err
	}
	kept := cs.Remotes[:0]
	for _, r := range cs.Remotes {
		if r.Name != fs.Arg(0) {
			kept = append(kept, r)
		}
	}
	cs.Remotes = kept
	return cs.Save(dir)
}

// remoteSpec is the remote --remote names, with the credentials this
// process finds for it, for the daemon.
func remoteSpec(ctx context.Context, fs *pflag.FlagSet) (client.RemoteSpec, error) {
	dir, err := storeDir(fs)
	if err != nil {
		return client.RemoteSpec{}, err
	}
	cs, err := remote.LoadConfigs(dir)
	if err != nil {
		return client.RemoteSpec{}, err
	}
	name, _ := fs.GetString("remote")
	c, err := cs.Find(name)
	if err != nil {
		return client.RemoteSpec{}, err
	}
	creds, err := objstore.Resolve(ctx, c.Region)
	if err != nil {
		return client.RemoteSpec{}, fmt.Errorf("remote %s: %w", c.Name, err)
	}
	loc := c.Location()
	return client.RemoteSpec{
		Name: c.Name, Endpoint: loc.Endpoint, Region: loc.Region, Bucket: loc.Bucket, Prefix: loc.Prefix, CACert: loc.CACert,
		AccessKeyID: creds.AccessKeyID, SecretAccessKey: creds.SecretAccessKey, SessionToken: creds.SessionToken,
	}, nil
}

func runPush(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() == 0 {
		return usagef("want at least one REF or HASH")
	}
	spec, err := remoteSpec(ctx, fs)
	if err != nil {
		return err
	}
	return withClient(ctx, fs, func(c *client.Client) error {
		refs, err := c.RefNames(ctx)
		if err != nil {
			return err
		}
		isRef := map[string]bool{}
		for _, r := range refs {
			isRef[r.Name] = true
		}
		for _, name := range fs.Args() {
			req := client.PushRequest{Remote: spec, Tree: name}
			switch {
			case isRef[name] && isStageID(name):
				req.Stages = []string{name}
			case isRef[name]:
				req.Refs = []string{name}
			}
			p := newTransferProgress(e, "push "+name)
			res, err := c.Push(ctx, req, p.update)
			p.done()
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "pushed %s (tree %s) to %s: %d of %d chunks were new, %s in %d packs; %d requests, %s sent in %.2fs (%s/s)\n",
				name, res.Tree[:12], spec.Name, res.NewChunks, res.Chunks, humanBytes(res.PackBytes), res.Packs,
				res.Transfer.Requests, humanBytes(res.Transfer.BytesUp), res.ElapsedSec, humanBytes(int64(float64(res.Transfer.BytesUp)/max(res.ElapsedSec, 1e-3))))
			for id, t := range res.Adopted {
				fmt.Fprintf(e.stderr, "stage %s was pushed by another host as tree %s first; the bucket keeps that one\n", id[:12], t[:12])
			}
			fmt.Fprintln(e.stdout, res.Tree)
		}
		return nil
	})
}

func runPull(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() == 0 {
		return usagef("want at least one REF, HASH or STAGE-ID")
	}
	spec, err := remoteSpec(ctx, fs)
	if err != nil {
		return err
	}
	return withClient(ctx, fs, func(c *client.Client) error {
		for _, name := range fs.Args() {
			p := newTransferProgress(e, "pull "+name)
			res, err := c.Pull(ctx, client.PullRequest{Remote: spec, Name: name}, p.update)
			p.done()
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "pulled %s %s (tree %s) from %s: %d of %d chunks fetched, %s in %d ranged reads; %d requests, %s received in %.2fs (%s/s)\n",
				res.Kind, name, res.Tree[:12], spec.Name, res.Fetched, res.Chunks, humanBytes(res.FetchedSize), res.Ranges,
				res.Transfer.Requests, humanBytes(res.Transfer.BytesDown), res.ElapsedSec, humanBytes(int64(float64(res.Transfer.BytesDown)/max(res.ElapsedSec, 1e-3))))
			fmt.Fprintln(e.stdout, res.Tree)
		}
		return nil
	})
}

func isStageID(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}

// transferProgress shows a push's or pull's phase, bytes and rate on a
// terminal's stderr.
type transferProgress struct {
	e     *env
	verb  string
	start time.Time
	any   bool
}

func newTransferProgress(e *env, verb string) *transferProgress {
	return &transferProgress{e: e, verb: verb, start: time.Now()}
}

func (p *transferProgress) update(pr client.Progress) {
	if !p.e.stderrIsTTY {
		return
	}
	p.any = true
	rate := float64(pr.Bytes) / max(time.Since(p.start).Seconds(), 1e-3)
	fmt.Fprintf(p.e.stderr, "\r\033[K%s: %s", p.verb, pr.Phase)
	if pr.Bytes > 0 || pr.Total > 0 {
		fmt.Fprintf(p.e.stderr, " %s", humanBytes(pr.Bytes))
		if pr.Total > 0 {
			fmt.Fprintf(p.e.stderr, " of %s", humanBytes(pr.Total))
		}
		fmt.Fprintf(p.e.stderr, ", %d objects, %s/s", pr.Entries, humanBytes(int64(rate)))
	}
}

func (p *transferProgress) done() {
	if p.any {
		fmt.Fprint(p.e.stderr, "\r\033[K")
	}
}

// runRemoteGC collects a remote's bucket. It runs here, not in the
// store's daemon: it needs nothing of the store, and the credentials are
// this process's.
func runRemoteGC(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	spec, err := remoteSpec(ctx, fs)
	if err != nil {
		return err
	}
	b, err := objstore.Open(ctx, objstore.Location{Endpoint: spec.Endpoint, Region: spec.Region, Bucket: spec.Bucket, Prefix: spec.Prefix, CACert: spec.CACert},
		objstore.Credentials{AccessKeyID: spec.AccessKeyID, SecretAccessKey: spec.SecretAccessKey, SessionToken: spec.SessionToken})
	if err != nil {
		return err
	}
	host, _ := os.Hostname()
	var opts remote.GCOptions
	opts.Retention, _ = fs.GetDuration("retention")
	opts.Grace, _ = fs.GetDuration("grace")
	opts.DryRun, _ = fs.GetBool("dry-run")
	r := &remote.Remote{Bucket: b, Host: host}
	res, err := r.GC(ctx, opts)
	if err != nil {
		return err
	}
	verb := "deleted"
	if opts.DryRun {
		verb = "would delete"
	}
	for _, k := range res.Deleted {
		fmt.Fprintf(e.stdout, "%s %q\n", verb, k)
	}
	for _, k := range res.Missing {
		fmt.Fprintf(e.stderr, "forge store gc: a root names %q, which the bucket lacks\n", k)
	}
	fmt.Fprintf(e.stdout, "%s %d objects (%s) of %d; %d roots reach %d trees and %d packs; %d objects condemned (deleted by a run at least %s later)\n",
		verb, len(res.Deleted), humanBytes(res.DeletedBytes), res.Objects, res.Roots, res.LiveTrees, res.LivePacks, res.Condemned, opts.Grace)
	return nil
}
