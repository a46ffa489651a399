package apt

import _ "embed"

// Meta is org.osbuild.apt's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.apt.meta.json
var Meta []byte
