package manifest

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"github.com/forge-build/forge/builder/pyjson"
)

// The manifest formats Parse reads; Manifest.Version tells them apart.
const (
	// Version1 is osbuild's format 1 (2019): one pipeline, build
	// pipelines nested, an assembler.
	Version1 = "1"
	// Version2 is osbuild's format 2 (2021 on): named pipelines, stages
	// with inputs, devices and mounts, sources (see v2.go).
	Version2 = "2"
)

// Manifest is a parsed, validated manifest whose IDs are all computed.
type Manifest struct {
	// Version is the format, Version1 or Version2.
	Version string
	// Pipeline is the top pipeline: in format 1 the one whose tree the
	// assembler assembles, in format 2 the last one (what osbuild
	// exports by default). Never nil; it may have no stages.
	Pipeline *Pipeline
	// Sources is the "sources" object (compact), nil when absent: what
	// the sources fetch (files by checksum), for the stages' inputs.
	Sources json.RawMessage
	// SourceItems are the checksums (or other item keys) of every source,
	// in manifest order: what org.osbuild.source inputs may name.
	SourceItems []string

	// named are format 2's pipelines in manifest order.
	named []*Pipeline
	// metadata and sources are format 2's "metadata" and "sources" as
	// loaded, for Describe.
	metadata, sources *pyjson.Value
	// raw is a format-2 manifest as parsed, for ValidateModules.
	raw *pyjson.Value
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
	// "pipeline.build.pipeline", ... for build pipelines; "pipelines[2]"
	// in format 2.
	Path string

	// Name is a format-2 pipeline's name ("" in format 1).
	Name string
	// Runner is the "runner" written on a format-2 pipeline: the runner
	// of the stages of the pipelines that build with this one; "" when
	// absent (the host's). A format-2 pipeline's own stages run with
	// Build.Runner.
	Runner string
	// SourceEpoch is a format-2 pipeline's "source-epoch" in decimal,
	// "" when absent: SOURCE_DATE_EPOCH for its stages, and part of
	// their IDs.
	SourceEpoch string
}

// ClampMtime is the time no modification time of the pipeline's stored
// trees may exceed, its source-epoch (nil when it has none): with it, two
// builds of the pipeline store the same trees, though their stages ran at
// different times.
func (p *Pipeline) ClampMtime() (*int64, error) {
	if p.SourceEpoch == "" {
		return nil, nil
	}
	e, err := strconv.ParseInt(p.SourceEpoch, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("pipeline %s: source-epoch %s: %w", p.Path, p.SourceEpoch, err)
	}
	return &e, nil
}

// fitsInt64 says whether the decimal digits s fit an int64.
func fitsInt64(s string) bool {
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil
}

// Build is a pipeline's build root.
type Build struct {
	// Pipeline builds the build root. Never nil.
	Pipeline *Pipeline
	// Runner is the runner of the stages built in this build root (like
	// "org.osbuild.debian12"): osbuild's script that prepares a build
	// root of that distribution. Format 1: the v1 shape's "runner", ""
	// in the bare shape. Format 2: the build pipeline's "runner", ""
	// when it has none (the host's runner).
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
	// CacheKey is what forge stores the stage's tree under: ID, except
	// where devices make trees that ID cannot tell apart (cachekey.go).
	CacheKey string
	// Path is the stage's JSON path, like "build.stages[2]" or
	// "pipeline.assembler".
	Path string

	// Format 2 only: the stage's inputs in manifest order, its devices
	// parents first (the order they are opened in), its mounts in
	// manifest order; and its pipeline's source-epoch.
	Inputs      []*Input
	Devices     []*Device
	Mounts      []*Mount
	SourceEpoch string

	options *pyjson.Value // as Python's json.loads holds them, for ID
	raw     *pyjson.Value // a format-2 stage as written, for ValidateModules
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

// Pipelines returns every pipeline of the manifest. Format 1: in the
// order they must be built, the innermost build pipeline first, the top
// one last. Format 2: in manifest order (a pipeline can only name, as
// build or input, pipelines before it).
func (m *Manifest) Pipelines() []*Pipeline {
	if m.Version == Version2 {
		return m.named
	}
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
