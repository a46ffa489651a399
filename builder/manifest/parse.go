package manifest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"

	"github.com/forge-build/forge/builder/pyjson"
)

// shape is which of format 1's two shapes a pipeline is written in; it
// decides what a "build" holds.
type shape int

const (
	// bare: "build" is a pipeline.
	bare shape = iota
	// loader: osbuild's v1 loader, "build" is {"pipeline", "runner"}.
	loader
)

// maxNameLen is the longest name a file in the libdir can have.
const maxNameLen = 255

// Parse reads a format 1 manifest in either shape (see the package doc),
// validates all of it and computes every ID. The JSON is read as Python's
// json.loads reads it: where a key is repeated, the last one counts.
//
// On failure the error is an Errors listing the problems found, the first
// 100 of them (then how many more there were).
//
// What Parse takes is bounded by data's length: the parse refuses nesting
// deeper than pyjson.MaxDepth and more than pyjson.MaxValues values, a
// string's text is held once, and IDs are hashed from dumps streamed a
// piece at a time. A manifest that is one long string takes about three
// times its length; Read and ReadFile bound the length.
func Parse(data []byte) (*Manifest, error) {
	root, err := pyjson.Parse(data)
	if err != nil {
		return nil, Errors{{Msg: err.Error(), Err: err}}
	}
	var pr problems
	m := &Manifest{Version: Version1}
	switch {
	case root.Kind != pyjson.Object:
		pr.add("", nil, "want an object, got %s", root.Kind)
	case root.Get("version") != nil:
		v := root.Get("version")
		switch {
		case v.Kind == pyjson.String && v.Str == Version2:
			m = pr.parseV2(root)
		case v.Kind == pyjson.String && v.Str == Version1:
			// osbuild's format-1 loader shape with its version written.
			m.Pipeline, m.Sources = pr.loaderManifest(root)
		default:
			pr.add("version", nil, "unsupported manifest format %s: forge reads \"1\" and \"2\"", describeValue(v))
		}
	case root.Get("pipeline") != nil || root.Get("sources") != nil:
		m.Pipeline, m.Sources = pr.loaderManifest(root)
	default:
		m.Pipeline = pr.pipeline(root, "", bare)
	}
	if err := pr.err(); err != nil {
		return nil, err
	}
	if m.Version == Version1 {
		computeIDs(m.Pipeline)
	}
	computeCacheKeys(m.Pipelines())
	return m, nil
}

// buildPipelinePath is the JSON path that SetDefaultBuild's pipeline and
// its stages get in messages.
const buildPipelinePath = "build-pipeline"

// SetDefaultBuild gives the manifest a build root where it would use the
// host: data becomes the build of the innermost pipeline whose BuildID is
// "" (the top pipeline of a manifest without a build), and every ID is
// computed again. data is either a bare pipeline or osbuild's build
// description {"pipeline": <pipeline>, "runner": NAME}, the file osbuild's
// --build-env took.
//
// osbuild's --build-env attached the pipeline the same way but kept the IDs
// computed before, so trees built in different build roots shared IDs;
// forge computes them as if the build had been written in the manifest.
//
// Paths in messages and in the new stages start with "build-pipeline".
func (m *Manifest) SetDefaultBuild(data []byte) error {
	if m.Version != Version1 {
		return Errors{{Path: buildPipelinePath, Msg: "a default build pipeline is for format 1: a format-2 manifest names its build pipelines"}}
	}
	root, err := pyjson.Parse(data)
	if err != nil {
		return Errors{{Path: buildPipelinePath, Msg: err.Error(), Err: err}}
	}
	var pr problems
	var b *Build
	if root.Kind == pyjson.Object && (root.Get("pipeline") != nil || root.Get("runner") != nil) {
		b = pr.build(root, buildPipelinePath)
	} else {
		b = &Build{Pipeline: pr.pipeline(root, buildPipelinePath, bare)}
	}
	if err := pr.err(); err != nil {
		return err
	}
	p := m.Pipeline
	for p.BuildID() != "" {
		p = p.Build.Pipeline
	}
	p.Build = b
	computeIDs(m.Pipeline)
	computeCacheKeys(m.Pipelines())
	return nil
}

// unknownKeys reports the keys of v not in known, in document order.
func (pr *problems) unknownKeys(v *pyjson.Value, path, what string, known ...string) {
	for _, f := range v.Fields() {
		found := false
		for _, k := range known {
			found = found || f.Key == k
		}
		if !found {
			quoted := make([]string, len(known))
			for i, k := range known {
				quoted[i] = fmt.Sprintf("%q", k)
			}
			pr.add(join(path, f.Key), nil, "unknown key: %s has only %s", what, strings.Join(quoted, ", "))
		}
	}
}

// loaderManifest reads osbuild's {"pipeline", "sources"} shape. A missing
// pipeline is an empty one, as in osbuild's loader.
func (pr *problems) loaderManifest(root *pyjson.Value) (*Pipeline, json.RawMessage) {
	known := []string{"pipeline", "sources"}
	if root.Get("version") != nil {
		known = append(known, "version")
	}
	pr.unknownKeys(root, "", `a manifest with "pipeline" or "sources"`, known...)
	p := &Pipeline{Path: "pipeline"}
	if v := root.Get("pipeline"); v != nil {
		p = pr.pipeline(v, "pipeline", loader)
	}
	var sources json.RawMessage
	if v := root.Get("sources"); v != nil {
		if v.Kind != pyjson.Object {
			pr.add("sources", nil, "want an object, got %s", v.Kind)
		} else {
			for _, f := range v.Fields() {
				if f.Value.Kind != pyjson.Object {
					pr.add(join("sources", f.Key), nil, "want an object, got %s", f.Value.Kind)
				}
			}
			sources = pr.compact("sources", v)
		}
	}
	return p, sources
}

// pipeline reads a pipeline at path. It always returns a *Pipeline, so that
// validation goes on below a bad one.
func (pr *problems) pipeline(v *pyjson.Value, path string, sh shape) *Pipeline {
	p := &Pipeline{Path: path}
	if v.Kind != pyjson.Object {
		pr.add(path, nil, "want a pipeline object, got %s", v.Kind)
		return p
	}
	pr.unknownKeys(v, path, "a pipeline", "build", "stages", "assembler")
	if b := v.Get("build"); b != nil {
		if sh == bare {
			p.Build = &Build{Pipeline: pr.pipeline(b, join(path, "build"), bare)}
		} else {
			p.Build = pr.build(b, join(path, "build"))
		}
	}
	if s := v.Get("stages"); s != nil {
		stagesPath := join(path, "stages")
		if s.Kind != pyjson.Array {
			pr.add(stagesPath, nil, "want an array of stages, got %s", s.Kind)
		} else {
			for i, e := range s.Elems {
				p.Stages = append(p.Stages, pr.stage(e, index(stagesPath, i), "stage"))
			}
		}
	}
	if a := v.Get("assembler"); a != nil {
		p.Assembler = pr.stage(a, join(path, "assembler"), "assembler")
	}
	return p
}

// build reads the loader shape's {"pipeline": <pipeline>, "runner": NAME};
// both are required, as in osbuild's schema.
func (pr *problems) build(v *pyjson.Value, path string) *Build {
	b := &Build{Pipeline: &Pipeline{Path: join(path, "pipeline")}}
	if v.Kind != pyjson.Object {
		pr.add(path, nil, `want an object {"pipeline", "runner"}, got %s`, v.Kind)
		return b
	}
	pr.unknownKeys(v, path, "a build", "pipeline", "runner")
	if p := v.Get("pipeline"); p != nil {
		b.Pipeline = pr.pipeline(p, join(path, "pipeline"), loader)
	} else {
		pr.add(join(path, "pipeline"), nil, "missing: a build has a pipeline")
	}
	runnerPath := join(path, "runner")
	switch r := v.Get("runner"); {
	case r == nil:
		pr.add(runnerPath, nil, `missing: a build names its runner, like "org.osbuild.debian12"`)
	case r.Kind != pyjson.String:
		pr.add(runnerPath, nil, "want a string, got %s", r.Kind)
	default:
		// osbuild looks the runner up as a file in the libdir, like
		// stages: the same names are safe.
		pr.checkName(runnerPath, r.Str)
		b.Runner = r.Str
	}
	return b
}

// noOptions are the options of a stage without any, shared by all of them
// (only read, for IDs).
var noOptions = &pyjson.Value{Kind: pyjson.Object, Members: []pyjson.Member{}}

// stage reads a stage or assembler (what) at path.
func (pr *problems) stage(v *pyjson.Value, path, what string) *Stage {
	s := &Stage{Path: path, Options: json.RawMessage("{}"), options: noOptions}
	if v.Kind != pyjson.Object {
		pr.add(path, nil, `want %s object {"name", "options"}, got %s`, article(what), v.Kind)
		return s
	}
	pr.unknownKeys(v, path, article(what), "name", "options")
	namePath := join(path, "name")
	switch n := v.Get("name"); {
	case n == nil:
		pr.add(namePath, nil, "missing: %s needs a name", article(what))
	case n.Kind != pyjson.String:
		pr.add(namePath, nil, "want a string, got %s", n.Kind)
	default:
		pr.checkName(namePath, n.Str)
		s.Name = n.Str
	}
	if o := v.Get("options"); o != nil {
		optionsPath := join(path, "options")
		if o.Kind != pyjson.Object {
			pr.add(optionsPath, nil, "want an object, got %s", o.Kind)
		} else {
			s.options = o
			s.Options = pr.compact(optionsPath, o)
		}
	}
	return s
}

func article(what string) string {
	if strings.IndexByte("aeiou", what[0]) >= 0 {
		return "an " + what
	}
	return "a " + what
}

// checkName checks that name can only be a file directly in a libdir
// directory: osbuild's names (org.osbuild.kernel-cmdline,
// org.osbuild.debian12) use [A-Za-z0-9._-], and "/" or ".." would reach
// outside.
func (pr *problems) checkName(path, name string) {
	switch {
	case name == "":
		pr.add(path, nil, "is empty: want a name like org.osbuild.hostname")
	case len(name) > maxNameLen:
		// First, so that the messages below quote no more than
		// maxNameLen bytes.
		pr.add(path, nil, "is %d bytes long, more than a file name can be (%d)", len(name), maxNameLen)
	case strings.Contains(name, "/"):
		pr.add(path, nil, "%q has a '/': a name is a file name in the libdir", name)
	case name == "." || strings.Contains(name, ".."):
		pr.add(path, nil, "%q: \".\" and \"..\" cannot be in a name", name)
	default:
		for _, c := range name {
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
				pr.add(path, nil, "%q has %q: a name has only letters, digits, '.', '_' and '-'", name, c)
				return
			}
		}
	}
}

// compact returns v's source text without insignificant space.
func (pr *problems) compact(path string, v *pyjson.Value) json.RawMessage {
	var buf bytes.Buffer
	if err := json.Compact(&buf, v.Raw); err != nil {
		// pyjson accepts only what encoding/json accepts (FuzzDumps
		// checks that), so this is a bug, not bad input.
		pr.add(path, err, "cannot compact: %v", err)
		return nil
	}
	return buf.Bytes()
}
