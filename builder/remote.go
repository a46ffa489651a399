package builder

import (
	"context"
	"errors"
	"fmt"

	"github.com/forge-build/forge/builder/manifest"
	"github.com/forge-build/forge/cas/errdefs"
	"github.com/forge-build/forge/daemon/client"
)

// remoteState is what a build with a remote remembers of it.
type remoteState struct {
	// missing are cache keys the bucket was found not to hold.
	missing map[string]bool
	// pushed are cache keys pushed (or found pushed) by this build.
	pushed map[string]bool
}

// fromRemote looks for a pipeline's stages in the remote, from the last one back,
// until one is stored here or found there. The first one found there is
// pulled and stored under its cache key, as if it had run here: it holds
// the work of every stage before it. A remote that fails is reported and
// left alone: the stages then run here.
func (b *build) fromRemote(ctx context.Context, stages []*manifest.Stage) {
	if b.opts.Remote == nil {
		return
	}
	for i := len(stages) - 1; i >= 0; i-- {
		st := stages[i]
		if b.cached(st.CacheKey) || b.remote.missing[st.CacheKey] {
			return
		}
		res, err := b.c.Pull(ctx, client.PullRequest{Remote: *b.opts.Remote, Name: st.CacheKey, Refs: []string{st.CacheKey}, Stage: true}, nil)
		if errors.Is(err, errdefs.ErrNotFound) {
			b.remote.missing[st.CacheKey] = true
			continue
		}
		if err != nil {
			b.emit(Event{Type: EventLog, Line: fmt.Sprintf("%s  remote %s: %v; the stages run here", label(st), b.opts.Remote.Name, err)})
			return
		}
		b.refs[st.CacheKey] = res.Tree
		b.remote.pushed[st.CacheKey] = true
		b.emit(Event{Type: EventLog, Line: fmt.Sprintf("%s  pulled from remote %s: %d of %d chunks fetched, %d bytes in %d requests, %.2fs",
			label(st), b.opts.Remote.Name, res.Fetched, res.Chunks, res.Transfer.BytesDown, res.Transfer.Requests, res.ElapsedSec)})
		return
	}
}

// toRemote pushes the tree stored under st's cache key, with --push, once
// per build.
func (b *build) toRemote(ctx context.Context, st *manifest.Stage) error {
	if b.opts.Remote == nil || !b.opts.Push || b.remote.pushed[st.CacheKey] {
		return nil
	}
	tree, ok := b.refs[st.CacheKey]
	if !ok {
		return nil
	}
	res, err := b.c.Push(ctx, client.PushRequest{Remote: *b.opts.Remote, Tree: tree, Stages: []string{st.CacheKey}}, nil)
	if err != nil {
		return fmt.Errorf("push stage %s to remote %s (the stage is stored here: a rerun pushes it): %w", st.CacheKey, b.opts.Remote.Name, err)
	}
	b.remote.pushed[st.CacheKey] = true
	line := fmt.Sprintf("%s  pushed to remote %s: %d of %d chunks new, %d bytes in %d packs, %.2fs", label(st), b.opts.Remote.Name, res.NewChunks, res.Chunks, res.PackBytes, res.Packs, res.ElapsedSec)
	if other, ok := res.Adopted[st.CacheKey]; ok {
		line += fmt.Sprintf("; another host pushed this stage first, as tree %s, which the bucket keeps", other[:12])
	}
	b.emit(Event{Type: EventLog, Line: line})
	return nil
}

// label names a stage in the builder's own lines as the progress lines
// do: path, name, short ID.
func label(st *manifest.Stage) string {
	id := st.ID
	if len(id) > 12 {
		id = id[:12]
	}
	return fmt.Sprintf("%s %s %s", st.Path, st.Name, id)
}

// pushStored pushes, with --push, every stage of p stored here that this
// build has not pushed: those it found cached, so that a rerun after a
// failed push completes the bucket.
func (b *build) pushStored(ctx context.Context, p *manifest.Pipeline) error {
	for _, st := range p.Stages {
		if err := b.toRemote(ctx, st); err != nil {
			return err
		}
	}
	return nil
}
