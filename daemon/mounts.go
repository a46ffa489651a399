package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/mountinfo"
	"github.com/forge-build/forge/overlay"
	"github.com/forge-build/forge/remote"
)

// mountEntry is a mount the daemon serves.
type mountEntry struct {
	m       mounted
	gone    chan struct{} // closed once watch has forgotten the mount and removed its scratch
	rw      writable      // nil for a read-only mount
	scratch string        // a writable mount's changes
	// basePin holds the tree an overlay mount reads its unchanged files
	// from, for as long as it is mounted; nil for other mounts.
	basePin func()
	// commitMu serializes commits of one mount.
	commitMu sync.Mutex

	mu      sync.Mutex // guards info.Tree and release, which a commit moves
	info    client.MountInfo
	release func() // the tree's pin
}

// mounted is what every mount has.
type mounted interface {
	Unmount(lazy bool) error
	Wait()
}

// writable is what both kinds of writable mount have.
type writable interface {
	mounted
	Commit(ctx context.Context, newWriter func() (fusefs.Writer, error), refs ...string) (digest.Hash, error)
}

// casWriter adapts *cas.Writer to what a copy-on-write mount commits with.
// Close does nothing: the daemon closes the Writer itself once it has
// pinned the new tree, so that no GC can slip in between.
type casWriter struct{ w *cas.Writer }

func (c casWriter) PutFile(ctx context.Context, f *os.File, size int64) ([]node.Chunk, uint64, error) {
	return c.w.PutFile(ctx, f, size)
}
func (c casWriter) PutNode(n *node.Node) (digest.Hash, error)     { return c.w.PutNode(n) }
func (c casWriter) Commit(tree digest.Hash, refs ...string) error { return c.w.Commit(tree, refs...) }
func (c casWriter) Close() error                                  { return nil }

// clampWriter stores no modification time later than epoch: what a
// commit with CommitRequest.ClampMtime puts. Clamping at PutNode reaches
// exactly the nodes the commit stores anew (changed files and the
// directories above them), whichever kind of mount commits, and the hash
// the commit records is the clamped node's.
type clampWriter struct {
	fusefs.Writer
	epoch int64
}

func (c clampWriter) PutNode(n *node.Node) (digest.Hash, error) {
	if n.MtimeSec > c.epoch || (n.MtimeSec == c.epoch && n.MtimeNsec > 0) {
		clamped := *n
		clamped.MtimeSec, clamped.MtimeNsec = c.epoch, 0
		n = &clamped
	}
	return c.Writer.PutNode(n)
}

// The daemon records its mounts in <store>/mounts.json, so that after a
// SIGKILL the next daemon can find the dead ones (ENOTCONN for every user)
// and detach them.

func (d *Daemon) mountsFile() string { return filepath.Join(d.store.Dir(), mountsName) }

// saveMounts writes the record; d.mu is held.
func (d *Daemon) saveMounts() {
	infos := make([]client.MountInfo, 0, len(d.mounts))
	for _, e := range d.mounts {
		e.mu.Lock()
		infos = append(infos, e.info)
		e.mu.Unlock()
	}
	sort.Slice(infos, func(i, j int) bool { return infos[i].Mountpoint < infos[j].Mountpoint })
	b, _ := json.MarshalIndent(infos, "", "  ")
	tmp := d.mountsFile() + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		d.cfg.Logf("record mounts: %v", err)
		return
	}
	if err := os.Rename(tmp, d.mountsFile()); err != nil {
		d.cfg.Logf("record mounts: %v", err)
	}
}

// recoverMounts detaches the mounts a previous daemon of this store left
// behind. We hold the store's lock, so that daemon is gone and its mounts
// are dead.
func (d *Daemon) recoverMounts() {
	b, err := os.ReadFile(d.mountsFile())
	if err != nil {
		return
	}
	var infos []client.MountInfo
	if err := json.Unmarshal(b, &infos); err != nil {
		d.cfg.Logf("read %s: %v", d.mountsFile(), err)
	}
	live, err := forgeMounts()
	if err != nil {
		d.cfg.Logf("read mount table: %v", err)
	}
	for _, info := range infos {
		if !live[string(info.Mountpoint)] {
			continue
		}
		if err := unix.Unmount(string(info.Mountpoint), unix.MNT_DETACH); err != nil {
			d.cfg.Logf("detach dead mount %s: %v", info.Mountpoint, err)
			continue
		}
		d.cfg.Logf("detached dead mount %s (tree %s) left by a previous daemon", info.Mountpoint, info.Tree)
	}
	os.Remove(d.mountsFile())
}

// forgeMounts lists the mountpoints of forge's mounts (FUSE, and the
// overlays of writable mounts) in this mount namespace.
func forgeMounts() (map[string]bool, error) {
	ms, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	out := map[string]bool{}
	for _, m := range ms {
		if (strings.HasPrefix(m.FSType, "fuse") || m.FSType == "overlay") && strings.HasPrefix(m.Source, "forge") {
			out[m.Point] = true
		}
	}
	return out, nil
}

func (d *Daemon) mount(ctx context.Context, body []byte, _ func(client.Event) error) (any, error) {
	req, err := decode[client.MountRequest](body)
	if err != nil {
		return nil, err
	}
	if err := absPath("mountpoint", string(req.Mountpoint)); err != nil {
		return nil, err
	}
	mp := filepath.Clean(string(req.Mountpoint))
	fi, err := os.Stat(mp)
	if err != nil {
		return nil, fmt.Errorf("mountpoint %s: %w", mp, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("%w: mountpoint %s is not a directory", cas.ErrInvalidArgument, mp)
	}
	if err := CheckMountpoint(d.store.Dir(), mp); err != nil {
		return nil, err
	}
	var h digest.Hash
	release := func() {}
	var lazy *remote.Lazy
	switch {
	case req.Remote != nil:
		// Never a build root: the bucket's set-id programs and device
		// nodes are not honoured for whoever reaches the mount.
		if req.Writable || req.Compose != nil || req.Tree == "" || req.BuildRoot {
			return nil, fmt.Errorf("%w: a remote mount is of one tree, read-only, not a build root", cas.ErrInvalidArgument)
		}
		r, err := d.openRemote(ctx, *req.Remote)
		if err != nil {
			return nil, err
		}
		found, err := r.Resolve(ctx, req.Tree)
		if err != nil {
			return nil, err
		}
		h = found.Tree
		if lazy, err = r.OpenLazy(ctx, d.store, h); err != nil {
			return nil, err
		}
		if found.Kind == "stage" {
			if err := r.MarkUsed(ctx, req.Tree); err != nil {
				d.cfg.Logf("remote mount of stage %s: marking it used: %v", req.Tree, err)
			}
		}
		release = func() {
			st := lazy.Stats()
			lazy.Close()
			d.cfg.Logf("remote mount of %s (%s) ended: %d chunks fetched, %d bytes, %d requests", h.Short(), req.Remote.Name, st.Chunks, st.Bytes, st.Requests.Requests)
		}
	case req.Compose != nil:
		if req.Tree != "" || req.Writable {
			return nil, fmt.Errorf("%w: a composed mount takes no tree and is read-only", cas.ErrInvalidArgument)
		}
		// Compose pins the new tree: GC cannot free it before the
		// mount holds it, nor while it does.
		if h, release, err = d.store.Compose(ctx, composeEntries(req.Compose)); err != nil {
			return nil, err
		}
	case req.Tree != "" || !req.Writable:
		if h, release, err = d.resolvePinned(req.Tree); err != nil {
			return nil, err
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.mounts[mp]; ok {
		release()
		return nil, fmt.Errorf("%w: %s already has a forge mount", cas.ErrInvalidArgument, mp)
	}
	// nosuid,nodev unless asked: whoever can reach a mount could run its
	// set-id programs and open its device nodes, and whoever can write a
	// writable one can put them there. Builds ask for both (stages run
	// debootstrap, which makes device nodes, and packages whose set-id
	// programs run in the build root), and mount where only root can go.
	opts := fusefs.Options{AllowOther: true, Name: "forge:" + h.Short(), Logf: d.cfg.Logf, Statfs: d.statfs,
		Suid: req.BuildRoot, Dev: req.BuildRoot}
	e := &mountEntry{release: release, gone: make(chan struct{})}
	if req.Writable {
		opts.Name = "forge-rw:" + h.Short()
		e.rw, e.info.Kind, err = d.mountWritable(mp, h, opts, e)
		e.m = e.rw
	} else if lazy != nil {
		opts.Name = "forge-remote:" + h.Short()
		e.m, err = fusefs.MountReadOnly(mp, fusefs.NewCache(lazy, 0), h, opts)
	} else {
		e.m, err = fusefs.MountReadOnly(mp, d.nodes, h, opts)
	}
	if err != nil {
		release()
		return nil, fmt.Errorf("mount %s at %s: %w", h.Short(), mp, err)
	}
	if e.basePin != nil {
		// The overlay reads the tree below it until unmounted: the
		// tree's pin stays with it, and commits pin what they store.
		release = func() {}
	}
	e.release = release
	info := client.MountInfo{Mountpoint: client.Path(mp), Writable: req.Writable, Kind: e.info.Kind, Created: time.Now().UTC()}
	if req.Compose != nil {
		info.Tree = h.String() // no name: the tree has no ref
	}
	if req.Tree != "" {
		info.Tree = h.String()
		if _, perr := digest.Parse(req.Tree); perr != nil {
			info.Name = req.Tree
		}
	}
	e.info = info
	d.mounts[mp] = e
	d.saveMounts()
	go d.watch(e)
	if req.Compose != nil {
		d.cfg.Logf("mounted %s, composed of %d entries, at %s", h.Short(), len(req.Compose), mp)
	} else {
		d.cfg.Logf("mounted %s at %s (writable: %v)", h.Short(), mp, req.Writable)
	}
	return info, nil
}

// composeEntries converts the wire's entries to the store's.
func composeEntries(in []client.ComposeEntry) []cas.ComposeEntry {
	out := make([]cas.ComposeEntry, len(in))
	for i, e := range in {
		out[i] = cas.ComposeEntry{Name: string(e.Name), Tree: e.Tree, Path: string(e.Path)}
	}
	return out
}

// CheckMountpoint refuses mountpoint when a mount there would hide files
// of the store at storeDir from the daemon and from fsck: the store
// directory itself, anything inside it but a run's directory under
// client.RunsDirName, and any directory the store is inside of. Both paths are
// compared with symlinks resolved (as far as they exist). The error wraps
// cas.ErrInvalidArgument.
func CheckMountpoint(storeDir, mountpoint string) error {
	store, err := resolve(storeDir)
	if err != nil {
		return fmt.Errorf("store %s: %w", storeDir, err)
	}
	mp, err := resolve(mountpoint)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", mountpoint, err)
	}
	also := ""
	if mp != filepath.Clean(mountpoint) {
		also = " (" + mp + ")"
	}
	if rel, ok := below(store, mp); ok {
		parts := strings.Split(rel, "/")
		if len(parts) >= 3 && parts[0] == client.RunsDirName {
			return nil // <store>/buildroots/run-*/NAME
		}
		if rel == "." {
			return fmt.Errorf("%w: mountpoint %s%s is store %s itself; mount outside the store",
				cas.ErrInvalidArgument, mountpoint, also, store)
		}
		return fmt.Errorf("%w: mountpoint %s%s is inside store %s: a mount there would hide the store's own files; mount outside the store",
			cas.ErrInvalidArgument, mountpoint, also, store)
	}
	if _, ok := below(mp, store); ok {
		return fmt.Errorf("%w: store %s is inside mountpoint %s%s: a mount there would hide the store's own files; mount outside the store",
			cas.ErrInvalidArgument, store, mountpoint, also)
	}
	return nil
}

// resolve makes p absolute and resolves the symlinks of as much of it as
// exists.
func resolve(p string) (string, error) {
	p, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	var rest []string
	for {
		r, err := filepath.EvalSymlinks(p)
		if err == nil {
			return filepath.Join(append([]string{r}, rest...)...), nil
		}
		if !errors.Is(err, os.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(p)
		if parent == p {
			return "", err
		}
		rest = append([]string{filepath.Base(p)}, rest...)
		p = parent
	}
}

// below reports whether p is dir or inside it, and p's path relative to
// dir ("." for dir itself). Both are absolute and clean.
func below(dir, p string) (string, bool) {
	rel, err := filepath.Rel(dir, p)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return "", false
	}
	return rel, true
}

// mountWritable mounts tree h writable at mp: overlayfs over a read-only
// FUSE mount of the tree where the store's filesystem can hold an upper
// layer (ext4, xfs, btrfs), else forge's copy-on-write FUSE filesystem,
// which needs nothing of it. Either keeps its changes in a new scratch
// directory under <store>/tmp/, which the next daemon (cas.Open) clears
// after a crash. On success e holds the scratch directory and, for an
// overlay, the base tree's pin (moved from e.release).
func (d *Daemon) mountWritable(mp string, h digest.Hash, opts fusefs.Options, e *mountEntry) (writable, string, error) {
	tmp := filepath.Join(d.store.Dir(), "tmp")
	scratch, err := os.MkdirTemp(tmp, "mount-")
	if err != nil {
		return nil, "", err
	}
	ov, err := overlay.New(mp, d.nodes, h, overlay.Options{
		Lower:   fusefs.Options{Logf: opts.Logf, Statfs: opts.Statfs},
		Suid:    opts.Suid,
		Dev:     opts.Dev,
		Name:    opts.Name,
		Scratch: scratch,
		Logf:    opts.Logf,
	})
	if err == nil {
		e.scratch, e.basePin = scratch, e.release
		return ov, "overlay", nil
	}
	d.cfg.Logf("%v; using forge's copy-on-write FUSE filesystem instead", err)
	if rerr := os.RemoveAll(scratch); rerr != nil {
		d.cfg.Logf("remove %s: %v", scratch, rerr)
	}
	if scratch, err = os.MkdirTemp(tmp, "mount-"); err != nil {
		return nil, "", err
	}
	cow, err := fusefs.MountCopyOnWrite(mp, d.nodes, h, fusefs.CowOptions{Options: opts, Scratch: scratch})
	if err != nil {
		os.RemoveAll(scratch)
		return nil, "", err
	}
	e.scratch = scratch
	return cow, "fuse", nil
}

// watch forgets a mount once its server stops, however it was unmounted
// (forge store umount, or a plain umount by someone else).
func (d *Daemon) watch(e *mountEntry) {
	defer close(e.gone)
	e.m.Wait()
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.mounts[string(e.info.Mountpoint)] == e {
		delete(d.mounts, string(e.info.Mountpoint))
		d.saveMounts()
	}
	e.mu.Lock()
	e.release()
	if e.basePin != nil {
		e.basePin()
	}
	e.mu.Unlock()
	if e.scratch != "" {
		if err := os.RemoveAll(e.scratch); err != nil {
			d.cfg.Logf("remove scratch %s: %v", e.scratch, err)
		}
	}
}

// commit stores what a writable mount holds now and moves the mount's pin
// to the new tree (whose nodes the mount's unchanged files now name).
func (d *Daemon) commit(ctx context.Context, body []byte, _ func(client.Event) error) (any, error) {
	req, err := decode[client.CommitRequest](body)
	if err != nil {
		return nil, err
	}
	for _, r := range req.Refs {
		if err := cas.ValidRefName(r); err != nil {
			return nil, err
		}
	}
	mp := filepath.Clean(string(req.Mountpoint))
	d.mu.Lock()
	e, ok := d.mounts[mp]
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s: %w: not a mount of store %s", mp, cas.ErrNotFound, d.store.Dir())
	}
	if e.rw == nil {
		return nil, fmt.Errorf("%w: %s is a read-only mount (mount it with --rw to commit)", cas.ErrInvalidArgument, mp)
	}
	e.commitMu.Lock()
	defer e.commitMu.Unlock()
	start := time.Now()
	var writers []*cas.Writer
	defer func() {
		for _, w := range writers {
			w.Close()
		}
	}()
	h, err := e.rw.Commit(ctx, func() (fusefs.Writer, error) {
		w, err := d.store.NewWriter()
		if err != nil {
			return nil, err
		}
		writers = append(writers, w)
		if req.ClampMtime != nil {
			return clampWriter{casWriter{w}, *req.ClampMtime}, nil
		}
		return casWriter{w}, nil
	}, req.Refs...)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", mp, err)
	}
	release, err := d.store.Pin(h)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", mp, err)
	}
	e.mu.Lock()
	old := e.release
	e.release = release
	e.info.Tree = h.String()
	e.mu.Unlock()
	old()
	d.mu.Lock()
	d.saveMounts()
	d.mu.Unlock()
	d.cfg.Logf("committed %s as %s in %s", mp, h.Short(), time.Since(start).Round(time.Millisecond))
	return client.CommitResult{Tree: h.String(), ElapsedSec: time.Since(start).Seconds()}, nil
}

func (d *Daemon) unmount(ctx context.Context, body []byte, _ func(client.Event) error) (any, error) {
	req, err := decode[client.UnmountRequest](body)
	if err != nil {
		return nil, err
	}
	mp := filepath.Clean(string(req.Mountpoint))
	d.mu.Lock()
	e, ok := d.mounts[mp]
	d.mu.Unlock()
	if !ok {
		return nil, fmt.Errorf("%s: %w: not a mount of store %s", mp, cas.ErrNotFound, d.store.Dir())
	}
	if err := e.m.Unmount(req.Lazy); err != nil {
		if errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("unmount %s: %w (files are open there; --lazy detaches it anyway)", mp, err)
		}
		return nil, fmt.Errorf("unmount %s: %w", mp, err)
	}
	if !req.Lazy {
		// Answer once the mount is gone, scratch space included.
		<-e.gone
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.info, nil
}

func (d *Daemon) listMounts(ctx context.Context, _ []byte, _ func(client.Event) error) (any, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]client.MountInfo, 0, len(d.mounts))
	for _, e := range d.mounts {
		e.mu.Lock()
		out = append(out, e.info)
		e.mu.Unlock()
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Mountpoint < out[j].Mountpoint })
	return out, nil
}

// unmountAll detaches every mount on shutdown.
func (d *Daemon) unmountAll() {
	d.mu.Lock()
	entries := make([]*mountEntry, 0, len(d.mounts))
	for _, e := range d.mounts {
		entries = append(entries, e)
	}
	d.mu.Unlock()
	for _, e := range entries {
		if err := e.m.Unmount(true); err != nil {
			d.cfg.Logf("unmount %s: %v", e.info.Mountpoint, err)
			continue
		}
		select {
		case <-e.gone:
			d.cfg.Logf("unmounted %s", e.info.Mountpoint)
		case <-time.After(10 * time.Second):
			// Files are still open in the detached mount. Exiting closes
			// the FUSE connection: they fail with ENOTCONN from then on.
			d.cfg.Logf("unmounted %s, but files are still open there; they lose their mount as the daemon exits", e.info.Mountpoint)
			if e.scratch != "" {
				os.RemoveAll(e.scratch)
			}
		}
	}
}

// statfs reports the store's filesystem, which is where a mount's bytes
// really live.
func (d *Daemon) statfs() (blocks, bfree, files uint64) {
	var st unix.Statfs_t
	if err := unix.Statfs(d.store.Dir(), &st); err != nil {
		return 0, 0, 0
	}
	scale := uint64(st.Bsize) / 4096
	if scale == 0 {
		scale = 1
	}
	return st.Blocks * scale, st.Bavail * scale, st.Files
}
