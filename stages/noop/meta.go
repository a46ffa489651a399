package noop

import _ "embed"

// Meta is org.osbuild.noop's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.noop.meta.json
var Meta []byte
