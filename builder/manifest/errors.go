package manifest

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
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

// Errors are the problems found, in a fixed order: for each pipeline,
// unknown keys in document order, then its build, its stages, its
// assembler. Past maxErrors (100) problems, one more *Error, with an empty
// Path, says how many were not listed. Every error Parse, SetDefaultBuild
// and CheckLibdir return is an Errors of at least one *Error, so errors.As
// finds both an Errors and its first *Error.
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

// maxErrors is the most problems an Errors lists one by one; the rest
// are counted in one more *Error. A manifest of a million bad stages is
// told what is wrong with the first ones, in memory that does not grow
// with the number of stages.
const maxErrors = 100

// problems collects Errors as validation goes.
type problems struct {
	errs Errors
	more int // problems past maxErrors
}

func (p *problems) add(path string, err error, format string, args ...any) {
	if len(p.errs) >= maxErrors {
		p.more++
		return
	}
	p.errs = append(p.errs, &Error{Path: path, Msg: fmt.Sprintf(format, args...), Err: err})
}

func (p *problems) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	if p.more > 0 {
		return append(p.errs, &Error{Msg: fmt.Sprintf("%d more problems not listed", p.more)})
	}
	return p.errs
}

// maxKeyInPath is the most bytes of a key that a path shows.
const maxKeyInPath = 64

// join appends an object key to a JSON path: as ".key" where the key is a
// plain word, else as a quoted ["key"], so that paths stay unambiguous for
// keys with dots (source names) or odd characters. A key longer than
// maxKeyInPath shows its start and its length, ["abc"...+N bytes], so that
// a huge key does not make a huge message.
func join(path, key string) string {
	if len(key) > maxKeyInPath {
		cut := maxKeyInPath
		for cut > 0 && !utf8.RuneStart(key[cut]) {
			cut--
		}
		return path + "[" + strconv.Quote(key[:cut]) + "..." + "+" + strconv.Itoa(len(key)-cut) + " bytes]"
	}
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
