package fstab

import _ "embed"

// Meta is org.osbuild.fstab's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.fstab.meta.json
var Meta []byte
