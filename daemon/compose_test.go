package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/mountinfo"
)

// testDaemon is a daemon's state without its socket: the handlers can be
// called directly.
func testDaemon(t *testing.T) *Daemon {
	t.Helper()
	s, err := cas.Open(filepath.Join(t.TempDir(), "store"), cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{cfg: Config{Logf: t.Logf}, gid: -1, store: s, nodes: fusefs.NewCache(s, 1024), mounts: map[string]*mountEntry{}}
	t.Cleanup(func() {
		d.unmountAll()
		s.Close()
	})
	return d
}

// call runs a handler with req as its body.
func call[T any](t *testing.T, h handler, req any) (T, error) {
	t.Helper()
	var out T
	body, err := json.Marshal(req)
	if err != nil {
		t.Fatal(err)
	}
	res, err := h(context.Background(), body, func(client.Event) error { return nil })
	if err != nil {
		return out, err
	}
	if v, ok := res.(T); ok {
		return v, nil
	}
	t.Fatalf("result %T, want %T", res, out)
	return out, nil
}

// storeFiles imports files (name → content) as a tree under ref.
func storeFiles(t *testing.T, d *Daemon, ref string, files map[string]string) {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := d.store.Import(context.Background(), dir, cas.ImportOptions{Refs: []string{ref}}); err != nil {
		t.Fatal(err)
	}
}

// Requests the daemon refuses before it mounts anything: no FUSE needed.
func TestComposedMountRefusals(t *testing.T) {
	d := testDaemon(t)
	storeFiles(t, d, "src", map[string]string{"f": "x"})
	mp := t.TempDir()
	entries := []client.ComposeEntry{{Name: "a", Tree: "src", Path: "f"}}
	tests := []struct {
		name string
		req  client.MountRequest
		is   error
		says string
	}{
		{"with a tree", client.MountRequest{Tree: "src", Compose: entries}, cas.ErrInvalidArgument, "takes no tree"},
		{"writable", client.MountRequest{Writable: true, Compose: entries}, cas.ErrInvalidArgument, "read-only"},
		{"missing tree", client.MountRequest{Compose: []client.ComposeEntry{{Name: "b", Tree: "nope"}}}, cas.ErrNotFound, `compose entry "b"`},
		{"missing path", client.MountRequest{Compose: []client.ComposeEntry{{Name: "b", Tree: "src", Path: "g"}}}, cas.ErrNotFound, `compose entry "b"`},
		{"duplicate", client.MountRequest{Compose: append(entries, entries...)}, cas.ErrInvalidArgument, `compose entry "a"`},
		{"climbing", client.MountRequest{Compose: []client.ComposeEntry{{Name: "../b", Tree: "src"}}}, cas.ErrInvalidArgument, `compose entry "../b"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.req.Mountpoint = client.Path(mp)
			_, err := call[client.MountInfo](t, d.mount, tt.req)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("mount: %v; want %v saying %q", err, tt.is, tt.says)
			}
			// It survives the wire with its kind.
			remote := &client.RemoteError{Kind: client.ToWire(err).Kind, Message: err.Error()}
			if !errors.Is(remote, tt.is) {
				t.Fatalf("over the wire, %v is no longer %v", err, tt.is)
			}
		})
	}
	if len(d.mounts) != 0 {
		t.Fatalf("refused requests left %d mounts", len(d.mounts))
	}
}

// A composed mount reads the stored files, and keeps them while mounted
// whatever GC does; once unmounted, GC frees the composed tree.
func TestComposedMount(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: mounts FUSE")
	}
	if _, err := os.Stat("/dev/fuse"); err != nil {
		t.Skipf("needs /dev/fuse: %v", err)
	}
	d := testDaemon(t)
	ctx := context.Background()
	storeFiles(t, d, "source/sha256:aa", map[string]string{"sha256:aa": "first\n"})
	storeFiles(t, d, "source/sha256:bb", map[string]string{"sha256:bb": "second\n"})
	storeFiles(t, d, "pipeline", map[string]string{"boot/vmlinuz": "kernel", "etc/os-release": "ID=test\n"})
	mp := t.TempDir()
	info, err := call[client.MountInfo](t, d.mount, client.MountRequest{Mountpoint: client.Path(mp), Compose: []client.ComposeEntry{
		{Name: "sha256:aa", Tree: "source/sha256:aa", Path: "sha256:aa"},
		{Name: "sha256:bb", Tree: "source/sha256:bb", Path: "/sha256:bb"},
		{Name: "boot/vmlinuz", Tree: "pipeline", Path: "/boot/vmlinuz"},
		{Name: "etc", Tree: "pipeline", Path: "etc"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		call[client.MountInfo](t, d.unmount, client.UnmountRequest{Mountpoint: client.Path(mp), Lazy: true})
	})
	if info.Tree == "" || info.Writable || info.Name != "" {
		t.Errorf("mount info %+v: want the composed tree, read-only, no ref name", info)
	}
	read := func() {
		t.Helper()
		for name, want := range map[string]string{"sha256:aa": "first\n", "sha256:bb": "second\n", "boot/vmlinuz": "kernel", "etc/os-release": "ID=test\n"} {
			got, err := os.ReadFile(filepath.Join(mp, name))
			if err != nil || string(got) != want {
				t.Errorf("%s: %q, %v; want %q", name, got, err, want)
			}
		}
	}
	read()
	fi, err := os.Stat(filepath.Join(mp, "boot"))
	if err != nil || fi.Mode() != os.ModeDir|0o755 {
		t.Errorf("made directory boot: %v, %v; want drwxr-xr-x", fi.Mode(), err)
	}
	if err := os.WriteFile(filepath.Join(mp, "new"), nil, 0o644); err == nil {
		t.Error("wrote into a composed mount")
	}

	// Every ref gone, and GC: the mount still reads.
	if err := d.store.DeleteRefs("source/sha256:aa", "source/sha256:bb", "pipeline"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.store.GC(ctx, cas.GCOptions{}); err != nil {
		t.Fatal(err)
	}
	read()
	// Not only from caches: the store still has every node and chunk.
	h, err := d.store.Resolve(info.Tree)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.store.Export(ctx, h, filepath.Join(t.TempDir(), "out"), cas.ExportOptions{}); err != nil {
		t.Fatalf("export of the mounted composed tree after gc: %v", err)
	}

	if _, err := call[client.MountInfo](t, d.unmount, client.UnmountRequest{Mountpoint: client.Path(mp)}); err != nil {
		t.Fatal(err)
	}
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	if left := mountinfo.Under(ms, mp); len(left) != 0 {
		t.Fatalf("still mounted: %v", left)
	}
	r, err := d.store.GC(ctx, cas.GCOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if r.Chunks == 0 {
		t.Errorf("gc after the unmount freed %+v, want the files", r)
	}
}
