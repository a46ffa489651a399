package systemd

import _ "embed"

// Meta is org.osbuild.systemd's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.systemd.meta.json
var Meta []byte
