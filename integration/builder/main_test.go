// Package builder_test drives `forge build` and `forge inspect` as root:
// manifests of small stages (forge's own, and test stages from testdata/)
// built on a real store with real buildroots, caching per stage, failures,
// interrupts, nested build pipelines and concurrent builds.
package builder_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/forge-build/forge/builder"
	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/internal/fstree"
)

var (
	forgeBin string
	libdir   string // forge's libdir plus the test stages
)

// testStages are the names teststage runs under (see testdata/teststage).
var testStages = map[string]string{
	"test.write": "stages", "test.mkusr": "stages", "test.sleep": "stages", "test.fail": "stages",
	"test.tar": "assemblers",
}

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping integration/builder: needs root (namespaces, mounts, a store daemon)")
		os.Exit(0)
	}
	dir, err := os.MkdirTemp("", "forge-builder-test-")
	if err != nil {
		panic(err)
	}
	code := 1
	if err := setup(dir); err != nil {
		fmt.Println(err)
	} else {
		code = m.Run()
	}
	os.RemoveAll(dir)
	os.Exit(code)
}

// setup builds forge (unless FORGE_TEST_BIN names one) and a libdir of
// forge's stages and the test stages.
func setup(dir string) error {
	var err error
	if forgeBin, err = itest.Forge(dir); err != nil {
		return err
	}
	libdir = filepath.Join(dir, "lib")
	if err := itest.Libdir(libdir); err != nil {
		return err
	}
	ts := filepath.Join(dir, "teststage")
	if err := itest.GoBuild(ts, "./integration/builder/testdata/teststage", true); err != nil {
		return err
	}
	for name, kind := range testStages {
		if err := os.MkdirAll(filepath.Join(libdir, kind), 0o755); err != nil {
			return err
		}
		if err := os.Link(ts, filepath.Join(libdir, kind, name)); err != nil {
			return err
		}
	}
	return nil
}

// storeDir makes a store whose daemon is stopped when the test ends, after
// checking that nothing stays mounted under it.
func storeDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(fstree.DiskTempDir(t), "store")
	t.Cleanup(func() {
		if m := itest.MountsUnder(dir); len(m) > 0 {
			t.Errorf("left mounted under the store: %v", m)
		}
		itest.StopDaemon(t, forgeBin, dir)
	})
	return dir
}

// result is one forge build.
type result struct {
	stdout, stderr string
	code           int
	events         []builder.Event
	elapsed        time.Duration
}

// ran lists "path name" of the stages that ran, in order.
func (r *result) ran() []string {
	var out []string
	for _, ev := range r.events {
		if ev.Type == builder.EventStageStarted {
			out = append(out, ev.Path)
		}
	}
	return out
}

func (r *result) cached() []string {
	var out []string
	for _, ev := range r.events {
		if ev.Type == builder.EventStageCached {
			out = append(out, ev.Path)
		}
	}
	return out
}

// build runs forge build on manifest m (any JSON value) with --json and a
// monitor fd, and returns what it printed and the events.
func build(t *testing.T, store string, m any, extra ...string) *result {
	t.Helper()
	cmd, mon, out := buildCmd(t, store, m, extra...)
	start := time.Now()
	err := cmd.Run()
	return finish(t, cmd, err, mon, out, start)
}

func buildCmd(t *testing.T, store string, m any, extra ...string) (*exec.Cmd, *os.File, *[2]bytes.Buffer) {
	t.Helper()
	mf := filepath.Join(t.TempDir(), "manifest.json")
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(mf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	mon, err := os.CreateTemp(t.TempDir(), "monitor-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mon.Close() })
	args := append([]string{"build", "--store", store, "--libdir", libdir, "--json", "--monitor-fd", "3"}, extra...)
	cmd := exec.Command(forgeBin, append(args, mf)...)
	cmd.ExtraFiles = []*os.File{mon}
	var out [2]bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out[0], &out[1]
	return cmd, mon, &out
}

func finish(t *testing.T, cmd *exec.Cmd, err error, mon *os.File, out *[2]bytes.Buffer, start time.Time) *result {
	t.Helper()
	r := &result{stdout: out[0].String(), stderr: out[1].String(), elapsed: time.Since(start)}
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		r.code = ee.ExitCode()
	case err != nil:
		t.Fatalf("forge build: %v", err)
	}
	seq, err := os.ReadFile(mon.Name())
	if err != nil {
		t.Fatal(err)
	}
	r.events = parseSeq(t, seq)
	return r
}

// parseSeq parses an RFC 7464 JSON text sequence.
func parseSeq(t *testing.T, b []byte) []builder.Event {
	t.Helper()
	var evs []builder.Event
	for _, rec := range bytes.Split(b, []byte{0x1e}) {
		if len(bytes.TrimSpace(rec)) == 0 {
			continue
		}
		if rec[len(rec)-1] != '\n' {
			t.Fatalf("JSON-seq record without its LF: %q", rec)
		}
		var ev builder.Event
		if err := json.Unmarshal(rec, &ev); err != nil {
			t.Fatalf("JSON-seq record %q: %v", rec, err)
		}
		evs = append(evs, ev)
	}
	return evs
}

func mustBuild(t *testing.T, store string, m any, extra ...string) *result {
	t.Helper()
	r := build(t, store, m, extra...)
	if r.code != 0 {
		t.Fatalf("forge build: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	return r
}

// Manifest helpers: format 1, the seed's bare pipeline shape.
type obj = map[string]any

func stage(name string, opts obj) obj { return obj{"name": name, "options": opts} }

func write(path, content string) obj {
	return stage("test.write", obj{"path": path, "content": content})
}
