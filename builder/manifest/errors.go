package manifest

import (
	"fmt"
	"strconv"
	"strings"
)

// Error is one problem with a manifest, at a JSON path.
type Error struct {
	// Path is the JSON path of the value concerned, like
	// "build.stages[2].name"; "" for the document as a whole.
	Path string
	// Msg says what is wrong.
	Msg string
	// Err is the underlying error (a *pyjson.SyntaxError, an
	// *fs.PathError), or nil.
	Err error
}

func (e *Error) Error() string {
	if e.Path == "" {
		return "manifest: " + e.Msg
	}
	return e.Path + ": " + e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Errors are all the problems found, in a fixed order: for each pipeline,
// unknown keys in document order, then its build, its stages, its
// assembler. Every error Parse, SetDefaultBuild and CheckLibdir return is
// an Errors of at least one *Error, so errors.As finds both an Errors and
// its first *Error.
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives errors.Is and errors.As every problem.
func (es Errors) Unwrap() []error {
	errs := make([]error, len(es))
	for i, e := range es {
		errs[i] = e
	}
	return errs
}

// problems collects Errors as validation goes.
type problems struct {
	errs Errors
}

func (p *problems) add(path string, err error, format string, args ...any) {
	p.errs = append(p.errs, &Error{Path: path, Msg: fmt.Sprintf(format, args...), Err: err})
}

func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	return p.errs
}

// join appends an object key to a JSON path: as ".key" where the key is a
// plain word, else as a quoted ["key"], so that paths stay unambiguous for
// keys with dots (source names) or odd characters.
func join(path, key string) string {
	plain := key != ""
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	switch {
	case !plain:
		return path + "[" + strconv.Quote(key) + "]"
	case path == "":
		return key
	default:
		return path + "." + key
	}
}

// index appends an array index to a JSON path.
func index(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}
