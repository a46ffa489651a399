package hostname

import _ "embed"

// Meta is org.osbuild.hostname's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.hostname.meta.json
var Meta []byte
