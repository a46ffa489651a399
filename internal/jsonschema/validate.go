package jsonschema

import (
	"errors"
	"slices"
	"strings"

	"github.com/forge-build/forge/builder/pyjson"
)

// Bounds on one Validate call. Python has none but its recursion limit;
// these are far above what an osbuild manifest needs (validating the
// largest of osbuild's test manifests takes under a million steps).
const (
	// MaxSteps is the work one validation may do: a step is one schema
	// applied to one value, one regular expression position tried, one
	// value compared or hashed.
	MaxSteps = 1 << 28
	// MaxDepth is the deepest nesting of schemas applied within one
	// another, through members, elements and $refs.
	MaxDepth = 4096
	// maxReprBytes bounds the bytes of instance and schema text that
	// messages of one validation quote; past it, quotes are cut short
	// with "...".
	maxReprBytes = 64 << 20
	// minRepr is what a quote gets once maxReprBytes is spent.
	minRepr = 80
)

// Errors of Validate: the instance could not be validated.
var (
	// ErrTooComplex: the validation would take more than MaxSteps steps
	// or nest deeper than MaxDepth.
	ErrTooComplex = errors.New("jsonschema: validation needs more work or depth than forge allows")
	// ErrOverflow: multipleOf met an infinite number, or an integer too
	// large for a float next to a float, where Python's jsonschema raises
	// OverflowError rather than deciding.
	ErrOverflow = errors.New("jsonschema: multipleOf overflows a float (Python raises OverflowError)")
)

// stepLimit is MaxSteps, lowered by tests.
var stepLimit int64 = MaxSteps

// abort is panicked to end a validation, and recovered by run.
type abort struct{ err error }

var (
	errBudget   any = abort{ErrTooComplex}
	errOverflow any = abort{ErrOverflow}
)

type budget struct{ left int64 }

func (b *budget) spend(n int64) {
	b.left -= n
	if b.left < 0 {
		panic(errBudget)
	}
}

type validator struct {
	b        budget
	res      *Result
	path     Path
	depth    int
	reprLeft int
}

func newValidator() *validator {
	return &validator{b: budget{stepLimit}, res: &Result{}, reprLeft: maxReprBytes}
}

// Validate checks instance against s as Python's
// Draft4Validator(schema).iter_errors(instance) does, and returns the
// errors it yields as a Result. The error is ErrTooComplex or ErrOverflow
// when the instance could not be validated, else nil.
func (s *Schema) Validate(instance *pyjson.Value) (*Result, error) {
	if instance == nil {
		return nil, errors.New("jsonschema: no instance")
	}
	return newValidator().run(s.root, instance)
}

func (v *validator) run(root *node, instance *pyjson.Value) (res *Result, err error) {
	defer func() {
		if r := recover(); r != nil {
			a, ok := r.(abort)
			if !ok {
				panic(r)
			}
			res, err = nil, a.err
		}
	}()
	v.eval(root, instance, true)
	return v.res, nil
}

// fail adds an error at the current path.
func (v *validator) fail(msg string) {
	v.res.Add(Error{Path: slices.Clone(v.path), Message: msg})
}

// repr is Python's repr(x), cut short once maxReprBytes are spent.
func (v *validator) repr(x *pyjson.Value) string {
	w := reprWriter{limit: max(v.reprLeft, minRepr)}
	w.value(x)
	v.reprLeft -= len(w.b)
	v.b.spend(int64(len(w.b)) / 64)
	return string(w.b)
}

// fields is x.Fields(), charged to the budget.
func (v *validator) fields(x *pyjson.Value) []pyjson.Member {
	v.b.spend(int64(len(x.Members)) / 8)
	return x.Fields()
}

// lookup returns a function that finds a member of the object x as
// Python's dict does (the last of repeated keys), in constant time for a
// large object.
func (v *validator) lookup(x *pyjson.Value) func(string) *pyjson.Value {
	if len(x.Members) <= 8 {
		return x.Get
	}
	v.b.spend(int64(len(x.Members)) / 8)
	m := make(map[string]*pyjson.Value, len(x.Members))
	for _, mem := range x.Members {
		m[mem.Key] = mem.Value
	}
	return func(k string) *pyjson.Value { return m[k] }
}

// descend applies n to a member or element of the current instance.
func (v *validator) descend(n *node, x *pyjson.Value, step Step, collect bool) bool {
	v.path = append(v.path, step)
	ok := v.eval(n, x, collect)
	v.path = v.path[:len(v.path)-1]
	return ok
}

func isType(x *pyjson.Value, t string) bool {
	switch t {
	case "array":
		return x.Kind == pyjson.Array
	case "boolean":
		return x.Kind == pyjson.Bool
	case "integer":
		// Draft 4: a float is no integer, not even 1.0.
		return x.Kind == pyjson.Int
	case "null":
		return x.Kind == pyjson.Null
	case "number":
		return x.Kind == pyjson.Int || x.Kind == pyjson.Float
	case "object":
		return x.Kind == pyjson.Object
	case "string":
		return x.Kind == pyjson.String
	}
	return false
}

// eval applies n to x. With collect, it adds every error to v.res as
// iter_errors yields them (in the same order); without, it adds nothing and
// stops at the first error. It reports whether x is valid.
func (v *validator) eval(n *node, x *pyjson.Value, collect bool) bool {
	v.b.spend(1)
	v.depth++
	defer func() { v.depth-- }()
	if v.depth > MaxDepth {
		panic(errBudget)
	}
	if n.ref != nil {
		return v.eval(n.ref, x, collect)
	}
	valid := true
	for _, kw := range n.kws {
		if !v.keyword(n, kw, x, collect) {
			if !collect {
				return false
			}
			valid = false
		}
	}
	return valid
}

// keyword applies one keyword of n to x.
func (v *validator) keyword(n *node, kw keyword, x *pyjson.Value, collect bool) bool {
	switch kw {
	case kwType:
		for _, t := range n.types {
			if isType(x, t) {
				return true
			}
		}
		if collect {
			names := make([]string, len(n.types))
			for i, t := range n.types {
				names[i] = strRepr(t)
			}
			v.fail(v.repr(x) + " is not of type " + strings.Join(names, ", "))
		}
		return false

	case kwEnum:
		for _, e := range n.enum.Elems {
			if pyEqual(e, x, &v.b) {
				return true
			}
		}
		if collect {
			v.fail(v.repr(x) + " is not one of " + v.repr(n.enum))
		}
		return false

	case kwProperties:
		if x.Kind != pyjson.Object {
			return true
		}
		valid := true
		get := v.lookup(x)
		for _, p := range n.props {
			if m := get(p.name); m != nil {
				if !v.descend(p.node, m, Key(p.name), collect) {
					if !collect {
						return false
					}
					valid = false
				}
			}
		}
		return valid

	case kwPatternProperties:
		if x.Kind != pyjson.Object {
			return true
		}
		valid := true
		fields := v.fields(x)
		for _, p := range n.patternProps {
			for _, m := range fields {
				if p.re.search(m.Key, &v.b) && !v.descend(p.node, m.Value, Key(m.Key), collect) {
					if !collect {
						return false
					}
					valid = false
				}
			}
		}
		return valid

	case kwAdditionalProperties:
		if x.Kind != pyjson.Object {
			return true
		}
		var extras []pyjson.Member
		for _, m := range v.fields(x) {
			if n.propNames[m.Key] || (n.patternsAny != nil && n.patternsAny.search(m.Key, &v.b)) {
				continue
			}
			extras = append(extras, m)
		}
		if n.addProps != nil {
			valid := true
			for _, m := range extras {
				if !v.descend(n.addProps, m.Value, Key(m.Key), collect) {
					if !collect {
						return false
					}
					valid = false
				}
			}
			return valid
		}
		if !n.addPropsFalse || len(extras) == 0 {
			return true
		}
		if collect {
			names := make([]string, len(extras))
			for i, m := range extras {
				names[i] = m.Key
			}
			slices.Sort(names)
			if n.hasPatterns {
				verb := "do"
				if len(names) == 1 {
					verb = "does"
				}
				patterns := make([]string, len(n.patternProps))
				for i, p := range n.patternProps {
					patterns[i] = p.src
				}
				slices.Sort(patterns)
				v.fail(joinReprs(names) + " " + verb + " not match any of the regexes: " + joinReprs(patterns))
			} else {
				v.fail("Additional properties are not allowed (" + joinReprs(names) + " " + wasWere(len(names)) + " unexpected)")
			}
		}
		return false

	case kwRequired:
		if x.Kind != pyjson.Object {
			return true
		}
		valid := true
		get := v.lookup(x)
		for _, name := range n.required {
			if get(name) == nil {
				if !collect {
					return false
				}
				valid = false
				v.fail(strRepr(name) + " is a required property")
			}
		}
		return valid

	case kwMinProperties, kwMaxProperties:
		if x.Kind != pyjson.Object {
			return true
		}
		size := int64(len(v.fields(x)))
		if kw == kwMinProperties && size < n.minProps {
			if collect {
				v.fail(v.repr(x) + pick(n.minProps == 1, " should be non-empty", " does not have enough properties"))
			}
			return false
		}
		if kw == kwMaxProperties && size > n.maxProps {
			if collect {
				v.fail(v.repr(x) + pick(n.maxProps == 0, " is expected to be empty", " has too many properties"))
			}
			return false
		}
		return true

	case kwDependencies:
		if x.Kind != pyjson.Object {
			return true
		}
		valid := true
		get := v.lookup(x)
		for _, d := range n.deps {
			if get(d.name) == nil {
				continue
			}
			if d.node != nil {
				if !v.eval(d.node, x, collect) {
					if !collect {
						return false
					}
					valid = false
				}
				continue
			}
			for _, each := range d.required {
				if get(each) == nil {
					if !collect {
						return false
					}
					valid = false
					v.fail(strRepr(each) + " is a dependency of " + strRepr(d.name))
				}
			}
		}
		return valid

	case kwItems:
		if x.Kind != pyjson.Array {
			return true
		}
		valid := true
		for i, e := range x.Elems {
			var sub *node
			if n.isItemsList {
				if i >= len(n.itemsList) {
					break
				}
				sub = n.itemsList[i]
			} else {
				sub = n.items
			}
			if !v.descend(sub, e, Index(i), collect) {
				if !collect {
					return false
				}
				valid = false
			}
		}
		return valid

	case kwAdditionalItems:
		// Only after an array of items: a single schema (or none, which
		// jsonschema takes as {}) leaves no additional items.
		if x.Kind != pyjson.Array || !n.isItemsList {
			return true
		}
		first := len(n.itemsList)
		if first >= len(x.Elems) {
			return true
		}
		if n.addItems != nil {
			valid := true
			for i := first; i < len(x.Elems); i++ {
				if !v.descend(n.addItems, x.Elems[i], Index(i), collect) {
					if !collect {
						return false
					}
					valid = false
				}
			}
			return valid
		}
		if !n.addItemsFalse {
			return true
		}
		if collect {
			extra := x.Elems[first:]
			reprs := make([]string, len(extra))
			for i, e := range extra {
				reprs[i] = v.repr(e)
			}
			v.fail("Additional items are not allowed (" + strings.Join(reprs, ", ") + " " + wasWere(len(extra)) + " unexpected)")
		}
		return false

	case kwMinItems, kwMaxItems:
		if x.Kind != pyjson.Array {
			return true
		}
		size := int64(len(x.Elems))
		if kw == kwMinItems && size < n.minItems {
			if collect {
				v.fail(v.repr(x) + pick(n.minItems == 1, " should be non-empty", " is too short"))
			}
			return false
		}
		if kw == kwMaxItems && size > n.maxItems {
			if collect {
				v.fail(v.repr(x) + pick(n.maxItems == 0, " is expected to be empty", " is too long"))
			}
			return false
		}
		return true

	case kwUniqueItems:
		if !n.uniqueItems || x.Kind != pyjson.Array || unique(x.Elems, &v.b) {
			return true
		}
		if collect {
			v.fail(v.repr(x) + " has non-unique elements")
		}
		return false

	case kwMinimum:
		if !isNumber(x) {
			return true
		}
		c := cmpNumber(numberOf(x), numberOf(n.minimum))
		if c > 0 || (c == 0 && !n.exclusiveMinimum) {
			return true
		}
		if collect {
			v.fail(v.repr(x) + " is " + pick(n.exclusiveMinimum, "less than or equal to", "less than") + " the minimum of " + v.repr(n.minimum))
		}
		return false

	case kwMaximum:
		if !isNumber(x) {
			return true
		}
		c := cmpNumber(numberOf(x), numberOf(n.maximum))
		if c < 0 || (c == 0 && !n.exclusiveMaximum) {
			return true
		}
		if collect {
			v.fail(v.repr(x) + " is " + pick(n.exclusiveMaximum, "greater than or equal to", "greater than") + " the maximum of " + v.repr(n.maximum))
		}
		return false

	case kwMultipleOf:
		if !isNumber(x) {
			return true
		}
		notMult, raises := notMultiple(numberOf(x), numberOf(n.multipleOf))
		if raises {
			panic(errOverflow)
		}
		if !notMult {
			return true
		}
		if collect {
			v.fail(v.repr(x) + " is not a multiple of " + v.repr(n.multipleOf))
		}
		return false

	case kwMinLength, kwMaxLength:
		if x.Kind != pyjson.String {
			return true
		}
		size := pyLen(x.Str)
		v.b.spend(size / 64)
		if kw == kwMinLength && size < n.minLength {
			if collect {
				v.fail(v.repr(x) + pick(n.minLength == 1, " should be non-empty", " is too short"))
			}
			return false
		}
		if kw == kwMaxLength && size > n.maxLength {
			if collect {
				v.fail(v.repr(x) + pick(n.maxLength == 0, " is expected to be empty", " is too long"))
			}
			return false
		}
		return true

	case kwPattern:
		if x.Kind != pyjson.String || n.pattern.search(x.Str, &v.b) {
			return true
		}
		if collect {
			v.fail(v.repr(x) + " does not match " + strRepr(n.patternSrc))
		}
		return false

	case kwFormat:
		if !n.formatRegex || x.Kind != pyjson.String {
			return true
		}
		if _, err := compileRegex(x.Str); err == nil || errors.Is(err, errRegexUnsupported) {
			return true
		}
		if collect {
			v.fail(v.repr(x) + " is not a 'regex'")
		}
		return false

	case kwAllOf:
		valid := true
		for _, sub := range n.allOf {
			if !v.eval(sub, x, collect) {
				if !collect {
					return false
				}
				valid = false
			}
		}
		return valid

	case kwAnyOf:
		for _, sub := range n.anyOf {
			if v.eval(sub, x, false) {
				return true
			}
		}
		if collect {
			v.fail(v.repr(x) + " is not valid under any of the given schemas")
		}
		return false

	case kwOneOf:
		first := -1
		for i, sub := range n.oneOf {
			if v.eval(sub, x, false) {
				first = i
				break
			}
		}
		if first < 0 {
			if collect {
				v.fail(v.repr(x) + " is not valid under any of the given schemas")
			}
			return false
		}
		var more []*node
		for _, sub := range n.oneOf[first+1:] {
			if v.eval(sub, x, false) {
				more = append(more, sub)
				if !collect {
					return false
				}
			}
		}
		if len(more) == 0 {
			return true
		}
		more = append(more, n.oneOf[first])
		reprs := make([]string, len(more))
		for i, sub := range more {
			reprs[i] = v.repr(sub.raw)
		}
		v.fail(v.repr(x) + " is valid under each of " + strings.Join(reprs, ", "))
		return false

	case kwNot:
		if !v.eval(n.not, x, false) {
			return true
		}
		if collect {
			v.fail(v.repr(x) + " should not be valid under " + v.repr(n.not.raw))
		}
		return false
	}
	return true
}

// unique reports whether no two of elems are equal, as jsonschema's
// uniqueItems compares them.
func unique(elems []*pyjson.Value, b *budget) bool {
	seen := make(map[string]struct{}, len(elems))
	var key []byte
	for _, e := range elems {
		key = equalKey(key[:0], e, b)
		if _, ok := seen[string(key)]; ok {
			return false
		}
		seen[string(key)] = struct{}{}
	}
	return true
}

func joinReprs(ss []string) string {
	out := make([]string, len(ss))
	for i, s := range ss {
		out[i] = strRepr(s)
	}
	return strings.Join(out, ", ")
}

func wasWere(n int) string {
	if n == 1 {
		return "was"
	}
	return "were"
}

func pick(cond bool, a, b string) string {
	if cond {
		return a
	}
	return b
}
