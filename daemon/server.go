package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/fusefs"
)

// Config configures a daemon.
type Config struct {
	// StoreDir is the store to serve.
	StoreDir string
	// Group, if set, names a group whose members may use the daemon
	// besides root. They can then read and write the store and mount
	// its trees: membership is a privilege, like the docker group's.
	Group string
	// IdleTimeout ends the daemon after this long with no clients and no
	// mounts. Zero means never.
	IdleTimeout time.Duration
	// Logf receives one line per notable event.
	Logf func(format string, args ...any)
}

// Daemon serves one store.
type Daemon struct {
	cfg   Config
	gid   int // -1 without Group
	store *cas.Store
	nodes *fusefs.Cache // decoded nodes and chunks, shared by every mount
	ln    net.Listener
	srv   *http.Server
	start time.Time

	// base is the parent of every request's context; cancelling it stops
	// work in flight when the daemon shuts down.
	base   context.Context
	cancel context.CancelFunc

	mu         sync.Mutex
	conns      int
	mounts     map[string]*mountEntry
	streams    chan struct{} // tree streams being sent (stream.go)
	idleSince  time.Time
	shutdownCh chan struct{}
	shutOnce   sync.Once
}

// Run serves the store until ctx ends (SIGTERM), the idle timeout passes,
// or a client asks it to stop. It then unmounts everything, closes the
// store and returns nil.
func Run(ctx context.Context, cfg Config) error {
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	d := &Daemon{cfg: cfg, gid: -1, mounts: map[string]*mountEntry{}, streams: make(chan struct{}, maxStreams), start: time.Now(), shutdownCh: make(chan struct{})}
	if cfg.Group != "" {
		g, err := user.LookupGroup(cfg.Group)
		if err != nil {
			return fmt.Errorf("--group %s: %w", cfg.Group, err)
		}
		d.gid, _ = strconv.Atoi(g.Gid)
	}
	store, err := cas.Open(cfg.StoreDir, cas.Options{Logf: cfg.Logf})
	if err != nil {
		return err
	}
	d.store = store
	d.nodes = fusefs.NewCache(store, 1<<16)
	defer store.Close()
	d.recoverMounts()

	sock := filepath.Join(store.Dir(), client.SocketName)
	// We hold the store's lock, so a socket file here is a dead daemon's.
	os.Remove(sock)
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return fmt.Errorf("listen on %s: %w", sock, err)
	}
	d.ln = ln
	// The socket file is removed below only while it is still the one
	// made here: once the store's directory was removed and made anew,
	// the path may be another daemon's socket.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	var sockStat unix.Stat_t
	if err := unix.Lstat(sock, &sockStat); err != nil {
		return fmt.Errorf("stat %s: %w", sock, err)
	}
	defer removeIfSame(sock, &sockStat)
	mode := os.FileMode(0o600)
	if d.gid >= 0 {
		mode = 0o660
		if err := os.Chown(sock, 0, d.gid); err != nil {
			return fmt.Errorf("chown %s: %w", sock, err)
		}
		// Group members must reach the socket: let the group search the
		// store directory (and nothing more).
		if err := allowGroupSearch(store.Dir(), d.gid); err != nil {
			return err
		}
	}
	if err := os.Chmod(sock, mode); err != nil {
		return fmt.Errorf("chmod %s: %w", sock, err)
	}

	d.base, d.cancel = context.WithCancel(context.Background())
	defer d.cancel()
	d.srv = &http.Server{
		Handler:           d.routes(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return d.base },
		ConnContext:       connWithPeer,
		ConnState:         d.connState,
		ErrorLog:          nil,
	}
	serveErr := make(chan error, 1)
	go func() { serveErr <- d.srv.Serve(ln) }()
	cfg.Logf("serving store %s on %s (pid %d)", store.Dir(), sock, os.Getpid())

	idle := time.NewTicker(time.Second)
	defer idle.Stop()
	var reason string
loop:
	for {
		select {
		case <-ctx.Done():
			reason = "signal"
			break loop
		case <-d.shutdownCh:
			reason = "asked to stop"
			break loop
		case err := <-serveErr:
			return fmt.Errorf("serve %s: %w", sock, err)
		case <-idle.C:
			if d.idleFor() >= cfg.IdleTimeout && cfg.IdleTimeout > 0 {
				reason = fmt.Sprintf("idle for %s", cfg.IdleTimeout)
				break loop
			}
			// No client can reach a daemon whose socket is gone (its
			// store's directory removed, say), and its lock would keep
			// a new daemon from serving the store at that path.
			if !isFile(sock, &sockStat) {
				reason = fmt.Sprintf("its socket %s was removed or replaced", sock)
				break loop
			}
		}
	}
	cfg.Logf("stopping (%s)", reason)
	d.cancel()
	shutCtx, done := context.WithTimeout(context.Background(), 30*time.Second)
	defer done()
	d.srv.Shutdown(shutCtx)
	d.unmountAll()
	return nil
}

// isFile reports whether path is still the file whose stat is st.
func isFile(path string, st *unix.Stat_t) bool {
	var now unix.Stat_t
	return unix.Lstat(path, &now) == nil && now.Dev == st.Dev && now.Ino == st.Ino
}

// removeIfSame removes path if it is still the file whose stat is st.
func removeIfSame(path string, st *unix.Stat_t) {
	if isFile(path, st) {
		os.Remove(path)
	}
}

func allowGroupSearch(dir string, gid int) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if err := os.Chown(dir, -1, gid); err != nil {
		return fmt.Errorf("chown %s: %w", dir, err)
	}
	if err := os.Chmod(dir, fi.Mode().Perm()|0o010); err != nil {
		return fmt.Errorf("chmod %s: %w", dir, err)
	}
	return nil
}

func (d *Daemon) idleFor() time.Duration {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.conns > 0 || len(d.mounts) > 0 {
		d.idleSince = time.Time{}
		return 0
	}
	if d.idleSince.IsZero() {
		d.idleSince = time.Now()
	}
	return time.Since(d.idleSince)
}

func (d *Daemon) connState(_ net.Conn, state http.ConnState) {
	d.mu.Lock()
	defer d.mu.Unlock()
	switch state {
	case http.StateNew:
		d.conns++
	case http.StateClosed, http.StateHijacked:
		d.conns--
	}
}

type peerKey struct{}

// connWithPeer records the peer's credentials (SO_PEERCRED) with the
// connection, for authorize.
func connWithPeer(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *unix.Ucred
	raw.Control(func(fd uintptr) {
		cred, err = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err != nil || cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, cred)
}

// authorize admits root, and members of the configured group.
func (d *Daemon) authorize(ctx context.Context) error {
	cred, _ := ctx.Value(peerKey{}).(*unix.Ucred)
	if cred == nil {
		return fmt.Errorf("%w: no peer credentials", client.ErrDenied)
	}
	if cred.Uid == 0 {
		return nil
	}
	if d.gid >= 0 && peerInGroup(int(cred.Pid), d.gid) {
		return nil
	}
	return fmt.Errorf("%w: uid %d is not root and not in the daemon's group", client.ErrDenied, cred.Uid)
}

// peerInGroup reads a process's groups from /proc: SO_PEERCRED gives only
// the primary gid.
func peerInGroup(pid, gid int) bool {
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(status), "\n") {
		for _, prefix := range []string{"Gid:", "Groups:"} {
			if len(line) > len(prefix) && line[:len(prefix)] == prefix {
				for _, f := range strings.Fields(line[len(prefix):]) {
					if n, err := strconv.Atoi(f); err == nil && n == gid {
						return true
					}
				}
			}
		}
	}
	return false
}

// handler is one call: it decodes req, may emit events, and returns the
// result or an error.
type handler func(ctx context.Context, body []byte, emit func(client.Event) error) (any, error)

func (d *Daemon) routes() *http.ServeMux {
	mux := http.NewServeMux()
	calls := map[string]handler{
		"ping":     d.ping,
		"import":   d.importTree,
		"export":   d.exportTree,
		"refs":     d.refs,
		"rm":       d.remove,
		"usage":    d.usage,
		"diff":     d.diff,
		"gc":       d.gc,
		"fsck":     d.fsck,
		"mount":    d.mount,
		"commit":   d.commit,
		"umount":   d.unmount,
		"mounts":   d.listMounts,
		"shutdown": d.shutdown,
		"push":     d.push,
		"pull":     d.pull,
	}
	for name, h := range calls {
		mux.HandleFunc("POST /v1/"+name, d.serve(name, h))
	}
	mux.HandleFunc("POST /v1/stream", d.streamTree)
	return mux
}

// serve runs a handler and streams its events, as JSON lines.
func (d *Daemon) serve(name string, h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		enc := json.NewEncoder(w)
		flusher, _ := w.(http.Flusher)
		var wmu sync.Mutex
		emit := func(ev client.Event) error {
			wmu.Lock()
			defer wmu.Unlock()
			if err := enc.Encode(ev); err != nil {
				return err
			}
			if flusher != nil {
				flusher.Flush()
			}
			return nil
		}
		var result any
		err := d.authorize(r.Context())
		if err == nil {
			var body []byte
			body, err = io.ReadAll(io.LimitReader(r.Body, 1<<20))
			if err == nil {
				result, err = h(r.Context(), body, emit)
			}
		}
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				d.cfg.Logf("%s: %v", name, err)
			}
			emit(client.Event{Error: client.ToWire(err)})
			return
		}
		raw, err := json.Marshal(result)
		if err != nil {
			emit(client.Event{Error: client.ToWire(err)})
			return
		}
		emit(client.Event{Result: raw})
	}
}

func decode[T any](body []byte) (T, error) {
	var v T
	if len(body) == 0 {
		return v, nil
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v); err != nil {
		return v, fmt.Errorf("%w: request: %v", cas.ErrInvalidArgument, err)
	}
	return v, nil
}

func absPath(what, p string) error {
	if !filepath.IsAbs(p) {
		return fmt.Errorf("%w: %s %q is not absolute", cas.ErrInvalidArgument, what, p)
	}
	return nil
}

func (d *Daemon) ping(ctx context.Context, _ []byte, _ func(client.Event) error) (any, error) {
	return client.PingResult{PID: os.Getpid(), Store: d.store.Dir(), Since: d.start}, nil
}

func (d *Daemon) shutdown(ctx context.Context, _ []byte, _ func(client.Event) error) (any, error) {
	d.shutOnce.Do(func() { close(d.shutdownCh) })
	return struct{}{}, nil
}

func progressEmitter(emit func(client.Event) error) func(cas.Progress) {
	return func(p cas.Progress) {
		emit(client.Event{Progress: &client.Progress{Entries: p.Entries, Bytes: p.Bytes, NewBytes: p.NewBytes}})
	}
}

func (d *Daemon) importTree(ctx context.Context, body []byte, emit func(client.Event) error) (any, error) {
	req, err := decode[client.ImportRequest](body)
	if err != nil {
		return nil, err
	}
	if err := absPath("path", string(req.Path)); err != nil {
		return nil, err
	}
	subRefs := make(map[string]string, len(req.SubRefs))
	for r, p := range req.SubRefs {
		subRefs[r] = string(p)
	}
	res, err := d.store.Import(ctx, string(req.Path), cas.ImportOptions{Refs: req.Refs, SubRefs: subRefs, Progress: progressEmitter(emit)})
	if err != nil {
		return nil, err
	}
	return client.ImportResult{
		Tree: res.Tree.String(), Entries: res.Entries, Bytes: res.Bytes, Reused: res.ReusedBytes,
		NewBytes: res.Stats.NewBytes, NewChunks: res.Stats.NewChunks, NewNodes: res.Stats.NewNodes,
		ElapsedSec: res.Elapsed.Seconds(),
	}, nil
}

// resolvePinned resolves a ref or hash and pins the tree for the caller.
func (d *Daemon) resolvePinned(name string) (digest.Hash, func(), error) {
	h, err := d.store.Resolve(name)
	if err != nil {
		return h, nil, err
	}
	release, err := d.store.Pin(h)
	return h, release, err
}

func (d *Daemon) exportTree(ctx context.Context, body []byte, emit func(client.Event) error) (any, error) {
	req, err := decode[client.ExportRequest](body)
	if err != nil {
		return nil, err
	}
	if err := absPath("path", string(req.Path)); err != nil {
		return nil, err
	}
	h, release, err := d.resolvePinned(req.Tree)
	if err != nil {
		return nil, err
	}
	defer release()
	res, err := d.store.Export(ctx, h, string(req.Path), cas.ExportOptions{Progress: progressEmitter(emit)})
	if err != nil {
		return nil, err
	}
	return client.ExportResult{Entries: res.Entries, Bytes: res.Bytes, ElapsedSec: res.Elapsed.Seconds()}, nil
}

func (d *Daemon) refs(ctx context.Context, body []byte, _ func(client.Event) error) (any, error) {
	req, err := decode[client.RefsRequest](body)
	if err != nil {
		return nil, err
	}
	if req.NamesOnly {
		refs, err := d.store.Refs()
		if err != nil {
			return nil, err
		}
		out := make([]client.RefInfo, len(refs))
		for i, r := range refs {
			out[i] = client.RefInfo{Name: r.Name, Tree: r.Tree.String(), LastUsed: r.LastUsed.UTC()}
		}
		return out, nil
	}
	refs, err := d.store.RefUsage(ctx)
	if err != nil {
		return nil, err
	}
	out := make([]client.RefInfo, len(refs))
	for i, r := range refs {
		out[i] = client.RefInfo{Name: r.Name, Tree: r.Tree.String(), LogicalBytes: r.LogicalBytes, UniqueBytes: r.UniqueBytes, LastUsed: r.LastUsed.UTC(), Unreadable: r.Unreadable}
	}
	return out, nil
}

func (d *Daemon) remove(ctx context.Context, body []byte, _ func(client.Event) error) (any, error) {
	req, err := decode[client.RemoveRequest](body)
	if err != nil {
		return nil, err
	}
	return struct{}{}, d.store.DeleteRefs(req.Refs...)
}

func (d *Daemon) usage(ctx context.Context, _ []byte, _ func(client.Event) error) (any, error) {
	u, err := d.store.Usage(ctx)
	if err != nil {
		return nil, err
	}
	return client.UsageResult{LogicalBytes: u.LogicalBytes, StoredBytes: u.StoredBytes, PackBytes: u.PackBytes, Chunks: u.Chunks, Nodes: u.Nodes, Packs: u.Packs, Refs: u.Refs, DedupRatio: u.DedupRatio}, nil
}

func (d *Daemon) diff(ctx context.Context, body []byte, emit func(client.Event) error) (any, error) {
	req, err := decode[client.DiffRequest](body)
	if err != nil {
		return nil, err
	}
	a, releaseA, err := d.resolvePinned(req.A)
	if err != nil {
		return nil, err
	}
	defer releaseA()
	b, releaseB, err := d.resolvePinned(req.B)
	if err != nil {
		return nil, err
	}
	defer releaseB()
	n := 0
	err = d.store.Diff(ctx, a, b, func(c cas.Change) error {
		n++
		item, _ := json.Marshal(client.Change{Op: string(c.Op), Path: client.Path(c.Path)})
		return emit(client.Event{Item: item})
	})
	return map[string]int{"changes": n}, err
}

func (d *Daemon) gc(ctx context.Context, body []byte, _ func(client.Event) error) (any, error) {
	req, err := decode[client.GCRequest](body)
	if err != nil {
		return nil, err
	}
	r, err := d.store.GC(ctx, cas.GCOptions{MaxSize: req.MaxSize, DryRun: req.DryRun})
	if err != nil {
		return nil, err
	}
	if r.DroppedRefs == nil {
		r.DroppedRefs = []string{}
	}
	return client.GCResult{DroppedRefs: r.DroppedRefs, Nodes: r.Nodes, Chunks: r.Chunks, ChunkBytes: r.ChunkBytes, PacksDeleted: r.PacksDeleted, PacksRewritten: r.PacksRewritten, OrphanPacks: r.OrphanPacks, FreedBytes: r.FreedBytes}, nil
}

func (d *Daemon) fsck(ctx context.Context, body []byte, _ func(client.Event) error) (any, error) {
	req, err := decode[client.FsckRequest](body)
	if err != nil {
		return nil, err
	}
	r, err := d.store.Fsck(ctx, cas.FsckOptions{Repair: req.Repair})
	if err != nil {
		return nil, err
	}
	return client.FsckResult{Problems: r.Problems, Repaired: r.Repaired, Chunks: r.Chunks, Nodes: r.Nodes, Packs: r.Packs, Refs: r.Refs, GarbagePacks: r.GarbagePacks, GarbageNodes: r.GarbageNodes}, nil
}
