package builder_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/forge-build/forge/builder"
	"github.com/forge-build/forge/integration/itest"
)

// A build runs every stage, stores each, and a rerun runs none; changing
// one stage's options reruns from that stage on; inspect agrees.
func TestBuildCachesEveryStage(t *testing.T) {
	store := storeDir(t)
	out := t.TempDir()
	m := func(b string) obj {
		return obj{
			"stages": []obj{
				stage("org.osbuild.hostname", obj{"hostname": "forge-test"}),
				write("etc/a", "A\n"),
				write("etc/b", b),
			},
			"assembler": stage("org.osbuild.tar", obj{"filename": "tree.tar"}),
		}
	}
	r := mustBuild(t, store, m("B\n"), "--output-directory", out)
	if want := []string{"stages[0]", "stages[1]", "stages[2]", "assembler"}; !slices.Equal(r.ran(), want) {
		t.Fatalf("ran %v, want %v", r.ran(), want)
	}
	var res map[string]any
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("--json output %q: %v", r.stdout, err)
	}
	// The IDs --json reports are osbuild's; the first stage's is the
	// issue's test vector, the rest are what inspect computes.
	insp := inspect(t, store, m("B\n"))
	if res["success"] != true || res["tree_id"] != insp.Stages[2].ID || res["output_id"] != insp.Assembler.ID {
		t.Fatalf("--json = %v; inspect says tree %s, output %s", res, insp.Stages[2].ID, insp.Assembler.ID)
	}
	if got := insp.Stages[0].ID; got != "bc8b974a2bb7ad23e6c488c2f9fbac4eb4cb08170ab4104492fd527b180f0a00" {
		t.Errorf("hostname stage ID %s, want osbuild's", got)
	}
	for i, s := range insp.Stages {
		if !s.Cached {
			t.Errorf("inspect: stages[%d] not cached after the build", i)
		}
	}
	checkTar(t, filepath.Join(out, "tree.tar"), map[string]string{
		"etc/hostname": "forge-test\n", "etc/a": "A\n", "etc/b": "B\n",
	})

	// Rerun: everything cached, nothing runs.
	r = mustBuild(t, store, m("B\n"), "--output-directory", out)
	if len(r.ran()) != 0 || len(r.cached()) != 4 {
		t.Fatalf("rerun ran %v, cached %v; want nothing run, 4 cached", r.ran(), r.cached())
	}
	t.Logf("fully cached rerun took %s", r.elapsed)

	// One stage's options change: the stages before it stay cached.
	r = mustBuild(t, store, m("changed\n"), "--output-directory", out)
	if want := []string{"stages[2]", "assembler"}; !slices.Equal(r.ran(), want) {
		t.Fatalf("after changing stages[2]: ran %v, want %v", r.ran(), want)
	}
	if want := []string{"stages[0]", "stages[1]"}; !slices.Equal(r.cached(), want) {
		t.Fatalf("after changing stages[2]: cached %v, want %v", r.cached(), want)
	}
	checkTar(t, filepath.Join(out, "tree.tar"), map[string]string{
		"etc/hostname": "forge-test\n", "etc/a": "A\n", "etc/b": "changed\n",
	})
}

// checkTar extracts a tar and checks the files named in want.
func checkTar(t *testing.T, tarball string, want map[string]string) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("tar", "-xf", tarball, "-C", dir).CombinedOutput(); err != nil {
		t.Fatalf("tar -xf %s: %v\n%s", tarball, err, out)
	}
	for name, content := range want {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil || string(b) != content {
			t.Errorf("%s in %s: %q, %v; want %q", name, tarball, b, err, content)
		}
	}
}

func inspect(t *testing.T, store string, m any) *builder.PipelineInfo {
	t.Helper()
	mf := filepath.Join(t.TempDir(), "manifest.json")
	b, _ := json.Marshal(m)
	if err := os.WriteFile(mf, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(forgeBin, "inspect", "--store", store, mf).Output()
	if err != nil {
		t.Fatalf("forge inspect: %v", err)
	}
	var v struct{ Pipeline *builder.PipelineInfo }
	if err := json.Unmarshal(out, &v); err != nil || v.Pipeline == nil {
		t.Fatalf("forge inspect printed %q: %v", out, err)
	}
	return v.Pipeline
}

// A failing stage: exit 1, its output shown, the stages before it stored,
// its own tree not, nothing left mounted (storeDir checks that).
func TestFailingStage(t *testing.T) {
	store := storeDir(t)
	m := obj{"stages": []obj{
		write("etc/a", "A\n"),
		stage("test.fail", obj{"status": 3, "message": "boom from the failing stage"}),
		write("etc/b", "B\n"),
	}}
	r := build(t, store, m)
	if r.code != 1 {
		t.Fatalf("exit %d, want 1\nstderr: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stderr, "boom from the failing stage") || !strings.Contains(r.stderr, "stages[1]") {
		t.Errorf("stderr does not show the stage and its output:\n%s", r.stderr)
	}
	var res builder.Result
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil {
		t.Fatalf("--json output %q: %v", r.stdout, err)
	}
	if res.Success || res.Error == nil || res.Error.Path != "stages[1]" || !strings.Contains(res.Error.Output, "boom") {
		t.Errorf("--json on failure: %+v", res)
	}
	insp := inspect(t, store, m)
	if !insp.Stages[0].Cached || insp.Stages[1].Cached || insp.Stages[2].Cached {
		t.Errorf("after the failure, cached: %+v; want only stages[0]", insp.Stages)
	}
	if p := itest.ProcessesWith("test.fail"); len(p) > 0 {
		t.Errorf("processes left: %v", p)
	}
}

// Bad manifests and flags exit 2 and name what is wrong.
func TestBadManifest(t *testing.T) {
	store := storeDir(t)
	tests := []struct {
		name     string
		manifest any
		want     string
	}{
		{"slash in a name", obj{"stages": []obj{stage("org/evil", obj{})}}, "stages[0].name"},
		{"no such stage", obj{"stages": []obj{write("a", "a"), stage("org.osbuild.nonexistent", obj{})}}, "stages[1]"},
		{"unknown key", obj{"stages": []obj{}, "sauce": 1}, "sauce"},
		{"options not an object", obj{"stages": []obj{{"name": "test.write", "options": []int{1}}}}, "stages[0].options"},
		{"nested build", obj{"build": obj{"stages": []obj{stage("..", obj{})}}, "stages": []obj{}}, "build.stages[0].name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := build(t, store, tt.manifest)
			if r.code != 2 || !strings.Contains(r.stderr, tt.want) {
				t.Errorf("exit %d, stderr %q; want exit 2 naming %q", r.code, r.stderr, tt.want)
			}
		})
	}
}

// Build pipelines nest: the top pipeline's stages run with the build
// pipeline's tree as their build root, which itself was built in the
// tree of a build pipeline one level further down.
func TestNestedBuildPipelines(t *testing.T) {
	store := storeDir(t)
	out := t.TempDir()
	m := obj{
		"build": obj{
			"build": obj{"stages": []obj{stage("test.mkusr", obj{})}},
			"stages": []obj{
				stage("test.mkusr", obj{}),
				// Runs in the innermost tree: /usr/bin exists there.
				stage("test.write", obj{"path": "usr/bin/marker", "content": "level 1\n"}),
			},
		},
		"stages": []obj{
			stage("test.write", obj{"path": "seen", "from": "/usr/bin/marker"}),
		},
		"assembler": stage("test.tar", obj{"filename": "list"}),
	}
	r := mustBuild(t, store, m, "--output-directory", out)
	want := []string{"build.build.stages[0]", "build.stages[0]", "build.stages[1]", "stages[0]", "assembler"}
	if !slices.Equal(r.ran(), want) {
		t.Fatalf("ran %v, want %v", r.ran(), want)
	}
	b, err := os.ReadFile(filepath.Join(out, "list"))
	if err != nil || !strings.Contains(string(b), "seen=level 1\n") {
		t.Fatalf("output %q, %v: the top stage did not see the build pipeline's tree as its root", b, err)
	}
	r = mustBuild(t, store, m, "--output-directory", out)
	if len(r.ran()) != 0 {
		t.Errorf("rerun ran %v", r.ran())
	}
}

// Eight different builds at once on one store all succeed, and so do
// two builds of the same manifest.
func TestConcurrentBuilds(t *testing.T) {
	store := storeDir(t)
	const n = 8
	manifests := make([]obj, 0, n+2)
	for i := range n {
		manifests = append(manifests, obj{
			"stages": []obj{
				write("common", "shared first stage\n"),
				write("mine", strings.Repeat("x", i)+"\n"),
			},
			"assembler": stage("test.tar", obj{"filename": "list"}),
		})
	}
	same := obj{"stages": []obj{write("same", "same\n")}, "assembler": stage("test.tar", obj{"filename": "list"})}
	manifests = append(manifests, same, same)
	var wg sync.WaitGroup
	results := make([]*result, len(manifests))
	outs := make([]string, len(manifests))
	for i, m := range manifests {
		outs[i] = t.TempDir()
		cmd, mon, o := buildCmd(t, store, m, "--output-directory", outs[i])
		wg.Go(func() {
			start := time.Now()
			err := cmd.Run()
			results[i] = finish(t, cmd, err, mon, o, start)
		})
	}
	wg.Wait()
	for i, r := range results {
		if r.code != 0 {
			t.Errorf("build %d: exit %d\n%s", i, r.code, r.stderr)
			continue
		}
		b, _ := os.ReadFile(filepath.Join(outs[i], "list"))
		want := "mine=" + strings.Repeat("x", min(i, n)) + "\n"
		if i >= n {
			want = "same=same\n"
		}
		if !strings.Contains(string(b), want) {
			t.Errorf("build %d: output %q, want %q in it", i, b, want)
		}
	}
}

// Ctrl-C stops the running stage, leaves nothing mounted and no process,
// keeps what was stored, and exits 130.
func TestInterrupt(t *testing.T) {
	store := storeDir(t)
	m := obj{"stages": []obj{
		write("a", "a\n"),
		stage("test.sleep", obj{"seconds": 600, "marker": "sleeping"}),
	}}
	cmd, mon, o := buildCmd(t, store, m)
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill() })
	deadline := time.Now().Add(60 * time.Second)
	for {
		b, _ := os.ReadFile(mon.Name())
		if strings.Contains(string(b), "test.sleep: running") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the sleep stage did not start in 60 s; events: %s", b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGINT)
	r := finish(t, cmd, cmd.Wait(), mon, o, start)
	if r.code != 130 {
		t.Fatalf("exit %d after SIGINT, want 130\n%s", r.code, r.stderr)
	}
	if p := itest.ProcessesWith("test.sleep"); len(p) > 0 {
		t.Errorf("processes left: %v", p)
	}
	if insp := inspect(t, store, m); !insp.Stages[0].Cached || insp.Stages[1].Cached {
		t.Errorf("after the interrupt, cached: %+v; want only stages[0]", insp.Stages)
	}
}

// --build-pipeline gives a manifest without a build pipeline one: its
// stages run first, and the manifest's run in its tree.
func TestBuildPipelineFlag(t *testing.T) {
	store := storeDir(t)
	out := t.TempDir()
	bp := filepath.Join(t.TempDir(), "build.json")
	b, _ := json.Marshal(obj{"pipeline": obj{"stages": []obj{
		stage("test.mkusr", obj{}),
		stage("test.write", obj{"path": "usr/bin/marker", "content": "from --build-pipeline\n"}),
	}}, "runner": "org.osbuild.linux"})
	if err := os.WriteFile(bp, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m := obj{
		"stages":    []obj{stage("test.write", obj{"path": "seen", "from": "/usr/bin/marker"})},
		"assembler": stage("test.tar", obj{"filename": "list"}),
	}
	r := mustBuild(t, store, m, "--output-directory", out, "--build-pipeline", bp)
	if ran := r.ran(); len(ran) != 4 || !strings.HasPrefix(ran[0], "build-pipeline") {
		t.Errorf("ran %v; want the two build stages first", ran)
	}
	got, err := os.ReadFile(filepath.Join(out, "list"))
	if err != nil || !strings.Contains(string(got), "seen=from --build-pipeline\n") {
		t.Errorf("output %q, %v: the stage did not run in the --build-pipeline tree", got, err)
	}
	// A missing or broken file is a usage error.
	if r := build(t, store, m, "--build-pipeline", filepath.Join(t.TempDir(), "none.json")); r.code != 2 {
		t.Errorf("missing --build-pipeline file: exit %d, want 2", r.code)
	}
}
