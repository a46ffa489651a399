// Package jsonschema validates JSON values against JSON Schema Draft 4
// schemas exactly as osbuild does: with python3-jsonschema's
// Draft4Validator, without a format checker, its errors gathered into a
// ValidationResult (osbuild/meta.py).
//
// Its nouns:
//
//   - schema: a Draft 4 schema document, read by pyjson.Parse. Compile
//     checks it against the Draft 4 meta-schema, as check_schema does,
//     resolves its $refs (JSON pointers into the same document) and
//     compiles its patterns.
//   - instance: the value validated, also read by pyjson.Parse, so that an
//     integer and a float stay apart as in Python: 1.0 is a "number" but
//     not an "integer", and true is neither.
//   - error: one way an instance fails, at a Path printed as osbuild
//     prints it (.pipelines[0].stages[1].options), with a message worded
//     as jsonschema words it ('foo' is a required property).
//   - result: the set of errors of one validation, deduplicated and sorted
//     by path as osbuild's ValidationResult iterates them.
//
// Patterns ("pattern", "patternProperties") are Python re patterns, run
// with re.search's semantics by an engine of this package (regex.go), not
// by Go's regexp: osbuild's schemas use lookahead, and \d, \w, \s, \b and
// $ differ between the two. Strings are counted and matched by code point,
// as Python's str.
//
// A validation is bounded: a $ref cycle that consumes no input is refused
// by Compile, and Validate gives up with ErrTooComplex after MaxSteps
// steps or MaxDepth nested schemas, where Python would recurse or
// backtrack without end.
package jsonschema
