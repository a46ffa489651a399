package manifest

import (
	"errors"

	"github.com/forge-build/forge/builder/pyjson"
)

// DescribeOptions tune Describe.
type DescribeOptions struct {
	// HostRunner is the runner printed for a build pipeline that names
	// none: the runner of the build host (osbuild prints the file name of
	// the runner it detects for the host, like "org.osbuild.debian").
	HostRunner string
	// Cached, when set, adds "cached" (whether the store holds the
	// stage's tree: Cached(stage.CacheKey)) to every stage, after
	// osbuild's keys.
	Cached func(id string) bool
}

// Describe returns a format-2 manifest as `osbuild --inspect` prints it
// (formats/v2.py, describe(with_id=True), then json.dump and a newline):
// rebuilt from what was loaded, every stage with its "id", pipeline
// references resolved to IDs, keys in osbuild's order. With no Cached,
// the bytes are osbuild's.
func (m *Manifest) Describe(opts DescribeOptions) ([]byte, error) {
	if m.Version != Version2 {
		return nil, errors.New("describe: only format 2 is described as osbuild --inspect prints it")
	}
	// runner is printed on a pipeline iff some pipeline builds with its
	// ID; the runner is then what those use (describe's "runners").
	runners := map[string]string{}
	for _, p := range m.named {
		if p.Build != nil && p.BuildID() != "" {
			r := p.Build.Runner
			if r == "" {
				r = opts.HostRunner
			}
			runners[p.BuildID()] = r
		}
	}
	var pipelines []*pyjson.Value
	for _, p := range m.named {
		d := object()
		d.set("name", str(p.Name))
		if id := p.BuildID(); id != "" {
			d.set("build", str(id))
		}
		if r, ok := runners[p.TreeID()]; ok && p.TreeID() != "" {
			d.set("runner", str(r))
		}
		var stages []*pyjson.Value
		for _, s := range p.Stages {
			stages = append(stages, describeStage(s, opts.Cached))
		}
		if len(stages) > 0 {
			d.set("stages", array(stages))
		}
		pipelines = append(pipelines, d.v)
	}
	top := object()
	top.set("version", str(Version2))
	top.set("pipelines", array(pipelines))
	if m.metadata != nil {
		top.set("metadata", m.metadata)
	}
	if m.sources != nil && len(m.sources.Members) > 0 {
		srcs := object()
		for _, f := range m.sources.Fields() {
			// Source options are dropped, as osbuild's describe drops them.
			s := object()
			items := f.Value.Get("items")
			if items == nil {
				items = &pyjson.Value{Kind: pyjson.Object}
			}
			s.set("items", items)
			srcs.set(f.Key, s.v)
		}
		top.set("sources", srcs.v)
	}
	return append(top.v.AppendDumpsUnsorted(nil), '\n'), nil
}

func describeStage(s *Stage, cached func(string) bool) *pyjson.Value {
	d := object()
	d.set("type", str(s.Name))
	d.set("id", str(s.ID))
	if len(s.options.Members) > 0 {
		d.set("options", s.options)
	}
	if len(s.Devices) > 0 {
		devs := object()
		for _, dev := range s.Devices {
			dd := object()
			dd.set("type", str(dev.Type))
			if len(dev.options.Members) > 0 {
				dd.set("options", dev.options)
			}
			devs.set(dev.Name, dd.v)
		}
		d.set("devices", devs.v)
	}
	if len(s.Mounts) > 0 {
		var mounts []*pyjson.Value
		for _, mt := range s.Mounts {
			md := object()
			md.set("name", str(mt.Name))
			md.set("type", str(mt.Type))
			if mt.target != nil {
				md.set("target", mt.target)
			} else {
				md.set("target", &pyjson.Value{Kind: pyjson.Null})
			}
			if mt.Source != nil {
				md.set("source", str(mt.Source.Name))
			}
			if len(mt.options.Members) > 0 {
				md.set("options", mt.options)
			}
			if mt.Partition != 0 {
				md.set("partition", mt.partition)
			}
			mounts = append(mounts, md.v)
		}
		d.set("mounts", array(mounts))
	}
	if len(s.Inputs) > 0 {
		ips := object()
		for _, in := range s.Inputs {
			id := object()
			id.set("type", str(in.Type))
			id.set("origin", str(in.Origin))
			if len(in.options.Members) > 0 {
				id.set("options", in.options)
			}
			if len(in.References) > 0 {
				id.set("references", in.refsValue())
			}
			ips.set(in.Name, id.v)
		}
		d.set("inputs", ips.v)
	}
	if cached != nil {
		d.set("cached", &pyjson.Value{Kind: pyjson.Bool, Bool: cached(s.CacheKey)})
	}
	return d.v
}

// obj builds an object value member by member, in order.
type obj struct{ v *pyjson.Value }

func object() obj { return obj{&pyjson.Value{Kind: pyjson.Object, Members: []pyjson.Member{}}} }

func (o obj) set(key string, v *pyjson.Value) {
	o.v.Members = append(o.v.Members, pyjson.Member{Key: key, Value: v})
}

func str(s string) *pyjson.Value { return &pyjson.Value{Kind: pyjson.String, Str: s} }

func array(elems []*pyjson.Value) *pyjson.Value {
	if elems == nil {
		elems = []*pyjson.Value{}
	}
	return &pyjson.Value{Kind: pyjson.Array, Elems: elems}
}
