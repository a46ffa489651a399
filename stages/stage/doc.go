// Package stage is the protocol between the builder and the stages and
// assemblers forge ships, which is osbuild's: the builder runs
// `<lib>/osbuild-run <lib>/stages/<name>` (or `assemblers/<name>`) inside a
// buildroot with a JSON object on stdin,
//
//	{"tree": "/run/osbuild/tree", "options": {...}, "output_dir": "/run/osbuild/output"}
//
// (output_dir for assemblers only). Exit status 0 is success; whatever the
// stage writes to stdout and stderr is its log.
//
// All of forge's stages and assemblers are one static multi-call binary
// (cmd/forge-stages), hard-linked under their names in the libdir; Main
// dispatches on the name it was run as.
package stage
