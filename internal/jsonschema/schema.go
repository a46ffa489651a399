package jsonschema

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/forge-build/forge/builder/pyjson"
)

// ErrUnsupported marks a schema that Python's jsonschema would take but
// that this package does not run; a *SchemaError wraps it.
var ErrUnsupported = errors.New("not supported by forge's JSON Schema validator")

// SchemaError is a schema that Compile refuses: one that
// Draft4Validator.check_schema refuses (Path and Message are then those of
// the first error check_schema raises, the path leading into the schema
// document), or one with a $ref that does not resolve, a pattern that does
// not compile, or recursion that consumes no input.
type SchemaError struct {
	Path    Path
	Message string
	Err     error // ErrUnsupported, or nil
}

func (e *SchemaError) Error() string {
	return "invalid schema at " + e.Path.String() + ": " + e.Message
}

func (e *SchemaError) Unwrap() error { return e.Err }

// Schema is a compiled Draft 4 schema. It is immutable, and Validate may
// be called from several goroutines at once.
type Schema struct {
	root *node
}

type keyword uint8

const (
	kwType keyword = iota
	kwEnum
	kwProperties
	kwPatternProperties
	kwAdditionalProperties
	kwRequired
	kwMinProperties
	kwMaxProperties
	kwDependencies
	kwItems
	kwAdditionalItems
	kwMinItems
	kwMaxItems
	kwUniqueItems
	kwMinimum
	kwMaximum
	kwMultipleOf
	kwMinLength
	kwMaxLength
	kwPattern
	kwFormat
	kwAllOf
	kwAnyOf
	kwOneOf
	kwNot
)

var keywords = map[string]keyword{
	"type":                 kwType,
	"enum":                 kwEnum,
	"properties":           kwProperties,
	"patternProperties":    kwPatternProperties,
	"additionalProperties": kwAdditionalProperties,
	"required":             kwRequired,
	"minProperties":        kwMinProperties,
	"maxProperties":        kwMaxProperties,
	"dependencies":         kwDependencies,
	"items":                kwItems,
	"additionalItems":      kwAdditionalItems,
	"minItems":             kwMinItems,
	"maxItems":             kwMaxItems,
	"uniqueItems":          kwUniqueItems,
	"minimum":              kwMinimum,
	"maximum":              kwMaximum,
	"multipleOf":           kwMultipleOf,
	"minLength":            kwMinLength,
	"maxLength":            kwMaxLength,
	"pattern":              kwPattern,
	"format":               kwFormat,
	"allOf":                kwAllOf,
	"anyOf":                kwAnyOf,
	"oneOf":                kwOneOf,
	"not":                  kwNot,
}

// node is one compiled schema object.
type node struct {
	raw  *pyjson.Value
	path Path // in the schema document

	ref *node // with $ref, nothing else applies (Draft 4)

	kws []keyword // the validating keywords, in document order

	types []string

	enum *pyjson.Value

	props     []namedNode
	propNames map[string]bool

	patternProps []patternNode
	hasPatterns  bool   // "patternProperties" is there, even empty
	patternsAny  *regex // the patterns joined with '|', as jsonschema searches them for additionalProperties

	addProps      *node
	addPropsFalse bool

	required []string

	minProps, maxProps int64

	deps []dependency

	items       *node
	itemsList   []*node
	isItemsList bool

	addItems      *node
	addItemsFalse bool

	minItems, maxItems int64
	uniqueItems        bool

	minimum, maximum     *pyjson.Value
	exclusiveMinimum     bool
	exclusiveMaximum     bool
	multipleOf           *pyjson.Value
	minLength, maxLength int64
	pattern              *regex
	patternSrc           string
	formatRegex          bool
	allOf, anyOf, oneOf  []*node
	not                  *node
}

type namedNode struct {
	name string
	node *node
}

type patternNode struct {
	src  string
	re   *regex
	node *node
}

type dependency struct {
	name     string
	required []string // when the dependency is an array
	node     *node    // when it is a schema
}

type compiler struct {
	doc     *pyjson.Value
	baseID  string // the root's id, without fragment
	formats bool   // honour "format": "regex" (the meta-schema only)
	nodes   map[*pyjson.Value]*node
	order   []*node // nodes in the order compiled
	depth   int
}

// maxCompileDepth bounds the nesting of schemas and chains of $refs that
// Compile follows (Python's recursion limit is far lower).
const maxCompileDepth = 10000

func schemaErrorf(path Path, format string, args ...any) *SchemaError {
	return &SchemaError{Path: append(Path(nil), path...), Message: fmt.Sprintf(format, args...)}
}

func unsupportedf(path Path, format string, args ...any) *SchemaError {
	e := schemaErrorf(path, format, args...)
	e.Err = ErrUnsupported
	return e
}

// Compile checks doc as Draft4Validator.check_schema does and compiles
// it. doc is a schema as pyjson.Parse reads it; $refs resolve within it.
func Compile(doc *pyjson.Value) (*Schema, error) {
	if doc == nil {
		return nil, schemaErrorf(nil, "no schema")
	}
	res, err := checkSchema(doc)
	if err != nil {
		return nil, &SchemaError{Message: "checking the schema: " + err.Error(), Err: err}
	}
	if len(res.errs) > 0 {
		e := res.errs[0] // check_schema raises the first error
		return nil, &SchemaError{Path: e.Path, Message: e.Message}
	}
	return compile(doc, false)
}

// checkSchema validates doc against the Draft 4 meta-schema.
func checkSchema(doc *pyjson.Value) (*Result, error) {
	return newValidator().run(metaSchema().root, doc)
}

func compile(doc *pyjson.Value, formats bool) (*Schema, error) {
	c := &compiler{doc: doc, formats: formats, nodes: map[*pyjson.Value]*node{}}
	if id := doc.Get("id"); id != nil && id.Kind == pyjson.String && doc.Get("$ref") == nil {
		c.baseID, _, _ = strings.Cut(id.Str, "#")
	}
	root, err := c.compile(doc, nil)
	if err != nil {
		return nil, err
	}
	if err := checkCycles(c.order); err != nil {
		return nil, err
	}
	return &Schema{root: root}, nil
}

var (
	metaOnce sync.Once
	meta     *Schema
)

// metaSchema is the Draft 4 meta-schema, compiled with its "format":
// "regex", which check_schema checks.
func metaSchema() *Schema {
	metaOnce.Do(func() {
		doc, err := pyjson.Parse([]byte(draft4MetaSchema))
		if err != nil {
			panic("jsonschema: meta-schema: " + err.Error())
		}
		meta, err = compile(doc, true)
		if err != nil {
			panic("jsonschema: meta-schema: " + err.Error())
		}
	})
	return meta
}

func extend(path Path, steps ...Step) Path {
	p := make(Path, 0, len(path)+len(steps))
	return append(append(p, path...), steps...)
}

// count reads a non-negative integer keyword, saturating at MaxInt64.
func count(v *pyjson.Value, path Path) (int64, error) {
	if v.Kind != pyjson.Int || strings.HasPrefix(v.Int, "-") {
		return 0, schemaErrorf(path, "want a non-negative integer")
	}
	n, err := strconv.ParseInt(v.Int, 10, 64)
	if err != nil {
		return math.MaxInt64, nil
	}
	return n, nil
}

func stringList(v *pyjson.Value, path Path) ([]string, error) {
	if v.Kind != pyjson.Array {
		return nil, schemaErrorf(path, "want an array of strings")
	}
	out := make([]string, len(v.Elems))
	for i, e := range v.Elems {
		if e.Kind != pyjson.String {
			return nil, schemaErrorf(extend(path, Index(i)), "want a string")
		}
		out[i] = e.Str
	}
	return out, nil
}

func (c *compiler) compileList(v *pyjson.Value, path Path) ([]*node, error) {
	if v.Kind != pyjson.Array || len(v.Elems) == 0 {
		return nil, schemaErrorf(path, "want a non-empty array of schemas")
	}
	out := make([]*node, len(v.Elems))
	for i, e := range v.Elems {
		n, err := c.compile(e, extend(path, Index(i)))
		if err != nil {
			return nil, err
		}
		out[i] = n
	}
	return out, nil
}

func (c *compiler) regex(src string, path Path) (*regex, error) {
	re, err := compileRegex(src)
	if err != nil {
		if errors.Is(err, errRegexUnsupported) {
			return nil, unsupportedf(path, "pattern %s: %v", strRepr(src), err)
		}
		return nil, schemaErrorf(path, "pattern %s does not compile: %v", strRepr(src), err)
	}
	return re, nil
}

// compile compiles the schema v at path, once: a $ref to it, or a cycle
// of $refs, gets the same node.
func (c *compiler) compile(v *pyjson.Value, path Path) (*node, error) {
	if n, ok := c.nodes[v]; ok {
		return n, nil
	}
	if c.depth >= maxCompileDepth {
		return nil, schemaErrorf(path, "schemas and $refs nest deeper than %d", maxCompileDepth)
	}
	c.depth++
	defer func() { c.depth-- }()
	n := &node{raw: v, path: path, minProps: -1, maxProps: -1, minItems: -1, maxItems: -1, minLength: -1, maxLength: -1}
	c.nodes[v] = n
	c.order = append(c.order, n)
	if v.Kind != pyjson.Object {
		// Only a $ref reaches one (the meta-schema wants objects
		// everywhere else); jsonschema raises on it, even on a boolean.
		return nil, schemaErrorf(path, "a schema must be an object, not %s", v.Kind)
	}
	if ref := v.Get("$ref"); ref != nil {
		if ref.Kind != pyjson.String {
			return nil, schemaErrorf(extend(path, Key("$ref")), "$ref must be a string")
		}
		target, tpath, err := c.resolve(ref.Str, extend(path, Key("$ref")))
		if err != nil {
			return nil, err
		}
		n.ref, err = c.compile(target, tpath)
		return n, err
	}
	if id := v.Get("id"); id != nil && v != c.doc && id.Kind == pyjson.String && !strings.HasPrefix(id.Str, "#") {
		// A subschema's id starts a new base URI for the $refs in it.
		return nil, unsupportedf(extend(path, Key("id")), "id %s in a subschema", strRepr(id.Str))
	}
	fields := v.Fields()
	for _, m := range fields {
		kw, ok := keywords[m.Key]
		if !ok {
			continue
		}
		if err := c.keyword(n, v, kw, m.Value, extend(path, Key(m.Key))); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func (c *compiler) keyword(n *node, schema *pyjson.Value, kw keyword, v *pyjson.Value, path Path) error {
	var err error
	switch kw {
	case kwType:
		switch v.Kind {
		case pyjson.String:
			n.types = []string{v.Str}
		case pyjson.Array:
			n.types, err = stringList(v, path)
		default:
			err = schemaErrorf(path, "want a type name or an array of them")
		}
		for _, t := range n.types {
			switch t {
			case "array", "boolean", "integer", "null", "number", "object", "string":
			default:
				return schemaErrorf(path, "unknown type %s", strRepr(t))
			}
		}
	case kwEnum:
		if v.Kind != pyjson.Array {
			return schemaErrorf(path, "want an array")
		}
		n.enum = v
	case kwProperties:
		if v.Kind != pyjson.Object {
			return schemaErrorf(path, "want an object")
		}
		n.propNames = map[string]bool{}
		for _, m := range v.Fields() {
			sub, err := c.compile(m.Value, extend(path, Key(m.Key)))
			if err != nil {
				return err
			}
			n.props = append(n.props, namedNode{m.Key, sub})
			n.propNames[m.Key] = true
		}
	case kwPatternProperties:
		if v.Kind != pyjson.Object {
			return schemaErrorf(path, "want an object")
		}
		n.hasPatterns = true
		var srcs []string
		for _, m := range v.Fields() {
			p := extend(path, Key(m.Key))
			re, err := c.regex(m.Key, p)
			if err != nil {
				return err
			}
			sub, err := c.compile(m.Value, p)
			if err != nil {
				return err
			}
			n.patternProps = append(n.patternProps, patternNode{m.Key, re, sub})
			srcs = append(srcs, m.Key)
		}
		if len(srcs) > 0 {
			// Not each pattern alone: joined, a later pattern's
			// global flags or backreferences mean something else
			// (or fail to compile), and jsonschema searches them so.
			n.patternsAny, err = c.regex(strings.Join(srcs, "|"), path)
		}
	case kwAdditionalProperties:
		switch v.Kind {
		case pyjson.Bool:
			n.addPropsFalse = !v.Bool
		default:
			n.addProps, err = c.compile(v, path)
		}
	case kwRequired:
		n.required, err = stringList(v, path)
	case kwMinProperties:
		n.minProps, err = count(v, path)
	case kwMaxProperties:
		n.maxProps, err = count(v, path)
	case kwDependencies:
		if v.Kind != pyjson.Object {
			return schemaErrorf(path, "want an object")
		}
		for _, m := range v.Fields() {
			d := dependency{name: m.Key}
			p := extend(path, Key(m.Key))
			if m.Value.Kind == pyjson.Array {
				d.required, err = stringList(m.Value, p)
			} else {
				d.node, err = c.compile(m.Value, p)
			}
			if err != nil {
				return err
			}
			n.deps = append(n.deps, d)
		}
	case kwItems:
		if v.Kind == pyjson.Array {
			n.isItemsList = true
			n.itemsList, err = c.compileList(v, path)
		} else {
			n.items, err = c.compile(v, path)
		}
	case kwAdditionalItems:
		switch v.Kind {
		case pyjson.Bool:
			n.addItemsFalse = !v.Bool
		default:
			n.addItems, err = c.compile(v, path)
		}
	case kwMinItems:
		n.minItems, err = count(v, path)
	case kwMaxItems:
		n.maxItems, err = count(v, path)
	case kwUniqueItems:
		if v.Kind != pyjson.Bool {
			return schemaErrorf(path, "want a boolean")
		}
		n.uniqueItems = v.Bool
	case kwMinimum, kwMaximum, kwMultipleOf:
		if !isNumber(v) {
			return schemaErrorf(path, "want a number")
		}
		switch kw {
		case kwMinimum:
			n.minimum = v
			n.exclusiveMinimum = truthy(schema.Get("exclusiveMinimum"))
		case kwMaximum:
			n.maximum = v
			n.exclusiveMaximum = truthy(schema.Get("exclusiveMaximum"))
		default:
			if cmpNumber(numberOf(v), number{isInt: true}) <= 0 {
				return schemaErrorf(path, "multipleOf must be greater than 0")
			}
			n.multipleOf = v
		}
	case kwMinLength:
		n.minLength, err = count(v, path)
	case kwMaxLength:
		n.maxLength, err = count(v, path)
	case kwPattern:
		if v.Kind != pyjson.String {
			return schemaErrorf(path, "want a string")
		}
		n.patternSrc = v.Str
		n.pattern, err = c.regex(v.Str, path)
	case kwFormat:
		// Without a format checker, as osbuild runs Draft4Validator,
		// "format" asserts nothing; check_schema checks "regex".
		if !c.formats || v.Kind != pyjson.String || v.Str != "regex" {
			return nil
		}
		n.formatRegex = true
	case kwAllOf:
		n.allOf, err = c.compileList(v, path)
	case kwAnyOf:
		n.anyOf, err = c.compileList(v, path)
	case kwOneOf:
		n.oneOf, err = c.compileList(v, path)
	case kwNot:
		n.not, err = c.compile(v, path)
	}
	if err != nil {
		return err
	}
	n.kws = append(n.kws, kw)
	return nil
}

// truthy is Python's bool() of a JSON value (nil: absent, false).
func truthy(v *pyjson.Value) bool {
	if v == nil {
		return false
	}
	switch v.Kind {
	case pyjson.Null:
		return false
	case pyjson.Bool:
		return v.Bool
	case pyjson.Int:
		return v.Int != "0"
	case pyjson.Float:
		return v.Float != 0
	case pyjson.String:
		return v.Str != ""
	case pyjson.Array:
		return len(v.Elems) > 0
	}
	return len(v.Members) > 0
}

// resolve finds the target of a $ref: "#" and a JSON pointer (RFC 6901,
// percent-decoded first), relative to the root document.
func (c *compiler) resolve(ref string, path Path) (*pyjson.Value, Path, error) {
	uri, fragment, _ := strings.Cut(ref, "#")
	if uri != "" && uri != c.baseID {
		return nil, nil, unsupportedf(path, "$ref %s: only references into the same document are supported", strRepr(ref))
	}
	fragment = pyUnquote(fragment)
	if fragment == "" {
		return c.doc, nil, nil
	}
	if !strings.HasPrefix(fragment, "/") {
		return nil, nil, unsupportedf(path, "$ref %s: only JSON pointers are supported, not anchors", strRepr(ref))
	}
	v := c.doc
	var target Path
	for _, seg := range strings.Split(fragment, "/")[1:] {
		seg = strings.ReplaceAll(strings.ReplaceAll(seg, "~1", "/"), "~0", "~")
		switch v.Kind {
		case pyjson.Object:
			next := v.Get(seg)
			if next == nil {
				return nil, nil, schemaErrorf(path, "$ref %s does not resolve: no %s", strRepr(ref), strRepr(seg))
			}
			v = next
			target = append(target, Key(seg))
		case pyjson.Array:
			i, err := strconv.Atoi(seg)
			if err != nil || i < 0 || i >= len(v.Elems) || !allDigits(seg) {
				return nil, nil, schemaErrorf(path, "$ref %s does not resolve: no element %s", strRepr(ref), strRepr(seg))
			}
			v = v.Elems[i]
			target = append(target, Index(i))
		default:
			return nil, nil, schemaErrorf(path, "$ref %s does not resolve: %s is not in a container", strRepr(ref), strRepr(seg))
		}
	}
	return v, target, nil
}

// pyUnquote is Python's urllib.parse.unquote: %XX escapes decoded as
// UTF-8, invalid sequences replaced by U+FFFD.
func pyUnquote(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b []byte
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(rune(s[i+1])) && isHex(rune(s[i+2])) {
			v, _ := strconv.ParseUint(s[i+1:i+3], 16, 8)
			b = append(b, byte(v))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	if utf8.Valid(b) {
		return string(b)
	}
	return strings.ToValidUTF8(string(b), "\uFFFD")
}

// checkCycles refuses a schema in which evaluation can come back to a node
// without descending into the instance: $ref, allOf, anyOf, oneOf, not
// and schema dependencies all apply to the same instance, so a cycle of
// them recurses forever (Python raises RecursionError). nodes are all the
// nodes, in the order compiled.
func checkCycles(nodes []*node) error {
	const (
		unseen = iota
		active
		finished
	)
	type frame struct {
		n    *node
		next []*node
	}
	state := make(map[*node]int, len(nodes))
	for _, start := range nodes {
		if state[start] != unseen {
			continue
		}
		state[start] = active
		stack := []frame{{start, sameInstance(start)}}
		for len(stack) > 0 {
			f := &stack[len(stack)-1]
			if len(f.next) == 0 {
				state[f.n] = finished
				stack = stack[:len(stack)-1]
				continue
			}
			s := f.next[0]
			f.next = f.next[1:]
			switch state[s] {
			case active:
				return schemaErrorf(s.path, "recursion that consumes no input: evaluation comes back to this schema for the same instance")
			case unseen:
				state[s] = active
				stack = append(stack, frame{s, sameInstance(s)})
			}
		}
	}
	return nil
}

// sameInstance are the schemas n applies to the instance it is given.
func sameInstance(n *node) []*node {
	if n.ref != nil {
		return []*node{n.ref}
	}
	var out []*node
	out = append(out, n.allOf...)
	out = append(out, n.anyOf...)
	out = append(out, n.oneOf...)
	if n.not != nil {
		out = append(out, n.not)
	}
	for _, d := range n.deps {
		if d.node != nil {
			out = append(out, d.node)
		}
	}
	return out
}

// draft4MetaSchema is the JSON Schema Draft 4 meta-schema,
// http://json-schema.org/draft-04/schema, against which check_schema
// checks a schema.
const draft4MetaSchema = `{
    "id": "http://json-schema.org/draft-04/schema#",
    "$schema": "http://json-schema.org/draft-04/schema#",
    "description": "Core schema meta-schema",
    "definitions": {
        "schemaArray": {"type": "array", "minItems": 1, "items": {"$ref": "#"}},
        "positiveInteger": {"type": "integer", "minimum": 0},
        "positiveIntegerDefault0": {"allOf": [{"$ref": "#/definitions/positiveInteger"}, {"default": 0}]},
        "simpleTypes": {"enum": ["array", "boolean", "integer", "null", "number", "object", "string"]},
        "stringArray": {"type": "array", "items": {"type": "string"}, "minItems": 1, "uniqueItems": true}
    },
    "type": "object",
    "properties": {
        "id": {"type": "string"},
        "$schema": {"type": "string"},
        "title": {"type": "string"},
        "description": {"type": "string"},
        "default": {},
        "multipleOf": {"type": "number", "minimum": 0, "exclusiveMinimum": true},
        "maximum": {"type": "number"},
        "exclusiveMaximum": {"type": "boolean", "default": false},
        "minimum": {"type": "number"},
        "exclusiveMinimum": {"type": "boolean", "default": false},
        "maxLength": {"$ref": "#/definitions/positiveInteger"},
        "minLength": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "pattern": {"type": "string", "format": "regex"},
        "additionalItems": {"anyOf": [{"type": "boolean"}, {"$ref": "#"}], "default": {}},
        "items": {"anyOf": [{"$ref": "#"}, {"$ref": "#/definitions/schemaArray"}], "default": {}},
        "maxItems": {"$ref": "#/definitions/positiveInteger"},
        "minItems": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "uniqueItems": {"type": "boolean", "default": false},
        "maxProperties": {"$ref": "#/definitions/positiveInteger"},
        "minProperties": {"$ref": "#/definitions/positiveIntegerDefault0"},
        "required": {"$ref": "#/definitions/stringArray"},
        "additionalProperties": {"anyOf": [{"type": "boolean"}, {"$ref": "#"}], "default": {}},
        "definitions": {"type": "object", "additionalProperties": {"$ref": "#"}, "default": {}},
        "properties": {"type": "object", "additionalProperties": {"$ref": "#"}, "default": {}},
        "patternProperties": {"type": "object", "additionalProperties": {"$ref": "#"}, "default": {}},
        "dependencies": {"type": "object", "additionalProperties": {"anyOf": [{"$ref": "#"}, {"$ref": "#/definitions/stringArray"}]}},
        "enum": {"type": "array", "minItems": 1, "uniqueItems": true},
        "type": {"anyOf": [
            {"$ref": "#/definitions/simpleTypes"},
            {"type": "array", "items": {"$ref": "#/definitions/simpleTypes"}, "minItems": 1, "uniqueItems": true}
        ]},
        "format": {"type": "string"},
        "allOf": {"$ref": "#/definitions/schemaArray"},
        "anyOf": {"$ref": "#/definitions/schemaArray"},
        "oneOf": {"$ref": "#/definitions/schemaArray"},
        "not": {"$ref": "#"}
    },
    "dependencies": {
        "exclusiveMaximum": ["maximum"],
        "exclusiveMinimum": ["minimum"]
    },
    "default": {}
}`
