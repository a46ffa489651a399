// Package manifest reads osbuild manifests (formats 1 and 2), validates them
// and computes every stage's and assembler's ID exactly as osbuild does, so
// that a manifest written for osbuild runs unchanged under forge.
//
// Format 2 (`"version": "2"`, osbuild's format since 2021) is a list of
// named pipelines whose stages have inputs (other pipelines' trees, source
// files), devices and mounts, and "sources" that fetch files by checksum.
// Its rules are in v2.go and OSBUILD-V2.md; Describe prints a loaded
// format-2 manifest as `osbuild --inspect` does, byte for byte.
//
// Format 1 has had two shapes, and Parse reads both:
//
//   - a bare pipeline, {"build": <pipeline>, "stages": [...], "assembler": {...}},
//     with the build pipeline nested in the same shape to any depth;
//   - osbuild's v1 loader shape, {"pipeline": <pipeline>, "sources": {...}},
//     where a pipeline's build is {"pipeline": <pipeline>, "runner": "org.osbuild.NAME"}.
//
// A stage or assembler is {"name": NAME, "options": {...}}; missing options
// are {}, as in osbuild's loader. The nouns: a Manifest has one top
// Pipeline; a Pipeline has an optional Build (another Pipeline, whose tree
// is the build root), Stages that each change the tree, and an optional
// Assembler that turns the finished tree into the output.
//
// IDs are osbuild's: sha256 over json.dumps(x, sort_keys=True) of the name,
// the build pipeline's tree ID (or null), the previous stage's ID (or null)
// and the options, concatenated (see package pyjson for the exact bytes).
//
// Errors name the JSON path of what they concern, e.g.
// "build.stages[2].name" or "pipeline.build.pipeline.assembler.options".
package manifest
