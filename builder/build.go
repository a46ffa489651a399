package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/forge-build/forge/builder/manifest"
	"github.com/forge-build/forge/builder/runs"
	"github.com/forge-build/forge/builder/sources"
	"github.com/forge-build/forge/buildroot"
	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/loopd"
)

// Options tune a build.
type Options struct {
	// Store is the store's directory (the daemon's).
	Store string
	// Libdir is the host directory bound read-only at /run/osbuild/lib:
	// osbuild-run, stages/NAME, assemblers/NAME.
	Libdir string
	// OutputDir receives the assembler's output when set; files of the
	// same names are replaced.
	OutputDir string
	// LoopdSocket is the SEQPACKET socket of a running loopd to give
	// assemblers; when empty, the build serves loop devices itself (with
	// package loopd) for as long as its assembler runs.
	LoopdSocket string
	// Events receives every event, one at a time; nil drops them.
	Events func(Event)
	// Live receives the running stage's output as it comes (a terminal);
	// nil keeps it only for the failure report and the log events.
	Live io.Writer
	// Exports are the format-2 pipelines to build and export (to
	// OutputDir/NAME); none means every pipeline, the last exported.
	Exports []string
	// Remote is a bucket shared with other hosts, or nil: a stage the
	// store lacks is looked for there and pulled rather than run.
	Remote *client.RemoteSpec
	// Push pushes each stage's tree to Remote after it is stored (and
	// those found stored, which the bucket may lack).
	Push bool
}

// Result is what a build produced, as osbuild's --json reports it.
type Result struct {
	// TreeID is the top pipeline's last stage's ID ("" without stages).
	TreeID string `json:"tree_id"`
	// OutputID is the assembler's ID ("" without an assembler).
	OutputID string `json:"output_id"`
	// Tree and Output are the store's hashes of those trees.
	Tree   string `json:"tree,omitempty"`
	Output string `json:"output,omitempty"`
	// Pipelines are a format-2 build's pipelines whose trees are stored:
	// name → tree ID.
	Pipelines map[string]string `json:"pipelines,omitempty"`
	Success   bool              `json:"success"`
	// Error describes the failure when Success is false.
	Error *Failure `json:"error,omitempty"`
}

// Failure is a failed build's report: the stage, why, and the end of
// what the stage wrote.
type Failure struct {
	Path    string `json:"path,omitempty"`
	Name    string `json:"name,omitempty"`
	ID      string `json:"id,omitempty"`
	Message string `json:"message"`
	Output  string `json:"output,omitempty"`
}

// StageError is a stage (or assembler) that failed: it exited non-zero,
// or its buildroot could not be set up.
type StageError struct {
	Path, Name, ID string
	// Status is the exit status (-1 when it did not run to its end).
	Status int
	Output string
	Err    error
}

func (e *StageError) Error() string {
	return fmt.Sprintf("%s %s (%s): %v", e.Path, e.Name, short(e.ID), e.Err)
}

func (e *StageError) Unwrap() error { return e.Err }

func short(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// Build builds m on the store c serves: every pipeline's stages (build
// pipelines first, as far as they are needed), then the assembler. A
// stage that fails leaves the store as it was before that stage. The
// result is returned also on failure; the error is a *StageError when a
// stage failed, ctx's error when the build was stopped, or what else went
// wrong.
func Build(ctx context.Context, c *client.Client, m *manifest.Manifest, opts Options) (*Result, error) {
	if opts.Events == nil {
		opts.Events = func(Event) {}
	}
	b := &build{c: c, opts: opts, told: map[string]bool{}, remote: remoteState{missing: map[string]bool{}, pushed: map[string]bool{}}}
	res := &Result{TreeID: m.Pipeline.TreeID()}
	if m.Pipeline.Assembler != nil {
		res.OutputID = m.Pipeline.Assembler.ID
	}
	var err error
	if m.Version == manifest.Version2 {
		err = b.buildV2(ctx, m, res)
	} else {
		err = b.build(ctx, m.Pipeline, res)
	}
	res.Success = err == nil
	if err != nil {
		res.Error = &Failure{Message: err.Error()}
		var se *StageError
		if errors.As(err, &se) {
			res.Error = &Failure{Path: se.Path, Name: se.Name, ID: se.ID, Message: se.Err.Error(), Output: se.Output}
		}
	}
	b.emit(Event{Type: EventResult, Result: res})
	return res, err
}

type build struct {
	c    *client.Client
	opts Options
	run  *runs.Run
	refs map[string]string // ref name → tree hash, as last listed
	// told holds the IDs already reported cached: a build pipeline's
	// stages are looked at once for the stages and once for the assembler.
	told   map[string]bool
	remote remoteState
	n      int // mountpoints made, for unique names

	loopSock string
	loopStop func()

	sources *sources.Sources            // format 2's, parsed
	v2done  map[*manifest.Pipeline]bool // format-2 pipelines seen

	// etcCaches are buildroot.Config.EtcCache directories by build root
	// (etcKey): the runner's steps run once per build root and build.
	etcCaches map[string]string
}

// buildRootKey names p's build root for etcCache: the stored tree of its
// build pipeline, or the host.
func (b *build) buildRootKey(p *manifest.Pipeline) string {
	if p.Build == nil || p.Build.Pipeline == nil || p.BuildID() == "" {
		return "host"
	}
	return b.refs[p.Build.Pipeline.TreeKey()]
}

// etcCache is the EtcCache of the stages whose build root is key: "" (no
// cache) for a libdir not forge's, whose runner makes its own /etc.
func (b *build) etcCache(key string) string {
	if key == "" || !IsOwnLibdir(b.opts.Libdir) || b.run == nil {
		return ""
	}
	if d, ok := b.etcCaches[key]; ok {
		return d
	}
	if b.etcCaches == nil {
		b.etcCaches = map[string]string{}
	}
	d, err := b.run.ScratchDir("etc-" + strconv.Itoa(len(b.etcCaches)))
	if err != nil {
		return "" // no cache: the steps run as they did
	}
	b.etcCaches[key] = d
	return d
}

func (b *build) emit(ev Event) {
	ev.Time = time.Now().UTC()
	b.opts.Events(ev)
}

func (b *build) build(ctx context.Context, p *manifest.Pipeline, res *Result) error {
	if err := b.listRefs(ctx); err != nil {
		return err
	}
	defer func() {
		if b.loopStop != nil {
			b.loopStop()
		}
		if b.run != nil {
			b.run.Close(ctx)
		}
	}()
	// Everything cached (the common rerun) needs no run directory.
	if err := b.stages(ctx, p); err != nil {
		return err
	}
	if id := p.TreeID(); id != "" {
		res.Tree = b.refs[id]
	}
	if p.Assembler == nil {
		return nil
	}
	out, err := b.assemble(ctx, p)
	if err != nil {
		return err
	}
	res.Output = out
	if b.opts.OutputDir != "" {
		return b.export(ctx, out)
	}
	return nil
}

func (b *build) listRefs(ctx context.Context) error {
	refs, err := b.c.RefNames(ctx)
	if err != nil {
		return fmt.Errorf("list the store's refs: %w", err)
	}
	b.refs = make(map[string]string, len(refs))
	for _, r := range refs {
		b.refs[r.Name] = r.Tree
	}
	return nil
}

func (b *build) cached(id string) bool { _, ok := b.refs[id]; return ok }

// cachedPrefix is how many of stages need not run: up to the last stage
// whose ID is stored, as its tree holds the work of every stage before it
// (IDs chain through base).
func cachedPrefix(stages []*manifest.Stage, cached func(id string) bool) int {
	for i := len(stages) - 1; i >= 0; i-- {
		if cached(stages[i].ID) {
			return i + 1
		}
	}
	return 0
}

// startRun makes the build's run directory on first use.
func (b *build) startRun(ctx context.Context) (*runs.Run, error) {
	if b.run == nil {
		r, err := runs.Start(ctx, b.c, b.opts.Store)
		if err != nil {
			return nil, err
		}
		b.run = r
	}
	return b.run, nil
}

// mount mounts req in the run directory; the returned func unmounts it.
func (b *build) mount(ctx context.Context, what string, req client.MountRequest) (string, func(), error) {
	r, err := b.startRun(ctx)
	if err != nil {
		return "", nil, err
	}
	b.n++
	mp, err := r.Mount(ctx, what+"-"+strconv.Itoa(b.n), req)
	if err != nil {
		return "", nil, err
	}
	return mp, func() { r.Unmount(context.WithoutCancel(ctx), mp) }, nil
}

// buildTree builds p's build pipeline (as far as needed) and mounts its
// tree for use as a build root; "/" (the host) when p has none.
func (b *build) buildTree(ctx context.Context, p *manifest.Pipeline) (string, func(), error) {
	if p.Build == nil || p.Build.Pipeline == nil || p.Build.Pipeline.TreeID() == "" {
		return "/", func() {}, nil
	}
	bp := p.Build.Pipeline
	if err := b.stages(ctx, bp); err != nil {
		return "", nil, err
	}
	return b.mount(ctx, "build", client.MountRequest{Tree: b.refs[bp.TreeID()], BuildRoot: true})
}

// stages runs what is not stored of p's stages, committing each.
func (b *build) stages(ctx context.Context, p *manifest.Pipeline) error {
	done := b.skipCached(ctx, p)
	if done == len(p.Stages) {
		return b.pushStored(ctx, p)
	}
	root, unmountRoot, err := b.buildTree(ctx, p)
	if err != nil {
		return err
	}
	defer unmountRoot()
	return b.runStages(ctx, p, done, func(st *manifest.Stage, tree string) error {
		return b.runStage(ctx, st, stageRun{buildTree: root, etcKey: b.buildRootKey(p), tree: tree})
	})
}

// skipCached reports p's stored prefix as cached (once per stage) and
// returns its length: up to the last stage whose tree is stored under its
// cache key, as that tree holds the work of every stage before it.
func (b *build) skipCached(ctx context.Context, p *manifest.Pipeline) int {
	b.fromRemote(ctx, p.Stages)
	done := cachedPrefixByKey(p.Stages, b.cached)
	for _, st := range p.Stages[:done] {
		if !b.told[st.CacheKey] {
			b.told[st.CacheKey] = true
			b.emit(Event{Type: EventStageCached, Path: st.Path, Name: st.Name, ID: st.ID})
		}
	}
	return done
}

// runStages runs p's stages from done on, each by run, on a copy-on-write
// mount of the last stored stage's tree, committing the tree under the
// stage's cache key after each: a cache point. Until a commit succeeds
// the store is as it was before that stage.
func (b *build) runStages(ctx context.Context, p *manifest.Pipeline, done int, run func(st *manifest.Stage, tree string) error) error {
	base := ""
	if done > 0 {
		base = b.refs[p.Stages[done-1].CacheKey]
	}
	tree, unmountTree, err := b.mount(ctx, "tree", client.MountRequest{Tree: base, Writable: true})
	if err != nil {
		return err
	}
	defer unmountTree()
	clamp, err := p.ClampMtime()
	if err != nil {
		return err
	}
	for _, st := range p.Stages[done:] {
		start := time.Now()
		b.emit(Event{Type: EventStageStarted, Path: st.Path, Name: st.Name, ID: st.ID})
		if err := run(st, tree); err != nil {
			return b.failed(ctx, st, false, err)
		}
		res, err := b.c.Commit(ctx, client.CommitRequest{Mountpoint: client.Path(tree), Refs: []string{st.CacheKey}, ClampMtime: clamp})
		if err != nil {
			return b.failed(ctx, st, false, fmt.Errorf("commit the tree: %w", err))
		}
		b.refs[st.CacheKey] = res.Tree
		if err := b.toRemote(ctx, st); err != nil {
			return b.failed(ctx, st, false, err)
		}
		b.emit(Event{Type: EventStageFinished, Path: st.Path, Name: st.Name, ID: st.ID, Duration: time.Since(start).Seconds()})
	}
	return b.pushStored(ctx, p)
}

// failed reports a stage's failure and returns the error to return.
func (b *build) failed(ctx context.Context, st *manifest.Stage, assembler bool, err error) error {
	if ctx.Err() != nil {
		err = ctx.Err()
	}
	b.emit(Event{Type: EventStageFailed, Path: st.Path, Name: st.Name, ID: st.ID, Assembler: assembler, Error: err.Error()})
	var se *StageError
	if errors.As(err, &se) || ctx.Err() != nil {
		return err
	}
	return &StageError{Path: st.Path, Name: st.Name, ID: st.ID, Status: -1, Err: err}
}

// assemble runs p's assembler on p's final tree (read-only) unless its
// output is stored, and returns the output tree's hash.
func (b *build) assemble(ctx context.Context, p *manifest.Pipeline) (string, error) {
	a := p.Assembler
	b.fromRemote(ctx, []*manifest.Stage{a})
	if h, ok := b.refs[a.ID]; ok {
		b.emit(Event{Type: EventStageCached, Path: a.Path, Name: a.Name, ID: a.ID, Assembler: true})
		return h, b.toRemote(ctx, a)
	}
	start := time.Now()
	b.emit(Event{Type: EventStageStarted, Path: a.Path, Name: a.Name, ID: a.ID, Assembler: true})
	out, err := b.runAssembler(ctx, p)
	if err != nil {
		return "", b.failed(ctx, a, true, err)
	}
	b.refs[a.ID] = out
	if err := b.toRemote(ctx, a); err != nil {
		return "", b.failed(ctx, a, true, err)
	}
	b.emit(Event{Type: EventStageFinished, Path: a.Path, Name: a.Name, ID: a.ID, Assembler: true, Duration: time.Since(start).Seconds()})
	return out, nil
}

func (b *build) runAssembler(ctx context.Context, p *manifest.Pipeline) (string, error) {
	a := p.Assembler
	root, unmountRoot, err := b.buildTree(ctx, p)
	if err != nil {
		return "", err
	}
	defer unmountRoot()
	// The final tree, read-only (an empty one, writable, when the pipeline
	// has no stages: read-only mounts need a stored tree).
	req := client.MountRequest{Writable: true}
	if id := p.TreeID(); id != "" {
		req = client.MountRequest{Tree: b.refs[id]}
	}
	tree, unmountTree, err := b.mount(ctx, "final", req)
	if err != nil {
		return "", err
	}
	defer unmountTree()
	out, err := b.run.ScratchDir("output-" + strconv.Itoa(b.n))
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(out)
	sock, err := b.loopd(ctx)
	if err != nil {
		return "", err
	}
	if err := b.runStage(ctx, a, stageRun{buildTree: root, etcKey: b.buildRootKey(p), tree: tree, assembler: true, output: out, loopd: sock}); err != nil {
		return "", err
	}
	res, err := b.c.Import(ctx, client.ImportRequest{Path: client.Path(out), Refs: []string{a.ID}}, nil)
	if err != nil {
		return "", fmt.Errorf("store the output: %w", err)
	}
	b.refs[a.ID] = res.Tree
	return res.Tree, nil
}

// loopd returns the socket assemblers get at /run/osbuild/api/remoteloop:
// the configured loopd's, or one this build serves.
func (b *build) loopd(ctx context.Context) (string, error) {
	if b.opts.LoopdSocket != "" {
		return b.opts.LoopdSocket, nil
	}
	if b.loopSock != "" {
		return b.loopSock, nil
	}
	srv, err := loopd.NewServer(loopd.Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return "", fmt.Errorf("serve loop devices to the assembler: %w", err)
	}
	sock := filepath.Join(b.run.Dir, "loopd.sock")
	l, err := loopd.ListenSeqpacket(sock)
	if err != nil {
		srv.Serve(ctx, nil, nil) // releases the server's loop-control
		return "", fmt.Errorf("serve loop devices to the assembler: %w", err)
	}
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Go(func() { srv.Serve(sctx, l, nil) })
	b.loopSock = sock
	b.loopStop = func() {
		// Serve detaches every device it attached before it returns.
		cancel()
		wg.Wait()
		os.Remove(sock)
	}
	return sock, nil
}

// stageRun is where one stage runs.
type stageRun struct {
	buildTree string // host path of the build root's tree ("/": the host)
	etcKey    string // the build root's tree hash, "host" for the host's
	tree      string // host path of the tree, bound at /run/osbuild/tree
	assembler bool
	output    string // assemblers: host path bound at /run/osbuild/output
	loopd     string // assemblers: loopd socket bound into /run/osbuild/api
}

// runStage runs one stage or assembler in a buildroot, osbuild's way.
func (b *build) runStage(ctx context.Context, st *manifest.Stage, sr stageRun) error {
	args := map[string]any{"tree": buildroot.TreeDir, "options": json.RawMessage(st.Options)}
	kind := "stages"
	binds := []buildroot.Bind{
		{Source: b.opts.Libdir, Target: buildroot.LibDir, ReadOnly: true},
		{Source: sr.tree, Target: buildroot.TreeDir, ReadOnly: sr.assembler},
	}
	if sr.assembler {
		kind = "assemblers"
		args["output_dir"] = buildroot.OutputDir
		binds = append(binds,
			buildroot.Bind{Source: sr.output, Target: buildroot.OutputDir},
			// osbuild's name, and the name of forge's own daemon.
			buildroot.Bind{Source: sr.loopd, Target: buildroot.APIDir + "/remoteloop"},
			buildroot.Bind{Source: sr.loopd, Target: buildroot.APIDir + "/loopd"},
		)
	}
	stdin, err := json.Marshal(args)
	if err != nil {
		return err
	}
	out := &stageOutput{live: b.opts.Live, line: func(l string) {
		b.emit(Event{Type: EventLog, Path: st.Path, Name: st.Name, ID: st.ID, Line: l})
	}}
	r, err := b.startRun(ctx)
	if err != nil {
		return err
	}
	caps, err := stageCapabilities(b.opts.Libdir, kind, st.Name)
	if err != nil {
		return err
	}
	code, err := buildroot.Run(ctx, buildroot.Config{
		BuildTree:    sr.buildTree,
		EtcCache:     b.etcCache(sr.etcKey),
		Capabilities: caps,
		// A foreign libdir's osbuild-run sets its buildroot up itself
		// (the seed's makes /etc/ssl/certs links and fails if they
		// exist): give it osbuild's plain buildroot.
		Plain:    !IsOwnLibdir(b.opts.Libdir),
		Binds:    binds,
		Args:     []string{buildroot.LibDir + "/osbuild-run", buildroot.LibDir + "/" + kind + "/" + st.Name},
		Stdin:    bytes.NewReader(stdin),
		Stdout:   out,
		Stderr:   out,
		StateDir: r.Dir,
	})
	out.flush()
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return &StageError{Path: st.Path, Name: st.Name, ID: st.ID, Status: -1, Output: out.String(), Err: err}
	case code != 0:
		return &StageError{Path: st.Path, Name: st.Name, ID: st.ID, Status: code, Output: out.String(), Err: fmt.Errorf("exited with status %d", code)}
	}
	return nil
}

// export writes the output tree into OutputDir: exported next to it
// first, then each top-level entry renamed into place, replacing an
// entry of the same name, so a reader never sees half an image.
func (b *build) export(ctx context.Context, tree string) error {
	dir := b.opts.OutputDir
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	tmp, err := os.MkdirTemp(dir, ".forge-export-")
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if _, err := b.c.Export(ctx, client.ExportRequest{Tree: tree, Path: client.Path(tmp)}, nil); err != nil {
		return fmt.Errorf("export the output to %s: %w", dir, err)
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		src, dst := filepath.Join(tmp, e.Name()), filepath.Join(dir, e.Name())
		if err := os.Rename(src, dst); err != nil {
			// A directory of the same name: rename refuses to replace it
			// unless empty.
			if rerr := os.RemoveAll(dst); rerr != nil {
				return fmt.Errorf("replace %s: %w", dst, rerr)
			}
			if err := os.Rename(src, dst); err != nil {
				return fmt.Errorf("move the output into place: %w", err)
			}
		}
	}
	return nil
}

// StageInfo is a stage or assembler as Inspect reports it.
type StageInfo struct {
	Name   string `json:"name"`
	ID     string `json:"id"`
	Cached bool   `json:"cached"`
}

// PipelineInfo is a pipeline as Inspect reports it.
type PipelineInfo struct {
	Build     *PipelineInfo `json:"build,omitempty"`
	Stages    []StageInfo   `json:"stages"`
	Assembler *StageInfo    `json:"assembler,omitempty"`
	TreeID    string        `json:"tree_id,omitempty"`
	OutputID  string        `json:"output_id,omitempty"`
}

// Inspect describes p with, for each stage, whether a build would find it
// stored (cached reports whether a ref names an ID).
func Inspect(p *manifest.Pipeline, cached func(id string) bool) *PipelineInfo {
	info := &PipelineInfo{Stages: []StageInfo{}, TreeID: p.TreeID()}
	if p.Build != nil && p.Build.Pipeline != nil {
		info.Build = Inspect(p.Build.Pipeline, cached)
	}
	done := cachedPrefix(p.Stages, cached)
	for i, st := range p.Stages {
		info.Stages = append(info.Stages, StageInfo{Name: st.Name, ID: st.ID, Cached: i < done})
	}
	if a := p.Assembler; a != nil {
		info.Assembler = &StageInfo{Name: a.Name, ID: a.ID, Cached: cached(a.ID)}
		info.OutputID = a.ID
	}
	return info
}
