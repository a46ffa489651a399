package truncate

import _ "embed"

// Meta is org.osbuild.truncate's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.truncate.meta.json
var Meta []byte
