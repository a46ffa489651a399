package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// hostRunnerOfTestdata is the runner osbuild's --inspect printed, on the
// machine that made testdata/v2 (Debian 12), for a build pipeline that
// names none.
const hostRunnerOfTestdata = "org.osbuild.debian"

// TestDescribeMatchesOsbuild: for every manifest of testdata/v2 that
// osbuild loads, Describe prints byte for byte what osbuild's --inspect
// printed (IDs, reference resolution, key order, omissions).
func TestDescribeMatchesOsbuild(t *testing.T) {
	files, err := filepath.Glob("testdata/v2/*.inspect.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	for _, want := range files {
		name := strings.TrimSuffix(filepath.Base(want), ".inspect.json")
		t.Run(name, func(t *testing.T) {
			wantOut, err := os.ReadFile(want)
			if err != nil {
				t.Fatal(err)
			}
			data, err := os.ReadFile(filepath.Join("testdata/v2", name+".json"))
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(data)
			if bytes.Contains(wantOut, []byte(`"https://osbuild.org/validation-error"`)) {
				if err == nil {
					t.Fatalf("Parse accepted a manifest osbuild refuses")
				}
				return
			}
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			got, err := m.Describe(DescribeOptions{HostRunner: hostRunnerOfTestdata})
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, wantOut) {
				t.Errorf("Describe differs from osbuild --inspect:\n got %s\nwant %s", got, wantOut)
			}
		})
	}
}

// TestV2Errors: what osbuild's schema and loader refuse, forge refuses
// with the JSON path of the problem.
func TestV2Errors(t *testing.T) {
	tree := `{"name": "tree", "stages": [{"type": "org.osbuild.mkdir", "options": {"paths": [{"path": "/a"}]}}]}`
	for _, tc := range []struct {
		name, manifest, path, msg string
	}{
		{"unsupported version", `{"version": "3"}`, "version", "unsupported manifest format"},
		{"version not a string", `{"version": 2}`, "version", "unsupported manifest format"},
		{"unknown top key", `{"version": "2", "extra": 1}`, "extra", "unknown key"},
		{"pipelines not array", `{"version": "2", "pipelines": {}}`, "pipelines", "want an array"},
		{"pipeline without name", `{"version": "2", "pipelines": [{"stages": []}]}`, "pipelines[0].name", "missing"},
		{"pipeline name escapes", `{"version": "2", "pipelines": [{"name": "../victim"}]}`, "pipelines[0].name", "'/'"},
		{"pipeline name dot-dot", `{"version": "2", "pipelines": [{"name": ".."}]}`, "pipelines[0].name", `".." cannot be`},
		{"duplicate pipeline", `{"version": "2", "pipelines": [` + tree + `, ` + tree + `]}`, "pipelines[1].name", "has this name already"},
		{"unknown build", `{"version": "2", "pipelines": [{"name": "a", "build": "name:later"}, {"name": "later"}]}`, "pipelines[0].build", "no pipeline before this one"},
		{"raw build unknown", `{"version": "2", "pipelines": [{"name": "a", "build": "abc"}]}`, "pipelines[0].build", "neither"},
		{"source-epoch string", `{"version": "2", "pipelines": [{"name": "a", "source-epoch": "yesterday"}]}`, "pipelines[0].source-epoch", "want an integer"},
		{"source-epoch negative", `{"version": "2", "pipelines": [{"name": "a", "source-epoch": -1}]}`, "pipelines[0].source-epoch", "out of range"},
		{"source-epoch past int64", `{"version": "2", "pipelines": [{"name": "a", "source-epoch": 9999999999999999999}]}`, "pipelines[0].source-epoch", "out of range"},
		{"stage without type", `{"version": "2", "pipelines": [{"name": "a", "stages": [{}]}]}`, "pipelines[0].stages[0].type", "missing"},
		{"stage type with slash", `{"version": "2", "pipelines": [{"name": "a", "stages": [{"type": "../x"}]}]}`, "pipelines[0].stages[0].type", "'/'"},
		{"stage unknown key", `{"version": "2", "pipelines": [{"name": "a", "stages": [{"type": "t", "name": "x"}]}]}`, "pipelines[0].stages[0].name", "unknown key"},
		{"input name traversal", `{"version": "2", "pipelines": [` + tree + `, {"name": "b", "stages": [{"type": "t", "inputs": {"a/../../x": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": ["name:tree"]}}}]}]}`, `pipelines[1].stages[0].inputs["a/../../x"]`, "'/'"},
		{"input bad origin", `{"version": "2", "pipelines": [{"name": "b", "stages": [{"type": "t", "inputs": {"i": {"type": "org.osbuild.tree", "origin": "elsewhere", "references": []}}}]}]}`, "pipelines[0].stages[0].inputs.i.origin", "want"},
		{"input empty references", `{"version": "2", "pipelines": [{"name": "b", "stages": [{"type": "t", "inputs": {"i": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": []}}}]}]}`, "pipelines[0].stages[0].inputs.i.references", "empty array"},
		{"input unknown pipeline", `{"version": "2", "pipelines": [{"name": "b", "stages": [{"type": "t", "inputs": {"i": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": ["name:nope"]}}}]}]}`, "pipelines[0].stages[0].inputs.i.references[0]", "no pipeline before"},
		{"input empty pipeline", `{"version": "2", "pipelines": [{"name": "e"}, {"name": "b", "stages": [{"type": "t", "inputs": {"i": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": ["name:e"]}}}]}]}`, "pipelines[1].stages[0].inputs.i.references[0]", "has no stages"},
		{"input unknown source", `{"version": "2", "pipelines": [{"name": "b", "stages": [{"type": "t", "inputs": {"i": {"type": "org.osbuild.files", "origin": "org.osbuild.source", "references": ["sha256:00"]}}}]}]}`, "pipelines[0].stages[0].inputs.i.references[0]", "no source has this item"},
		{"input mixed references", `{"version": "2", "pipelines": [` + tree + `, {"name": "b", "stages": [{"type": "t", "inputs": {"i": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": ["name:tree", {"id": "name:tree"}]}}}]}]}`, "pipelines[1].stages[0].inputs.i.references[1]", "every reference"},
		{"device missing parent", `{"version": "2", "pipelines": [{"name": "b", "stages": [{"type": "t", "devices": {"d": {"type": "org.osbuild.loopback", "parent": "p"}}}]}]}`, "pipelines[0].stages[0].devices.d.parent", "no device of this name"},
		{"device cycle", `{"version": "2", "pipelines": [{"name": "b", "stages": [{"type": "t", "devices": {"a": {"type": "x", "parent": "b"}, "b": {"type": "x", "parent": "a"}}}]}]}`, "pipelines[0].stages[0].devices.a.parent", "cycle"},
		{"mount unknown device", `{"version": "2", "pipelines": [{"name": "b", "stages": [{"type": "t", "mounts": [{"name": "root", "type": "org.osbuild.ext4", "source": "d", "target": "/"}]}]}]}`, "pipelines[0].stages[0].mounts[0].source", "no device of this name"},
		{"mount duplicate", `{"version": "2", "pipelines": [{"name": "b", "stages": [{"type": "t", "mounts": [{"name": "m", "type": "x"}, {"name": "m", "type": "x"}]}]}]}`, "pipelines[0].stages[0].mounts[1].name", "two mounts"},
		{"mount target escapes", `{"version": "2", "pipelines": [{"name": "b", "stages": [{"type": "t", "mounts": [{"name": "m", "type": "x", "target": "/../etc"}]}]}]}`, "pipelines[0].stages[0].mounts[0].target", "absolute path"},
		{"mount partition fraction", `{"version": "2", "pipelines": [{"name": "b", "stages": [{"type": "t", "mounts": [{"name": "m", "type": "x", "partition": 1.5}]}]}]}`, "pipelines[0].stages[0].mounts[0].partition", "partition number"},
		{"source items missing", `{"version": "2", "sources": {"org.osbuild.curl": {}}}`, `sources["org.osbuild.curl"].items`, "missing"},
		{"metadata unknown key", `{"version": "2", "metadata": {"x": 1}}`, "metadata.x", "unknown key"},
		{"metadata export without name", `{"version": "2", "metadata": {"exports": [{}]}}`, "metadata.exports[0].name", "missing"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.manifest))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse(%s) = %v, want Errors", tc.manifest, err)
			}
			for _, e := range errs {
				if e.Path == tc.path && strings.Contains(e.Msg, tc.msg) {
					return
				}
			}
			t.Errorf("Parse(%s):\n%v\nwant an error at %s saying %q", tc.manifest, err, tc.path, tc.msg)
		})
	}
}

// TestV2Model: what the builder reads from a loaded format-2 manifest.
func TestV2Model(t *testing.T) {
	data, err := os.ReadFile("testdata/v2/full-image.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if m.Version != Version2 || len(m.Pipelines()) != 3 || m.Pipeline != m.Pipelines()[2] {
		t.Fatalf("version %s, %d pipelines, top %s", m.Version, len(m.Pipelines()), m.Pipeline.Name)
	}
	build, tree, image := m.Pipelines()[0], m.Pipelines()[1], m.Pipelines()[2]
	if build.Runner != "org.osbuild.fedora38" || tree.Build.Pipeline != build || tree.Build.Runner != build.Runner {
		t.Errorf("tree's build %+v, want the build pipeline and its runner", tree.Build)
	}
	if tree.SourceEpoch != "1700000000" || tree.Stages[0].SourceEpoch != "1700000000" {
		t.Errorf("source epoch %q", tree.SourceEpoch)
	}
	copyStage := image.Stages[len(image.Stages)-1]
	var treeInput *Input
	for _, in := range copyStage.Inputs {
		if in.Type == "org.osbuild.tree" {
			treeInput = in
		}
	}
	if treeInput == nil || len(treeInput.References) != 1 || treeInput.References[0].Pipeline != tree || treeInput.References[0].ID != tree.TreeID() {
		t.Fatalf("copy's tree input %+v does not reference the tree pipeline", treeInput)
	}
	if len(copyStage.Mounts) == 0 || copyStage.Mounts[0].Source == nil {
		t.Fatalf("copy's mounts %+v", copyStage.Mounts)
	}
	for _, mt := range copyStage.Mounts {
		if mt.Source.Type != "org.osbuild.loopback" || !json.Valid(mt.Options) || !json.Valid(mt.Source.Options) {
			t.Errorf("mount %s: device %+v", mt.Name, mt.Source)
		}
	}
	if len(m.SourceItems) != 1 || !strings.HasPrefix(m.SourceItems[0], "sha256:") {
		t.Errorf("source items %v", m.SourceItems)
	}
}

func FuzzParseV2(f *testing.F) {
	files, _ := filepath.Glob("testdata/v2/*.json")
	for _, name := range files {
		if data, err := os.ReadFile(name); err == nil && !strings.HasSuffix(name, ".inspect.json") {
			f.Add(data)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(data)
		if err != nil {
			var errs Errors
			if !errors.As(err, &errs) || len(errs) == 0 {
				t.Fatalf("error %v (%T) is not a non-empty Errors", err, err)
			}
			return
		}
		if m.Version != Version2 {
			return
		}
		out, err := m.Describe(DescribeOptions{HostRunner: "org.osbuild.test"})
		if err != nil || !json.Valid(out) {
			t.Fatalf("Describe: %v, %q", err, out)
		}
		for _, p := range m.Pipelines() {
			for _, s := range p.Stages {
				if len(s.ID) != 64 || s.Name == "" || strings.ContainsAny(s.Name, "/") {
					t.Errorf("%s: name %q ID %q", s.Path, s.Name, s.ID)
				}
				for _, in := range s.Inputs {
					if strings.ContainsAny(in.Name, "/") || in.Name == "" || strings.Contains(in.Name, "..") {
						t.Errorf("%s: unsafe input name %q accepted", in.Path, in.Name)
					}
				}
				for _, mt := range s.Mounts {
					if mt.Target != "" && !validTarget(mt.Target) {
						t.Errorf("%s: unsafe target %q accepted", mt.Path, mt.Target)
					}
				}
			}
		}
	})
}
