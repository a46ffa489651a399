package builder

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/builder/manifest"
	"github.com/forge-build/forge/builder/sources"
	"github.com/forge-build/forge/buildroot"
	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/loopd"
)

// Where osbuild's format-2 stage API puts things in the buildroot
// (osbuild/pipeline.py, Stage.run).
const (
	inputsDir     = "/run/osbuild/inputs"
	mountsDir     = "/run/osbuild/mounts"
	binDir        = "/run/osbuild/bin"
	runnerDir     = "/run/osbuild/runner"
	argumentsFile = buildroot.APIDir + "/arguments"
	metaFile      = "/run/osbuild/meta"
)

// buildV2 builds a format-2 manifest: the pipelines asked for (Exports, or
// every pipeline), each after what it needs (its build pipeline, the
// pipelines its stages take as inputs), then exports them.
func (b *build) buildV2(ctx context.Context, m *manifest.Manifest, res *Result) error {
	if err := b.listRefs(ctx); err != nil {
		return err
	}
	defer b.cleanup(ctx)
	byName := map[string]*manifest.Pipeline{}
	for _, p := range m.Pipelines() {
		byName[p.Name] = p
	}
	targets := m.Pipelines()
	exports := b.opts.Exports
	if len(exports) > 0 {
		targets = nil
		for _, name := range exports {
			p := byName[name]
			if p == nil {
				return fmt.Errorf("export %q: the manifest has no pipeline of that name", name)
			}
			targets = append(targets, p)
		}
	} else if len(targets) > 0 {
		exports = []string{targets[len(targets)-1].Name}
	}
	if len(m.Sources) > 0 {
		srcs, err := sources.Parse(m.Sources)
		if err != nil {
			return err
		}
		b.sources = srcs
	}
	b.v2done = map[*manifest.Pipeline]bool{}
	for _, p := range targets {
		if err := b.pipelineV2(ctx, p); err != nil {
			return err
		}
	}
	res.Pipelines = map[string]string{}
	for _, p := range m.Pipelines() {
		if id := p.TreeID(); id != "" && b.refs[p.TreeKey()] != "" {
			res.Pipelines[p.Name] = id
		}
	}
	if b.opts.OutputDir == "" {
		return nil
	}
	for _, name := range exports {
		p := byName[name]
		if p.TreeID() == "" {
			continue // nothing to export: osbuild exports an empty tree
		}
		if err := b.exportTo(ctx, b.refs[p.TreeKey()], filepath.Join(b.opts.OutputDir, name)); err != nil {
			return err
		}
	}
	return nil
}

// cachedPrefixByKey is cachedPrefix by the stages' cache keys (what
// format-2 trees are stored under).
func cachedPrefixByKey(stages []*manifest.Stage, cached func(key string) bool) int {
	for i := len(stages) - 1; i >= 0; i-- {
		if cached(stages[i].CacheKey) {
			return i + 1
		}
	}
	return 0
}

// cleanup ends what a build started: the loop device server, the run.
func (b *build) cleanup(ctx context.Context) {
	if b.loopStop != nil {
		b.loopStop()
	}
	if b.run != nil {
		b.run.Close(ctx)
	}
}

// pipelineV2 makes sure p's tree is stored: its cached prefix is taken as
// it is, the rest of its stages run, each committed under its ID.
func (b *build) pipelineV2(ctx context.Context, p *manifest.Pipeline) error {
	if b.v2done[p] {
		return nil
	}
	b.v2done[p] = true
	done := b.skipCached(ctx, p)
	if done == len(p.Stages) {
		return b.pushStored(ctx, p)
	}
	// What the stages left to run take from other pipelines.
	var bp *manifest.Pipeline
	if p.Build != nil && p.BuildID() != "" {
		bp = p.Build.Pipeline
		if err := b.pipelineV2(ctx, bp); err != nil {
			return err
		}
	}
	for _, st := range p.Stages[done:] {
		for _, in := range st.Inputs {
			for _, r := range in.References {
				if r.Pipeline != nil {
					if err := b.pipelineV2(ctx, r.Pipeline); err != nil {
						return err
					}
				}
			}
		}
	}
	root, unmountRoot := "/", func() {}
	if bp != nil {
		var err error
		root, unmountRoot, err = b.mount(ctx, "build", client.MountRequest{Tree: b.refs[bp.TreeKey()], BuildRoot: true})
		if err != nil {
			return err
		}
	}
	defer unmountRoot()
	runner := ""
	if p.Build != nil {
		runner = p.Build.Runner
	}
	if runner == "" {
		runner = HostRunnerName("")
	}
	return b.runStages(ctx, p, done, func(st *manifest.Stage, tree string) error {
		return b.runStageV2(ctx, st, stageRun{buildTree: root, etcKey: b.buildRootKey(p), tree: tree}, runner)
	})
}

// stageEnv is what one format-2 stage run holds, released by release.
type stageEnv struct {
	dir     string // the stage's scratch directory on the host
	binds   []buildroot.Bind
	devices []buildroot.Device
	mounts  []buildroot.FSMount
	// devicePaths are the devices' nodes in the buildroot by device name.
	devicePaths map[string]string
	// trees are the stored trees of the stage's org.osbuild.tree inputs
	// by input name, which it may ask for as streams (stageapi.go).
	trees    map[string]string
	releases []func()
}

func (e *stageEnv) release() {
	for i := len(e.releases) - 1; i >= 0; i-- {
		e.releases[i]()
	}
	e.releases = nil
}

// runStageV2 runs one format-2 stage the way osbuild does: inputs,
// devices and mounts made, the arguments file written, the runner and the
// stage bound in, the API socket served.
func (b *build) runStageV2(ctx context.Context, st *manifest.Stage, sr stageRun, runnerName string) error {
	root, tree := sr.buildTree, sr.tree
	r, err := b.startRun(ctx)
	if err != nil {
		return err
	}
	b.n++
	dir, err := r.ScratchDir("stage-" + strconv.Itoa(b.n))
	if err != nil {
		return err
	}
	env := &stageEnv{dir: dir, devicePaths: map[string]string{}, trees: map[string]string{}}
	env.releases = append(env.releases, func() { os.RemoveAll(dir) })
	defer env.release()
	libdir := b.opts.Libdir
	own := IsOwnLibdir(libdir)
	runner, err := ResolveRunner(libdir, runnerName)
	if err != nil {
		return err
	}
	stagePath := filepath.Join(libdir, "stages", st.Name)
	if _, err := os.Stat(stagePath); err != nil {
		return fmt.Errorf("stage %s: not in libdir %s: %w", st.Name, libdir, err)
	}
	inputs, err := b.inputsV2(ctx, st, env)
	if err != nil {
		return err
	}
	devices, err := b.devicesV2(ctx, st, tree, env)
	if err != nil {
		return err
	}
	mounts, err := mountsV2(st, env)
	if err != nil {
		return err
	}
	meta := map[string]any{"id": st.ID}
	if st.SourceEpoch != "" {
		meta["source-epoch"] = json.Number(st.SourceEpoch)
	}
	args := map[string]any{
		"tree":    buildroot.TreeDir,
		"paths":   map[string]string{"devices": "/dev", "inputs": inputsDir, "mounts": mountsDir},
		"devices": devices,
		"inputs":  inputs,
		"mounts":  mounts,
		"options": json.RawMessage(st.Options),
		"meta":    meta,
	}
	argsFile := filepath.Join(dir, "arguments")
	if err := writeJSON(argsFile, args); err != nil {
		return err
	}
	metaPath := filepath.Join(dir, "meta")
	if err := os.WriteFile(metaPath, nil, 0o644); err != nil {
		return err
	}
	api, err := serveAPI(ctx, filepath.Join(dir, "api.sock"), apiOptions{
		trees:  env.trees,
		stream: b.c.StreamTree,
		logf: func(format string, args ...any) {
			b.emit(Event{Type: EventLog, Path: st.Path, Name: st.Name, ID: st.ID, Line: "forge: " + fmt.Sprintf(format, args...)})
		},
	})
	if err != nil {
		return err
	}
	exc := (*StageException)(nil)
	defer func() {
		if exc == nil {
			api.close()
		}
	}()
	env.binds = append(env.binds,
		buildroot.Bind{Source: libdir, Target: buildroot.LibDir, ReadOnly: true},
		buildroot.Bind{Source: tree, Target: buildroot.TreeDir},
		buildroot.Bind{Source: stagePath, Target: binDir + "/" + st.Name, ReadOnly: true},
		buildroot.Bind{Source: runner, Target: runnerDir + "/" + filepath.Base(runner), ReadOnly: true},
		buildroot.Bind{Source: argsFile, Target: argumentsFile, ReadOnly: true},
		buildroot.Bind{Source: metaPath, Target: metaFile},
		buildroot.Bind{Source: api.path, Target: buildroot.APIDir + "/osbuild"},
	)
	if len(st.Devices) > 0 {
		sock, err := b.loopd(ctx)
		if err != nil {
			return err
		}
		env.binds = append(env.binds, buildroot.Bind{Source: sock, Target: buildroot.APIDir + "/remoteloop"})
	}
	// osbuild's environment for a stage (buildroot.py, run).
	envv := []string{
		"container=bwrap-osbuild", "LC_CTYPE=C.UTF-8", "PATH=/usr/sbin:/usr/bin",
		"PYTHONPATH=" + buildroot.LibDir, "PYTHONUNBUFFERED=1", "TERM=dumb",
	}
	if st.SourceEpoch != "" {
		envv = append(envv, "SOURCE_DATE_EPOCH="+st.SourceEpoch)
	}
	// As osbuild's (bwrap --unshare-net): in format 2, sources fetch what
	// stages need, before they run; a stage has no network to reach, and
	// nothing of the host's to reach it through.
	network := buildroot.NetworkPrivate
	out := &stageOutput{live: b.opts.Live, line: func(l string) {
		b.emit(Event{Type: EventLog, Path: st.Path, Name: st.Name, ID: st.ID, Line: l})
	}}
	caps, err := stageCapabilities(libdir, "stages", st.Name)
	if err != nil {
		return err
	}
	// With a source-epoch, what the kernel writes into the stage's ext4
	// mounts is made reproducible too (mkfs.ext4 with an epoch does the
	// rest): the same manifest gives the same image bytes.
	var reproducible *int64
	if st.SourceEpoch != "" {
		e, err := strconv.ParseInt(st.SourceEpoch, 10, 64)
		if err != nil {
			return fmt.Errorf("source-epoch %s: %w", st.SourceEpoch, err)
		}
		reproducible = &e
	}
	code, err := buildroot.Run(ctx, buildroot.Config{
		ReproducibleExt4: reproducible,
		BuildTree:        root,
		Capabilities:     caps,
		Plain:            !own,
		EtcCache:         b.etcCache(sr.etcKey),
		Binds:            env.binds,
		Devices:          env.devices,
		Mounts:           env.mounts,
		Network:          network,
		Env:              envv,
		Args:             []string{runnerDir + "/" + filepath.Base(runner), binDir + "/" + st.Name},
		Stdin:            strings.NewReader(""),
		Stdout:           out,
		Stderr:           out,
		StateDir:         r.Dir,
	})
	out.flush()
	exc = api.close()
	if md, rerr := readMetadata(metaPath); rerr != nil {
		b.emit(Event{Type: EventLog, Path: st.Path, Name: st.Name, ID: st.ID, Line: "forge: " + rerr.Error()})
	} else if len(md) > 0 {
		b.emit(Event{Type: EventMetadata, Path: st.Path, Name: st.Name, ID: st.ID, Metadata: md})
	}
	switch {
	case ctx.Err() != nil:
		return ctx.Err()
	case err != nil:
		return &StageError{Path: st.Path, Name: st.Name, ID: st.ID, Status: -1, Output: out.String(), Err: err}
	case code != 0 && exc != nil:
		return &StageError{Path: st.Path, Name: st.Name, ID: st.ID, Status: code, Output: out.String(), Err: exc}
	case code != 0:
		return &StageError{Path: st.Path, Name: st.Name, ID: st.ID, Status: code, Output: out.String(), Err: fmt.Errorf("exited with status %d", code)}
	}
	return nil
}

// inputsV2 mounts the stage's inputs (read-only mounts of stored trees)
// and returns their arguments.
func (b *build) inputsV2(ctx context.Context, st *manifest.Stage, env *stageEnv) (map[string]any, error) {
	out := map[string]any{}
	for _, in := range st.Inputs {
		var req client.MountRequest
		data := map[string]any{}
		switch in.Type {
		case "org.osbuild.tree":
			if in.Origin != manifest.OriginPipeline || len(in.References) != 1 {
				return nil, fmt.Errorf("%s: org.osbuild.tree takes one pipeline", in.Path)
			}
			req = client.MountRequest{Tree: b.refs[in.References[0].Pipeline.TreeKey()]}
			env.trees[in.Name] = req.Tree
		case "org.osbuild.files":
			files := map[string]any{}
			req.Compose = []client.ComposeEntry{}
			var want []string
			for _, r := range in.References {
				var opts struct {
					File     string          `json:"file"`
					Metadata json.RawMessage `json:"metadata"`
				}
				if err := json.Unmarshal(r.Options, &opts); err != nil {
					return nil, fmt.Errorf("%s: reference %s: %w", in.Path, r.ID, err)
				}
				meta := json.RawMessage("{}")
				if len(opts.Metadata) > 0 {
					meta = opts.Metadata
				}
				if in.Origin == manifest.OriginSource {
					want = append(want, r.ID)
					req.Compose = append(req.Compose, sources.ComposeEntry(r.ID))
					files[r.ID] = meta
					continue
				}
				// A file of a pipeline's tree, at its own path.
				rel := strings.TrimLeft(path.Clean("/"+opts.File), "/")
				if opts.File == "" || rel == "" {
					return nil, fmt.Errorf("%s: reference %s: want {\"file\": PATH} naming a file of the pipeline's tree", in.Path, r.ID)
				}
				req.Compose = append(req.Compose, client.ComposeEntry{Name: client.Path(rel), Tree: b.refs[r.Pipeline.TreeKey()], Path: client.Path("/" + rel)})
				files[rel] = meta
			}
			if len(want) > 0 {
				if err := b.fetch(ctx, want); err != nil {
					return nil, fmt.Errorf("%s: %w", in.Path, err)
				}
			}
			data["files"] = files
		default:
			return nil, fmt.Errorf("%s: input type %s is not one forge provides (org.osbuild.tree, org.osbuild.files)", in.Path, in.Type)
		}
		mp, unmount, err := b.mount(ctx, "input", req)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", in.Path, err)
		}
		env.releases = append(env.releases, unmount)
		target := inputsDir + "/" + in.Name
		env.binds = append(env.binds, buildroot.Bind{Source: mp, Target: target, ReadOnly: true})
		arg := map[string]any{"path": target}
		if len(data) > 0 {
			arg["data"] = data
		}
		out[in.Name] = arg
	}
	return out, nil
}

// fetch makes sure the source items are in the store.
func (b *build) fetch(ctx context.Context, checksums []string) error {
	if b.sources == nil {
		return errors.New("the manifest has no sources")
	}
	logf := func(format string, args ...any) {
		b.emit(Event{Type: EventLog, Name: "sources", Line: fmt.Sprintf(format, args...)})
	}
	sum, err := sources.Fetch(ctx, b.c, b.sources, checksums, sources.Options{Logf: logf})
	if sum.Fetched > 0 || sum.Failed > 0 {
		logf("%s", sum)
	}
	return err
}

// loopbackOptions are org.osbuild.loopback's options (osbuild's
// devices/org.osbuild.loopback).
type loopbackOptions struct {
	Filename   string  `json:"filename"`
	Start      uint64  `json:"start"`
	Size       *uint64 `json:"size"`
	SectorSize *uint32 `json:"sector-size"`
	Lock       bool    `json:"lock"`
	Partscan   bool    `json:"partscan"`
	ReadOnly   bool    `json:"read-only"`
}

// devicesV2 attaches the stage's devices (loop devices over files of its
// tree, through loopd) and returns their arguments. The devices are
// detached when env is released.
func (b *build) devicesV2(ctx context.Context, st *manifest.Stage, tree string, env *stageEnv) (map[string]any, error) {
	out := map[string]any{}
	if len(st.Devices) == 0 {
		return out, nil
	}
	sock, err := b.loopd(ctx)
	if err != nil {
		return nil, err
	}
	lc, err := loopd.Dial(ctx, sock)
	if err != nil {
		return nil, err
	}
	// Closing the connection detaches every device it attached.
	env.releases = append(env.releases, func() { lc.Close() })
	nodes := filepath.Join(env.dir, "dev")
	if err := os.Mkdir(nodes, 0o700); err != nil {
		return nil, err
	}
	dirf, err := os.Open(nodes)
	if err != nil {
		return nil, err
	}
	defer dirf.Close()
	treeFd, err := unix.Open(tree, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open the tree %s: %w", tree, err)
	}
	defer unix.Close(treeFd)
	for _, d := range st.Devices {
		if d.Type != "org.osbuild.loopback" {
			return nil, fmt.Errorf("%s: device type %s is not one forge provides (org.osbuild.loopback)", d.Path, d.Type)
		}
		if d.Parent != nil {
			return nil, fmt.Errorf("%s: a loop device over another device is not supported", d.Path)
		}
		var o loopbackOptions
		if err := decodeStrict(d.Options, &o); err != nil {
			return nil, fmt.Errorf("%s.options: %w", d.Path, err)
		}
		if o.Filename == "" {
			return nil, fmt.Errorf("%s.options.filename: missing", d.Path)
		}
		sector := uint64(512)
		if o.SectorSize != nil {
			sector = uint64(*o.SectorSize)
		}
		opts := loopd.AttachOptions{Offset: o.Start * sector, SectorSize: uint32(sector), Partscan: o.Partscan, ReadOnly: o.ReadOnly}
		if o.Size != nil {
			opts.SizeLimit = *o.Size * sector
		}
		flag := os.O_RDWR
		if o.ReadOnly {
			flag = os.O_RDONLY
		}
		f, err := openRegularBeneath(treeFd, strings.TrimLeft(o.Filename, "/"), flag)
		if err != nil {
			return nil, fmt.Errorf("%s.options.filename: %w", d.Path, err)
		}
		att, err := lc.Attach(ctx, f, dirf, opts)
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("%s: %w", d.Path, err)
		}
		env.releases = append(env.releases, func() { f.Sync(); f.Close() })
		for _, name := range append([]string{att.Devname}, att.Partitions...) {
			var s unix.Stat_t
			if err := unix.Stat(filepath.Join(nodes, name), &s); err != nil {
				return nil, fmt.Errorf("%s: node %s: %w", d.Path, name, err)
			}
			env.devices = append(env.devices, buildroot.Device{Name: name, Major: unix.Major(uint64(s.Rdev)), Minor: unix.Minor(uint64(s.Rdev)), Block: true})
		}
		if o.Lock {
			// As osbuild: an exclusive flock on the device keeps udev
			// and others from probing it while the stage writes.
			lf, err := os.Open(filepath.Join(nodes, att.Devname))
			if err != nil {
				return nil, err
			}
			if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
				lf.Close()
				return nil, fmt.Errorf("%s: lock %s: %w", d.Path, att.Devname, err)
			}
			env.releases = append(env.releases, func() { lf.Close() })
		}
		node := env.devices[len(env.devices)-1-len(att.Partitions)]
		major, minor := node.Major, node.Minor
		env.devicePaths[d.Name] = "/dev/" + att.Devname
		out[d.Name] = map[string]any{
			"path": "/dev/" + att.Devname,
			"node": map[string]any{"major": major, "minor": minor},
		}
	}
	return out, nil
}

// openRegularBeneath opens name, a path under the directory dirFd, for a
// loop device's backing file: it must stay under the directory (no
// symlink out of the tree) and be a regular file. The tree is the
// manifest's work and its mount shows device nodes: a node "disk" of the
// host's sda, or a FIFO that would block the open for good, must never be
// opened. So: O_PATH first, which opens nothing, then the type checked,
// then the file reopened through /proc/self/fd.
func openRegularBeneath(dirFd int, name string, flag int) (*os.File, error) {
	fd, err := unix.Openat2(dirFd, name, &unix.OpenHow{
		Flags:   unix.O_PATH | unix.O_CLOEXEC,
		Resolve: unix.RESOLVE_BENEATH | unix.RESOLVE_NO_MAGICLINKS,
	})
	if err != nil {
		return nil, fmt.Errorf("open %s in the tree (symlinks out of it refused): %w", name, err)
	}
	defer unix.Close(fd)
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", name, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFREG {
		return nil, fmt.Errorf("%s is not a regular file: a loop device's backing file must be one", name)
	}
	f, err := os.OpenFile(fmt.Sprintf("/proc/self/fd/%d", fd), flag|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", name, err)
	}
	return f, nil
}

// fsTypes are the filesystems of the mount types forge provides.
var fsTypes = map[string]string{
	"org.osbuild.ext4":  "ext4",
	"org.osbuild.fat":   "vfat",
	"org.osbuild.xfs":   "xfs",
	"org.osbuild.btrfs": "btrfs",
}

// mountsV2 plans the stage's mounts (made inside its buildroot) and
// returns their arguments.
func mountsV2(st *manifest.Stage, env *stageEnv) (map[string]any, error) {
	out := map[string]any{}
	for _, mt := range st.Mounts {
		fstype, ok := fsTypes[mt.Type]
		if !ok {
			return nil, fmt.Errorf("%s: mount type %s is not one forge provides (ext4, fat, xfs, btrfs)", mt.Path, mt.Type)
		}
		if mt.Source == nil || mt.Target == "" {
			return nil, fmt.Errorf("%s: a %s mount needs a source device and a target", mt.Path, mt.Type)
		}
		if !kernelHasFS(fstype) {
			return nil, fmt.Errorf("%s: this kernel has no %s filesystem (not in /proc/filesystems; a module not loaded?)", mt.Path, fstype)
		}
		var o struct {
			ReadOnly   bool    `json:"readonly"`
			NoRecovery bool    `json:"norecovery"`
			UID        *int    `json:"uid"`
			GID        *int    `json:"gid"`
			Umask      *string `json:"umask"`
			Shortname  *string `json:"shortname"`
			Subvol     *string `json:"subvol"`
			Compress   *string `json:"compress"`
		}
		if err := json.Unmarshal(mt.Options, &o); err != nil {
			return nil, fmt.Errorf("%s.options: %w", mt.Path, err)
		}
		var data []string
		if o.NoRecovery {
			data = append(data, "norecovery")
		}
		for k, v := range map[string]*string{"umask": o.Umask, "shortname": o.Shortname, "subvol": o.Subvol, "compress": o.Compress} {
			if v != nil {
				if strings.ContainsAny(*v, ",=") {
					return nil, fmt.Errorf("%s.options.%s: %q has ',' or '='", mt.Path, k, *v)
				}
				data = append(data, k+"="+*v)
			}
		}
		if o.UID != nil {
			data = append(data, "uid="+strconv.Itoa(*o.UID))
		}
		if o.GID != nil {
			data = append(data, "gid="+strconv.Itoa(*o.GID))
		}
		dev := env.devicePaths[mt.Source.Name]
		if dev == "" {
			return nil, fmt.Errorf("%s: device %s has no node", mt.Path, mt.Source.Name)
		}
		if mt.Partition != 0 {
			dev += "p" + strconv.Itoa(mt.Partition)
		}
		target := mountsDir + mt.Target
		if mt.Target == "/" {
			target = mountsDir
		}
		env.mounts = append(env.mounts, buildroot.FSMount{Source: dev, Target: target, FSType: fstype, Data: strings.Join(data, ","), ReadOnly: o.ReadOnly})
		out[mt.Name] = map[string]any{"path": target}
	}
	return out, nil
}

// maxMetadata bounds what forge reads of a stage's /run/osbuild/meta:
// osbuild's stages write a few KiB (package lists at most some hundreds).
const maxMetadata = 16 << 20

// readMetadata reads what a stage wrote to /run/osbuild/meta: nothing, or
// one JSON value of at most maxMetadata bytes.
func readMetadata(name string) (json.RawMessage, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxMetadata+1))
	switch {
	case err != nil:
		return nil, err
	case len(b) > maxMetadata:
		return nil, fmt.Errorf("the stage's metadata is larger than %d bytes: dropped", maxMetadata)
	case len(bytes.TrimSpace(b)) == 0:
		return nil, nil
	case !json.Valid(b):
		return nil, errors.New("the stage's metadata is not JSON: dropped")
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		return nil, err
	}
	return compact.Bytes(), nil
}

// stageCapabilities are the capabilities a stage runs with: forge's
// StageCapabilities (osbuild's default set without CAP_DAC_READ_SEARCH)
// and those its NAME.meta.json asks for in "capabilities", as osbuild
// adds a stage's info_caps.
func stageCapabilities(libdir, kind, name string) ([]string, error) {
	caps := append([]string(nil), buildroot.StageCapabilities...)
	b, err := os.ReadFile(filepath.Join(libdir, kind, name+".meta.json"))
	if errors.Is(err, os.ErrNotExist) {
		return caps, nil
	}
	if err != nil {
		return nil, err
	}
	var meta struct {
		Capabilities []string `json:"capabilities"`
	}
	if err := json.Unmarshal(b, &meta); err != nil {
		return nil, fmt.Errorf("%s/%s.meta.json: %w", kind, name, err)
	}
	return append(caps, meta.Capabilities...), nil
}

// kernelHasFS reports whether the running kernel mounts fstype, as
// /proc/filesystems lists it. Unknown (no /proc/filesystems): try anyway.
func kernelHasFS(fstype string) bool {
	b, err := os.ReadFile("/proc/filesystems")
	if err != nil {
		return true
	}
	for _, line := range strings.Split(string(b), "\n") {
		if f := strings.Fields(line); len(f) > 0 && f[len(f)-1] == fstype {
			return true
		}
	}
	return false
}

func writeJSON(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(name, b, 0o644)
}

// decodeStrict decodes JSON options into v, refusing unknown keys.
func decodeStrict(raw json.RawMessage, v any) error {
	dec := json.NewDecoder(strings.NewReader(string(raw)))
	dec.DisallowUnknownFields()
	return dec.Decode(v)
}

// exportTo exports a stored tree to dir, replacing it whole.
func (b *build) exportTo(ctx context.Context, tree, dir string) error {
	// The manifest checks pipeline names; this is the last guard before
	// a rename that replaces what is there.
	if rel, err := filepath.Rel(b.opts.OutputDir, dir); err != nil || !filepath.IsLocal(rel) || strings.Contains(rel, "/") {
		return fmt.Errorf("export to %s: not a directory directly in %s", dir, b.opts.OutputDir)
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".forge-export-")
	if err != nil {
		return fmt.Errorf("output directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	if _, err := b.c.Export(ctx, client.ExportRequest{Tree: tree, Path: client.Path(tmp)}, nil); err != nil {
		return fmt.Errorf("export to %s: %w", dir, err)
	}
	old := tmp + ".old"
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replace %s: %w", dir, err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		return fmt.Errorf("move the export into place: %w", err)
	}
	os.RemoveAll(old)
	return nil
}
