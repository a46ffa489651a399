package jsonschema

import (
	"testing"

	"github.com/forge-build/forge/builder/pyjson"
)

// FuzzValidate: whatever the schema and instance, Compile and Validate
// return (no panic, no endless loop; the step limit is lowered so that
// each input takes milliseconds).
func FuzzValidate(f *testing.F) {
	for _, c := range keywordCases {
		f.Add(c.schema, c.instance)
	}
	f.Add(`{"definitions": {"a": {"anyOf": [{"$ref": "#/definitions/a"}]}}, "$ref": "#/definitions/a"}`, `1`)
	f.Add(`{"items": {"$ref": "#"}, "uniqueItems": true}`, `[[[[1]]], [[[1.0]]]]`)
	f.Add(`{"patternProperties": {"^(a|aa)+$": {}}, "additionalProperties": false}`, `{"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaab": 1}`)
	f.Fuzz(func(t *testing.T, schema, instance string) {
		defer func(old int64) { stepLimit = old }(stepLimit)
		stepLimit = 1 << 20
		sv, err := pyjson.Parse([]byte(schema))
		if err != nil {
			return
		}
		iv, err := pyjson.Parse([]byte(instance))
		if err != nil {
			return
		}
		s, err := Compile(sv)
		if err != nil {
			return
		}
		res, err := s.Validate(iv)
		if err != nil {
			return
		}
		for _, e := range res.Errors() {
			_ = e.String()
		}
	})
}

// FuzzRegex: whatever the pattern and string, compiling and searching
// return.
func FuzzRegex(f *testing.F) {
	for _, p := range []string{`^[a-z]+$`, `(?=^.{1,5}$)^a`, `^/(?!\.\.)((?!/\.\./).)+$`, `(a|ab)(c|bcd)(d*)`,
		`(?P<x>a)(?P=x)`, `(<)?a(?(1)>)`, `(?i)[^\W\d]`, `(?x) a # c`, `\b\B\A\Z`, `(?<=ab)c`, `a{2,}?b++`} {
		f.Add(p, "abcd/..ABé\n")
	}
	f.Fuzz(func(t *testing.T, pattern, s string) {
		re, err := compileRegex(pattern)
		if err != nil {
			return
		}
		searchBudget(re, s, 1<<20)
	})
}
