package users

import _ "embed"

// Meta is org.osbuild.users's meta.json: osbuild's description of the stage and
// the schemas of its options, with which osbuild validates manifests.
//
//go:embed org.osbuild.users.meta.json
var Meta []byte
