package jsonschema

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/forge-build/forge/builder/pyjson"
)

func mustParse(t testing.TB, text string) *pyjson.Value {
	t.Helper()
	v, err := pyjson.Parse([]byte(text))
	if err != nil {
		t.Fatalf("parse %s: %v", text, err)
	}
	return v
}

// errorLines validates and prints each error as "path: message".
func errorLines(t testing.TB, schema, instance string) ([]string, error) {
	t.Helper()
	s, err := Compile(mustParse(t, schema))
	if err != nil {
		return nil, err
	}
	res, err := s.Validate(mustParse(t, instance))
	if err != nil {
		return nil, err
	}
	lines := []string{}
	for _, e := range res.Errors() {
		lines = append(lines, e.Path.String()+": "+e.Message)
	}
	return lines, nil
}

type keywordCase struct {
	name, schema, instance string
	want                   []string // errors, as errorLines prints them
}

// keywordCases are each keyword's behaviour; the messages are
// python3-jsonschema 4.26's, and TestKeywordsAgainstPython checks them all
// against it.
var keywordCases = []keywordCase{
	// type
	{"type string", `{"type": "string"}`, `"x"`, nil},
	{"type string fails", `{"type": "string"}`, `1`, []string{".: 1 is not of type 'string'"}},
	{"integer is not float", `{"type": "integer"}`, `1.0`, []string{".: 1.0 is not of type 'integer'"}},
	{"integer big", `{"type": "integer"}`, `123456789012345678901234567890`, nil},
	{"integer not bool", `{"type": "integer"}`, `true`, []string{".: True is not of type 'integer'"}},
	{"number int", `{"type": "number"}`, `3`, nil},
	{"number float", `{"type": "number"}`, `3.5e10`, nil},
	{"number not bool", `{"type": "number"}`, `false`, []string{".: False is not of type 'number'"}},
	{"boolean", `{"type": "boolean"}`, `0`, []string{".: 0 is not of type 'boolean'"}},
	{"null", `{"type": "null"}`, `null`, nil},
	{"object", `{"type": "object"}`, `[]`, []string{".: [] is not of type 'object'"}},
	{"array", `{"type": "array"}`, `{}`, []string{".: {} is not of type 'array'"}},
	{"type list", `{"type": ["string", "null"]}`, `null`, nil},
	{"type list fails", `{"type": ["string", "null"]}`, `{"a": [1, 2.5]}`, []string{`.: {'a': [1, 2.5]} is not of type 'string', 'null'`}},

	// enum
	{"enum", `{"enum": ["a", 1, null]}`, `"a"`, nil},
	{"enum float equals int", `{"enum": [1]}`, `1.0`, nil},
	{"enum bool is not int", `{"enum": [1, 0]}`, `true`, []string{".: True is not one of [1, 0]"}},
	{"enum int is not bool", `{"enum": [true]}`, `1`, []string{".: 1 is not one of [True]"}},
	{"enum nested", `{"enum": [{"a": [1, {"b": null}]}]}`, `{"a": [1.0, {"b": null}]}`, nil},
	{"enum nested bool", `{"enum": [[1]]}`, `[true]`, []string{".: [True] is not one of [[1]]"}},
	{"enum object order", `{"enum": [{"a": 1, "b": 2}]}`, `{"b": 2, "a": 1}`, nil},

	// properties, patternProperties, additionalProperties
	{"properties", `{"properties": {"a": {"type": "string"}, "b c": {"type": "integer"}}}`,
		`{"a": 1, "b c": "x", "d": 1}`, []string{".'b c': 'x' is not of type 'integer'", ".a: 1 is not of type 'string'"}},
	{"properties on non-object", `{"properties": {"a": {"type": "string"}}}`, `[1]`, nil},
	{"patternProperties", `{"patternProperties": {"^x": {"type": "integer"}, "y$": {"minimum": 5}}}`,
		`{"xa": "s", "ay": 1, "xy": 2.5}`, []string{".ay: 1 is less than the minimum of 5", ".xa: 's' is not of type 'integer'",
			".xy: 2.5 is less than the minimum of 5", ".xy: 2.5 is not of type 'integer'"}},
	{"additionalProperties false", `{"properties": {"a": {}}, "additionalProperties": false}`,
		`{"a": 1, "z": 2, "b": 3}`, []string{".: Additional properties are not allowed ('b', 'z' were unexpected)"}},
	{"additionalProperties false one", `{"additionalProperties": false}`,
		`{"it's": 1}`, []string{`.: Additional properties are not allowed ("it's" was unexpected)`}},
	{"additionalProperties with patterns", `{"patternProperties": {"^a": {}, "^b": {}}, "additionalProperties": false}`,
		`{"a1": 1, "c": 2, "d": 3}`, []string{".: 'c', 'd' do not match any of the regexes: '^a', '^b'"}},
	{"additionalProperties with one pattern", `{"patternProperties": {"^a": {}}, "additionalProperties": false}`,
		`{"c": 2}`, []string{".: 'c' does not match any of the regexes: '^a'"}},
	{"additionalProperties with empty patterns", `{"patternProperties": {}, "additionalProperties": false}`,
		`{"c": 2}`, []string{".: 'c' does not match any of the regexes: "}},
	{"additionalProperties schema", `{"properties": {"a": {}}, "additionalProperties": {"type": "string"}}`,
		`{"a": 1, "b": 2, "c": "x"}`, []string{".b: 2 is not of type 'string'"}},
	{"additionalProperties true", `{"additionalProperties": true}`, `{"a": 1}`, nil},
	{"duplicate keys: the last wins", `{"properties": {"a": {"type": "string"}}}`, `{"a": "x", "a": 1}`,
		[]string{".a: 1 is not of type 'string'"}},

	// required, minProperties, maxProperties, dependencies
	{"required", `{"required": ["a", "b", "c"]}`, `{"b": null}`,
		[]string{".: 'a' is a required property", ".: 'c' is a required property"}},
	{"required non-object", `{"required": ["a"]}`, `"a"`, nil},
	{"minProperties 1", `{"minProperties": 1}`, `{}`, []string{".: {} should be non-empty"}},
	{"minProperties 2", `{"minProperties": 2}`, `{"a": 1}`, []string{".: {'a': 1} does not have enough properties"}},
	{"minProperties duplicates count once", `{"minProperties": 2}`, `{"a": 1, "a": 2}`, []string{".: {'a': 2} does not have enough properties"}},
	{"maxProperties 0", `{"maxProperties": 0}`, `{"a": 1}`, []string{".: {'a': 1} is expected to be empty"}},
	{"maxProperties 1", `{"maxProperties": 1}`, `{"a": 1, "b": 2}`, []string{".: {'a': 1, 'b': 2} has too many properties"}},
	{"dependencies array", `{"dependencies": {"a": ["b", "c"]}}`, `{"a": 1, "c": 1}`, []string{".: 'b' is a dependency of 'a'"}},
	{"dependencies absent", `{"dependencies": {"a": ["b"]}}`, `{"c": 1}`, nil},
	{"dependencies schema", `{"dependencies": {"a": {"required": ["x"], "properties": {"a": {"type": "string"}}}}}`,
		`{"a": 1}`, []string{".: 'x' is a required property", ".a: 1 is not of type 'string'"}},

	// items, additionalItems, minItems, maxItems, uniqueItems
	{"items schema", `{"items": {"type": "integer"}}`, `[1, "a", 2.0]`,
		[]string{"[1]: 'a' is not of type 'integer'", "[2]: 2.0 is not of type 'integer'"}},
	{"items array", `{"items": [{"type": "string"}, {"type": "integer"}]}`, `["a", "b", "c"]`, []string{"[1]: 'b' is not of type 'integer'"}},
	{"additionalItems false", `{"items": [{}], "additionalItems": false}`, `[1, 2, "x"]`,
		[]string{".: Additional items are not allowed (2, 'x' were unexpected)"}},
	{"additionalItems false one", `{"items": [{}], "additionalItems": false}`, `[1, [2]]`,
		[]string{".: Additional items are not allowed ([2] was unexpected)"}},
	{"additionalItems schema", `{"items": [{}], "additionalItems": {"type": "string"}}`, `[1, "a", 2]`,
		[]string{"[2]: 2 is not of type 'string'"}},
	{"additionalItems after items schema", `{"items": {}, "additionalItems": false}`, `[1, 2]`, nil},
	{"additionalItems without items", `{"additionalItems": false}`, `[1, 2]`, nil},
	{"minItems 1", `{"minItems": 1}`, `[]`, []string{".: [] should be non-empty"}},
	{"minItems 2", `{"minItems": 2}`, `[1]`, []string{".: [1] is too short"}},
	{"maxItems 0", `{"maxItems": 0}`, `[1]`, []string{".: [1] is expected to be empty"}},
	{"maxItems 1", `{"maxItems": 1}`, `[1, 2]`, []string{".: [1, 2] is too long"}},
	{"uniqueItems", `{"uniqueItems": true}`, `[1, 2, 1]`, []string{".: [1, 2, 1] has non-unique elements"}},
	{"uniqueItems int and float", `{"uniqueItems": true}`, `[1, 1.0]`, []string{".: [1, 1.0] has non-unique elements"}},
	{"uniqueItems bool and int", `{"uniqueItems": true}`, `[1, true, 0, false]`, nil},
	{"uniqueItems objects", `{"uniqueItems": true}`, `[{"a": 1, "b": [2]}, {"b": [2.0], "a": 1}]`,
		[]string{".: [{'a': 1, 'b': [2]}, {'b': [2.0], 'a': 1}] has non-unique elements"}},
	{"uniqueItems false", `{"uniqueItems": false}`, `[1, 1]`, nil},

	// minimum, maximum, multipleOf
	{"minimum", `{"minimum": 5}`, `4.5`, []string{".: 4.5 is less than the minimum of 5"}},
	{"minimum equal", `{"minimum": 5}`, `5.0`, nil},
	{"exclusiveMinimum", `{"minimum": 5, "exclusiveMinimum": true}`, `5`, []string{".: 5 is less than or equal to the minimum of 5"}},
	{"maximum", `{"maximum": 1.5}`, `2`, []string{".: 2 is greater than the maximum of 1.5"}},
	{"exclusiveMaximum", `{"maximum": 2, "exclusiveMaximum": true}`, `2.0`, []string{".: 2.0 is greater than or equal to the maximum of 2"}},
	{"maximum big int", `{"maximum": 9007199254740992}`, `9007199254740993`,
		[]string{".: 9007199254740993 is greater than the maximum of 9007199254740992"}},
	{"maximum big int and float", `{"maximum": 9007199254740992.0}`, `9007199254740993`,
		[]string{".: 9007199254740993 is greater than the maximum of 9007199254740992.0"}},
	{"minimum ignores strings", `{"minimum": 5}`, `"1"`, nil},
	{"minimum ignores bools", `{"minimum": 5}`, `false`, nil},
	{"maximum infinity", `{"maximum": 1e308}`, `1e400`, []string{".: inf is greater than the maximum of 1e+308"}},
	{"multipleOf int", `{"multipleOf": 3}`, `10`, []string{".: 10 is not a multiple of 3"}},
	{"multipleOf int ok", `{"multipleOf": 3}`, `9.0`, nil},
	{"multipleOf float", `{"multipleOf": 0.1}`, `0.3`, []string{".: 0.3 is not a multiple of 0.1"}},
	{"multipleOf float ok", `{"multipleOf": 0.5}`, `1.5`, nil},
	{"multipleOf float of int", `{"multipleOf": 0.5}`, `3`, nil},
	{"multipleOf big", `{"multipleOf": 7}`, `70000000000000000000000000000000000000001`,
		[]string{".: 70000000000000000000000000000000000000001 is not a multiple of 7"}},
	{"multipleOf overflowing quotient", `{"multipleOf": 1e-308}`, `1e308`, []string{".: 1e+308 is not a multiple of 1e-308"}},
	{"multipleOf overflowing quotient ok", `{"multipleOf": 0.5}`, `1e308`, nil},
	{"multipleOf infinity and int", `{"multipleOf": 3}`, `1e400`, []string{".: inf is not a multiple of 3"}},

	// minLength, maxLength, pattern, format
	{"minLength", `{"minLength": 2}`, `"a"`, []string{".: 'a' is too short"}},
	{"minLength 1", `{"minLength": 1}`, `""`, []string{".: '' should be non-empty"}},
	{"minLength code points", `{"minLength": 2}`, `"\u00e9"`, []string{".: 'é' is too short"}},
	{"maxLength code points", `{"maxLength": 2}`, `"\u00e9\ud83d\ude00"`, nil},
	{"maxLength surrogates", `{"maxLength": 1}`, `"\ud800\ud800"`, []string{`.: '\ud800\ud800' is too long`}},
	{"maxLength 0", `{"maxLength": 0}`, `"a"`, []string{".: 'a' is expected to be empty"}},
	{"pattern search", `{"pattern": "[0-9]"}`, `"abc1"`, nil},
	{"pattern fails", `{"pattern": "^[a-z]+$"}`, `"ab-c"`, []string{".: 'ab-c' does not match '^[a-z]+$'"}},
	{"pattern dollar newline", `{"pattern": "^[a-z]+$"}`, `"abc\n"`, nil},
	{"pattern lookahead", `{"pattern": "^(?!/)"}`, `"/x"`, []string{".: '/x' does not match '^(?!/)'"}},
	{"pattern non-string", `{"pattern": "^a"}`, `5`, nil},
	{"format ignored", `{"format": "email"}`, `"not an email"`, nil},
	{"format regex ignored", `{"format": "regex"}`, `"("`, nil},

	// allOf, anyOf, oneOf, not
	{"allOf", `{"allOf": [{"type": "integer"}, {"minimum": 3}]}`, `2.5`,
		[]string{".: 2.5 is less than the minimum of 3", ".: 2.5 is not of type 'integer'"}},
	{"anyOf", `{"anyOf": [{"type": "integer"}, {"minimum": 3}]}`, `2.5`,
		[]string{".: 2.5 is not valid under any of the given schemas"}},
	{"anyOf ok", `{"anyOf": [{"type": "integer"}, {"minimum": 3}]}`, `2`, nil},
	{"oneOf none", `{"oneOf": [{"type": "integer"}, {"minimum": 3}]}`, `2.5`,
		[]string{".: 2.5 is not valid under any of the given schemas"}},
	{"oneOf two", `{"oneOf": [{"type": "integer"}, {"type": "string"}, {"minimum": 3}]}`, `5`,
		[]string{".: 5 is valid under each of {'minimum': 3}, {'type': 'integer'}"}},
	{"oneOf one", `{"oneOf": [{"type": "integer"}, {"minimum": 3}]}`, `3.5`, nil},
	{"not", `{"not": {"type": "string", "minLength": 2}}`, `"ab"`,
		[]string{".: 'ab' should not be valid under {'type': 'string', 'minLength': 2}"}},
	{"not ok", `{"not": {"type": "string"}}`, `1`, nil},

	// $ref
	{"ref definitions", `{"definitions": {"a": {"type": "string"}}, "properties": {"x": {"$ref": "#/definitions/a"}}}`,
		`{"x": 1}`, []string{".x: 1 is not of type 'string'"}},
	{"ref ignores siblings", `{"definitions": {"a": {"type": "string"}}, "properties": {"x": {"$ref": "#/definitions/a", "minLength": 5}}}`,
		`{"x": "ab"}`, nil},
	{"ref root recursion", `{"properties": {"next": {"$ref": "#"}}, "required": ["v"]}`, `{"v": 1, "next": {"next": {}}}`,
		[]string{".next: 'v' is a required property", ".next.next: 'v' is a required property"}},
	{"ref escaped pointer", `{"definitions": {"a/b": {"type": "string"}, "c~d": {"type": "integer"}, "e f": {"type": "null"}},
		"items": [{"$ref": "#/definitions/a~1b"}, {"$ref": "#/definitions/c~0d"}, {"$ref": "#/definitions/e%20f"}]}`,
		`[1, "x", 2]`, []string{"[0]: 1 is not of type 'string'", "[1]: 'x' is not of type 'integer'", "[2]: 2 is not of type 'null'"}},
	{"ref into an array", `{"allOf": [{"type": "string"}], "properties": {"x": {"$ref": "#/allOf/0"}}}`, `{"x": 1}`,
		[]string{".: {'x': 1} is not of type 'string'", ".x: 1 is not of type 'string'"}},
	{"ref chain", `{"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"type": "integer"}}, "$ref": "#/definitions/a"}`,
		`"x"`, []string{".: 'x' is not of type 'integer'"}},

	// ignored keywords, and paths
	{"ignored", `{"$schema": "http://json-schema.org/draft-04/schema#", "id": "x", "title": "t", "description": "d",
		"default": 5, "examples": [], "const": 1, "propertyNames": {"maxLength": 1}, "contains": {"type": "string"}}`, `[2, "abc"]`, nil},
	{"nested paths", `{"properties": {"a b": {"items": {"properties": {"c": {"type": "string"}}}}}}`,
		`{"a b": [{"c": "x"}, {"c": 1}]}`, []string{".'a b'[1].c: 1 is not of type 'string'"}},
	{"messages repr", `{"type": "integer"}`, `{"k": ["it's", "\"q\"", "a\\b", "\t\n", "\u0000\u007f\u00a0\u00e9\u200b", 1e16, 1e-05, -0.0, null]}`,
		[]string{`.: {'k': ["it's", '"q"', 'a\\b', '\t\n', '\x00\x7f\xa0é\u200b', 1e+16, 1e-05, -0.0, None]} is not of type 'integer'`}},
}

func TestKeywords(t *testing.T) {
	for _, tt := range keywordCases {
		t.Run(tt.name, func(t *testing.T) {
			got, err := errorLines(t, tt.schema, tt.instance)
			if err != nil {
				t.Fatal(err)
			}
			want := tt.want
			if want == nil {
				want = []string{}
			}
			if !slices.Equal(got, want) {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

func TestSchemaErrors(t *testing.T) {
	// Schemas check_schema refuses, with its first error; and schemas
	// Compile refuses for what it cannot run or would never end.
	tests := []struct{ name, schema, want string }{
		{"not an object", `[]`, "invalid schema at .: [] is not of type 'object'"},
		{"unknown type", `{"type": "float"}`, "invalid schema at .type: 'float' is not valid under any of the given schemas"},
		{"type list empty", `{"type": []}`, "invalid schema at .type: [] is not valid under any of the given schemas"},
		{"required empty", `{"required": []}`, "invalid schema at .required: [] should be non-empty"},
		{"required not unique", `{"required": ["a", "a"]}`, "invalid schema at .required: ['a', 'a'] has non-unique elements"},
		{"enum empty", `{"enum": []}`, "invalid schema at .enum: [] should be non-empty"},
		{"minLength float", `{"minLength": 1.0}`, "invalid schema at .minLength: 1.0 is not of type 'integer'"},
		{"minItems negative", `{"minItems": -1}`, "invalid schema at .minItems: -1 is less than the minimum of 0"},
		{"multipleOf zero", `{"multipleOf": 0}`, "invalid schema at .multipleOf: 0 is less than or equal to the minimum of 0"},
		{"exclusiveMinimum without minimum", `{"exclusiveMinimum": true}`, "invalid schema at .: 'minimum' is a dependency of 'exclusiveMinimum'"},
		{"bad pattern", `{"properties": {"a": {"pattern": "("}}}`, "invalid schema at .properties.a.pattern: '(' is not a 'regex'"},
		{"items boolean", `{"items": true}`, "invalid schema at .items: True is not valid under any of the given schemas"},
		{"properties not schemas", `{"properties": {"a": 1}}`, "invalid schema at .properties.a: 1 is not of type 'object'"},
		{"ref unresolved", `{"$ref": "#/definitions/nope"}`, "invalid schema at .$ref: $ref '#/definitions/nope' does not resolve: no 'definitions'"},
		{"ref to a boolean", `{"properties": {"a": {}}, "additionalProperties": false, "items": {"$ref": "#/additionalProperties"}}`,
			"invalid schema at .additionalProperties: a schema must be an object, not boolean"},
		{"ref remote", `{"$ref": "other.json#/a"}`, "invalid schema at .$ref: $ref 'other.json#/a': only references into the same document are supported"},
		{"ref cycle", `{"definitions": {"a": {"$ref": "#/definitions/b"}, "b": {"allOf": [{"$ref": "#/definitions/a"}]}}, "$ref": "#/definitions/a"}`,
			"invalid schema at .definitions.a: recursion that consumes no input: evaluation comes back to this schema for the same instance"},
		{"ref self", `{"$ref": "#"}`, "invalid schema at .: recursion that consumes no input: evaluation comes back to this schema for the same instance"},
		{"not self", `{"not": {"$ref": "#"}}`, "invalid schema at .: recursion that consumes no input: evaluation comes back to this schema for the same instance"},
		{"bad patternProperties", `{"patternProperties": {"(": {}}}`, "invalid schema at .patternProperties.(: pattern '(' does not compile: missing ), unterminated subpattern at position 0"},
		{"subschema id", `{"properties": {"a": {"id": "http://x/y", "type": "string"}}}`, "invalid schema at .properties.a.id: id 'http://x/y' in a subschema"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Compile(mustParse(t, tt.schema))
			var se *SchemaError
			if !errors.As(err, &se) {
				t.Fatalf("Compile: %v, want a *SchemaError", err)
			}
			if err.Error() != tt.want {
				t.Errorf("got  %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestResult(t *testing.T) {
	var r Result
	if !r.Valid() || r.Len() != 0 {
		t.Fatal("zero Result not empty")
	}
	r.Add(Error{Path: Path{Key("b")}, Message: "y"})
	r.Add(Error{Path: Path{Key("a"), Index(2)}, Message: "x"})
	r.Add(Error{Path: Path{Key("b")}, Message: "y"})
	r.Add(Error{Path: Path{Key("b")}, Message: "a"})
	var merged Result
	merged.Merge(&r, Path{Key("pipelines"), Index(0), Key("stages"), Index(1), Key("devices"), Key("my disk")})
	var got []string
	for _, e := range merged.Errors() {
		got = append(got, e.String())
	}
	want := []string{
		"ValidationError: x [.pipelines[0].stages[1].devices.'my disk'.a[2]]",
		"ValidationError: a [.pipelines[0].stages[1].devices.'my disk'.b]",
		"ValidationError: y [.pipelines[0].stages[1].devices.'my disk'.b]",
	}
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	if (Path{}).String() != "." {
		t.Errorf("root path %q", Path{}.String())
	}
}

func TestValidateOverflow(t *testing.T) {
	// Where Python raises OverflowError, Validate fails.
	for _, tt := range [][2]string{
		{`{"multipleOf": 0.5}`, `1e400`},
		{`{"not": {"multipleOf": 0.5}}`, `-1e400`},
		{`{"multipleOf": 0.5}`, "1" + strings.Repeat("0", 400)},
		{`{"multipleOf": 1` + strings.Repeat("0", 400) + `}`, `2.5`},
	} {
		if _, err := errorLines(t, tt[0], tt[1]); !errors.Is(err, ErrOverflow) {
			t.Errorf("schema %s, instance %.20s: %v, want ErrOverflow", tt[0], tt[1], err)
		}
	}
}

func TestValidateBounded(t *testing.T) {
	// Each level evaluates both branches of anyOf: 2^depth evaluations,
	// as in Python, until the budget runs out.
	schema := `{"definitions": {"a": {"anyOf": [{"properties": {"x": {"$ref": "#/definitions/a"}}, "required": ["nope"]},
		{"properties": {"x": {"$ref": "#/definitions/a"}}, "required": ["nope"]}]}}, "$ref": "#/definitions/a"}`
	instance := strings.Repeat(`{"x": `, 60) + "1" + strings.Repeat("}", 60)
	defer func(old int64) { stepLimit = old }(stepLimit)
	stepLimit = 1 << 20
	if _, err := errorLines(t, schema, instance); !errors.Is(err, ErrTooComplex) {
		t.Errorf("exponential anyOf: %v, want ErrTooComplex", err)
	}
}

// pythonSchema asks python3-jsonschema (testdata/pyschema.py) about
// schema and instance pairs; it skips when python3 or jsonschema is
// missing.
func pythonSchema(t *testing.T, pairs [][2]string) []*pyjson.Value {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 to compare with")
	}
	if err := exec.Command("python3", "-c", "import jsonschema").Run(); err != nil {
		t.Skip("no python3-jsonschema to compare with")
	}
	var in bytes.Buffer
	in.WriteByte('[')
	for i, p := range pairs {
		if i > 0 {
			in.WriteByte(',')
		}
		in.WriteByte('[')
		writeJSONString(&in, p[0])
		in.WriteByte(',')
		writeJSONString(&in, p[1])
		in.WriteByte(']')
	}
	in.WriteByte(']')
	cmd := exec.Command("python3", filepath.Join("testdata", "pyschema.py"))
	cmd.Stdin = &in
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 pyschema.py: %v", err)
	}
	// pyjson, not encoding/json, keeps lone surrogates.
	v, err := pyjson.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(v.Elems) != len(pairs) {
		t.Fatalf("python3 answered %d pairs of %d", len(v.Elems), len(pairs))
	}
	return v.Elems
}

// comparePairs validates each pair and compares with Python's answer.
func comparePairs(t *testing.T, pairs [][2]string) {
	t.Helper()
	// Python recurses forever on a cycle that consumes no input only where
	// evaluation reaches it; forge refuses the schema. Leave those out.
	var kept [][2]string
	skipped := 0
	for _, p := range pairs {
		_, err := Compile(mustParse(t, p[0]))
		var se *SchemaError
		if errors.As(err, &se) && strings.Contains(se.Message, "recursion that consumes no input") {
			skipped++
			continue
		}
		kept = append(kept, p)
	}
	pairs = kept
	answers := pythonSchema(t, pairs)
	agree, stricter := 0, 0
	for i, p := range pairs {
		a := answers[i]
		got, err := errorLines(t, p[0], p[1])
		var se *SchemaError
		switch {
		case a.Get("exception") != nil:
			// Python raises (a $ref it cannot resolve, RecursionError,
			// OverflowError for multipleOf of an infinite float): forge
			// must refuse the schema or the validation.
			if err == nil {
				t.Errorf("schema %s, instance %s: Python raises %s, forge validates", p[0], p[1], a.Get("exception").Str)
			} else {
				agree++
			}
			continue
		case a.Get("schema_error") != nil:
			// Which error check_schema raises can depend on the order
			// of a Python set; forge's must be one of them, and forge
			// must find the same ones.
			var every []string
			for _, e := range a.Get("schema_errors").Elems {
				every = append(every, "invalid schema at "+e.Elems[0].Str+": "+e.Elems[1].Str)
			}
			res, cerr := checkSchema(mustParse(t, p[0]))
			if cerr != nil {
				t.Fatal(cerr)
			}
			var found []string
			for _, e := range res.Errors() {
				found = append(found, "invalid schema at "+e.Path.String()+": "+e.Message)
			}
			if err == nil || !slices.Contains(every, err.Error()) || !slices.Equal(found, every) {
				t.Errorf("schema %s: forge: %v\nforge finds %q\nPython finds %q", p[0], err, found, every)
			} else {
				agree++
			}
			continue
		case errors.As(err, &se) && se.Err == nil && (strings.Contains(se.Message, "does not resolve") || strings.Contains(se.Message, "does not compile")):
			// Python raises on a $ref that does not resolve or a
			// patternProperties regex that does not compile only where
			// validation reaches them; forge refuses the schema.
			stricter++
			continue
		case err != nil:
			t.Errorf("schema %s, instance %s: %v", p[0], p[1], err)
			continue
		}
		want := []string{}
		for _, e := range a.Get("errors").Elems {
			want = append(want, e.Elems[0].Str+": "+e.Elems[1].Str)
		}
		if slices.Equal(got, want) {
			agree++
		} else {
			t.Errorf("schema %s\ninstance %s\nforge:  %q\nPython: %q", p[0], p[1], got, want)
		}
	}
	t.Logf("%d pairs: %d agree; forge refuses %d more schemas (a $ref that does not resolve or a patternProperties regex that does not compile, where validation does not reach it) and %d with recursion that consumes no input",
		len(pairs)+skipped, agree, stricter, skipped)
}

func TestKeywordsAgainstPython(t *testing.T) {
	var pairs [][2]string
	for _, c := range keywordCases {
		pairs = append(pairs, [2]string{c.schema, c.instance})
	}
	comparePairs(t, pairs)
}

// randomSchema writes a random Draft 4 schema, mostly valid.
func randomSchema(r *rand.Rand, depth int) string {
	if depth <= 0 || r.IntN(5) == 0 {
		return []string{`{}`, `{"type": "string"}`, `{"type": "integer"}`, `{"type": ["number", "null"]}`,
			`{"enum": [1, "a", true, null, [1], {"a": 1}]}`, `{"minimum": 1}`, `{"maxLength": 2}`, `{"$ref": "#"}`,
			`{"$ref": "#/definitions/d"}`, `{"pattern": "^a"}`, `{"multipleOf": 0.5}`, `{"uniqueItems": true}`}[r.IntN(12)]
	}
	sub := func() string { return randomSchema(r, depth-1) }
	keys := []string{"a", "b", "a b", "é"}
	var kv []string
	for range 1 + r.IntN(3) {
		switch r.IntN(24) {
		case 0:
			kv = append(kv, `"type": `+[]string{`"object"`, `"array"`, `"string"`, `"integer"`, `"number"`, `"boolean"`, `"null"`, `["object", "array"]`, `"any"`}[r.IntN(9)])
		case 1:
			kv = append(kv, `"enum": `+[]string{`[1, 2.0, "a"]`, `[true]`, `[0]`, `[{"a": 1}]`, `[[1, 2]]`, `[]`, `[null, 1]`}[r.IntN(7)])
		case 2:
			kv = append(kv, fmt.Sprintf(`"properties": {%q: %s, %q: %s}`, keys[r.IntN(4)], sub(), keys[r.IntN(4)], sub()))
		case 3:
			kv = append(kv, fmt.Sprintf(`"patternProperties": {%q: %s}`, []string{"^a", "b$", `\w`, "^(?!a)", "é", "("}[r.IntN(6)], sub()))
		case 4:
			kv = append(kv, `"additionalProperties": `+[]string{"false", "true", sub()}[r.IntN(3)])
		case 5:
			kv = append(kv, `"required": `+[]string{`["a"]`, `["a", "b"]`, `["a b", "é"]`, `[]`}[r.IntN(4)])
		case 6:
			kv = append(kv, fmt.Sprintf(`"minProperties": %d`, r.IntN(3)))
		case 7:
			kv = append(kv, fmt.Sprintf(`"maxProperties": %d`, r.IntN(3)))
		case 8:
			kv = append(kv, `"dependencies": {"a": `+[]string{`["b"]`, sub()}[r.IntN(2)]+`}`)
		case 9:
			kv = append(kv, `"items": `+[]string{sub(), "[" + sub() + ", " + sub() + "]"}[r.IntN(2)])
		case 10:
			kv = append(kv, `"additionalItems": `+[]string{"false", sub()}[r.IntN(2)])
		case 11:
			kv = append(kv, fmt.Sprintf(`"minItems": %d`, r.IntN(3)))
		case 12:
			kv = append(kv, fmt.Sprintf(`"maxItems": %d`, r.IntN(3)))
		case 13:
			kv = append(kv, `"uniqueItems": `+[]string{"true", "false"}[r.IntN(2)])
		case 14:
			kv = append(kv, `"minimum": `+[]string{"0", "1.5", "-1"}[r.IntN(3)])
			if r.IntN(2) == 0 {
				kv = append(kv, `"exclusiveMinimum": true`)
			}
		case 15:
			kv = append(kv, `"maximum": `+[]string{"0", "1.5", "3"}[r.IntN(3)])
			if r.IntN(2) == 0 {
				kv = append(kv, `"exclusiveMaximum": true`)
			}
		case 16:
			kv = append(kv, `"multipleOf": `+[]string{"2", "0.5", "0.1", "3"}[r.IntN(4)])
		case 17:
			kv = append(kv, fmt.Sprintf(`"minLength": %d`, r.IntN(3)))
		case 18:
			kv = append(kv, fmt.Sprintf(`"maxLength": %d`, r.IntN(3)))
		case 19:
			kv = append(kv, `"pattern": `+[]string{`"^a"`, `"b"`, `"^\\w+$"`, `"(?=a)"`}[r.IntN(4)])
		case 20:
			kv = append(kv, fmt.Sprintf(`"%s": [%s, %s]`, []string{"allOf", "anyOf", "oneOf"}[r.IntN(3)], sub(), sub()))
		case 21:
			kv = append(kv, `"not": `+sub())
		case 22:
			kv = append(kv, `"definitions": {"d": `+sub()+`}`)
		case 23:
			kv = append(kv, `"$ref": `+[]string{`"#"`, `"#/definitions/d"`, `"#/properties/a"`}[r.IntN(3)])
		}
	}
	return "{" + strings.Join(kv, ", ") + "}"
}

func randomInstance(r *rand.Rand, depth int) string {
	if depth <= 0 || r.IntN(3) == 0 {
		return []string{`1`, `1.0`, `2.5`, `-1`, `0`, `true`, `false`, `null`, `"a"`, `"ab"`, `""`, `"é"`, `"ba"`, `3`, `1e400`}[r.IntN(15)]
	}
	keys := []string{"a", "b", "a b", "é", "c"}
	n := r.IntN(4)
	parts := make([]string, n)
	if r.IntN(2) == 0 {
		for i := range parts {
			parts[i] = randomInstance(r, depth-1)
		}
		return "[" + strings.Join(parts, ", ") + "]"
	}
	for i := range parts {
		parts[i] = fmt.Sprintf("%q: %s", keys[r.IntN(len(keys))], randomInstance(r, depth-1))
	}
	return "{" + strings.Join(parts, ", ") + "}"
}

// TestRandomAgainstPython compares random schemas and instances with
// python3-jsonschema: errors, paths and messages.
func TestRandomAgainstPython(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var pairs [][2]string
	for range 1500 {
		schema := randomSchema(r, 3)
		// Give "#/definitions/d" and "#/properties/a" a target most of
		// the time.
		if r.IntN(4) != 0 {
			schema = `{"definitions": {"d": ` + randomSchema(r, 2) + `}, "properties": {"a": ` + randomSchema(r, 2) + `}, "allOf": [` + schema + `]}`
		}
		for range 3 {
			pairs = append(pairs, [2]string{schema, randomInstance(r, 3)})
		}
	}
	comparePairs(t, pairs)
}

// TestConcurrentValidate: a Schema serves several goroutines at once (run
// with -race).
func TestConcurrentValidate(t *testing.T) {
	s, err := Compile(mustParse(t, `{"properties": {"a": {"pattern": "^(?!x)\\w+$"}}, "items": {"$ref": "#"}, "uniqueItems": true}`))
	if err != nil {
		t.Fatal(err)
	}
	instance := mustParse(t, `[{"a": "xy"}, {"a": "ok"}, [{"a": "é"}], {"a": "x"}]`)
	done := make(chan []Error)
	for range 8 {
		go func() {
			res, err := s.Validate(instance)
			if err != nil {
				t.Error(err)
			}
			done <- res.Errors()
		}()
	}
	first := <-done
	for range 7 {
		if got := <-done; !slices.EqualFunc(got, first, func(a, b Error) bool { return a.String() == b.String() }) {
			t.Errorf("results differ: %v, %v", got, first)
		}
	}
	if len(first) != 2 {
		t.Errorf("%d errors, want 2: %v", len(first), first)
	}
}
