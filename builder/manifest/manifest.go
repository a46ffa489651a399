package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"

	"github.com/forge-build/forge/builder/pyjson"
)

// Version1 is osbuild's manifest format 1, the only one Parse reads. Format
// 2 (a list of named pipelines with inputs) may come later; Manifest.Version
// tells them apart.
const Version1 = "1"

// Manifest is a parsed, validated manifest whose IDs are all computed.
type Manifest struct {
	// Version is the format, Version1.
	Version string
	// Pipeline is the top pipeline: the one whose tree the assembler
	// assembles. Never nil; it may have no stages.
	Pipeline *Pipeline
	// Sources is the v1 shape's "sources" object (compact), nil when
	// absent. osbuild's sources fetch files (org.osbuild.files, ostree
	// commits) for stages; forge's builder does not use them yet.
	Sources json.RawMessage
}

// Pipeline is a build root, stages that make a tree, and an assembler.
type Pipeline struct {
	// Build is the pipeline whose tree is the build root of this one's
	// stages; nil means the host. A Build whose pipeline has no stages
	// also means the host, as in osbuild (BuildID is then "").
	Build *Build
	// Stages run in order, each on the tree the one before left.
	Stages []*Stage
	// Assembler is nil when there is none. osbuild's newer loaders ignore
	// the assembler of a build pipeline (older ones ran it); Parse keeps
	// and checks it, and leaves running it to the builder.
	Assembler *Stage
	// Path is the pipeline's JSON path for messages: "" for the top of a
	// bare pipeline, "pipeline" for the top in the v1 shape, "build",
	// "pipeline.build.pipeline", ... for build pipelines.
	Path string
}

// Build is a pipeline's build root.
type Build struct {
	// Pipeline builds the build root. Never nil.
	Pipeline *Pipeline
	// Runner is the v1 shape's "runner" (like "org.osbuild.debian12"):
	// osbuild's script that prepares a build root of that distribution.
	// "" in the bare shape. forge runs its own osbuild-run from the
	// libdir, so the builder ignores it for now.
	Runner string
}

// Stage is one stage or the assembler of a pipeline.
type Stage struct {
	// Name is the module's file name under <libdir>/stages/ (or
	// assemblers/), like "org.osbuild.hostname".
	Name string
	// Options are the options as written in the manifest, compacted; {}
	// when absent.
	Options json.RawMessage
	// ID is osbuild's ID of the tree the stage leaves (for the assembler:
	// of its output).
	ID string
	// Path is the stage's JSON path, like "build.stages[2]" or
	// "pipeline.assembler".
	Path string

	options *pyjson.Value // as Python's json.loads holds them, for ID
}

// TreeID is the ID of the pipeline's tree: its last stage's ID, or "" when
// it has no stages (osbuild's tree_id is then None).
func (p *Pipeline) TreeID() string {
	if len(p.Stages) == 0 {
		return ""
	}
	return p.Stages[len(p.Stages)-1].ID
}

// BuildID is the tree ID of the build pipeline: "" for the host, which is
// the build root both without a build and with a build pipeline that has
// no stages.
func (p *Pipeline) BuildID() string {
	if p.Build == nil {
		return ""
	}
	return p.Build.Pipeline.TreeID()
}

// OutputID is the assembler's ID, "" without one.
func (p *Pipeline) OutputID() string {
	if p.Assembler == nil {
		return ""
	}
	return p.Assembler.ID
}

// Pipelines returns every pipeline of the manifest in the order they must
// be built: the innermost build pipeline first, the top one last.
func (m *Manifest) Pipelines() []*Pipeline {
	var chain []*Pipeline
	for p := m.Pipeline; p != nil; {
		chain = append(chain, p)
		if p.Build == nil {
			break
		}
		p = p.Build.Pipeline
	}
	for i, j := 0, len(chain)-1; i < j; i, j = i+1, j-1 {
		chain[i], chain[j] = chain[j], chain[i]
	}
	return chain
}

// computeIDs sets the ID of every stage and assembler of p and its build
// pipelines, as osbuild's Stage.id: each stage's base is the stage before
// it (null for the first), the assembler's base is the last stage, and all
// of them share the build pipeline's tree ID as build.
func computeIDs(p *Pipeline) {
	if p.Build != nil {
		computeIDs(p.Build.Pipeline)
	}
	build := p.BuildID()
	base := ""
	for _, s := range p.Stages {
		s.ID = stageID(s.Name, build, base, s.options)
		base = s.ID
	}
	if p.Assembler != nil {
		p.Assembler.ID = stageID(p.Assembler.Name, build, base, p.Assembler.options)
	}
}

// stageID is sha256(dumps(name) + dumps(build) + dumps(base) +
// dumps(options)) in hex, "" standing for None (null).
func stageID(name, build, base string, options *pyjson.Value) string {
	h := sha256.New()
	h.Write(pyjson.AppendString(nil, name))
	for _, id := range []string{build, base} {
		if id == "" {
			h.Write([]byte("null"))
		} else {
			h.Write(pyjson.AppendString(nil, id))
		}
	}
	// Streamed: the dumps of a large string is up to three times its
	// source (six bytes of \uXXXX for two of UTF-8).
	options.WriteDumps(h) // a hash.Hash never fails to write
	return hex.EncodeToString(h.Sum(nil))
}
