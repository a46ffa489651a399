package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/forge-build/forge/builder/pyjson"
	"github.com/forge-build/forge/internal/jsonschema"
)

// The checks of osbuild's formats/v2.py validate that depend on the
// libdir: every module (stage, device, input, mount, source) checked
// against the schema its NAME.meta.json gives, built as osbuild's
// ModuleInfo.get_schema(version="2") builds it. The rest of osbuild's
// schema (osbuild2.json) is what parseV2 checks itself.

// moduleDirs are the libdir's directories of each kind of module.
var moduleDirs = map[string]string{
	"Device": "devices", "Input": "inputs", "Mount": "mounts", "Source": "sources", "Stage": "stages",
}

// maxMetaSize bounds a NAME.meta.json: osbuild's largest is ~40 KiB.
const maxMetaSize = 4 << 20

// ValidateModules checks a format-2 manifest's stages, devices, inputs,
// mounts and sources against the schemas of libdir's modules, as osbuild
// does before it loads a manifest: a stage's options, inputs, devices and
// mounts must be what its schema_2 allows (or, for a stage with only a
// format-1 schema, its options), a device's, mount's, input's and source's
// what theirs allow. A module without a NAME.meta.json is not checked
// (osbuild refuses it; forge's and the seed's stages without one check
// their own options when they run). Errors are an Errors with each
// problem's JSON path.
func (m *Manifest) ValidateModules(libdir string) error {
	if m.Version != Version2 || m.raw == nil {
		return nil
	}
	v := &moduleValidator{libdir: libdir, schemas: map[string]*moduleSchema{}}
	var pr problems
	add := func(path string, err error) {
		var es Errors
		if errors.As(err, &es) {
			for _, e := range es {
				pr.add(e.Path, e.Err, "%s", e.Msg)
			}
			return
		}
		pr.add(path, err, "%v", err)
	}
	if srcs := m.raw.Get("sources"); srcs != nil && srcs.Kind == pyjson.Object {
		for _, f := range srcs.Fields() {
			if err := v.check("Source", f.Key, f.Value, join("sources", f.Key)); err != nil {
				add(join("sources", f.Key), err)
			}
		}
	}
	for _, p := range m.named {
		for _, s := range p.Stages {
			if s.raw == nil {
				continue
			}
			if err := v.check("Stage", s.Name, s.raw, s.Path); err != nil {
				add(s.Path, err)
			}
			for _, d := range s.Devices {
				if err := v.check("Device", d.Type, d.raw, d.Path); err != nil {
					add(d.Path, err)
				}
			}
			for _, in := range s.Inputs {
				if err := v.check("Input", in.Type, in.raw, in.Path); err != nil {
					add(in.Path, err)
				}
			}
			for _, mt := range s.Mounts {
				if err := v.check("Mount", mt.Type, mt.raw, mt.Path); err != nil {
					add(mt.Path, err)
				}
			}
		}
	}
	return pr.err()
}

type moduleValidator struct {
	libdir  string
	schemas map[string]*moduleSchema
}

type moduleSchema struct {
	schema *jsonschema.Schema // nil: no meta.json, not checked
	err    error              // the meta.json could not be used
}

// check validates the module value v (at path) of kind klass and type name.
func (mv *moduleValidator) check(klass, name string, v *pyjson.Value, path string) error {
	ms := mv.load(klass, name)
	if ms.err != nil {
		return ms.err
	}
	if ms.schema == nil || v == nil {
		return nil
	}
	res, err := ms.schema.Validate(v)
	if err != nil {
		return fmt.Errorf("validate against %s's schema: %w", name, err)
	}
	var es Errors
	for _, e := range res.Errors() {
		p := path
		for _, st := range e.Path {
			if st.IsIndex {
				p = index(p, st.Index)
			} else {
				p = join(p, st.Key)
			}
		}
		es = append(es, &Error{Path: p, Msg: e.Message + " (" + name + "'s schema)"})
	}
	if len(es) == 0 {
		return nil
	}
	return es
}

func (mv *moduleValidator) load(klass, name string) *moduleSchema {
	key := klass + "/" + name
	if ms, ok := mv.schemas[key]; ok {
		return ms
	}
	ms := &moduleSchema{}
	mv.schemas[key] = ms
	file := filepath.Join(mv.libdir, moduleDirs[klass], name+".meta.json")
	data, err := readMeta(file)
	if errors.Is(err, fs.ErrNotExist) {
		return ms
	}
	if err != nil {
		ms.err = err
		return ms
	}
	meta, err := pyjson.Parse(data)
	if err != nil {
		ms.err = fmt.Errorf("%s: %w", file, err)
		return ms
	}
	doc, err := moduleSchemaDoc(klass, name, meta)
	if err != nil {
		ms.err = fmt.Errorf("%s: %w", file, err)
		return ms
	}
	if ms.schema, err = jsonschema.Compile(doc); err != nil {
		ms.err = fmt.Errorf("%s: its schema: %w", file, err)
	}
	return ms
}

func readMeta(file string) ([]byte, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() || fi.Size() > maxMetaSize {
		return nil, fmt.Errorf("%s: not a regular file of at most %d bytes", file, maxMetaSize)
	}
	return os.ReadFile(file)
}

// moduleSchemaDoc is osbuild's ModuleInfo.get_schema(version="2"): the
// schema a module's value is checked against, made from its meta.json's
// "schema_2" (or, where a kind allows it, format 1's "schema").
func moduleSchemaDoc(klass, name string, meta *pyjson.Value) (*pyjson.Value, error) {
	if meta.Kind != pyjson.Object {
		return nil, errors.New("want an object")
	}
	opts1, opts2 := meta.Get("schema"), meta.Get("schema_2")
	if opts1 == nil {
		opts1 = newObject()
	}
	if opts2 == nil {
		opts2 = newObject()
	}
	// _load_opts: schema_2, else (with fallback) schema; neither is an
	// error.
	loadOpts := func(fallback bool) (*pyjson.Value, error) {
		raw := opts2
		if !truthy(raw) && fallback {
			raw = opts1
		}
		if !truthy(raw) {
			return nil, errors.New("no schema for format 2")
		}
		return raw, nil
	}
	schema := newObject()
	setMember(schema, "title", str("Pipeline "+klass))
	setMember(schema, "type", str("object"))
	setMember(schema, "additionalProperties", &pyjson.Value{Kind: pyjson.Bool})
	enum := newObject()
	setMember(enum, "enum", array([]*pyjson.Value{str(name)}))
	switch klass {
	case "Stage":
		opts := opts2
		if !truthy(opts) {
			opts = newObject()
			setMember(opts, "options", opts1)
		}
		if opts.Kind != pyjson.Object {
			return nil, errors.New("schema_2 is not an object")
		}
		props := newObject()
		setMember(props, "type", enum)
		for _, f := range opts.Fields() {
			setMember(props, f.Key, f.Value)
		}
		if props.Get("mounts") == nil {
			t := newObject()
			setMember(t, "type", str("array"))
			setMember(props, "mounts", t)
		}
		if props.Get("devices") == nil {
			t := newObject()
			setMember(t, "type", str("object"))
			setMember(t, "additionalProperties", &pyjson.Value{Kind: pyjson.Bool, Bool: true})
			setMember(props, "devices", t)
		}
		setMember(schema, "properties", props)
		setMember(schema, "required", array([]*pyjson.Value{str("type")}))
	case "Device":
		setMember(schema, "additionalProperties", &pyjson.Value{Kind: pyjson.Bool, Bool: true})
		opts, err := loadOpts(true)
		if err != nil {
			return nil, err
		}
		props := newObject()
		setMember(props, "type", enum)
		setMember(props, "options", opts)
		setMember(schema, "properties", props)
	case "Mount":
		opts, err := loadOpts(false)
		if err != nil {
			return nil, err
		}
		if opts.Kind != pyjson.Object {
			return nil, errors.New("schema_2 is not an object")
		}
		for _, f := range opts.Fields() {
			setMember(schema, f.Key, f.Value)
		}
		props := schema.Get("properties")
		if props == nil || props.Kind != pyjson.Object {
			return nil, errors.New("a mount's schema_2 has no \"properties\"")
		}
		setMember(props, "type", enum)
	default: // Input, Source
		opts, err := loadOpts(true)
		if err != nil {
			return nil, err
		}
		if opts.Kind != pyjson.Object {
			return nil, errors.New("schema_2 is not an object")
		}
		for _, f := range opts.Fields() {
			setMember(schema, f.Key, f.Value)
		}
	}
	// Definitions under properties, or under options, move to the top,
	// where "#/definitions/..." finds them.
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

func newObject() *pyjson.Value { return &pyjson.Value{Kind: pyjson.Object, Members: []pyjson.Member{}} }

// setMember sets key in the object o, replacing every member of that key
// (a copy of o's members: o may be shared with the manifest).
func setMember(o *pyjson.Value, key string, v *pyjson.Value) {
	members := make([]pyjson.Member, 0, len(o.Members)+1)
	replaced := false
	for _, m := range o.Members {
		if m.Key == key {
			if !replaced {
				members = append(members, pyjson.Member{Key: key, Value: v})
				replaced = true
			}
			continue
		}
		members = append(members, m)
	}
	if !replaced {
		members = append(members, pyjson.Member{Key: key, Value: v})
	}
	o.Members = members
}

func deleteMember(o *pyjson.Value, key string) {
	members := make([]pyjson.Member, 0, len(o.Members))
	for _, m := range o.Members {
		if m.Key != key {
			members = append(members, m)
		}
	}
	o.Members = members
}

// truthy is Python's bool() of a JSON value.
func truthy(v *pyjson.Value) bool {
	switch v.Kind {
	case pyjson.Null:
		return false
	case pyjson.Bool:
		return v.Bool
	case pyjson.Int:
		return v.Int != "0"
	case pyjson.Float:
		return v.Float != 0
	case pyjson.String:
		return v.Str != ""
	case pyjson.Array:
		return len(v.Elems) > 0
	}
	return len(v.Members) > 0
}
