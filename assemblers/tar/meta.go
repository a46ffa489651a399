package tar

import _ "embed"

// Meta is org.osbuild.tar's meta.json: osbuild's description of the assembler and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.tar.meta.json
var Meta []byte
