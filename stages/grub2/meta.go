package grub2

import _ "embed"

// Meta is org.osbuild.grub2's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.grub2.meta.json
var Meta []byte
