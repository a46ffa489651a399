package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/spf13/pflag"

	"github.com/forge-build/forge/builder"
	"github.com/forge-build/forge/builder/manifest"
)

func buildCommands() []*command {
	return []*command{{
		name: "build",
		summary: "Build an osbuild manifest (- reads stdin), every stage cached; output to --output-directory.\n" +
			"Formats 1 and 2 as osbuild takes them. Each pipeline's stages run in buildroots on\n" +
			"copy-on-write mounts of the store, and every stage's tree is stored under its osbuild ID, so a\n" +
			"rebuild starts from the longest stored prefix. Format 1: then the assembler, whose output goes\n" +
			"to --output-directory. Format 2: the pipelines named by --export are built (with what they\n" +
			"need) and DIR/NAME holds each one's tree; with no --export every pipeline is built and the\n" +
			"last exported. Sources (org.osbuild.curl, .inline) are fetched into the store, verified, once\n" +
			"per store. --checkpoint is accepted for osbuild's callers: every stage is stored anyway.\n" +
			"With --remote, a stage the store lacks is looked for in that remote's bucket (another host's\n" +
			"build) and pulled instead of run; with --push, each stage is pushed there once stored.\n" +
			"Progress goes to stderr.\n" +
			"Exit status: 0 built, 1 a stage failed (its output is shown), 2 a bad manifest (one past\n" +
			"--max-manifest-size too) or flags, 130 interrupted.",
		usage: "[--store DIR] [--libdir DIR] [--output-directory DIR] [--export NAME]... [--checkpoint PATTERN]...\n" +
			"       [--build-pipeline FILE] [--remote NAME [--push]]\n" +
			"       [--json] [--monitor-fd N] [--loopd-socket PATH] [--max-manifest-size SIZE] MANIFEST|-",
		example: "  forge build --store /var/cache/forge --output-directory ./output manifest.json\n" +
			"  forge build --export image --output-directory ./output manifest-v2.json   # ./output/image/disk.img\n" +
			"  forge build --json manifest.json | jq .output_id\n" +
			"  forge build --remote shared --push --output-directory ./output manifest.json   # share stages between hosts",
		flags: func(fs *pflag.FlagSet) {
			storeFlag(fs)
			fs.String("libdir", "", "stages and assemblers from `DIR` (default: the one beside forge, else "+builder.DefaultLibdir+")")
			fs.String("output-directory", "", "put the assembler's output (format 1) or the exported trees (format 2: DIR/NAME) in `DIR`; same names are replaced")
			fs.String("build-pipeline", "", "JSON `FILE` with the build pipeline for a format-1 manifest that has none")
			fs.StringArray("export", nil, "format 2: build pipeline `NAME` and export its tree to DIR/NAME (repeat for more)")
			fs.StringArray("checkpoint", nil, "accepted as osbuild takes it (`PATTERN`); forge stores every stage anyway")
			fs.Bool("json", false, "print {\"tree_id\", \"output_id\", \"success\"} (and \"error\") on stdout")
			fs.Int("monitor-fd", -1, "write a JSON-seq (RFC 7464) event stream to file descriptor `N`")
			fs.String("loopd-socket", "", "give assemblers and format-2 devices loop devices from the loopd at `PATH` (default: serve them in-process)")
			fs.String("remote", "", "take stages the store lacks from remote `NAME` ('forge store remote ls') when another host pushed them")
			fs.Bool("push", false, "with --remote: push every stage of the build to the remote once it is stored")
			maxManifestSizeFlag(fs)
		},
		run: runBuild,
	}, {
		name: "inspect",
		summary: "Show a manifest's stages, their osbuild IDs and whether the store has them (JSON).\n" +
			"Format 2: what `osbuild --inspect` prints (the manifest with an \"id\" on every stage and\n" +
			"pipeline references resolved to IDs, one line), each stage with forge's \"cached\" added\n" +
			"last (none with --no-store: then the bytes are osbuild's). Format 1: every pipeline's\n" +
			"stages and assembler with name, ID and \"cached\" (a build would not run it).\n" +
			"No stage executables are needed. Exit status 2 for a bad manifest, one past\n" +
			"--max-manifest-size too.",
		usage: "[--store DIR | --no-store] [--libdir DIR] [--max-manifest-size SIZE] MANIFEST|-",
		example: "  forge inspect manifest.json | jq '.pipelines[].stages[] | [.type, .id, .cached]'\n" +
			"  forge inspect --no-store manifest.json > ids.json   # as osbuild --inspect",
		flags: func(fs *pflag.FlagSet) {
			storeFlag(fs)
			fs.Bool("no-store", false, "do not look at the store: no \"cached\", and no daemon started")
			fs.String("libdir", "", "check format-2 stages, devices, inputs, mounts and sources against `DIR`'s NAME.meta.json schemas,\nand show DIR's runner for this host on a build pipeline without \"runner\" (default: no check, forge's runner)")
			maxManifestSizeFlag(fs)
		},
		run: runInspect,
	}}
}

// maxManifestSizeFlag is --max-manifest-size, the size limit of the
// manifest (and of --build-pipeline's file): without one, a manifest of
// /dev/zero was read until the OOM killer ended forge.
func maxManifestSizeFlag(fs *pflag.FlagSet) {
	def := fmt.Sprintf("%dM", manifest.DefaultMaxSize>>20)
	fs.String("max-manifest-size", def, "refuse a manifest larger than `SIZE` (e.g. 200M, 1G; powers of 1024)")
}

// loadManifest reads and validates the manifest named by the command's
// one argument; problems with it are usage errors (exit 2), a manifest
// past --max-manifest-size included.
func loadManifest(e *env, fs *pflag.FlagSet) (*manifest.Manifest, error) {
	if fs.NArg() != 1 {
		return nil, usagef("want one MANIFEST (a file, or - for stdin), got %d arguments", fs.NArg())
	}
	v, _ := fs.GetString("max-manifest-size")
	limit, err := parseSize(v)
	if err == nil && limit <= 0 {
		err = fmt.Errorf("want a size above 0, got %q", v)
	}
	if err != nil {
		return nil, usagef("--max-manifest-size: %v", err)
	}
	name := fs.Arg(0)
	var data []byte
	if name == "-" {
		data, err = manifest.Read(os.Stdin, "stdin", limit)
	} else {
		data, err = manifest.ReadFile(name, limit)
	}
	if err != nil {
		return nil, readError("manifest", err)
	}
	m, err := manifest.Parse(data)
	if err != nil {
		return nil, usagef("manifest %s: %v", name, err)
	}
	if bp, _ := fs.GetString("build-pipeline"); bp != "" {
		data, err := manifest.ReadFile(bp, limit)
		if err != nil {
			return nil, readError("build pipeline", err)
		}
		if err := m.SetDefaultBuild(data); err != nil {
			return nil, usagef("build pipeline %s: %v", bp, err)
		}
	}
	return m, nil
}

// readError is the usage error for a manifest (what) that could not be
// read; past the size limit it says which flag raises it.
func readError(what string, err error) error {
	if errors.Is(err, manifest.ErrTooLarge) {
		return usagef("%s %v; --max-manifest-size raises the limit", what, err)
	}
	return usagef("read %s: %v", what, err)
}

func runBuild(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	m, err := loadManifest(e, fs)
	if err != nil {
		return err
	}
	libFlag, _ := fs.GetString("libdir")
	libdir, err := builder.FindLibdir(libFlag)
	if err != nil {
		return usagef("%v", err)
	}
	if err := m.CheckLibdir(libdir); err != nil {
		return usagef("%v", err)
	}
	if err := m.ValidateModules(libdir); err != nil {
		return usagef("manifest %s: %v", fs.Arg(0), err)
	}
	store, _ := fs.GetString("store")
	if store, err = absArg(store); err != nil {
		return err
	}
	opts := builder.Options{Store: store, Libdir: libdir}
	opts.Exports, _ = fs.GetStringArray("export")
	if len(opts.Exports) > 0 && m.Version != manifest.Version2 {
		return usagef("--export is for format-2 manifests; a format-1 build exports its assembler's output")
	}
	for _, name := range opts.Exports {
		found := false
		for _, p := range m.Pipelines() {
			found = found || p.Name == name
		}
		if !found {
			return usagef("--export %s: the manifest has no pipeline of that name", name)
		}
	}
	if out, _ := fs.GetString("output-directory"); out != "" {
		if opts.OutputDir, err = absArg(out); err != nil {
			return err
		}
	}
	if name, _ := fs.GetString("remote"); name != "" {
		spec, err := remoteSpec(ctx, fs)
		if err != nil {
			return err
		}
		opts.Remote = &spec
		opts.Push, _ = fs.GetBool("push")
	} else if push, _ := fs.GetBool("push"); push {
		return usagef("--push needs --remote NAME")
	}
	if sock, _ := fs.GetString("loopd-socket"); sock != "" {
		if opts.LoopdSocket, err = absArg(sock); err != nil {
			return err
		}
	}
	sinks := []func(builder.Event){}
	if fd, _ := fs.GetInt("monitor-fd"); fd >= 0 {
		if fd <= 2 {
			return usagef("--monitor-fd %d: stdin, stdout and stderr are taken; pass another descriptor", fd)
		}
		f := os.NewFile(uintptr(fd), "monitor")
		if _, err := f.Stat(); err != nil {
			return usagef("--monitor-fd %d: %v", fd, err)
		}
		defer f.Close()
		sinks = append(sinks, builder.JSONSeq(f))
	}
	p := newBuildProgress(e.stderr, e.stderrIsTTY)
	defer p.stop()
	sinks = append(sinks, p.event)
	if e.stderrIsTTY {
		opts.Live = p
	}
	opts.Events = func(ev builder.Event) {
		for _, s := range sinks {
			s(ev)
		}
	}

	c, err := connect(ctx, fs)
	if err != nil {
		return err
	}
	defer c.Close()
	res, err := builder.Build(ctx, c, m, opts)
	p.stop()
	if asJSON, _ := fs.GetBool("json"); asJSON {
		printResultJSON(e.stdout, res)
	}
	switch {
	case err == nil:
		return nil
	case ctx.Err() != nil:
		fmt.Fprintln(e.stderr, "forge build: interrupted; the stages stored so far stay cached")
		return &exitError{130}
	}
	var se *builder.StageError
	if errors.As(err, &se) {
		if !e.stderrIsTTY && se.Output != "" {
			fmt.Fprintf(e.stderr, "---- output of %s %s ----\n%s", se.Path, se.Name, se.Output)
			if !strings.HasSuffix(se.Output, "\n") {
				fmt.Fprintln(e.stderr)
			}
			fmt.Fprintln(e.stderr, "----")
		}
		fmt.Fprintf(e.stderr, "forge build: %v\n", err)
		return &exitError{1}
	}
	return err
}

// printResultJSON prints osbuild's --json result: IDs that do not exist
// are null.
func printResultJSON(w io.Writer, res *builder.Result) {
	out := map[string]any{"tree_id": nullable(res.TreeID), "output_id": nullable(res.OutputID), "success": res.Success}
	if res.Error != nil {
		out["error"] = res.Error
	}
	if res.Pipelines != nil {
		out["pipelines"] = res.Pipelines
	}
	b, _ := json.MarshalIndent(out, "", "  ")
	fmt.Fprintf(w, "%s\n", b)
}

func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// buildProgress shows a build on stderr: a line per stage (cached, or the time
// it ran), and on a terminal the running stage's output as it comes under
// a live status line.
type buildProgress struct {
	mu      sync.Mutex
	w       io.Writer
	tty     bool
	running *builder.Event
	started time.Time
	partial []byte
	tick    *time.Ticker
	done    chan struct{}
	stopped bool
}

func newBuildProgress(w io.Writer, tty bool) *buildProgress {
	p := &buildProgress{w: w, tty: tty, done: make(chan struct{})}
	if tty {
		p.tick = time.NewTicker(time.Second)
		go func() {
			for {
				select {
				case <-p.tick.C:
					p.mu.Lock()
					p.drawStatus()
					p.mu.Unlock()
				case <-p.done:
					return
				}
			}
		}()
	}
	return p
}

func (p *buildProgress) stop() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.stopped {
		return
	}
	p.stopped = true
	if p.tick != nil {
		p.tick.Stop()
		close(p.done)
	}
	p.clearStatus()
}

func stageLabel(ev builder.Event) string {
	id := ev.ID
	if len(id) > 12 {
		id = id[:12]
	}
	return fmt.Sprintf("%s %s %s", ev.Path, ev.Name, id)
}

func (p *buildProgress) event(ev builder.Event) {
	p.mu.Lock()
	defer p.mu.Unlock()
	switch ev.Type {
	case builder.EventStageCached:
		p.line(fmt.Sprintf("%s  cached", stageLabel(ev)))
	case builder.EventStageStarted:
		e := ev
		p.running, p.started = &e, time.Now()
		if !p.tty {
			p.line(fmt.Sprintf("%s  running", stageLabel(ev)))
		}
		p.drawStatus()
	case builder.EventStageFinished:
		p.flushPartial()
		p.running = nil
		p.line(fmt.Sprintf("%s  done in %s", stageLabel(ev), round(ev.Duration)))
	case builder.EventStageFailed:
		p.flushPartial()
		p.running = nil
		p.line(fmt.Sprintf("%s  FAILED after %s", stageLabel(ev), time.Since(p.started).Round(100*time.Millisecond)))
	case builder.EventLog:
		// Not a stage's output (that goes to Write): the builder's own
		// lines, such as what fetching sources did.
		if ev.Path == "" {
			p.line(ev.Line)
		}
	}
}

func round(sec float64) time.Duration {
	return (time.Duration(sec * float64(time.Second))).Round(10 * time.Millisecond)
}

// Write takes the running stage's output (terminal only): whole lines are
// printed above the status line.
func (p *buildProgress) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.partial = append(p.partial, b...)
	i := strings.LastIndexByte(string(p.partial), '\n')
	if i >= 0 {
		p.clearStatus()
		p.w.Write(p.partial[:i+1])
		p.partial = append(p.partial[:0], p.partial[i+1:]...)
		p.drawStatus()
	}
	return len(b), nil
}

func (p *buildProgress) flushPartial() {
	if len(p.partial) > 0 {
		p.clearStatus()
		p.w.Write(append(p.partial, '\n'))
		p.partial = p.partial[:0]
	}
}

// line prints a line of its own, above the status line.
func (p *buildProgress) line(s string) {
	p.clearStatus()
	fmt.Fprintf(p.w, "%s\n", s)
	p.drawStatus()
}

func (p *buildProgress) clearStatus() {
	if p.tty {
		fmt.Fprint(p.w, "\r\x1b[K")
	}
}

func (p *buildProgress) drawStatus() {
	if !p.tty || p.running == nil || p.stopped {
		return
	}
	fmt.Fprintf(p.w, "\r\x1b[K▶ %s  %s", stageLabel(*p.running), time.Since(p.started).Round(time.Second))
}

func runInspect(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	m, err := loadManifest(e, fs)
	if err != nil {
		return err
	}
	var cached func(id string) bool
	if noStore, _ := fs.GetBool("no-store"); !noStore {
		c, err := connect(ctx, fs)
		if err != nil {
			return err
		}
		defer c.Close()
		refs, err := c.RefNames(ctx)
		if err != nil {
			return err
		}
		stored := map[string]bool{}
		for _, r := range refs {
			stored[r.Name] = true
		}
		cached = func(id string) bool { return stored[id] }
	}
	if m.Version == manifest.Version2 {
		libdir, _ := fs.GetString("libdir")
		if libdir != "" {
			if err := m.ValidateModules(libdir); err != nil {
				return usagef("manifest %s: %v", fs.Arg(0), err)
			}
		}
		b, err := m.Describe(manifest.DescribeOptions{HostRunner: builder.HostRunner(libdir), Cached: cached})
		if err != nil {
			return err
		}
		_, err = e.stdout.Write(b)
		return err
	}
	if cached == nil {
		cached = func(string) bool { return false }
	}
	out := map[string]any{"pipeline": builder.Inspect(m.Pipeline, cached)}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%s\n", b)
	return nil
}
