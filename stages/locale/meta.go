package locale

import _ "embed"

// Meta is org.osbuild.locale's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.locale.meta.json
var Meta []byte
