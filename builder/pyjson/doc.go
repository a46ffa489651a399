// Package pyjson reproduces, byte for byte, what Python 3 prints for
// json.dumps(json.loads(text), sort_keys=True): default separators ", " and
// ": ", ensure_ascii escapes, integers kept digit-exact, floats as Python's
// float.__repr__, object keys sorted by Unicode code point with the last of
// duplicate keys winning.
//
// forge needs this because osbuild's stage and assembler IDs are SHA-256
// digests over exactly those bytes: any difference in a single byte gives a
// different ID and a cache that never hits (or, worse, an ID osbuild would
// never produce).
//
// Parse reads JSON text as Python's json.loads does and keeps what Python
// would keep: big integers as digits, lone surrogate escapes such as
// "\ud800" (stored in WTF-8 so that byte order stays code point order), the
// byte span of every value in the source. Where Python accepts something
// that is not JSON (NaN, Infinity, -Infinity) or Python itself fails
// (integers over 4300 digits, very deep nesting), Parse returns an error;
// it also refuses documents of more than MaxValues values, a bound on the
// memory a parse takes that Python does not have.
package pyjson
