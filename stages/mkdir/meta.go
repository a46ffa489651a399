package mkdir

import _ "embed"

// Meta is org.osbuild.mkdir's meta.json: osbuild's description of the
// stage and the schemas of its options, with which osbuild validates
// manifests.
//
//go:embed org.osbuild.mkdir.meta.json
var Meta []byte
