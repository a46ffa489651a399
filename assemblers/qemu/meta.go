package qemu

import _ "embed"

// Meta is org.osbuild.qemu's meta.json: osbuild's description of the assembler and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.qemu.meta.json
var Meta []byte
