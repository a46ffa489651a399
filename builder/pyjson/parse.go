package pyjson

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// Kind is the Python type json.loads gives a JSON value.
type Kind uint8

// The kinds of values. Int and Float are apart because Python keeps them
// apart: json.loads gives an int for "100" and a float for "1E2", and dumps
// prints "100" and "100.0".
const (
	Null Kind = iota
	Bool
	Int
	Float
	String
	Array
	Object
)

func (k Kind) String() string {
	switch k {
	case Null:
		return "null"
	case Bool:
		return "boolean"
	case Int:
		return "integer"
	case Float:
		return "float"
	case String:
		return "string"
	case Array:
		return "array"
	case Object:
		return "object"
	}
	return fmt.Sprintf("Kind(%d)", uint8(k))
}

// Value is one JSON value as Python's json.loads holds it.
type Value struct {
	Kind Kind
	// Bool is the value of a Bool.
	Bool bool
	// Int holds an Int's decimal digits, with a leading '-' when negative;
	// never "-0", since Python's int has no negative zero.
	Int string
	// Float is the value of a Float, ±Inf where the text overflows, as
	// Python's float() gives.
	Float float64
	// Str is a String's text in UTF-8, except that lone surrogates from
	// escapes such as "\ud800" (which Python keeps) are in WTF-8, the same
	// three-byte form as other BMP code points. Byte order of Str is thus
	// code point order, the order Python sorts keys in.
	Str string
	// Elems are an Array's elements.
	Elems []*Value
	// Members are an Object's members in document order, duplicate keys
	// included; Get and Fields resolve duplicates as Python's dict does.
	Members []Member
	// Raw is the value's text in the source, without surrounding space.
	Raw []byte
}

// Member is one key and value of an Object, as written.
type Member struct {
	Key   string // as Value.Str
	Value *Value
}

// Get returns the value of key in an Object, the last one where the key is
// repeated (Python's dict keeps the last), or nil.
func (v *Value) Get(key string) *Value {
	for i := len(v.Members) - 1; i >= 0; i-- {
		if v.Members[i].Key == key {
			return v.Members[i].Value
		}
	}
	return nil
}

// Fields returns an Object's members as Python's dict holds them: each key
// once, at the position of its first occurrence, with the value of its last.
func (v *Value) Fields() []Member {
	fields := make([]Member, 0, len(v.Members))
	index := make(map[string]int, len(v.Members))
	for _, m := range v.Members {
		if i, ok := index[m.Key]; ok {
			fields[i].Value = m.Value
			continue
		}
		index[m.Key] = len(fields)
		fields = append(fields, m)
	}
	return fields
}

// MaxDepth is the deepest nesting of arrays and objects Parse accepts.
// Python's json.loads and json.dumps fail with RecursionError near 1000
// levels (less when called from deeper in a program, and the limit differs
// between Python versions); staying well below means forge never prints an
// ID for a document Python could not have handled.
const MaxDepth = 512

// MaxValues is the most values (scalars, arrays and objects, keys not
// counted) Parse accepts in one document. A Value takes over a hundred
// bytes, so without a bound a document of small values ("[0,0,0,...") takes
// sixty times its size: gigabytes for 64 MiB. Python has no such limit;
// this one is a hundred times what an osbuild manifest with thousands of
// packages in its sources holds, and bounds a parse to about 150 MiB of
// Values.
const MaxValues = 1 << 20

// MaxIntDigits is the most digits an integer may have: Python 3.11 and later
// (and the 3.x security releases) refuse to convert longer digit strings to
// int by default, so json.loads fails on them.
const MaxIntDigits = 4300

// Errors that mark input Python handles differently from plain JSON; a
// *SyntaxError wraps them.
var (
	// ErrNonFinite: NaN, Infinity and -Infinity, which Python's json.loads
	// accepts but which are not JSON, so a Go stage could not read them.
	ErrNonFinite = errors.New("NaN and Infinity are not JSON")
	// ErrIntTooLong: an integer over MaxIntDigits digits.
	ErrIntTooLong = fmt.Errorf("integer has more than %d digits, which Python refuses to convert", MaxIntDigits)
	// ErrTooDeep: nesting deeper than MaxDepth.
	ErrTooDeep = fmt.Errorf("nesting deeper than %d levels", MaxDepth)
	// ErrTooManyValues: more than MaxValues values.
	ErrTooManyValues = fmt.Errorf("more than %d values (arrays, objects, strings, numbers, ...)", MaxValues)
)

// SyntaxError is input Parse does not accept, with where it stopped.
type SyntaxError struct {
	Offset int // byte offset in the input
	Line   int // 1-based
	Column int // 1-based, in bytes
	Msg    string
	Err    error // one of the Err* values above, or nil
}

func (e *SyntaxError) Error() string {
	return fmt.Sprintf("invalid JSON at line %d, column %d (byte %d): %s", e.Line, e.Column, e.Offset, e.Msg)
}

func (e *SyntaxError) Unwrap() error { return e.Err }

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// Parse reads one JSON document as Python's json.loads(text) would, text
// being the input decoded as strict UTF-8.
func Parse(data []byte) (*Value, error) {
	p := &parser{data: data}
	if bytes.HasPrefix(data, utf8BOM) {
		// Python reads a manifest as text, where the BOM is a character
		// that json.loads refuses.
		return nil, p.errorf("UTF-8 byte order mark before the document")
	}
	p.skipSpace()
	v, err := p.value()
	if err != nil {
		return nil, err
	}
	p.skipSpace()
	if p.pos != len(data) {
		return nil, p.errorf("extra data after the document")
	}
	return v, nil
}

type parser struct {
	data   []byte
	pos    int
	depth  int
	values int // values begun so far
}

func (p *parser) errorf(format string, args ...any) *SyntaxError {
	return p.errorAt(p.pos, nil, format, args...)
}

func (p *parser) errorAt(offset int, err error, format string, args ...any) *SyntaxError {
	before := p.data[:offset]
	line := bytes.Count(before, []byte{'\n'}) + 1
	column := offset - (bytes.LastIndexByte(before, '\n') + 1) + 1
	return &SyntaxError{Offset: offset, Line: line, Column: column, Msg: fmt.Sprintf(format, args...), Err: err}
}

// skipSpace skips the four characters JSON (and Python) count as space.
func (p *parser) skipSpace() {
	for p.pos < len(p.data) {
		switch p.data[p.pos] {
		case ' ', '\t', '\n', '\r':
			p.pos++
		default:
			return
		}
	}
}

// describe names the byte at pos for an error message.
func (p *parser) describe() string {
	if p.pos >= len(p.data) {
		return "end of input"
	}
	r, _ := utf8.DecodeRune(p.data[p.pos:])
	return fmt.Sprintf("%q", r)
}

func (p *parser) value() (*Value, error) {
	if p.pos >= len(p.data) {
		return nil, p.errorf("want a value, got end of input")
	}
	if p.values++; p.values > MaxValues {
		return nil, p.errorAt(p.pos, ErrTooManyValues, "%v", ErrTooManyValues)
	}
	start := p.pos
	var v *Value
	var err error
	switch c := p.data[p.pos]; {
	case c == '{':
		v, err = p.object()
	case c == '[':
		v, err = p.array()
	case c == '"':
		var s string
		s, err = p.string()
		v = &Value{Kind: String, Str: s}
	case c == '-' || (c >= '0' && c <= '9'):
		v, err = p.number()
	case c == 't':
		v, err = p.literal("true", &Value{Kind: Bool, Bool: true})
	case c == 'f':
		v, err = p.literal("false", &Value{Kind: Bool})
	case c == 'n':
		v, err = p.literal("null", &Value{Kind: Null})
	case c == 'N' || c == 'I':
		return nil, p.errorAt(p.pos, ErrNonFinite, "%v", ErrNonFinite)
	default:
		return nil, p.errorf("want a value, got %s", p.describe())
	}
	if err != nil {
		return nil, err
	}
	v.Raw = p.data[start:p.pos]
	return v, nil
}

func (p *parser) literal(word string, v *Value) (*Value, error) {
	if !bytes.HasPrefix(p.data[p.pos:], []byte(word)) {
		return nil, p.errorf("want a value, got %s", p.describe())
	}
	p.pos += len(word)
	return v, nil
}

func (p *parser) enter() error {
	p.depth++
	if p.depth > MaxDepth {
		return p.errorAt(p.pos, ErrTooDeep, "%v", ErrTooDeep)
	}
	return nil
}

func (p *parser) object() (*Value, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	p.pos++ // '{'
	v := &Value{Kind: Object, Members: []Member{}}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == '}' {
		p.pos++
		return v, nil
	}
	for {
		if p.pos >= len(p.data) || p.data[p.pos] != '"' {
			return nil, p.errorf("want a key in double quotes, got %s", p.describe())
		}
		key, err := p.string()
		if err != nil {
			return nil, err
		}
		p.skipSpace()
		if p.pos >= len(p.data) || p.data[p.pos] != ':' {
			return nil, p.errorf("want ':' after a key, got %s", p.describe())
		}
		p.pos++
		p.skipSpace()
		elem, err := p.value()
		if err != nil {
			return nil, err
		}
		v.Members = append(v.Members, Member{Key: key, Value: elem})
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("want ',' or '}' in an object, got end of input")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
		case '}':
			p.pos++
			return v, nil
		default:
			return nil, p.errorf("want ',' or '}' in an object, got %s", p.describe())
		}
	}
}

func (p *parser) array() (*Value, error) {
	if err := p.enter(); err != nil {
		return nil, err
	}
	defer func() { p.depth-- }()
	p.pos++ // '['
	v := &Value{Kind: Array, Elems: []*Value{}}
	p.skipSpace()
	if p.pos < len(p.data) && p.data[p.pos] == ']' {
		p.pos++
		return v, nil
	}
	for {
		elem, err := p.value()
		if err != nil {
			return nil, err
		}
		v.Elems = append(v.Elems, elem)
		p.skipSpace()
		if p.pos >= len(p.data) {
			return nil, p.errorf("want ',' or ']' in an array, got end of input")
		}
		switch p.data[p.pos] {
		case ',':
			p.pos++
			p.skipSpace()
		case ']':
			p.pos++
			return v, nil
		default:
			return nil, p.errorf("want ',' or ']' in an array, got %s", p.describe())
		}
	}
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// number reads -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?, the grammar
// of Python's scanner: with a fraction or an exponent it is a float, else
// an int.
func (p *parser) number() (*Value, error) {
	start := p.pos
	if p.data[p.pos] == '-' {
		p.pos++
		if bytes.HasPrefix(p.data[p.pos:], []byte("Infinity")) {
			return nil, p.errorAt(start, ErrNonFinite, "%v", ErrNonFinite)
		}
	}
	switch {
	case p.pos < len(p.data) && p.data[p.pos] == '0':
		p.pos++
	case p.pos < len(p.data) && isDigit(p.data[p.pos]):
		for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
			p.pos++
		}
	default:
		return nil, p.errorf("want a digit in a number, got %s", p.describe())
	}
	isFloat := false
	if p.pos < len(p.data) && p.data[p.pos] == '.' {
		isFloat = true
		p.pos++
		if p.pos >= len(p.data) || !isDigit(p.data[p.pos]) {
			return nil, p.errorf("want a digit after '.', got %s", p.describe())
		}
		for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
			p.pos++
		}
	}
	if p.pos < len(p.data) && (p.data[p.pos] == 'e' || p.data[p.pos] == 'E') {
		isFloat = true
		p.pos++
		if p.pos < len(p.data) && (p.data[p.pos] == '+' || p.data[p.pos] == '-') {
			p.pos++
		}
		if p.pos >= len(p.data) || !isDigit(p.data[p.pos]) {
			return nil, p.errorf("want a digit in an exponent, got %s", p.describe())
		}
		for p.pos < len(p.data) && isDigit(p.data[p.pos]) {
			p.pos++
		}
	}
	text := string(p.data[start:p.pos])
	if isFloat {
		f, err := strconv.ParseFloat(text, 64)
		// Out of range is no error for Python's float(): it gives ±inf
		// or (for underflow) zero, and so does ParseFloat alongside
		// ErrRange.
		if err != nil && !errors.Is(err, strconv.ErrRange) {
			return nil, p.errorAt(start, nil, "number %s: %v", text, err)
		}
		return &Value{Kind: Float, Float: f}, nil
	}
	digits := len(text)
	if text[0] == '-' {
		digits--
	}
	if digits > MaxIntDigits {
		return nil, p.errorAt(start, ErrIntTooLong, "%v", ErrIntTooLong)
	}
	if text == "-0" {
		text = "0"
	}
	return &Value{Kind: Int, Int: text}, nil
}

func hexValue(c byte) (rune, bool) {
	switch {
	case c >= '0' && c <= '9':
		return rune(c - '0'), true
	case c >= 'a' && c <= 'f':
		return rune(c-'a') + 10, true
	case c >= 'A' && c <= 'F':
		return rune(c-'A') + 10, true
	}
	return 0, false
}

// hex4 reads the four hex digits of a \u escape at pos.
func (p *parser) hex4(pos int) (rune, bool) {
	if pos+4 > len(p.data) {
		return 0, false
	}
	var r rune
	for _, c := range p.data[pos : pos+4] {
		d, ok := hexValue(c)
		if !ok {
			return 0, false
		}
		r = r<<4 | d
	}
	return r, true
}

func isHighSurrogate(r rune) bool { return r >= 0xD800 && r <= 0xDBFF }
func isLowSurrogate(r rune) bool  { return r >= 0xDC00 && r <= 0xDFFF }

// string reads a string at pos (on its opening quote) and returns its text
// in WTF-8. The text takes one allocation of at most its source's length:
// a string of 100 MB costs 100 MB, not the several times that growing a
// buffer and copying it into a string would.
func (p *parser) string() (string, error) {
	p.pos++ // opening quote
	start := p.pos
	// Fast path: printable ASCII without escapes.
	for p.pos < len(p.data) {
		c := p.data[p.pos]
		if c == '"' {
			s := string(p.data[start:p.pos])
			p.pos++
			return s, nil
		}
		if c == '\\' || c < 0x20 || c >= 0x80 {
			break
		}
		p.pos++
	}
	// The text is never longer than its source (an escape of n bytes
	// stands for fewer), so the source up to the closing quote bounds
	// it; an unterminated string is reported below.
	end := p.pos
	for end < len(p.data) && p.data[end] != '"' {
		if p.data[end] == '\\' {
			end++
		}
		end++
	}
	var b strings.Builder
	b.Grow(min(end, len(p.data)) - start)
	b.Write(p.data[start:p.pos])
	for {
		if p.pos >= len(p.data) {
			return "", p.errorf("unterminated string")
		}
		c := p.data[p.pos]
		switch {
		case c == '"':
			p.pos++
			return b.String(), nil
		case c < 0x20:
			// Python's json.loads is strict by default: control
			// characters must be escaped.
			return "", p.errorf("control character %#02x in a string", c)
		case c == '\\':
			if err := p.escape(&b); err != nil {
				return "", err
			}
		case c < 0x80:
			b.WriteByte(c)
			p.pos++
		default:
			r, size := utf8.DecodeRune(p.data[p.pos:])
			if r == utf8.RuneError && size == 1 {
				// Python would fail decoding the text before parsing.
				return "", p.errorf("invalid UTF-8 byte %#02x", c)
			}
			b.Write(p.data[p.pos : p.pos+size])
			p.pos += size
		}
	}
}

// escape reads the escape at pos (on its backslash) and writes its text to
// b.
func (p *parser) escape(b *strings.Builder) error {
	if p.pos+1 >= len(p.data) {
		return p.errorf("unterminated string")
	}
	c := p.data[p.pos+1]
	switch c {
	case '"', '\\', '/':
	case 'b':
		c = '\b'
	case 'f':
		c = '\f'
	case 'n':
		c = '\n'
	case 'r':
		c = '\r'
	case 't':
		c = '\t'
	case 'u':
		return p.unicodeEscape(b)
	default:
		return p.errorf("invalid escape \\%c", c)
	}
	p.pos += 2
	b.WriteByte(c)
	return nil
}

// unicodeEscape reads the \uXXXX escape at pos (and the low surrogate
// after it, if it makes a pair) and writes its code point to b.
func (p *parser) unicodeEscape(b *strings.Builder) error {
	r, ok := p.hex4(p.pos + 2)
	if !ok {
		return p.errorf("invalid \\uXXXX escape")
	}
	p.pos += 6
	// As Python does: a high surrogate directly followed by an escaped
	// low surrogate is one code point; any other surrogate stays alone.
	if isHighSurrogate(r) && p.pos+1 < len(p.data) && p.data[p.pos] == '\\' && p.data[p.pos+1] == 'u' {
		if low, ok := p.hex4(p.pos + 2); ok && isLowSurrogate(low) {
			p.pos += 6
			r = 0x10000 + (r-0xD800)<<10 + (low - 0xDC00)
		}
	}
	if r >= 0xD800 && r <= 0xDFFF {
		// WTF-8: a surrogate as if it were an ordinary BMP code point
		// (which WriteRune refuses to write).
		b.Write([]byte{0xE0 | byte(r>>12), 0x80 | byte(r>>6)&0x3F, 0x80 | byte(r)&0x3F})
		return nil
	}
	b.WriteRune(r)
	return nil
}

// decodeWTF8 decodes the first code point of s, surrogates included. Bytes
// that are not WTF-8 decode as U+FFFD, one byte each.
func decodeWTF8(s string) (rune, int) {
	r, size := utf8.DecodeRuneInString(s)
	if r != utf8.RuneError || size != 1 {
		return r, size
	}
	if len(s) >= 3 && s[0] == 0xED && s[1] >= 0xA0 && s[1] <= 0xBF && s[2] >= 0x80 && s[2] <= 0xBF {
		return rune(s[0]&0x0F)<<12 | rune(s[1]&0x3F)<<6 | rune(s[2]&0x3F), 3
	}
	return utf8.RuneError, 1
}
