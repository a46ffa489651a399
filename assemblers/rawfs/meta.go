package rawfs

import _ "embed"

// Meta is org.osbuild.rawfs's meta.json: osbuild's description of the assembler and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.rawfs.meta.json
var Meta []byte
