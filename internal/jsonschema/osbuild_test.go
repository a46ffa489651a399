package jsonschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/forge-build/forge/builder/pyjson"
)

// The conformance test validates osbuild's own test manifests (and the
// broken ones in testdata/broken) the way osbuild's formats/v2.py validate
// does, against the schemas of an osbuild checkout, and compares every
// error with what osbuild itself reports. osbuild's answers are pinned in
// testdata/osbuild-v2.json, written by testdata/osbuild_v2.py running
// osbuild from the checkout at commit f6b23dbc; -python-live asks python3
// instead, -update-pins rewrites the pins.

const osbuildSrc = "/var/tmp/osbuild-src"

var (
	pythonLive = flag.Bool("python-live", false, "compare with python3 running osbuild's validation, not with the pinned answers")
	updatePins = flag.Bool("update-pins", false, "rewrite testdata/osbuild-v2.json from python3 running osbuild's validation")
)

const pinFile = "testdata/osbuild-v2.json"

func needOsbuild(t *testing.T) {
	t.Helper()
	if _, err := os.Stat(filepath.Join(osbuildSrc, "schemas", "osbuild2.json")); err != nil {
		t.Skipf("no osbuild checkout at %s", osbuildSrc)
	}
}

func parseFile(t *testing.T, path string) *pyjson.Value {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := pyjson.Parse(data)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return v
}

// dedup rewrites every object of v to hold each key once, as Python's
// dict does, so that the schema surgery below can edit members in place.
func dedup(v *pyjson.Value) *pyjson.Value {
	switch v.Kind {
	case pyjson.Object:
		fields := v.Fields()
		for i := range fields {
			fields[i].Value = dedup(fields[i].Value)
		}
		v.Members = fields
	case pyjson.Array:
		for i, e := range v.Elems {
			v.Elems[i] = dedup(e)
		}
	}
	return v
}

func str(s string) *pyjson.Value { return &pyjson.Value{Kind: pyjson.String, Str: s} }

func object(kv ...any) *pyjson.Value {
	o := &pyjson.Value{Kind: pyjson.Object, Members: []pyjson.Member{}}
	for i := 0; i < len(kv); i += 2 {
		setMember(o, kv[i].(string), kv[i+1].(*pyjson.Value))
	}
	return o
}

func array(elems ...*pyjson.Value) *pyjson.Value {
	return &pyjson.Value{Kind: pyjson.Array, Elems: append([]*pyjson.Value{}, elems...)}
}

// setMember is Python's o[key] = v: in place when key is there, at the end
// otherwise.
func setMember(o *pyjson.Value, key string, v *pyjson.Value) {
	for i := range o.Members {
		if o.Members[i].Key == key {
			o.Members[i].Value = v
			return
		}
	}
	o.Members = append(o.Members, pyjson.Member{Key: key, Value: v})
}

func deleteMember(o *pyjson.Value, key string) {
	o.Members = slices.DeleteFunc(o.Members, func(m pyjson.Member) bool { return m.Key == key })
}

// falsy is Python's "not x" for a JSON value; nil is absent.
func falsy(v *pyjson.Value) bool { return !truthy(v) }

// errOsbuildRaises stands for an exception osbuild raises (and so fails)
// where it would rather have reported a validation error.
var errOsbuildRaises = errors.New("osbuild raises")

var moduleDirs = map[string]string{
	"Device": "devices", "Input": "inputs", "Mount": "mounts", "Source": "sources", "Stage": "stages",
}

// osbuildIndex plays osbuild.meta.Index for format 2: it builds each
// module's schema as ModuleInfo.get_schema(version="2") does and compiles
// it once.
type osbuildIndex struct {
	root    string
	schemas map[string]*moduleSchema
}

type moduleSchema struct {
	schema  *Schema
	invalid *SchemaError // check_schema refused it
	missing bool         // no module of that name
	err     error        // get_schema raised
}

func (ix *osbuildIndex) moduleSchema(klass, name string) *moduleSchema {
	key := klass + "/" + name
	if ms, ok := ix.schemas[key]; ok {
		return ms
	}
	ms := &moduleSchema{}
	ix.schemas[key] = ms
	doc, err := ix.buildSchema(klass, name)
	switch {
	case err != nil:
		ms.err = err
	case doc == nil:
		ms.missing = true
	default:
		ms.schema, ms.invalid, ms.err = compileForOsbuild(doc)
	}
	return ms
}

func compileForOsbuild(doc *pyjson.Value) (*Schema, *SchemaError, error) {
	s, err := Compile(doc)
	var se *SchemaError
	if errors.As(err, &se) && se.Err == nil {
		return nil, se, nil
	}
	return s, nil, err
}

// buildSchema is ModuleInfo.get_schema(version="2"), nil where the module
// is missing.
func (ix *osbuildIndex) buildSchema(klass, name string) (*pyjson.Value, error) {
	if strings.Contains(name, "/") || name == "" || name == "." || name == ".." {
		return nil, nil
	}
	data, err := os.ReadFile(filepath.Join(ix.root, moduleDirs[klass], name+".meta.json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	meta, err := pyjson.Parse(data)
	if err != nil {
		return nil, err
	}
	meta = dedup(meta)
	opts1, opts2 := meta.Get("schema"), meta.Get("schema_2")
	if opts1 == nil {
		opts1 = object()
	}
	if opts2 == nil {
		opts2 = object()
	}
	// _load_opts(version, fallback)
	loadOpts := func(fallback bool) (*pyjson.Value, error) {
		raw := opts2
		if falsy(raw) && fallback {
			raw = opts1
		}
		if falsy(raw) {
			return nil, fmt.Errorf("%w: ValueError: Unsupported version", errOsbuildRaises)
		}
		return raw, nil
	}
	schema := object(
		"title", str("Pipeline "+klass),
		"type", str("object"),
		"additionalProperties", &pyjson.Value{Kind: pyjson.Bool},
	)
	enum := object("enum", array(str(name)))
	switch klass {
	case "Stage":
		opts := opts2
		if falsy(opts) {
			opts = object("options", opts1)
		}
		props := object("type", enum)
		for _, m := range opts.Members {
			setMember(props, m.Key, m.Value)
		}
		if props.Get("mounts") == nil {
			setMember(props, "mounts", object("type", str("array")))
		}
		if props.Get("devices") == nil {
			setMember(props, "devices", object("type", str("object"), "additionalProperties", &pyjson.Value{Kind: pyjson.Bool, Bool: true}))
		}
		setMember(schema, "properties", props)
		setMember(schema, "required", array(str("type")))
	case "Device":
		setMember(schema, "additionalProperties", &pyjson.Value{Kind: pyjson.Bool, Bool: true})
		opts, err := loadOpts(true)
		if err != nil {
			return nil, err
		}
		setMember(schema, "properties", object("type", enum, "options", opts))
	case "Mount":
		opts, err := loadOpts(false)
		if err != nil {
			return nil, err
		}
		for _, m := range opts.Members {
			setMember(schema, m.Key, m.Value)
		}
		props := schema.Get("properties")
		if props == nil || props.Kind != pyjson.Object {
			return nil, fmt.Errorf("%w: KeyError: 'properties'", errOsbuildRaises)
		}
		setMember(props, "type", enum)
	default:
		opts, err := loadOpts(true)
		if err != nil {
			return nil, err
		}
		for _, m := range opts.Members {
			setMember(schema, m.Key, m.Value)
		}
	}
	// definitions of properties or of options move to the top.
	if props := schema.Get("properties"); props != nil && props.Kind == pyjson.Object {
		if defs := props.Get("definitions"); defs != nil {
			setMember(schema, "definitions", defs)
			deleteMember(props, "definitions")
		}
		if options := props.Get("options"); options != nil && options.Kind == pyjson.Object {
			if defs := options.Get("definitions"); defs != nil {
				setMember(schema, "definitions", defs)
				deleteMember(options, "definitions")
			}
		}
	}
	return schema, nil
}

// validate is osbuild's Schema.validate: a schema check_schema refused
// gives its error, a missing one "could not find schema information".
func (ms *moduleSchema) validate(name string, v *pyjson.Value) (*Result, error) {
	switch {
	case ms.err != nil:
		return nil, ms.err
	case ms.missing:
		r := &Result{}
		r.Add(Error{Message: fmt.Sprintf("could not find schema information for %s", strRepr(name))})
		return r, nil
	case ms.invalid != nil:
		r := &Result{}
		r.Add(Error{Path: ms.invalid.Path, Message: ms.invalid.Message})
		return r, nil
	}
	return ms.schema.Validate(v)
}

// validateV2 is osbuild's formats/v2.py validate(manifest, index).
func (ix *osbuildIndex) validateV2(manifest, manifestSchema *pyjson.Value) (*Result, error) {
	s, err := Compile(manifestSchema)
	if err != nil {
		return nil, err
	}
	result, err := s.Validate(manifest)
	if err != nil {
		return nil, err
	}
	if manifest.Kind != pyjson.Object {
		return nil, errOsbuildRaises
	}
	module := func(klass, name string, v *pyjson.Value, path Path) error {
		r, err := ix.moduleSchema(klass, name).validate(name, v)
		if err != nil {
			return err
		}
		result.Merge(r, path)
		return nil
	}
	if sources := manifest.Get("sources"); sources != nil {
		if sources.Kind != pyjson.Object {
			return nil, errOsbuildRaises
		}
		for _, m := range sources.Fields() {
			if err := module("Source", m.Key, m.Value, Path{Key("sources"), Key(m.Key)}); err != nil {
				return nil, err
			}
		}
	}
	pipelines := manifest.Get("pipelines")
	if pipelines == nil {
		return result, nil
	}
	if pipelines.Kind != pyjson.Array {
		return nil, errOsbuildRaises
	}
	for i, pipeline := range pipelines.Elems {
		if pipeline.Kind != pyjson.Object {
			return nil, errOsbuildRaises
		}
		stages := pipeline.Get("stages")
		if stages == nil || (stages.Kind == pyjson.Object && len(stages.Members) == 0) {
			continue
		}
		if stages.Kind != pyjson.Array {
			return nil, errOsbuildRaises
		}
		for j, stage := range stages.Elems {
			path := Path{Key("pipelines"), Index(i), Key("stages"), Index(j)}
			if stage.Kind != pyjson.Object || stage.Get("type") == nil || stage.Get("type").Kind != pyjson.String {
				return nil, errOsbuildRaises
			}
			if err := module("Stage", stage.Get("type").Str, stage, path); err != nil {
				return nil, err
			}
			for _, klass := range []string{"Device", "Input", "Mount"} {
				group := moduleDirs[klass]
				items := stage.Get(group)
				if items == nil {
					continue
				}
				if items.Kind == pyjson.Array {
					byName := object()
					for _, it := range items.Elems {
						if it.Kind != pyjson.Object || it.Get("name") == nil || it.Get("name").Kind != pyjson.String {
							return nil, errOsbuildRaises
						}
						setMember(byName, it.Get("name").Str, it)
					}
					items = byName
				}
				if items.Kind != pyjson.Object {
					return nil, errOsbuildRaises
				}
				for _, m := range items.Fields() {
					if m.Value.Kind != pyjson.Object {
						return nil, errOsbuildRaises
					}
					typ := m.Value.Get("type")
					if falsy(typ) {
						continue
					}
					if typ.Kind != pyjson.String {
						return nil, errOsbuildRaises
					}
					p := append(slices.Clone(path), Key(group), Key(m.Key))
					if err := module(klass, typ.Str, m.Value, p); err != nil {
						return nil, err
					}
				}
			}
		}
	}
	return result, nil
}

// osbuildAnswer is what osbuild reports for one manifest.
type osbuildAnswer struct {
	Errors    [][2]string `json:"errors,omitempty"`
	Exception string      `json:"exception,omitempty"`
}

// manifestCases lists the format-2 manifests of osbuild's tests and the
// broken ones of testdata: key, path, parsed.
type manifestCase struct {
	key, path string
	value     *pyjson.Value
}

func manifestCases(t *testing.T) []manifestCase {
	t.Helper()
	var cases []manifestCase
	err := filepath.WalkDir(filepath.Join(osbuildSrc, "test"), func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".json") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		v, err := pyjson.Parse(data)
		if err != nil || v.Kind != pyjson.Object {
			return nil
		}
		if version := v.Get("version"); version == nil || version.Kind != pyjson.String || version.Str != "2" || v.Get("pipelines") == nil {
			return nil
		}
		rel, _ := filepath.Rel(osbuildSrc, path)
		cases = append(cases, manifestCase{"osbuild/" + rel, path, v})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	broken, _ := filepath.Glob(filepath.Join("testdata", "broken", "*.json"))
	for _, path := range broken {
		cases = append(cases, manifestCase{strings.TrimPrefix(path, "testdata/"), path, parseFile(t, path)})
	}
	return cases
}

func askOsbuild(t *testing.T, cases []manifestCase) map[string]osbuildAnswer {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 to run osbuild")
	}
	var in [][2]string
	for _, c := range cases {
		abs, _ := filepath.Abs(c.path)
		in = append(in, [2]string{c.key, abs})
	}
	data, _ := json.Marshal(in)
	cmd := exec.Command("python3", filepath.Join("testdata", "osbuild_v2.py"), osbuildSrc)
	cmd.Stdin = bytes.NewReader(data)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 osbuild_v2.py: %v", err)
	}
	answers := map[string]osbuildAnswer{}
	if err := json.Unmarshal(out, &answers); err != nil {
		t.Fatal(err)
	}
	if *updatePins {
		if err := os.WriteFile(pinFile, out, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return answers
}

func TestOsbuildManifests(t *testing.T) {
	needOsbuild(t)
	cases := manifestCases(t)
	var answers map[string]osbuildAnswer
	if *pythonLive || *updatePins {
		answers = askOsbuild(t, cases)
	} else {
		data, err := os.ReadFile(pinFile)
		if err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(data, &answers); err != nil {
			t.Fatal(err)
		}
	}
	ix := &osbuildIndex{root: osbuildSrc, schemas: map[string]*moduleSchema{}}
	manifestSchema := parseFile(t, filepath.Join(osbuildSrc, "schemas", "osbuild2.json"))

	var total, sameValidity, samePaths, sameErrors, osbuildInvalid int
	for _, c := range cases {
		want, ok := answers[c.key]
		if !ok {
			t.Errorf("%s: no pinned answer from osbuild; run with -update-pins", c.key)
			continue
		}
		total++
		res, err := ix.validateV2(c.value, manifestSchema)
		if want.Exception != "" || err != nil {
			if want.Exception == "" || !errors.Is(err, errOsbuildRaises) {
				t.Errorf("%s: forge: %v; osbuild raises %q", c.key, err, want.Exception)
			} else {
				sameValidity++
				samePaths++
				sameErrors++
			}
			continue
		}
		var got [][2]string
		for _, e := range res.Errors() {
			got = append(got, [2]string{e.Path.String(), e.Message})
		}
		if len(want.Errors) > 0 {
			osbuildInvalid++
		}
		if (len(got) == 0) == (len(want.Errors) == 0) {
			sameValidity++
		} else {
			t.Errorf("%s: forge finds %d errors, osbuild %d", c.key, len(got), len(want.Errors))
		}
		paths := func(errs [][2]string) []string {
			var ps []string
			for _, e := range errs {
				ps = append(ps, e[0])
			}
			return slices.Compact(ps)
		}
		if slices.Equal(paths(got), paths(want.Errors)) {
			samePaths++
		} else {
			t.Errorf("%s: error paths\nforge:   %q\nosbuild: %q", c.key, paths(got), paths(want.Errors))
		}
		if slices.Equal(got, want.Errors) {
			sameErrors++
		} else {
			for _, e := range got {
				if !slices.Contains(want.Errors, e) {
					t.Errorf("%s: forge only: %s %q", c.key, e[0], e[1])
				}
			}
			for _, e := range want.Errors {
				if !slices.Contains(got, e) {
					t.Errorf("%s: osbuild only: %s %q", c.key, e[0], e[1])
				}
			}
		}
	}
	t.Logf("%d manifests (%d invalid for osbuild): validity agrees on %d, error paths on %d, errors and messages on %d",
		total, osbuildInvalid, sameValidity, samePaths, sameErrors)
	if total < 200 {
		t.Errorf("only %d manifests; osbuild's tests at f6b23dbc hold 203 format-2 manifests", total)
	}
}

// TestOsbuildModuleSchemas compiles the format-2 schema of every module of
// osbuild and its manifest schema.
func TestOsbuildModuleSchemas(t *testing.T) {
	needOsbuild(t)
	if _, err := Compile(parseFile(t, filepath.Join(osbuildSrc, "schemas", "osbuild2.json"))); err != nil {
		t.Errorf("osbuild2.json: %v", err)
	}
	ix := &osbuildIndex{root: osbuildSrc, schemas: map[string]*moduleSchema{}}
	n := 0
	for klass, dir := range moduleDirs {
		metas, _ := filepath.Glob(filepath.Join(osbuildSrc, dir, "*.meta.json"))
		for _, meta := range metas {
			name := strings.TrimSuffix(filepath.Base(meta), ".meta.json")
			ms := ix.moduleSchema(klass, name)
			n++
			switch {
			case ms.err != nil:
				t.Errorf("%s %s: %v", klass, name, ms.err)
			case ms.invalid != nil:
				t.Errorf("%s %s: check_schema would refuse it: %v", klass, name, ms.invalid)
			case ms.missing:
				t.Errorf("%s %s: missing", klass, name)
			}
		}
	}
	t.Logf("%d module schemas compile", n)
	if n < 200 {
		t.Errorf("only %d module schemas", n)
	}
}

// osbuildPatterns collects every pattern of osbuild's schemas: "pattern"
// values and "patternProperties" keys.
func osbuildPatterns(t *testing.T) []string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(osbuildSrc, "*", "*.meta.json"))
	files = append(files, filepath.Join(osbuildSrc, "schemas", "osbuild2.json"))
	seen := map[string]bool{}
	var out []string
	add := func(p string) {
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	var walk func(v *pyjson.Value)
	walk = func(v *pyjson.Value) {
		switch v.Kind {
		case pyjson.Object:
			for _, m := range v.Fields() {
				if m.Key == "pattern" && m.Value.Kind == pyjson.String {
					add(m.Value.Str)
				}
				if m.Key == "patternProperties" && m.Value.Kind == pyjson.Object {
					for _, p := range m.Value.Fields() {
						add(p.Key)
					}
				}
				walk(m.Value)
			}
		case pyjson.Array:
			for _, e := range v.Elems {
				walk(e)
			}
		}
	}
	for _, f := range files {
		walk(parseFile(t, f))
	}
	slices.Sort(out)
	return out
}

// TestOsbuildPatternsAgainstPython runs every pattern of osbuild's schemas
// over strings from osbuild's test manifests (and variations of them that
// probe $, lookahead, \w and \d) and compares with Python's re.search.
func TestOsbuildPatternsAgainstPython(t *testing.T) {
	needOsbuild(t)
	patterns := osbuildPatterns(t)
	strs := map[string]bool{}
	var collect func(v *pyjson.Value)
	collect = func(v *pyjson.Value) {
		switch v.Kind {
		case pyjson.String:
			if len(v.Str) < 200 {
				strs[v.Str] = true
			}
		case pyjson.Object:
			for _, m := range v.Fields() {
				strs[m.Key] = true
				collect(m.Value)
			}
		case pyjson.Array:
			for _, e := range v.Elems {
				collect(e)
			}
		}
	}
	for _, c := range manifestCases(t) {
		collect(c.value)
	}
	var corpus []string
	for s := range strs {
		corpus = append(corpus, s)
	}
	slices.Sort(corpus)
	// A sample, each with variations.
	r := rand.New(rand.NewPCG(5, 6))
	var sample []string
	for range 150 {
		s := corpus[r.IntN(len(corpus))]
		sample = append(sample, s, s+"\n", s+"\n\n", "/../"+s, s+"/../x", "é"+s, strings.ToUpper(s), s+"٣", "\n"+s, s+" ")
	}
	sample = append(sample, "", "/", "..", "/..", "a.b", "x_y.z", "١٢٣", "a\u00e9", "sha256:"+strings.Repeat("0", 64))
	cases := make([]pyCase, len(patterns))
	for i, p := range patterns {
		cases[i] = pyCase{Pattern: p, Strings: sample}
	}
	compareWithPython(t, cases)
	t.Logf("%d patterns of osbuild's schemas, each on %d strings", len(patterns), len(sample))
}
