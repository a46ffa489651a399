package mmdebstrap

import _ "embed"

// Meta is org.osbuild.mmdebstrap's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.mmdebstrap.meta.json
var Meta []byte
