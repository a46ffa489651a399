// Package sources_test fetches a manifest's sources into a store through
// a real store daemon (forge, started on demand), as root, and mounts them
// as osbuild's org.osbuild.files input shows them: a composed, read-only
// FUSE mount of files named by checksum.
package sources_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/builder/sources"
	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/internal/fstree"
)

var forgeBin string

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(runChild(v))
	}
	if os.Geteuid() != 0 {
		fmt.Println("skipping integration/sources: needs root (a store daemon, FUSE mounts)")
		os.Exit(0)
	}
	os.Exit(itest.RunWithForge(m, &forgeBin))
}

func sumOf(data []byte) string {
	h := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(h[:])
}

func forge(t *testing.T, args ...string) string {
	t.Helper()
	var stderr bytes.Buffer
	cmd := exec.Command(forgeBin, args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("forge %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

func TestFetchAndMountSources(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	work := fstree.DiskTempDir(t)
	store := filepath.Join(work, "store")
	t.Cleanup(func() { itest.StopDaemon(t, forgeBin, store) })

	files := map[string][]byte{
		"/repo/a.rpm":       bytes.Repeat([]byte("a"), 3<<20+11),
		"/repo/b with.rpm":  []byte("b\n"),
		"/repo/ünicode.txt": []byte("unicode\n"),
	}
	var mu sync.Mutex
	requests := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		requests++
		mu.Unlock()
		data, ok := files[r.URL.Path]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	}))
	defer srv.Close()

	want := map[string][]byte{}
	items := map[string]any{}
	for path, data := range files {
		want[sumOf(data)] = data
		items[sumOf(data)] = srv.URL + path
	}
	inline := []byte("#!/bin/sh\necho inline\n")
	want[sumOf(inline)] = inline
	raw, err := json.Marshal(map[string]any{
		"org.osbuild.curl": map[string]any{"items": items},
		"org.osbuild.inline": map[string]any{"items": map[string]any{
			sumOf(inline): map[string]string{"encoding": "base64", "data": base64.StdEncoding.EncodeToString(inline)},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	srcs, err := sources.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}

	c, err := client.Connect(ctx, store, client.SpawnOptions{Exe: forgeBin})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sum, err := sources.Fetch(ctx, c, srcs, nil, sources.Options{Logf: t.Logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Log(sum)
	if sum.Fetched != 4 || requests != 3 {
		t.Fatalf("summary %+v after %d requests", sum, requests)
	}
	if left, _ := os.ReadDir(filepath.Join(store, "tmp")); len(left) != 0 {
		t.Errorf("left in the store's tmp/: %v", left)
	}
	// A second fetch asks the server nothing.
	if sum, err = sources.Fetch(ctx, c, srcs, nil, sources.Options{}); err != nil || sum.Stored != 4 || requests != 3 {
		t.Fatalf("second fetch: %+v, %v, %d requests", sum, err, requests)
	}

	// forge store ls lists them, with their sizes.
	var refs []client.RefInfo
	if err := json.Unmarshal([]byte(forge(t, "store", "ls", "--json", "--store", store)), &refs); err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, r := range refs {
		sizes[r.Name] = r.LogicalBytes
	}
	for c, data := range want {
		if sizes[sources.RefName(c)] != int64(len(data)) {
			t.Errorf("store ls: %s holds %d bytes, want %d", sources.RefName(c), sizes[sources.RefName(c)], len(data))
		}
	}

	// Mounted as the org.osbuild.files input shows them.
	checksums := srcs.Checksums()
	mp := filepath.Join(work, "input")
	if err := os.Mkdir(mp, 0o755); err != nil {
		t.Fatal(err)
	}
	info, err := c.Mount(ctx, client.MountRequest{Mountpoint: client.Path(mp), Compose: sources.ComposeEntries(checksums)})
	if err != nil {
		t.Fatal(err)
	}
	mounted := true
	defer func() {
		if mounted {
			if _, err := c.Unmount(context.Background(), client.UnmountRequest{Mountpoint: client.Path(mp), Lazy: true}); err != nil {
				unix.Unmount(mp, unix.MNT_DETACH)
			}
		}
	}()
	t.Logf("mounted %s at %s", info.Tree, mp)
	read := func() {
		t.Helper()
		ents, err := os.ReadDir(mp)
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		sort.Strings(names)
		if strings.Join(names, " ") != strings.Join(checksums, " ") {
			t.Fatalf("input holds %v, want %v", names, checksums)
		}
		for c, data := range want {
			got, err := os.ReadFile(filepath.Join(mp, c))
			if err != nil || !bytes.Equal(got, data) {
				t.Errorf("%s: %d bytes, %v; want the %d bytes fetched", c, len(got), err, len(data))
			}
			fi, err := os.Stat(filepath.Join(mp, c))
			if err != nil || fi.Mode() != 0o644 || fi.ModTime().Unix() != 0 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
				t.Errorf("%s: %v, %v; want 0644, root's, mtime 0", c, fi.Mode(), err)
			}
		}
	}
	read()

	// Without their refs, through a gc, the mount still has them.
	var names []string
	for _, c := range checksums {
		names = append(names, sources.RefName(c))
	}
	forge(t, append([]string{"store", "rm", "--store", store}, names...)...)
	forge(t, "store", "gc", "--store", store)
	unix.Sync()
	read()
	if _, err := c.Unmount(ctx, client.UnmountRequest{Mountpoint: client.Path(mp)}); err != nil {
		t.Fatal(err)
	}
	mounted = false
	if m := itest.MountsUnder(mp); len(m) != 0 {
		t.Fatalf("still mounted: %v", m)
	}
	// Once unmounted, gc frees them.
	var du client.UsageResult
	forge(t, "store", "gc", "--store", store)
	if err := json.Unmarshal([]byte(forge(t, "store", "du", "--json", "--store", store)), &du); err != nil {
		t.Fatal(err)
	}
	if du.Refs != 0 || du.LogicalBytes != 0 || du.Chunks != 0 {
		t.Errorf("after the unmount and gc: %+v, want an empty store", du)
	}
	// And a fetch brings them back.
	if sum, err = sources.Fetch(ctx, c, srcs, nil, sources.Options{}); err != nil || sum.Fetched != 4 {
		t.Fatalf("fetch after gc: %+v, %v", sum, err)
	}
}

// childEnv makes the test binary a fetch through a store's daemon that
// TestFetchAfterAKilledFetch kills: its value is a childFetch, in JSON.
const childEnv = "FORGE_SOURCES_ITEST_CHILD"

type childFetch struct {
	Store    string
	Checksum string
	URL      string
}

func runChild(v string) int {
	var c childFetch
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	raw, err := json.Marshal(map[string]any{"org.osbuild.curl": map[string]any{"items": map[string]string{c.Checksum: c.URL}}})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	srcs, err := sources.Parse(raw)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	cl := client.NewClient(c.Store)
	defer cl.Close()
	_, err = sources.Fetch(context.Background(), cl, srcs, nil, sources.Options{Attempts: 1})
	fmt.Fprintln(os.Stderr, "child fetch ended:", err)
	return 1
}

// startDaemon starts the daemon of a new store, stopped when t ends.
func startDaemon(t *testing.T, ctx context.Context) (string, *client.Client) {
	t.Helper()
	store := filepath.Join(fstree.DiskTempDir(t), "store")
	t.Cleanup(func() { itest.StopDaemon(t, forgeBin, store) })
	c, err := client.Connect(ctx, store, client.SpawnOptions{Exe: forgeBin})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return store, c
}

func sourceRefs(t *testing.T, store string) []string {
	t.Helper()
	var refs []client.RefInfo
	if err := json.Unmarshal([]byte(forge(t, "store", "ls", "--json", "--store", store)), &refs); err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, r := range refs {
		if strings.HasPrefix(r.Name, sources.RefPrefix) {
			out = append(out, r.Name)
		}
	}
	return out
}

// As root, a manifest's file:///etc/shadow neither shows the file's hash
// (a wrong checksum) nor stores the file (the right one): file URLs are
// refused unless the caller trusts the manifest.
func TestFileURLsRefused(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	store, c := startDaemon(t, ctx)
	path := "/etc/shadow"
	secret, err := os.ReadFile(path)
	if err != nil {
		// No shadow file here: a file only root may read stands in.
		path = filepath.Join(t.TempDir(), "shadow")
		secret = []byte("root:$6$not-for-images\n")
		if err := os.WriteFile(path, secret, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	for _, checksum := range []string{"sha256:" + strings.Repeat("0", 64), sumOf(secret)} {
		raw := fmt.Sprintf(`{"org.osbuild.curl": {"items": {%q: "file://%s"}}}`, checksum, path)
		srcs, err := sources.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		_, err = sources.Fetch(ctx, c, srcs, nil, sources.Options{})
		if err == nil || !strings.Contains(err.Error(), checksum+" from file://"+path+": file URLs are not allowed") {
			t.Fatalf("Fetch of file://%s: %v; want it refused", path, err)
		}
		if checksum != sumOf(secret) && strings.Contains(err.Error(), sumOf(secret)) {
			t.Errorf("the error gives the hash of %s: %v", path, err)
		}
	}
	if refs := sourceRefs(t, store); len(refs) != 0 {
		t.Errorf("stored: %v", refs)
	}
}

// What a fetch killed by SIGKILL mid-download leaves in the store's tmp/
// (the daemon lives on, so no cas.Open clears it) is removed by the next
// Fetch; while the fetch lives, no other Fetch removes it.
func TestFetchAfterAKilledFetch(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	store, c := startDaemon(t, ctx)
	data := bytes.Repeat([]byte("d"), 4<<20)
	var mu sync.Mutex
	stall := true
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		s := stall
		mu.Unlock()
		w.Header().Set("Content-Length", strconv.Itoa(len(data)))
		if !s {
			w.Write(data)
			return
		}
		w.Write(data[:1<<20])
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}))
	defer srv.Close()
	arg, err := json.Marshal(childFetch{Store: store, Checksum: sumOf(data), URL: srv.URL + "/big"})
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+string(arg))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := false
	defer func() {
		if !waited {
			cmd.Process.Kill()
			cmd.Wait()
		}
	}()
	tmp := filepath.Join(store, "tmp")
	partial := filepath.Join(tmp, "sources-*", "item-*", sumOf(data))
	var left string
	for deadline := time.Now().Add(30 * time.Second); left == ""; time.Sleep(10 * time.Millisecond) {
		if m, _ := filepath.Glob(partial); len(m) == 1 {
			if fi, err := os.Stat(m[0]); err == nil && fi.Size() >= 1<<20 {
				left = filepath.Dir(filepath.Dir(m[0]))
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the child's download did not start")
		}
	}

	// While the child fetches, another Fetch leaves its directory alone.
	inline := []byte("inline\n")
	raw := fmt.Sprintf(`{"org.osbuild.inline": {"items": {%q: {"encoding": "base64", "data": %q}}}}`, sumOf(inline), base64.StdEncoding.EncodeToString(inline))
	other, err := sources.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := sources.Fetch(ctx, c, other, nil, sources.Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(left); err != nil {
		t.Fatalf("the live fetch's directory: %v", err)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waited = true
	if _, err := os.Stat(left); err != nil {
		t.Fatalf("nothing left by the killed fetch to test: %v", err)
	}

	// The next build's fetch removes it, and fetches the item.
	mu.Lock()
	stall = false
	mu.Unlock()
	raw = fmt.Sprintf(`{"org.osbuild.curl": {"items": {%q: %q}}}`, sumOf(data), srv.URL+"/big")
	srcs, err := sources.Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	sum, err := sources.Fetch(ctx, c, srcs, nil, sources.Options{Logf: t.Logf})
	if err != nil || sum.Fetched != 1 {
		t.Fatalf("Fetch after the kill: %+v, %v", sum, err)
	}
	if _, err := os.Stat(left); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s, left by the killed fetch: %v; want it removed", left, err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("left in the store's tmp/: %v", ents)
	}
}
