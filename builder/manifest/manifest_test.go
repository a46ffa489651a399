package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/builder/pyjson"
)

// The test vector of DESIGN.md §5.
const (
	hostnameManifest = `{"stages": [{"name": "org.osbuild.hostname", "options": {"hostname": "forge-test"}}]}`
	hostnameID       = "bc8b974a2bb7ad23e6c488c2f9fbac4eb4cb08170ab4104492fd527b180f0a00"
)

func mustParse(t *testing.T, data string) *Manifest {
	t.Helper()
	m, err := Parse([]byte(data))
	if err != nil {
		t.Fatalf("Parse(%s): %v", data, err)
	}
	return m
}

func TestTestVector(t *testing.T) {
	for _, data := range []string{
		hostnameManifest,
		`{"pipeline": ` + hostnameManifest + `}`,
		`{"stages": [{"options": {"hostname": "forge-test"}, "name": "org.osbuild.hostname"}], "stages": [{"name": "org.osbuild.hostname", "options": {"hostname":"forge-test"}}]}`,
		`{"build": {}, "stages": [{"name": "org.osbuild.hostname", "options": {"hostname": "forge-test"}}]}`,
		`{"pipeline": {"build": {"pipeline": {}, "runner": "org.osbuild.debian12"}, "stages": [{"name": "org.osbuild.hostname", "options": {"hostname": "forge-test"}}]}}`,
		`{"build": {"assembler": {"name": "x"}}, "stages": [{"name": "org.osbuild.hostname", "options": {"hostname": "forge-test"}}]}`,
	} {
		m := mustParse(t, data)
		if got := m.Pipeline.TreeID(); got != hostnameID {
			t.Errorf("TreeID of %s = %s, want %s", data, got, hostnameID)
		}
		if got := m.Pipeline.BuildID(); got != "" {
			t.Errorf("BuildID of %s = %q, want \"\" (a build pipeline without stages is the host)", data, got)
		}
	}
}

func TestParseBare(t *testing.T) {
	m := mustParse(t, `{
		"build": {
			"build": {"stages": [{"name": "org.osbuild.debootstrap", "options": {"suite": "bookworm"}}]},
			"stages": [{"name": "org.osbuild.apt", "options": { "packages" : [ "e2fsprogs" ] }}]
		},
		"stages": [
			{"name": "org.osbuild.noop"},
			{"name": "org.osbuild.hostname", "options": {"hostname": "forge-test"}}
		],
		"assembler": {"name": "org.osbuild.tar", "options": {"filename": "tree.tar"}}
	}`)
	top := m.Pipeline
	if m.Version != Version1 || m.Sources != nil {
		t.Errorf("Version %q, Sources %s; want %q, nil", m.Version, m.Sources, Version1)
	}
	if top.Path != "" || top.Build == nil || top.Build.Runner != "" || top.Build.Pipeline.Path != "build" {
		t.Fatalf("top pipeline %+v, build %+v", top, top.Build)
	}
	inner := top.Build.Pipeline.Build.Pipeline
	if inner.Path != "build.build" || inner.Build != nil || inner.BuildID() != "" {
		t.Errorf("innermost pipeline %+v", inner)
	}
	wantStages := []struct{ name, path, options string }{
		{"org.osbuild.noop", "stages[0]", `{}`},
		{"org.osbuild.hostname", "stages[1]", `{"hostname":"forge-test"}`},
	}
	if len(top.Stages) != len(wantStages) {
		t.Fatalf("%d stages, want %d", len(top.Stages), len(wantStages))
	}
	for i, w := range wantStages {
		s := top.Stages[i]
		if s.Name != w.name || s.Path != w.path || string(s.Options) != w.options || len(s.ID) != 64 {
			t.Errorf("stage %d = %+v, want name %s path %s options %s", i, s, w.name, w.path, w.options)
		}
	}
	if got := string(top.Build.Pipeline.Stages[0].Options); got != `{"packages":["e2fsprogs"]}` {
		t.Errorf("build stage options %s, want them compacted", got)
	}
	if top.Build.Pipeline.Stages[0].Path != "build.stages[0]" || inner.Stages[0].Path != "build.build.stages[0]" {
		t.Errorf("build stage paths %s, %s", top.Build.Pipeline.Stages[0].Path, inner.Stages[0].Path)
	}
	if top.Assembler == nil || top.Assembler.Path != "assembler" || top.Assembler.Name != "org.osbuild.tar" || top.OutputID() != top.Assembler.ID {
		t.Errorf("assembler %+v", top.Assembler)
	}
	if top.BuildID() != top.Build.Pipeline.TreeID() || top.Build.Pipeline.BuildID() != inner.TreeID() || inner.TreeID() == "" {
		t.Errorf("build IDs do not chain: %q %q %q", top.BuildID(), top.Build.Pipeline.BuildID(), inner.TreeID())
	}
	if top.TreeID() != top.Stages[1].ID {
		t.Errorf("TreeID %s, want the last stage's %s", top.TreeID(), top.Stages[1].ID)
	}
	pipelines := m.Pipelines()
	if len(pipelines) != 3 || pipelines[0] != inner || pipelines[1] != top.Build.Pipeline || pipelines[2] != top {
		t.Errorf("Pipelines() = %v, want innermost build first", pipelines)
	}
}

func TestParseLoaderShape(t *testing.T) {
	m := mustParse(t, `{
		"pipeline": {
			"build": {
				"pipeline": {
					"build": {"pipeline": {"stages": [{"name": "org.osbuild.a"}]}, "runner": "org.osbuild.host"},
					"stages": [{"name": "org.osbuild.b"}]
				},
				"runner": "org.osbuild.debian12"
			},
			"stages": [{"name": "org.osbuild.c", "options": {}}],
			"assembler": {"name": "org.osbuild.qemu", "options": {"format": "raw"}}
		},
		"sources": {"org.osbuild.files": {"urls": { "sha256:00": "http://example.invalid/x" }}}
	}`)
	top := m.Pipeline
	if top.Path != "pipeline" || top.Build.Runner != "org.osbuild.debian12" || top.Build.Pipeline.Path != "pipeline.build.pipeline" {
		t.Errorf("top %+v, build %+v", top, top.Build)
	}
	inner := top.Build.Pipeline.Build
	if inner.Runner != "org.osbuild.host" || inner.Pipeline.Stages[0].Path != "pipeline.build.pipeline.build.pipeline.stages[0]" {
		t.Errorf("inner build %+v, stage %+v", inner, inner.Pipeline.Stages[0])
	}
	if top.Assembler.Path != "pipeline.assembler" || string(top.Assembler.Options) != `{"format":"raw"}` {
		t.Errorf("assembler %+v", top.Assembler)
	}
	if got := string(m.Sources); got != `{"org.osbuild.files":{"urls":{"sha256:00":"http://example.invalid/x"}}}` {
		t.Errorf("Sources = %s", got)
	}

	// The same pipelines in the bare shape have the same IDs: the runner
	// is no part of an ID.
	b := mustParse(t, `{"build": {"build": {"stages": [{"name": "org.osbuild.a"}]}, "stages": [{"name": "org.osbuild.b"}]},
		"stages": [{"name": "org.osbuild.c"}], "assembler": {"name": "org.osbuild.qemu", "options": {"format": "raw"}}}`)
	if b.Pipeline.TreeID() != top.TreeID() || b.Pipeline.OutputID() != top.OutputID() {
		t.Errorf("bare shape IDs %s %s, loader shape %s %s", b.Pipeline.TreeID(), b.Pipeline.OutputID(), top.TreeID(), top.OutputID())
	}
}

func TestParseEmpty(t *testing.T) {
	for _, data := range []string{`{}`, `{"pipeline": {}}`, `{"sources": {}}`, `{"stages": []}`} {
		m := mustParse(t, data)
		if m.Pipeline == nil || len(m.Pipeline.Stages) != 0 || m.Pipeline.TreeID() != "" || m.Pipeline.OutputID() != "" || m.Pipeline.BuildID() != "" {
			t.Errorf("Parse(%s) = %+v, want an empty pipeline", data, m.Pipeline)
		}
	}
}

func TestParseErrors(t *testing.T) {
	stage := func(s string) string { return `{"stages": [` + s + `]}` }
	cases := []struct {
		name, data string
		want       []string
	}{
		{"not an object", `[]`, []string{"manifest: want an object, got array"}},
		{"null", `null`, []string{"manifest: want an object, got null"}},
		{"unknown top key", `{"name": "Example Image"}`, []string{`name: unknown key: a pipeline has only "build", "stages", "assembler"`}},
		{"key with a dot", `{"a.b": 1}`, []string{`["a.b"]: unknown key: a pipeline has only "build", "stages", "assembler"`}},
		{"stages not an array", `{"stages": {}}`, []string{"stages: want an array of stages, got object"}},
		{"stage not an object", stage(`{"name": "a"}, "b"`), []string{`stages[1]: want a stage object {"name", "options"}, got string`}},
		{"missing name", stage(`{"options": {}}`), []string{"stages[0].name: missing: a stage needs a name"}},
		{"name not a string", stage(`{"name": 1}`), []string{"stages[0].name: want a string, got integer"}},
		{"empty name", stage(`{"name": ""}`), []string{"stages[0].name: is empty: want a name like org.osbuild.hostname"}},
		{"slash", stage(`{"name": "../../bin/sh"}`), []string{`stages[0].name: "../../bin/sh" has a '/': a name is a file name in the libdir`}},
		{"dot", stage(`{"name": "."}`), []string{`stages[0].name: ".": "." and ".." cannot be in a name`}},
		{"dot dot", stage(`{"name": ".."}`), []string{`stages[0].name: "..": "." and ".." cannot be in a name`}},
		{"inner dot dot", stage(`{"name": "org..osbuild"}`), []string{`stages[0].name: "org..osbuild": "." and ".." cannot be in a name`}},
		{"space", stage(`{"name": "org.osbuild.a b"}`), []string{`stages[0].name: "org.osbuild.a b" has ' ': a name has only letters, digits, '.', '_' and '-'`}},
		{"non-ASCII", stage(`{"name": "org.osbuild.é"}`), []string{`stages[0].name: "org.osbuild.é" has 'é': a name has only letters, digits, '.', '_' and '-'`}},
		{"too long", stage(`{"name": "` + strings.Repeat("a", 256) + `"}`), []string{"stages[0].name: is 256 bytes long, more than a file name can be (255)"}},
		{"too long, with a slash", stage(`{"name": "/` + strings.Repeat("a", 1e6) + `"}`), []string{"stages[0].name: is 1000001 bytes long, more than a file name can be (255)"}},
		{"long key", `{"` + strings.Repeat("é", 1e6) + `": 1}`, []string{`["` + strings.Repeat("é", 32) + `"...+1999936 bytes]: unknown key: a pipeline has only "build", "stages", "assembler"`}},
		{"long source name", `{"sources": {"` + strings.Repeat("s", 1e6) + `": 1}}`, []string{`sources["` + strings.Repeat("s", 64) + `"...+999936 bytes]: want an object, got integer`}},
		{"options array", stage(`{"name": "a", "options": []}`), []string{"stages[0].options: want an object, got array"}},
		{"options null", stage(`{"name": "a", "options": null}`), []string{"stages[0].options: want an object, got null"}},
		{"unknown stage key", stage(`{"name": "a", "option": {}}`), []string{`stages[0].option: unknown key: a stage has only "name", "options"`}},
		{"assembler not an object", `{"assembler": "org.osbuild.tar"}`, []string{`assembler: want an assembler object {"name", "options"}, got string`}},
		{"assembler options", `{"assembler": {"name": "org.osbuild.tar", "options": "x"}}`, []string{"assembler.options: want an object, got string"}},
		{"assembler without name", `{"assembler": {}}`, []string{"assembler.name: missing: an assembler needs a name"}},
		{"nested build", `{"build": {"build": {"stages": [{"name": "a"}, {"name": "b"}, {"name": "a/b"}]}}}`,
			[]string{`build.build.stages[2].name: "a/b" has a '/': a name is a file name in the libdir`}},
		{"build not an object", `{"build": []}`, []string{"build: want a pipeline object, got array"}},
		{"bare build in the loader shape", `{"pipeline": {"build": {"stages": []}}}`, []string{
			`pipeline.build.stages: unknown key: a build has only "pipeline", "runner"`,
			"pipeline.build.pipeline: missing: a build has a pipeline",
			`pipeline.build.runner: missing: a build names its runner, like "org.osbuild.debian12"`,
		}},
		{"loader build assembler options", `{"pipeline": {"build": {"pipeline": {"assembler": {"name": "x", "options": 1}}, "runner": "org.osbuild.debian12"}}}`,
			[]string{"pipeline.build.pipeline.assembler.options: want an object, got integer"}},
		{"loader build not an object", `{"pipeline": {"build": "x"}}`, []string{`pipeline.build: want an object {"pipeline", "runner"}, got string`}},
		{"runner not a string", `{"pipeline": {"build": {"pipeline": {}, "runner": null}}}`, []string{"pipeline.build.runner: want a string, got null"}},
		{"runner with a slash", `{"pipeline": {"build": {"pipeline": {}, "runner": "/bin/sh"}}}`,
			[]string{`pipeline.build.runner: "/bin/sh" has a '/': a name is a file name in the libdir`}},
		{"pipeline and stages", `{"pipeline": {}, "stages": []}`, []string{`stages: unknown key: a manifest with "pipeline" or "sources" has only "pipeline", "sources"`}},
		{"pipeline not an object", `{"pipeline": []}`, []string{"pipeline: want a pipeline object, got array"}},
		{"sources not an object", `{"sources": []}`, []string{"sources: want an object, got array"}},
		{"source not an object", `{"sources": {"org.osbuild.files": []}}`, []string{`sources["org.osbuild.files"]: want an object, got array`}},
		{"every problem, in order", `{"zz": 1, "assembler": {"name": ""}, "stages": [{"name": "a/b"}, {"name": 2, "options": []}], "build": {"x": 1}, "aa": 2}`, []string{
			`zz: unknown key: a pipeline has only "build", "stages", "assembler"`,
			`aa: unknown key: a pipeline has only "build", "stages", "assembler"`,
			`build.x: unknown key: a pipeline has only "build", "stages", "assembler"`,
			`stages[0].name: "a/b" has a '/': a name is a file name in the libdir`,
			"stages[1].name: want a string, got integer",
			"stages[1].options: want an object, got array",
			"assembler.name: is empty: want a name like org.osbuild.hostname",
		}},
		{"last duplicate counts", `{"stages": [{"name": "a"}], "stages": 3}`, []string{"stages: want an array of stages, got integer"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.data))
			if err == nil {
				t.Fatalf("Parse(%s) = %+v, want an error", tc.data, m)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error %v (%T) is not an Errors", err, err)
			}
			var first *Error
			if !errors.As(err, &first) || first != errs[0] {
				t.Errorf("errors.As(*Error) found %v, want the first of %v", first, errs)
			}
			if got, want := err.Error(), strings.Join(tc.want, "\n"); got != want {
				t.Errorf("Parse(%s) error\n%s\nwant\n%s", tc.data, got, want)
			}
		})
	}
}

func TestParseSyntaxError(t *testing.T) {
	_, err := Parse([]byte("{\"stages\": [\n  {\"name\": \"a\",}\n]}"))
	var syntax *pyjson.SyntaxError
	if !errors.As(err, &syntax) {
		t.Fatalf("got %v, want a *pyjson.SyntaxError inside", err)
	}
	want := `manifest: invalid JSON at line 2, column 16 (byte 28): want a key in double quotes, got '}'`
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
}

func TestSetDefaultBuild(t *testing.T) {
	const top = `"stages": [{"name": "org.osbuild.hostname", "options": {"hostname": "forge-test"}}], "assembler": {"name": "org.osbuild.tar"}`
	const buildStages = `"stages": [{"name": "org.osbuild.debootstrap", "options": {"suite": "bookworm"}}]`
	cases := []struct {
		name, manifest, build, inline, runner, firstPath string
	}{
		{"bare pipeline", `{` + top + `}`, `{` + buildStages + `}`,
			`{"build": {` + buildStages + `}, ` + top + `}`, "", "build-pipeline.stages[0]"},
		{"osbuild's build-env", `{"pipeline": {` + top + `}}`, `{"pipeline": {` + buildStages + `}, "runner": "org.osbuild.debian12"}`,
			`{"pipeline": {"build": {"pipeline": {` + buildStages + `}, "runner": "org.osbuild.debian12"}, ` + top + `}}`, "org.osbuild.debian12", "build-pipeline.pipeline.stages[0]"},
		{"below the manifest's build", `{"build": {"stages": [{"name": "org.osbuild.apt"}]}, ` + top + `}`, `{` + buildStages + `}`,
			`{"build": {"build": {` + buildStages + `}, "stages": [{"name": "org.osbuild.apt"}]}, ` + top + `}`, "", "build-pipeline.stages[0]"},
		{"replacing an empty build", `{"build": {"assembler": {"name": "x"}}, ` + top + `}`, `{` + buildStages + `}`,
			`{"build": {` + buildStages + `}, ` + top + `}`, "", "build-pipeline.stages[0]"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			m := mustParse(t, tc.manifest)
			before := m.Pipeline.TreeID()
			if err := m.SetDefaultBuild([]byte(tc.build)); err != nil {
				t.Fatal(err)
			}
			want := mustParse(t, tc.inline)
			if m.Pipeline.TreeID() != want.Pipeline.TreeID() || m.Pipeline.OutputID() != want.Pipeline.OutputID() || m.Pipeline.TreeID() == before {
				t.Errorf("IDs %s %s, want %s %s as with the build written inline", m.Pipeline.TreeID(), m.Pipeline.OutputID(), want.Pipeline.TreeID(), want.Pipeline.OutputID())
			}
			inner := m.Pipelines()[0]
			if inner.Path != strings.TrimSuffix(tc.firstPath, ".stages[0]") || inner.Stages[0].Path != tc.firstPath {
				t.Errorf("innermost pipeline at %q, its stage at %q; want %q", inner.Path, inner.Stages[0].Path, tc.firstPath)
			}
			var runner string
			for p := m.Pipeline; p.Build != nil; p = p.Build.Pipeline {
				runner = p.Build.Runner
			}
			if runner != tc.runner {
				t.Errorf("runner %q, want %q", runner, tc.runner)
			}
		})
	}

	m := mustParse(t, `{`+top+`}`)
	for build, want := range map[string]string{
		`{"stages": [{"name": "a/b"}]}`:         `build-pipeline.stages[0].name: "a/b" has a '/': a name is a file name in the libdir`,
		`{"pipeline": {}}`:                      `build-pipeline.runner: missing: a build names its runner, like "org.osbuild.debian12"`,
		`[]`:                                    "build-pipeline: want a pipeline object, got array",
		`{"stages": [}`:                         "build-pipeline: invalid JSON at line 1, column 13 (byte 12): want a value, got '}'",
		`{"runner": "r", "pipeline": {"x": 1}}`: `build-pipeline.pipeline.x: unknown key: a pipeline has only "build", "stages", "assembler"`,
	} {
		err := m.SetDefaultBuild([]byte(build))
		var errs Errors
		if !errors.As(err, &errs) || err.Error() != want {
			t.Errorf("SetDefaultBuild(%s) = %v, want %s", build, err, want)
		}
	}
	if m.Pipeline.Build != nil || m.Pipeline.TreeID() != mustParse(t, `{`+top+`}`).Pipeline.TreeID() {
		t.Errorf("a failed SetDefaultBuild changed the manifest")
	}
}

func TestCheckLibdir(t *testing.T) {
	libdir := t.TempDir()
	for _, f := range []struct {
		path string
		mode os.FileMode
	}{
		{"stages/org.osbuild.ok", 0o755},
		{"stages/org.osbuild.noexec", 0o644},
		{"assemblers/org.osbuild.tar", 0o755},
	} {
		path := filepath.Join(libdir, f.path)
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte("#!/bin/sh\n"), f.mode); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(libdir, "stages", "org.osbuild.dir"), 0o755); err != nil {
		t.Fatal(err)
	}

	good := mustParse(t, `{"build": {"stages": [{"name": "org.osbuild.ok"}]}, "stages": [{"name": "org.osbuild.ok"}], "assembler": {"name": "org.osbuild.tar"}}`)
	if err := good.CheckLibdir(libdir); err != nil {
		t.Errorf("CheckLibdir: %v", err)
	}

	bad := mustParse(t, `{"pipeline": {
		"build": {"pipeline": {"stages": [{"name": "org.osbuild.missing"}]}, "runner": "org.osbuild.debian12"},
		"stages": [{"name": "org.osbuild.ok"}, {"name": "org.osbuild.noexec"}, {"name": "org.osbuild.dir"}, {"name": "org.osbuild.tar"}],
		"assembler": {"name": "org.osbuild.ok"}}}`)
	err := bad.CheckLibdir(libdir)
	want := strings.Join([]string{
		fmt.Sprintf(`pipeline.build.pipeline.stages[0].name: no stage "org.osbuild.missing": %s/stages/org.osbuild.missing does not exist`, libdir),
		fmt.Sprintf(`pipeline.stages[1].name: stage "org.osbuild.noexec": %s/stages/org.osbuild.noexec is not executable`, libdir),
		fmt.Sprintf(`pipeline.stages[2].name: stage "org.osbuild.dir": %s/stages/org.osbuild.dir is not a regular file`, libdir),
		fmt.Sprintf(`pipeline.stages[3].name: no stage "org.osbuild.tar": %s/stages/org.osbuild.tar does not exist`, libdir),
		fmt.Sprintf(`pipeline.assembler.name: no assembler "org.osbuild.ok": %s/assemblers/org.osbuild.ok does not exist`, libdir),
	}, "\n")
	if err == nil || err.Error() != want {
		t.Errorf("CheckLibdir error\n%v\nwant\n%s", err, want)
	}
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("CheckLibdir error does not wrap os.ErrNotExist: %v", err)
	}
}

// idScript computes osbuild's IDs for each manifest of the JSON list on
// stdin, as osbuild's format 1 loader and Stage.id do, and prints them in
// the order build pipeline, stages, assembler.
const idScript = `
import hashlib, json, sys

def stage_id(name, build, base, options):
    m = hashlib.sha256()
    m.update(json.dumps(name, sort_keys=True).encode())
    m.update(json.dumps(build, sort_keys=True).encode())
    m.update(json.dumps(base, sort_keys=True).encode())
    m.update(json.dumps(options, sort_keys=True).encode())
    return m.hexdigest()

def pipeline(desc, loader, out):
    build = None
    b = desc.get("build")
    if b:
        bp = b.get("pipeline") if loader else b
        if bp:
            build = pipeline(bp, loader, out)
    tree = None
    for s in desc.get("stages", []):
        tree = stage_id(s["name"], build, tree, s.get("options", {}) or {})
        out.append(tree)
    a = desc.get("assembler")
    if a:
        out.append(stage_id(a["name"], build, tree, a.get("options", {}) or {}))
    return tree

result = []
for doc in json.load(sys.stdin):
    m = json.loads(doc)
    out = []
    if "pipeline" in m or "sources" in m:
        pipeline(m.get("pipeline", {}), True, out)
    else:
        pipeline(m, False, out)
    result.append(out)
json.dump(result, sys.stdout)
`

// pythonIDs runs one python3 over all manifests.
func pythonIDs(t *testing.T, manifests []string) [][]string {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3 to compute osbuild's IDs")
	}
	in, err := json.Marshal(manifests)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-c", idScript)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.Bytes())
	}
	var ids [][]string
	if err := json.Unmarshal(out, &ids); err != nil {
		t.Fatalf("python3 output: %v", err)
	}
	if len(ids) != len(manifests) {
		t.Fatalf("python3 answered %d manifests, want %d", len(ids), len(manifests))
	}
	return ids
}

// goIDs lists m's IDs in the order of idScript.
func goIDs(p *Pipeline) []string {
	var ids []string
	if p.Build != nil {
		ids = goIDs(p.Build.Pipeline)
	}
	for _, s := range p.Stages {
		ids = append(ids, s.ID)
	}
	if p.Assembler != nil {
		ids = append(ids, p.Assembler.ID)
	}
	return ids
}

// manifestGen makes random manifests with nested builds and options that
// exercise json.dumps: unicode and astral keys, repeated keys, escapes,
// big integers, floats around repr's switch points.
type manifestGen struct {
	rng *rand.Rand
}

func (g *manifestGen) pick(options ...string) string { return options[g.rng.IntN(len(options))] }

func (g *manifestGen) scalar() string {
	return g.pick(`null`, `true`, `false`, `0`, `-0`, `42`, `-7`, `123456789012345678901234567890`,
		`1.0`, `1E2`, `1e16`, `9999999999999998.0`, `1e-4`, `1e-5`, `-0.0`, `0.1`, `3.14159`, `2.5e-310`, `1e400`,
		`"forge-test"`, `""`, `"\u00e9t\u00e9"`, `"中文"`, `"😀"`, `"\ud83d\ude00"`, `"\ud800"`, `"tab\there"`,
		`"quote\"back\\slash"`, `"\u0000\u001f\u007f"`, `"/etc/hostname"`, `"\u2028"`)
}

func (g *manifestGen) key() string {
	return g.pick(`"hostname"`, `"a"`, `"B"`, `"b"`, `""`, `"é"`, `"\uff61"`, `"😀"`, `"\ue000"`, `"\ud800"`, `"packages"`, `"a b"`)
}

func (g *manifestGen) value(depth int) string {
	if depth <= 0 || g.rng.IntN(3) > 0 {
		return g.scalar()
	}
	if g.rng.IntN(2) == 0 {
		var elems []string
		for range g.rng.IntN(4) {
			elems = append(elems, g.value(depth-1))
		}
		return "[" + strings.Join(elems, ", ") + "]"
	}
	return g.object(depth - 1)
}

func (g *manifestGen) object(depth int) string {
	var members []string
	for range g.rng.IntN(5) {
		members = append(members, g.key()+": "+g.value(depth))
	}
	return "{" + strings.Join(members, ", ") + "}"
}

func (g *manifestGen) stage() string {
	name := g.pick("org.osbuild.hostname", "org.osbuild.noop", "org.osbuild.kernel-cmdline", "org.osbuild.debootstrap", "org.osbuild.tar")
	if g.rng.IntN(4) == 0 {
		return `{"name": "` + name + `"}`
	}
	return `{"name": "` + name + `", "options": ` + g.object(2) + `}`
}

func (g *manifestGen) pipeline(depth int, loader bool) string {
	var parts []string
	if depth > 0 && g.rng.IntN(3) > 0 {
		build := g.pipeline(depth-1, loader)
		if loader {
			build = `{"pipeline": ` + build + `, "runner": "org.osbuild.debian12"}`
		}
		parts = append(parts, `"build": `+build)
	}
	if g.rng.IntN(6) > 0 {
		var stages []string
		for range g.rng.IntN(5) {
			stages = append(stages, g.stage())
		}
		parts = append(parts, `"stages": [`+strings.Join(stages, ", ")+`]`)
	}
	if g.rng.IntN(2) == 0 {
		parts = append(parts, `"assembler": `+g.stage())
	}
	g.rng.Shuffle(len(parts), func(i, j int) { parts[i], parts[j] = parts[j], parts[i] })
	return "{" + strings.Join(parts, ", ") + "}"
}

func TestIDsMatchPython(t *testing.T) {
	g := &manifestGen{rng: rand.New(rand.NewPCG(5, 1))}
	manifests := []string{hostnameManifest}
	for range 400 {
		loader := g.rng.IntN(2) == 0
		m := g.pipeline(3, loader)
		if loader {
			m = `{"pipeline": ` + m + `, "sources": {}}`
		}
		manifests = append(manifests, m)
	}
	want := pythonIDs(t, manifests)
	if len(want[0]) != 1 || want[0][0] != hostnameID {
		t.Fatalf("python3 computes %v for the test vector, want %s: idScript is wrong", want[0], hostnameID)
	}
	total := 0
	for i, data := range manifests {
		m, err := Parse([]byte(data))
		if err != nil {
			t.Fatalf("Parse(%s): %v", data, err)
		}
		got := goIDs(m.Pipeline)
		if strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Fatalf("manifest %s\nIDs     %v\npython3 %v", data, got, want[i])
		}
		total += len(got)
	}
	t.Logf("%d manifests, %d IDs equal to python3's", len(manifests), total)
}

// FuzzParse checks that Parse never panics, fails only with a non-empty
// Errors, and on success gives every stage a safe name, compact options
// that are a JSON object, and an ID.
func FuzzParse(f *testing.F) {
	f.Add([]byte(hostnameManifest))
	f.Add([]byte(`{"pipeline": {"build": {"pipeline": {"stages": [{"name": "a"}]}, "runner": "org.osbuild.debian12"}, "assembler": {"name": "b", "options": {"x": [1.5e300, "\ud800"]}}}, "sources": {"org.osbuild.files": {}}}`))
	f.Add([]byte(`{"build": {"build": {"stages": [{"name": "a", "options": {"k": 1, "k": 2}}]}}, "stages": [{"name": "a/b"}]}`))
	f.Add([]byte(`{"stages": [{"name": ".."}], "x": []}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty Errors", err, err)
			}
			return
		}
		for _, p := range m.Pipelines() {
			stages := p.Stages
			if p.Assembler != nil {
				stages = append(stages[:len(stages):len(stages)], p.Assembler)
			}
			for _, s := range stages {
				if s.Name == "" || strings.Contains(s.Name, "/") || strings.Contains(s.Name, "..") || s.Name == "." {
					t.Errorf("%s: unsafe name %q accepted", s.Path, s.Name)
				}
				if !json.Valid(s.Options) || s.Options[0] != '{' {
					t.Errorf("%s: options %s are not a JSON object", s.Path, s.Options)
				}
				var compact bytes.Buffer
				if json.Compact(&compact, s.Options) != nil || !bytes.Equal(compact.Bytes(), s.Options) {
					t.Errorf("%s: options %s are not compact", s.Path, s.Options)
				}
				if len(s.ID) != 64 {
					t.Errorf("%s: ID %q", s.Path, s.ID)
				}
			}
		}
	})
}
