package timezone

import _ "embed"

// Meta is org.osbuild.timezone's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.timezone.meta.json
var Meta []byte
