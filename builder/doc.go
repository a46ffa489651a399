// Package builder builds osbuild manifests on forge's store: it runs each
// pipeline's stages in buildroots on copy-on-write mounts of the store,
// commits the tree after every stage under the stage's ID (so every stage
// is a cache point, as osbuild's object store makes it), starts from the
// longest prefix of a pipeline that is already stored, and runs the
// assembler on the final tree, read-only, with loop devices from loopd.
//
// Nouns:
//   - ID: a stage's or assembler's osbuild ID (see builder/manifest); the
//     tree after a stage is stored under a ref named by its ID.
//   - tree ID, output ID: the last stage's ID and the assembler's ID, as
//     osbuild reports them.
//   - run: the directory holding a build's host mounts (builder/runs),
//     cleaned however the build ends.
package builder
