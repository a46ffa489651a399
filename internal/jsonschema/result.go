package jsonschema

import (
	"slices"
	"strconv"
	"strings"
)

// Step is one step of a Path: the key of an object member or the index of
// an array element.
type Step struct {
	Key     string // when !IsIndex
	Index   int    // when IsIndex
	IsIndex bool
}

// Key is the step to the member key of an object.
func Key(key string) Step { return Step{Key: key} }

// Index is the step to element i of an array.
func Index(i int) Step { return Step{Index: i, IsIndex: true} }

// Path leads from the root of a document to one of its values.
type Path []Step

// String formats p as osbuild's ValidationError.id does: "." for the
// root, ".key" for a member (".'a key'" when the key has a space), "[i]"
// for an element, so .pipelines[0].stages[1].options.
func (p Path) String() string {
	if len(p) == 0 {
		return "."
	}
	var b strings.Builder
	for _, s := range p {
		if s.IsIndex {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.Index))
			b.WriteByte(']')
			continue
		}
		b.WriteByte('.')
		if strings.Contains(s.Key, " ") {
			b.WriteByte('\'')
			b.WriteString(s.Key)
			b.WriteByte('\'')
		} else {
			b.WriteString(s.Key)
		}
	}
	return b.String()
}

// Error is one way an instance fails its schema: where, and why.
type Error struct {
	Path    Path
	Message string
}

// String formats e as osbuild prints a ValidationError.
func (e Error) String() string {
	return "ValidationError: " + e.Message + " [" + e.Path.String() + "]"
}

// Result is a set of Errors, as osbuild's ValidationResult: an error is
// there once however many times it was found, two errors being the same
// when their paths print the same and their messages are equal. The zero
// Result is empty and ready to use.
type Result struct {
	errs []Error
	seen map[string]struct{}
}

// Add puts e into r, unless r holds it already.
func (r *Result) Add(e Error) {
	key := e.Path.String() + "\x00" + e.Message
	if _, ok := r.seen[key]; ok {
		return
	}
	if r.seen == nil {
		r.seen = map[string]struct{}{}
	}
	r.seen[key] = struct{}{}
	r.errs = append(r.errs, e)
}

// Merge adds the errors of other to r with prefix put before their paths,
// as osbuild's ValidationResult.merge does with a module's result.
func (r *Result) Merge(other *Result, prefix Path) {
	if other == nil {
		return
	}
	for _, e := range other.errs {
		p := make(Path, 0, len(prefix)+len(e.Path))
		p = append(append(p, prefix...), e.Path...)
		r.Add(Error{Path: p, Message: e.Message})
	}
}

// Valid reports whether r holds no errors.
func (r *Result) Valid() bool { return r == nil || len(r.errs) == 0 }

// Len is the number of errors in r.
func (r *Result) Len() int {
	if r == nil {
		return 0
	}
	return len(r.errs)
}

// Errors returns the errors of r sorted by path, as printed, the order in
// which osbuild iterates a ValidationResult; errors on one path (whose
// order osbuild leaves to its set) are sorted by message.
func (r *Result) Errors() []Error {
	if r == nil {
		return nil
	}
	type keyed struct {
		id string
		e  Error
	}
	ks := make([]keyed, len(r.errs))
	for i, e := range r.errs {
		ks[i] = keyed{e.Path.String(), e}
	}
	slices.SortStableFunc(ks, func(a, b keyed) int {
		if c := strings.Compare(a.id, b.id); c != 0 {
			return c
		}
		return strings.Compare(a.e.Message, b.e.Message)
	})
	out := make([]Error, len(ks))
	for i, k := range ks {
		out[i] = k.e
	}
	return out
}
