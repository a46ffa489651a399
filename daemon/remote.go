package daemon

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/remote"
	"github.com/forge-build/forge/remote/objstore"
)

// remoteCacheDir is where, under the store, the footers of each bucket's
// packs are kept: a cache (packs never change), one directory per bucket
// and prefix, named by a hash of where they are so that no remote's name
// or URL becomes a path.
const remoteCacheDir = "remote-cache"

// openRemote opens the bucket a request names, with the credentials it
// carries.
func (d *Daemon) openRemote(ctx context.Context, spec client.RemoteSpec) (*remote.Remote, error) {
	// What a client may ask the daemon (root) to reach and read is what
	// 'forge store remote add' accepts.
	url := "s3://" + spec.Bucket
	if spec.Prefix != "" {
		url += "/" + spec.Prefix
	}
	if err := (remote.Config{Name: spec.Name, URL: url, Endpoint: spec.Endpoint, Region: spec.Region, CACert: spec.CACert}).Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", cas.ErrInvalidArgument, err)
	}
	loc := objstore.Location{Endpoint: spec.Endpoint, Region: spec.Region, Bucket: spec.Bucket, Prefix: spec.Prefix, CACert: spec.CACert}
	creds := objstore.Credentials{AccessKeyID: spec.AccessKeyID, SecretAccessKey: spec.SecretAccessKey, SessionToken: spec.SessionToken}
	if creds.AccessKeyID == "" {
		// The daemon does not look for credentials of its own: they
		// are the caller's to give.
		return nil, fmt.Errorf("%w: remote %q: no credentials in the request", cas.ErrInvalidArgument, spec.Name)
	}
	b, err := objstore.Open(ctx, loc, creds)
	if err != nil {
		return nil, err
	}
	id := sha256.Sum256([]byte(loc.Endpoint + "\x00" + loc.Bucket + "\x00" + loc.Prefix))
	host, _ := os.Hostname()
	return &remote.Remote{
		Bucket: b,
		Cache:  filepath.Join(d.store.Dir(), remoteCacheDir, hex.EncodeToString(id[:8]), "footers"),
		Host:   host,
	}, nil
}

func remoteProgress(emit func(client.Event) error) func(remote.Progress) {
	return func(p remote.Progress) {
		emit(client.Event{Progress: &client.Progress{Phase: p.Phase, Entries: p.Objects, Bytes: p.Bytes, Total: p.Total}})
	}
}

func transfer(s objstore.Stats) client.Transfer {
	return client.Transfer{Requests: s.Requests, Gets: s.Gets, Puts: s.Puts, BytesDown: s.BytesDown, BytesUp: s.BytesUp}
}

func (d *Daemon) push(ctx context.Context, body []byte, emit func(client.Event) error) (any, error) {
	req, err := decode[client.PushRequest](body)
	if err != nil {
		return nil, err
	}
	r, err := d.openRemote(ctx, req.Remote)
	if err != nil {
		return nil, err
	}
	h, release, err := d.resolvePinned(req.Tree)
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := r.Push(ctx, d.store, h, remote.PushOptions{Stages: req.Stages, Refs: req.Refs, Progress: remoteProgress(emit)})
	if err != nil {
		return nil, err
	}
	out := client.PushResult{
		Tree: res.Tree.String(), Chunks: res.Chunks, NewChunks: res.NewChunks, NewBytes: res.NewBytes,
		Packs: res.Packs, PackBytes: res.PackBytes, TreeWritten: res.TreeWritten,
		Transfer: transfer(res.Requests), ElapsedSec: res.Elapsed.Seconds(),
	}
	for id, t := range res.Adopted {
		if out.Adopted == nil {
			out.Adopted = map[string]string{}
		}
		out.Adopted[id] = t.String()
	}
	return out, nil
}

func (d *Daemon) pull(ctx context.Context, body []byte, emit func(client.Event) error) (any, error) {
	req, err := decode[client.PullRequest](body)
	if err != nil {
		return nil, err
	}
	r, err := d.openRemote(ctx, req.Remote)
	if err != nil {
		return nil, err
	}
	var found remote.Resolved
	if req.Stage {
		found.Kind = "stage"
		found.Tree, err = r.StageTree(ctx, req.Name)
	} else {
		found, err = r.Resolve(ctx, req.Name)
	}
	if err != nil {
		return nil, err
	}
	refs := req.Refs
	if len(refs) == 0 {
		refs = []string{req.Name}
	}
	res, err := r.Pull(ctx, d.store, found.Tree, remote.PullOptions{Refs: refs, Progress: remoteProgress(emit)})
	if err != nil {
		return nil, err
	}
	if found.Kind == "stage" {
		// The bucket's GC keeps a stage hosts take; a failed mark only
		// lets it go sooner.
		if err := r.MarkUsed(ctx, req.Name); err != nil {
			d.cfg.Logf("pull of stage %s: marking it used: %v", req.Name, err)
		}
	}
	return client.PullResult{
		Tree: res.Tree.String(), Kind: found.Kind, Refs: refs, Nodes: res.Nodes, Chunks: res.Chunks,
		Fetched: res.Fetched, FetchedSize: res.FetchedSize, Ranges: res.Ranges,
		Transfer: transfer(res.Requests), ElapsedSec: res.Elapsed.Seconds(),
	}, nil
}
