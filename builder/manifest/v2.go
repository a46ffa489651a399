package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"hash"
	"math"
	"strings"

	"github.com/forge-build/forge/builder/pyjson"
)

// The origins of a format-2 input.
const (
	// OriginPipeline: the references are pipelines ("name:X" in the
	// manifest, their IDs once loaded).
	OriginPipeline = "org.osbuild.pipeline"
	// OriginSource: the references are source items (checksums).
	OriginSource = "org.osbuild.source"
)

// Input is what a format-2 stage reads besides its tree: other pipelines'
// trees or files, or files from the sources. Its ID is osbuild's
// (inputs.py, Input.calc_id).
type Input struct {
	// Name is the input's key in the stage: the directory
	// /run/osbuild/inputs/NAME.
	Name string
	// Type is the input module, like "org.osbuild.tree".
	Type string
	// Origin is OriginPipeline or OriginSource.
	Origin string
	// Options are the input's options, compacted; {} when absent.
	Options json.RawMessage
	// References in manifest order, each key once (a later duplicate
	// replaces the options of the first, as Python's dict does).
	References []*Reference
	ID         string
	Path       string

	options *pyjson.Value
	raw     *pyjson.Value // as written, for ValidateModules
}

// Reference is one thing an input takes.
type Reference struct {
	// ID is the referenced pipeline's ID (origin pipeline) or the source
	// item's key, a checksum like "sha256:…" (origin source).
	ID string
	// Pipeline is the pipeline referenced (origin pipeline), else nil.
	Pipeline *Pipeline
	// Options are the reference's options (e.g. {"file": "/path"} for
	// org.osbuild.files from a pipeline), compacted; {} when none.
	Options json.RawMessage

	options *pyjson.Value
}

// Device is a block device a format-2 stage opens, such as a loop device
// over a file of its tree. Its ID is osbuild's (devices.py,
// Device.calc_id): devices enter a stage's ID only through the mounts
// that use them.
type Device struct {
	Name string
	// Type is the device module, like "org.osbuild.loopback".
	Type string
	// Parent is the device this one is opened on, or nil.
	Parent  *Device
	Options json.RawMessage
	ID      string
	Path    string

	options *pyjson.Value
	raw     *pyjson.Value
}

// Mount is a filesystem a format-2 stage mounts under
// /run/osbuild/mounts. Its ID is osbuild's (mounts.py, Mount.calc_id).
type Mount struct {
	Name string
	// Type is the mount module, like "org.osbuild.ext4".
	Type string
	// Source is the device mounted, or nil.
	Source *Device
	// Target is where under /run/osbuild/mounts, like "/" or "/boot/efi";
	// "" when absent.
	Target string
	// Partition is the partition of Source to mount, 0 for none.
	Partition int
	Options   json.RawMessage
	ID        string
	Path      string

	options   *pyjson.Value
	raw       *pyjson.Value
	target    *pyjson.Value // nil when absent: --inspect prints null
	partition *pyjson.Value // nil when absent
}

// parseV2 reads a format-2 manifest (root has "version": "2"): it checks
// what osbuild's schema osbuild2.json and its loader (formats/v2.py)
// check, and computes every ID as osbuild does.
func (pr *problems) parseV2(root *pyjson.Value) *Manifest {
	m := &Manifest{Version: Version2, raw: root}
	pr.unknownKeys(root, "", "a format-2 manifest", "version", "pipelines", "sources", "metadata")
	if v := root.Get("metadata"); v != nil {
		pr.metadata(v)
		if v.Kind == pyjson.Object && len(v.Members) > 0 {
			m.metadata = v
		}
	}
	items := map[string]bool{}
	if v := root.Get("sources"); v != nil {
		if v.Kind != pyjson.Object {
			pr.add("sources", nil, "want an object {SOURCE TYPE: {\"items\": {...}}}, got %s", v.Kind)
		} else {
			m.sources = v
			m.Sources = pr.compact("sources", v)
			for _, f := range v.Fields() {
				path := join("sources", f.Key)
				pr.checkName(path, f.Key)
				if f.Value.Kind != pyjson.Object {
					pr.add(path, nil, "want an object {\"items\": {...}, \"options\": {...}}, got %s", f.Value.Kind)
					continue
				}
				pr.unknownKeys(f.Value, path, "a source", "items", "options")
				it := f.Value.Get("items")
				switch {
				case it == nil:
					pr.add(join(path, "items"), nil, "missing: a source has items")
				case it.Kind != pyjson.Object:
					pr.add(join(path, "items"), nil, "want an object {CHECKSUM: ...}, got %s", it.Kind)
				default:
					for _, item := range it.Fields() {
						if !items[item.Key] {
							items[item.Key] = true
							m.SourceItems = append(m.SourceItems, item.Key)
						}
					}
				}
				pr.optionalObject(f.Value, path, "options")
			}
		}
	}
	l := &loaderV2{pr: pr, m: m, byName: map[string]*Pipeline{}, items: items}
	switch v := root.Get("pipelines"); {
	case v == nil:
	case v.Kind != pyjson.Array:
		pr.add("pipelines", nil, "want an array of pipelines, got %s", v.Kind)
	default:
		for i, e := range v.Elems {
			l.pipeline(e, index("pipelines", i))
		}
	}
	l.runners()
	if len(m.named) > 0 {
		m.Pipeline = m.named[len(m.named)-1]
	} else {
		m.Pipeline = &Pipeline{Path: "pipelines"}
	}
	return m
}

// metadata checks format 2's "metadata": {"exports": [{"name"}],
// "generators": [{"name", "version"}]}.
func (pr *problems) metadata(v *pyjson.Value) {
	if v.Kind != pyjson.Object {
		pr.add("metadata", nil, "want an object, got %s", v.Kind)
		return
	}
	pr.unknownKeys(v, "metadata", "metadata", "exports", "generators")
	for _, key := range []string{"exports", "generators"} {
		a := v.Get(key)
		if a == nil {
			continue
		}
		path := join("metadata", key)
		if a.Kind != pyjson.Array {
			pr.add(path, nil, "want an array, got %s", a.Kind)
			continue
		}
		for i, e := range a.Elems {
			ep := index(path, i)
			if e.Kind != pyjson.Object {
				pr.add(ep, nil, "want an object {\"name\"...}, got %s", e.Kind)
				continue
			}
			if key == "exports" {
				pr.unknownKeys(e, ep, "an export", "name")
			} else {
				pr.unknownKeys(e, ep, "a generator", "name", "version")
				pr.optionalString(e, ep, "version")
			}
			if pr.optionalString(e, ep, "name") == nil {
				pr.add(join(ep, "name"), nil, "missing: want a name")
			}
		}
	}
}

// optionalString returns v[key] when it is a string, reports it when it
// is something else, and returns nil then or when it is absent.
func (pr *problems) optionalString(v *pyjson.Value, path, key string) *pyjson.Value {
	s := v.Get(key)
	if s == nil {
		return nil
	}
	if s.Kind != pyjson.String {
		pr.add(join(path, key), nil, "want a string, got %s", s.Kind)
		return nil
	}
	return s
}

// optionalObject returns v[key] when it is an object, reports it when it
// is something else, and returns nil then or when it is absent.
func (pr *problems) optionalObject(v *pyjson.Value, path, key string) *pyjson.Value {
	o := v.Get(key)
	if o == nil {
		return nil
	}
	if o.Kind != pyjson.Object {
		pr.add(join(path, key), nil, "want an object, got %s", o.Kind)
		return nil
	}
	return o
}

// loaderV2 holds what loading format 2 needs across pipelines.
type loaderV2 struct {
	pr     *problems
	m      *Manifest
	byName map[string]*Pipeline
	items  map[string]bool // every source item
	// builds are the raw build IDs (not "name:") to check once every
	// pipeline's ID is known, as osbuild's load does.
	builds []rawBuild
}

type rawBuild struct {
	p    *Pipeline
	id   string
	path string
}

func (l *loaderV2) pipeline(v *pyjson.Value, path string) {
	pr := l.pr
	p := &Pipeline{Path: path}
	if v.Kind != pyjson.Object {
		pr.add(path, nil, "want a pipeline object {\"name\", \"build\", \"stages\"...}, got %s", v.Kind)
		return
	}
	pr.unknownKeys(v, path, "a pipeline", "name", "build", "runner", "source-epoch", "stages")
	switch n := v.Get("name"); {
	case n == nil:
		pr.add(join(path, "name"), nil, "missing: a pipeline needs a name")
	case n.Kind != pyjson.String:
		pr.add(join(path, "name"), nil, "want a string, got %s", n.Kind)
	case l.byName[n.Str] != nil:
		pr.add(join(path, "name"), nil, "%q: %s has this name already", n.Str, l.byName[n.Str].Path)
	default:
		// An exported pipeline's tree goes to OUTPUT/NAME: a name is a
		// file name (osbuild joins it to the output directory unchecked).
		pr.checkName(join(path, "name"), n.Str)
		p.Name = n.Str
	}
	if r := pr.optionalString(v, path, "runner"); r != nil {
		pr.checkName(join(path, "runner"), r.Str)
		p.Runner = r.Str
	}
	if e := v.Get("source-epoch"); e != nil {
		switch {
		case e.Kind != pyjson.Int:
			pr.add(join(path, "source-epoch"), nil, "want an integer (seconds since 1970), got %s", e.Kind)
		case strings.HasPrefix(e.Int, "-") || !fitsInt64(e.Int):
			// SOURCE_DATE_EPOCH is a non-negative time_t.
			pr.add(join(path, "source-epoch"), nil, "%s is out of range: want 0 to %d", e.Int, int64(math.MaxInt64))
		default:
			p.SourceEpoch = e.Int
		}
	}
	// The build as the stage IDs hash it: the build pipeline's ID, or a
	// raw ID as written ("" for none: osbuild ignores an empty build).
	buildID := ""
	if b := pr.optionalString(v, path, "build"); b != nil && b.Str != "" {
		bpath := join(path, "build")
		if name, ok := strings.CutPrefix(b.Str, "name:"); ok {
			if bp := l.byName[name]; bp != nil {
				p.Build = &Build{Pipeline: bp}
				buildID = bp.TreeID()
			} else {
				pr.add(bpath, nil, "%q: no pipeline before this one is named %q", b.Str, name)
			}
		} else {
			buildID = b.Str
			l.builds = append(l.builds, rawBuild{p: p, id: b.Str, path: bpath})
		}
	}
	if s := v.Get("stages"); s != nil {
		spath := join(path, "stages")
		if s.Kind != pyjson.Array {
			pr.add(spath, nil, "want an array of stages, got %s", s.Kind)
		} else {
			base := ""
			for i, e := range s.Elems {
				st := l.stage(e, index(spath, i), p)
				if st == nil {
					continue
				}
				st.SourceEpoch = p.SourceEpoch
				st.ID = stageIDv2(st, buildID, base)
				base = st.ID
				p.Stages = append(p.Stages, st)
			}
		}
	}
	if p.Name != "" {
		l.byName[p.Name] = p
	}
	l.m.named = append(l.m.named, p)
}

// runners resolves the raw build IDs and gives every pipeline's Build its
// runner, as the end of osbuild's load does: the runner of the stages of
// a pipeline is the "runner" of its build pipeline, looked up by ID (the
// last pipeline of that ID wins).
func (l *loaderV2) runners() {
	byID := map[string]*Pipeline{}
	for _, p := range l.m.named {
		if id := p.TreeID(); id != "" {
			byID[id] = p
		}
	}
	for _, rb := range l.builds {
		bp := byID[rb.id]
		if bp == nil {
			l.pr.add(rb.path, nil, "%q is neither \"name:PIPELINE\" nor the ID of a pipeline of the manifest", rb.id)
			continue
		}
		rb.p.Build = &Build{Pipeline: bp}
		// Stage IDs hashed the build as written: it is this ID.
	}
	for _, p := range l.m.named {
		if p.Build == nil {
			continue
		}
		if id := p.BuildID(); id != "" {
			p.Build.Runner = byID[id].Runner
		}
	}
}

// stage reads a format-2 stage; nil when it is not an object.
func (l *loaderV2) stage(v *pyjson.Value, path string, p *Pipeline) *Stage {
	pr := l.pr
	if v.Kind != pyjson.Object {
		pr.add(path, nil, "want a stage object {\"type\", \"options\"...}, got %s", v.Kind)
		return nil
	}
	s := &Stage{Path: path, Options: json.RawMessage("{}"), options: noOptions, raw: v}
	pr.unknownKeys(v, path, "a stage", "type", "options", "inputs", "devices", "mounts")
	switch t := v.Get("type"); {
	case t == nil:
		pr.add(join(path, "type"), nil, "missing: a stage needs a type, like \"org.osbuild.copy\"")
	case t.Kind != pyjson.String:
		pr.add(join(path, "type"), nil, "want a string, got %s", t.Kind)
	default:
		pr.checkName(join(path, "type"), t.Str)
		s.Name = t.Str
	}
	if o := pr.optionalObject(v, path, "options"); o != nil {
		s.options = o
		s.Options = pr.compact(join(path, "options"), o)
	}
	devices := l.devices(v.Get("devices"), join(path, "devices"))
	s.Devices = devices
	if ips := v.Get("inputs"); ips != nil {
		ipath := join(path, "inputs")
		if ips.Kind != pyjson.Object {
			pr.add(ipath, nil, "want an object {NAME: input}, got %s", ips.Kind)
		} else {
			for _, f := range ips.Fields() {
				if in := l.input(f.Key, f.Value, join(ipath, f.Key)); in != nil {
					s.Inputs = append(s.Inputs, in)
				}
			}
		}
	}
	if ms := v.Get("mounts"); ms != nil {
		mpath := join(path, "mounts")
		if ms.Kind != pyjson.Array {
			pr.add(mpath, nil, "want an array of mounts, got %s", ms.Kind)
		} else {
			seen := map[string]bool{}
			for i, e := range ms.Elems {
				mt := l.mount(e, index(mpath, i), devices)
				if mt == nil {
					continue
				}
				if seen[mt.Name] {
					pr.add(join(index(mpath, i), "name"), nil, "%q: two mounts of a stage have this name", mt.Name)
					continue
				}
				seen[mt.Name] = true
				s.Mounts = append(s.Mounts, mt)
			}
		}
	}
	return s
}

// devices reads a stage's devices and returns them parents first, as
// osbuild's sort_devices orders them: repeated passes over the manifest
// order, taking each device whose parent is taken.
func (l *loaderV2) devices(v *pyjson.Value, path string) []*Device {
	pr := l.pr
	if v == nil {
		return nil
	}
	if v.Kind != pyjson.Object {
		pr.add(path, nil, "want an object {NAME: device}, got %s", v.Kind)
		return nil
	}
	type pending struct {
		d      *Device
		parent string
	}
	var todo []pending
	names := map[string]bool{}
	for _, f := range v.Fields() {
		dpath := join(path, f.Key)
		names[f.Key] = true
		if f.Value.Kind != pyjson.Object {
			pr.add(dpath, nil, "want a device object {\"type\", \"options\"...}, got %s", f.Value.Kind)
			continue
		}
		d := &Device{Name: f.Key, Path: dpath, Options: json.RawMessage("{}"), options: noOptions, raw: f.Value}
		pr.unknownKeys(f.Value, dpath, "a device", "type", "parent", "options")
		if t := pr.optionalString(f.Value, dpath, "type"); t != nil {
			pr.checkName(join(dpath, "type"), t.Str)
			d.Type = t.Str
		} else if f.Value.Get("type") == nil {
			pr.add(join(dpath, "type"), nil, "missing: a device needs a type, like \"org.osbuild.loopback\"")
		}
		if o := pr.optionalObject(f.Value, dpath, "options"); o != nil {
			d.options = o
			d.Options = pr.compact(join(dpath, "options"), o)
		}
		parent := ""
		if p := pr.optionalString(f.Value, dpath, "parent"); p != nil {
			parent = p.Str
		}
		todo = append(todo, pending{d, parent})
	}
	var sorted []*Device
	done := map[string]*Device{}
	for len(todo) > 0 {
		var next []pending
		for _, t := range todo {
			if t.parent == "" {
				done[t.d.Name] = t.d
				sorted = append(sorted, t.d)
				continue
			}
			if par := done[t.parent]; par != nil {
				t.d.Parent = par
				done[t.d.Name] = t.d
				sorted = append(sorted, t.d)
				continue
			}
			if !names[t.parent] {
				pr.add(join(t.d.Path, "parent"), nil, "%q: the stage has no device of this name", t.parent)
				continue
			}
			next = append(next, t)
		}
		if len(next) == len(todo) {
			for _, t := range next {
				pr.add(join(t.d.Path, "parent"), nil, "%q: the devices' parents form a cycle", t.parent)
			}
			break
		}
		todo = next
	}
	for _, d := range sorted {
		h := newIDHash()
		h.str(d.Type)
		if d.Parent != nil {
			h.str(d.Parent.ID)
		}
		h.value(d.options)
		d.ID = h.sum()
	}
	return sorted
}

// input reads one input of a stage; nil when it cannot be read at all.
func (l *loaderV2) input(name string, v *pyjson.Value, path string) *Input {
	pr := l.pr
	// osbuild's schema wants a letter first; the name is also a directory
	// under /run/osbuild/inputs, so it must be a plain file name (osbuild
	// joins it to a path unchecked).
	if name == "" || !(name[0] >= 'a' && name[0] <= 'z' || name[0] >= 'A' && name[0] <= 'Z') {
		pr.add(path, nil, "input name %q: want a letter first, then letters, digits, '.', '_' and '-'", name)
	} else {
		pr.checkName(path, name)
	}
	if v.Kind != pyjson.Object {
		pr.add(path, nil, "want an input object {\"type\", \"origin\", \"references\"}, got %s", v.Kind)
		return nil
	}
	in := &Input{Name: name, Path: path, Options: json.RawMessage("{}"), options: noOptions, raw: v}
	pr.unknownKeys(v, path, "an input", "type", "origin", "references", "options")
	if t := pr.optionalString(v, path, "type"); t != nil {
		pr.checkName(join(path, "type"), t.Str)
		in.Type = t.Str
	} else if v.Get("type") == nil {
		pr.add(join(path, "type"), nil, "missing: an input needs a type, like \"org.osbuild.tree\"")
	}
	switch o := v.Get("origin"); {
	case o == nil:
		pr.add(join(path, "origin"), nil, "missing: want %q or %q", OriginPipeline, OriginSource)
	case o.Kind != pyjson.String || o.Str != OriginPipeline && o.Str != OriginSource:
		pr.add(join(path, "origin"), nil, "want %q or %q, got %s", OriginPipeline, OriginSource, describeValue(o))
	default:
		in.Origin = o.Str
	}
	if o := pr.optionalObject(v, path, "options"); o != nil && len(o.Members) > 0 {
		in.options = o
		in.Options = pr.compact(join(path, "options"), o)
	}
	rpath := join(path, "references")
	refs := v.Get("references")
	if refs == nil {
		pr.add(rpath, nil, "missing: an input needs references")
		return in
	}
	type ref struct {
		key  string
		opts *pyjson.Value
		path string
	}
	var list []ref
	switch refs.Kind {
	case pyjson.Object:
		for _, f := range refs.Fields() {
			list = append(list, ref{f.Key, f.Value, join(rpath, f.Key)})
		}
	case pyjson.Array:
		// osbuild's schema takes an array of strings or an array of
		// {"id", "options"}; an empty array fits both, which oneOf
		// refuses.
		if len(refs.Elems) == 0 {
			pr.add(rpath, nil, "is an empty array: want at least one reference (or an object)")
		}
		strs := len(refs.Elems) > 0 && refs.Elems[0].Kind == pyjson.String
		for i, e := range refs.Elems {
			epath := index(rpath, i)
			switch {
			case strs && e.Kind == pyjson.String:
				list = append(list, ref{e.Str, nil, epath})
			case !strs && e.Kind == pyjson.Object:
				pr.unknownKeys(e, epath, "a reference", "id", "options")
				id := pr.optionalString(e, epath, "id")
				if id == nil {
					if e.Get("id") == nil {
						pr.add(join(epath, "id"), nil, "missing: a reference needs an id")
					}
					continue
				}
				list = append(list, ref{id.Str, pr.optionalObject(e, epath, "options"), epath})
			default:
				pr.add(epath, nil, "want every reference a string or every one an object {\"id\", \"options\"}, got %s", e.Kind)
			}
		}
	default:
		pr.add(rpath, nil, "want an array or an object, got %s", refs.Kind)
	}
	pos := map[string]int{}
	for _, r := range list {
		opts := r.opts
		// osbuild's add_reference: options or {} (null, {} and absent
		// are the same).
		if opts == nil || opts.Kind == pyjson.Null || opts.Kind == pyjson.Object && len(opts.Members) == 0 {
			opts = noOptions
		} else if opts.Kind != pyjson.Object {
			pr.add(r.path, nil, "want the reference's options as an object, got %s", opts.Kind)
			continue
		}
		rf := &Reference{ID: r.key, options: opts}
		switch in.Origin {
		case OriginPipeline:
			name, ok := strings.CutPrefix(r.key, "name:")
			if !ok {
				// osbuild drops a pipeline reference that is not
				// "name:X" without a word; so does forge, for equal IDs.
				continue
			}
			p := l.byName[name]
			if p == nil {
				pr.add(r.path, nil, "%q: no pipeline before this one is named %q", r.key, name)
				continue
			}
			if p.TreeID() == "" {
				pr.add(r.path, nil, "%q: pipeline %q has no stages, so no tree to take", r.key, name)
				continue
			}
			rf.ID, rf.Pipeline = p.TreeID(), p
		case OriginSource:
			if !l.items[r.key] {
				pr.add(r.path, nil, "%q: no source has this item", r.key)
				continue
			}
		}
		rf.Options = json.RawMessage("{}")
		if opts != noOptions {
			rf.Options = pr.compact(r.path, opts)
		}
		if i, ok := pos[rf.ID]; ok {
			// Python's dict: the key stays where it was first, with the
			// last value.
			in.References[i] = rf
			continue
		}
		pos[rf.ID] = len(in.References)
		in.References = append(in.References, rf)
	}
	h := newIDHash()
	h.str(in.Type)
	h.str(in.Origin)
	h.value(in.refsValue())
	h.value(in.options)
	in.ID = h.sum()
	return in
}

// refsValue is the input's references as osbuild hashes and prints them:
// an object {ID: options}.
func (in *Input) refsValue() *pyjson.Value {
	v := &pyjson.Value{Kind: pyjson.Object, Members: make([]pyjson.Member, 0, len(in.References))}
	for _, r := range in.References {
		v.Members = append(v.Members, pyjson.Member{Key: r.ID, Value: r.options})
	}
	return v
}

// mount reads one mount of a stage; nil when it cannot be read at all.
func (l *loaderV2) mount(v *pyjson.Value, path string, devices []*Device) *Mount {
	pr := l.pr
	if v.Kind != pyjson.Object {
		pr.add(path, nil, "want a mount object {\"name\", \"type\", \"source\", \"target\"...}, got %s", v.Kind)
		return nil
	}
	mt := &Mount{Path: path, Options: json.RawMessage("{}"), options: noOptions, raw: v}
	pr.unknownKeys(v, path, "a mount", "name", "type", "source", "target", "partition", "options")
	if n := pr.optionalString(v, path, "name"); n != nil {
		mt.Name = n.Str
	} else if v.Get("name") == nil {
		pr.add(join(path, "name"), nil, "missing: a mount needs a name")
	}
	if t := pr.optionalString(v, path, "type"); t != nil {
		pr.checkName(join(path, "type"), t.Str)
		mt.Type = t.Str
	} else if v.Get("type") == nil {
		pr.add(join(path, "type"), nil, "missing: a mount needs a type, like \"org.osbuild.ext4\"")
	}
	// osbuild takes a source or target only when truthy.
	if s := pr.optionalString(v, path, "source"); s != nil && s.Str != "" {
		for _, d := range devices {
			if d.Name == s.Str {
				mt.Source = d
			}
		}
		if mt.Source == nil {
			pr.add(join(path, "source"), nil, "%q: the stage has no device of this name", s.Str)
		}
	}
	if t := pr.optionalString(v, path, "target"); t != nil {
		mt.target = t
		mt.Target = t.Str
		if t.Str != "" && !validTarget(t.Str) {
			pr.add(join(path, "target"), nil, "%q: want an absolute path without \".\" or \"..\" parts", t.Str)
		}
	}
	if p := v.Get("partition"); p != nil {
		switch {
		case p.Kind == pyjson.Int && len(p.Int) <= 9 && !strings.HasPrefix(p.Int, "-"):
			mt.partition = p
			for _, c := range p.Int {
				mt.Partition = mt.Partition*10 + int(c-'0')
			}
		case p.Kind == pyjson.Float && p.Float >= 0 && p.Float < 1e9 && p.Float == math.Trunc(p.Float):
			mt.partition = p
			mt.Partition = int(p.Float)
		default:
			pr.add(join(path, "partition"), nil, "want a partition number (0 or more), got %s", describeValue(p))
		}
	}
	if o := pr.optionalObject(v, path, "options"); o != nil {
		mt.options = o
		mt.Options = pr.compact(join(path, "options"), o)
	}
	h := newIDHash()
	h.str(mt.Type)
	if mt.Source != nil {
		h.str(mt.Source.ID)
	}
	if mt.Partition != 0 {
		h.value(mt.partition)
	}
	if mt.Target != "" {
		h.str(mt.Target)
	}
	h.value(mt.options)
	mt.ID = h.sum()
	return mt
}

// validTarget reports whether a mount target stays under the mounts
// directory: absolute, with no "." or ".." parts.
func validTarget(t string) bool {
	if !strings.HasPrefix(t, "/") || strings.ContainsRune(t, 0) {
		return false
	}
	for _, part := range strings.Split(t[1:], "/") {
		if part == "." || part == ".." {
			return false
		}
	}
	return true
}

// describeValue is a short form of v for messages.
func describeValue(v *pyjson.Value) string {
	if v.Kind == pyjson.String || v.Kind == pyjson.Int || v.Kind == pyjson.Float || v.Kind == pyjson.Bool {
		s := string(v.Raw)
		if len(s) > maxKeyInPath {
			s = s[:maxKeyInPath] + "..."
		}
		return s
	}
	return v.Kind.String()
}

// stageIDv2 is osbuild's Stage.id for a format-2 stage: format 1's four
// pieces, then the source epoch, the inputs' IDs by name and the mounts'
// IDs in order, each only when there are any.
func stageIDv2(s *Stage, build, base string) string {
	h := newIDHash()
	h.str(s.Name)
	h.strOrNull(build)
	h.strOrNull(base)
	h.value(s.options)
	if s.SourceEpoch != "" {
		h.h.Write([]byte(s.SourceEpoch))
	}
	if len(s.Inputs) > 0 {
		v := &pyjson.Value{Kind: pyjson.Object}
		for _, in := range s.Inputs {
			v.Members = append(v.Members, pyjson.Member{Key: in.Name, Value: &pyjson.Value{Kind: pyjson.String, Str: in.ID}})
		}
		h.value(v)
	}
	if len(s.Mounts) > 0 {
		v := &pyjson.Value{Kind: pyjson.Array}
		for _, mt := range s.Mounts {
			v.Elems = append(v.Elems, &pyjson.Value{Kind: pyjson.String, Str: mt.ID})
		}
		h.value(v)
	}
	return h.sum()
}

// idHash hashes json.dumps pieces, concatenated, as osbuild's IDs do.
type idHash struct{ h hash.Hash }

func newIDHash() idHash { return idHash{sha256.New()} }

func (x idHash) str(s string) { x.h.Write(pyjson.AppendString(nil, s)) }

// strOrNull hashes s, or null for "" (Python's None).
func (x idHash) strOrNull(s string) {
	if s == "" {
		x.h.Write([]byte("null"))
		return
	}
	x.str(s)
}

func (x idHash) value(v *pyjson.Value) { v.WriteDumps(x.h) } // a hash.Hash never fails

func (x idHash) sum() string { return hex.EncodeToString(x.h.Sum(nil)) }
