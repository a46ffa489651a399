package sources

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/daemon/client"
)

// childEnv makes the test binary a fetch that TestFetchSweepsWhatAKilledFetchLeft
// kills: its value is a childFetch, in JSON.
const childEnv = "FORGE_SOURCES_TEST_CHILD"

type childFetch struct {
	TempDir string
	Item    Item
}

func TestMain(m *testing.M) {
	if v := os.Getenv(childEnv); v != "" {
		os.Exit(runChild(v))
	}
	os.Exit(m.Run())
}

// runChild fetches one item into a temporary directory, for a test to
// kill it meanwhile.
func runChild(v string) int {
	var c childFetch
	if err := json.Unmarshal([]byte(v), &c); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	_, err := Fetch(context.Background(), noStore{}, sourcesOf(&c.Item), nil, Options{TempDir: c.TempDir, Refs: []client.RefInfo{}, Attempts: 1})
	fmt.Fprintln(os.Stderr, "child fetch ended:", err)
	return 1
}

// noStore is a store a fetch that will be killed never gets to use.
type noStore struct{}

func (noStore) Ping(context.Context) (client.PingResult, error) {
	return client.PingResult{}, errors.New("no store")
}
func (noStore) RefNames(context.Context) ([]client.RefInfo, error) {
	return nil, errors.New("no store")
}
func (noStore) Import(context.Context, client.ImportRequest, func(client.Progress)) (client.ImportResult, error) {
	return client.ImportResult{}, errors.New("no store")
}

// holdLock locks dir as a live fetch (another forge) does, until the
// test ends or the returned func is called.
func holdLock(t *testing.T, dir string) (release func()) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		t.Fatal(err)
	}
	released := false
	release = func() {
		if !released {
			released = true
			unix.Close(fd)
		}
	}
	t.Cleanup(release)
	return release
}

func mkfile(t *testing.T, path string, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(path string) bool {
	_, err := os.Lstat(path)
	return err == nil
}

// Each Fetch removes the sources-* directories no one holds (what a
// killed fetch left), and never one that another fetch holds locked, nor
// anything else in the directory.
func TestFetchSweepsDeadFetchDirs(t *testing.T) {
	st := newStore(t)
	tmp := filepath.Join(st.s.Dir(), "tmp")
	dead := filepath.Join(tmp, "sources-dead")
	live := filepath.Join(tmp, "sources-live")
	mkfile(t, filepath.Join(dead, "item-1", sumA), "half a download")
	mkfile(t, filepath.Join(live, "item-2", sumB), "a download going on")
	mkfile(t, filepath.Join(tmp, "mount-1", "x"), "someone else's")
	mkfile(t, filepath.Join(tmp, "sources-a-file"), "not a fetch's directory")
	release := holdLock(t, live)

	data := []byte("inline")
	it := &Item{Type: Inline, Checksum: sumOf(data), Encoding: EncodingBase64, Data: data}
	var logged []string
	logf := func(f string, a ...any) { logged = append(logged, fmt.Sprintf(f, a...)) }
	if _, err := Fetch(context.Background(), st, sourcesOf(it), nil, Options{Logf: logf}); err != nil {
		t.Fatal(err)
	}
	if exists(dead) {
		t.Errorf("%s, which no one holds, is still there", dead)
	}
	if b, err := os.ReadFile(filepath.Join(live, "item-2", sumB)); err != nil || string(b) != "a download going on" {
		t.Errorf("the live fetch's file: %q, %v", b, err)
	}
	for _, p := range []string{filepath.Join(tmp, "mount-1", "x"), filepath.Join(tmp, "sources-a-file")} {
		if !exists(p) {
			t.Errorf("%s was removed", p)
		}
	}
	if len(logged) == 0 || logged[0] != "removed "+dead+", left by a killed fetch" {
		t.Errorf("log: %q", logged)
	}

	// The live fetch dies. A Fetch with nothing to fetch sweeps too.
	release()
	sum, err := Fetch(context.Background(), st, sourcesOf(it), nil, Options{})
	if err != nil || sum.Stored != 1 {
		t.Fatalf("Fetch: %+v, %v", sum, err)
	}
	if exists(live) {
		t.Errorf("%s, no longer held, is still there", live)
	}
}

// A new fetch's directory is never swept by another's sweep: many fetches
// at once into one directory all succeed.
func TestFetchesAtOnceKeepTheirDirs(t *testing.T) {
	st := newStore(t)
	errs := make(chan error, 16)
	for i := range cap(errs) {
		go func() {
			data := []byte(fmt.Sprintf("item %d", i))
			it := &Item{Type: Inline, Checksum: sumOf(data), Encoding: EncodingBase64, Data: data}
			_, err := Fetch(context.Background(), st, sourcesOf(it), nil, Options{Refs: []client.RefInfo{}})
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	tmpEmpty(t, st)
}

// What a fetch killed by SIGKILL mid-download leaves is removed by the
// next Fetch; while it lives, no Fetch removes it.
func TestFetchSweepsWhatAKilledFetchLeft(t *testing.T) {
	srv := newServer(t, false)
	// Under the lock: the requests come from another process, and so
	// with nothing the race detector sees ordering them after this.
	srv.mu.Lock()
	srv.before = func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.Header().Set("Content-Length", strconv.Itoa(1<<20))
		w.Write(make([]byte, 64<<10))
		w.(http.Flusher).Flush()
		<-r.Context().Done()
		return true
	}
	srv.mu.Unlock()
	tmp := t.TempDir()
	arg, err := json.Marshal(childFetch{TempDir: tmp, Item: Item{Type: Curl, Checksum: sumA, URL: srv.URL + "/big"}})
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

	// Wait for the download to be under way.
	partial := filepath.Join(tmp, "sources-*", "item-*", sumA)
	var left string
	for deadline := time.Now().Add(20 * time.Second); ; {
		if m, _ := filepath.Glob(partial); len(m) == 1 {
			if fi, err := os.Stat(m[0]); err == nil && fi.Size() >= 64<<10 {
				left = filepath.Dir(filepath.Dir(m[0]))
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the child's download did not start")
		}
		time.Sleep(10 * time.Millisecond)
	}

	// Alive, it keeps its directory through another Fetch.
	st := newStore(t)
	fetchOne := func(s string) {
		t.Helper()
		data := []byte(s)
		it := &Item{Type: Inline, Checksum: sumOf(data), Encoding: EncodingBase64, Data: data}
		if _, err := Fetch(context.Background(), st, sourcesOf(it), nil, Options{TempDir: tmp}); err != nil {
			t.Fatal(err)
		}
	}
	fetchOne("while the child fetches")
	if !exists(left) {
		t.Fatalf("%s, of a live fetch, was removed", left)
	}

	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	waited = true
	if !exists(left) {
		t.Fatalf("%s went with the child: nothing to test", left)
	}
	fetchOne("after the child was killed")
	if exists(left) {
		t.Errorf("%s, left by a killed fetch, is still there", left)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) != 0 {
		t.Errorf("left in %s: %v", tmp, ents)
	}
}
