package script

import _ "embed"

// Meta is org.osbuild.script's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.script.meta.json
var Meta []byte
