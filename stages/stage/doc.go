// Package stage is the protocol between the builder and the stages and
// assemblers forge ships, which is osbuild's, in its two manifest
// formats.
//
// Format 1: the builder runs `<lib>/osbuild-run <lib>/stages/<name>` (or
// `assemblers/<name>`) inside a buildroot with a JSON object on stdin,
//
//	{"tree": "/run/osbuild/tree", "options": {...}, "output_dir": "/run/osbuild/output"}
//
// (output_dir for assemblers only).
//
// Format 2 (today's osbuild, pipeline.py Stage.run): the stage is bound at
// /run/osbuild/bin/<name> and run as `/run/osbuild/runner/<runner>
// /run/osbuild/bin/<name>`, stdin /dev/null; its arguments are the file
// /run/osbuild/api/arguments (ArgumentsPath; see ReadArgsFile for its
// contents: tree, paths, devices, inputs, mounts, options, meta), and
// SOURCE_DATE_EPOCH is set when the pipeline has a source epoch. A stage
// finds its format by that file's existence (LoadArgs). Locations such
// as input://NAME/PATH resolve through Args.ParseLocation, never out of
// their root.
//
// In both, exit status 0 is success; whatever the stage writes to stdout
// and stderr is its log; errors name the option at fault.
//
// All of forge's stages and assemblers are one static multi-call binary
// (cmd/forge-stages), hard-linked under their names in the libdir, with
// osbuild's NAME.meta.json (summary, description, option schemas) beside
// each; Main dispatches on the name it was run as. The same binary is
// the runners: osbuild-run (format 1) and runners/org.osbuild.linux
// (format 2; anything started from /run/osbuild/runner/ is a runner),
// which exec the stage named by their first argument.
package stage
