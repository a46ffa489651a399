package pyjson

import (
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
)

// Dumps returns what Python prints for json.dumps(json.loads(data),
// sort_keys=True), or the error of Parse.
func Dumps(data []byte) ([]byte, error) {
	v, err := Parse(data)
	if err != nil {
		return nil, err
	}
	return v.AppendDumps(nil), nil
}

// AppendDumps appends json.dumps(v, sort_keys=True) as Python prints it.
func (v *Value) AppendDumps(dst []byte) []byte {
	d := dumper{buf: dst}
	d.value(v)
	return d.buf
}

// AppendDumpsUnsorted appends json.dumps(v) as Python prints it without
// sort_keys: object members in the order Fields gives them (a repeated
// key where it first appeared, with its last value, as Python's dict
// keeps it).
func (v *Value) AppendDumpsUnsorted(dst []byte) []byte {
	d := dumper{buf: dst, unsorted: true}
	d.value(v)
	return d.buf
}

// WriteDumps writes json.dumps(v, sort_keys=True) to w, as AppendDumps
// would append it, a piece at a time: the text of a large value (three
// times the length of its source, where a string is all non-ASCII) never
// sits in memory whole. It returns w's first error.
func (v *Value) WriteDumps(w io.Writer) error {
	// No buffer to start with: most values are short (a stage ID is one
	// WriteDumps), and append grows it to about flushSize for long ones.
	d := dumper{w: w}
	d.value(v)
	d.flush()
	return d.err
}

// flushSize is how much a dumper with a writer holds before it writes.
const flushSize = 32 << 10

// dumper appends json.dumps text to buf and, when w is set, hands buf to w
// whenever it holds flushSize bytes.
type dumper struct {
	buf []byte
	w   io.Writer
	err error
	// unsorted keeps object members in document order (json.dumps
	// without sort_keys, as osbuild prints --inspect), each key once as
	// Fields gives them.
	unsorted bool
}

func (d *dumper) maybeFlush() {
	if d.w != nil && len(d.buf) >= flushSize {
		d.flush()
	}
}

func (d *dumper) flush() {
	if d.w != nil && len(d.buf) > 0 && d.err == nil {
		_, d.err = d.w.Write(d.buf)
	}
	d.buf = d.buf[:0]
}

func (d *dumper) value(v *Value) {
	switch v.Kind {
	case Null:
		d.buf = append(d.buf, "null"...)
	case Bool:
		if v.Bool {
			d.buf = append(d.buf, "true"...)
		} else {
			d.buf = append(d.buf, "false"...)
		}
	case Int:
		d.buf = append(d.buf, v.Int...)
	case Float:
		d.buf = AppendFloat(d.buf, v.Float)
	case String:
		d.string(v.Str)
	case Array:
		d.buf = append(d.buf, '[')
		for i, e := range v.Elems {
			if i > 0 {
				d.buf = append(d.buf, ", "...)
			}
			d.value(e)
		}
		d.buf = append(d.buf, ']')
	case Object:
		fields := v.Fields()
		if !d.unsorted {
			// Byte order of WTF-8 is code point order, which is how Python
			// compares str (not UTF-16 units, as JavaScript would).
			sort.Slice(fields, func(i, j int) bool { return fields[i].Key < fields[j].Key })
		}
		d.buf = append(d.buf, '{')
		for i, f := range fields {
			if i > 0 {
				d.buf = append(d.buf, ", "...)
			}
			d.string(f.Key)
			d.buf = append(d.buf, ": "...)
			d.value(f.Value)
		}
		d.buf = append(d.buf, '}')
	default:
		panic("pyjson: Value of unknown kind " + v.Kind.String())
	}
	d.maybeFlush()
}

const hexDigits = "0123456789abcdef"

func appendU4(dst []byte, r rune) []byte {
	return append(dst, '\\', 'u', hexDigits[r>>12&0xF], hexDigits[r>>8&0xF], hexDigits[r>>4&0xF], hexDigits[r&0xF])
}

// AppendString appends s as json.dumps prints a str with ensure_ascii:
// printable ASCII as is, the short escapes \" \\ \n \r \t \b \f, anything
// else as lowercase \uXXXX (a surrogate pair above U+FFFF). s is UTF-8 or
// WTF-8 (see Value.Str); a byte that is neither is written as \ufffd.
func AppendString(dst []byte, s string) []byte {
	d := dumper{buf: dst}
	d.string(s)
	return d.buf
}

func (d *dumper) string(s string) {
	d.buf = append(d.buf, '"')
	for i := 0; i < len(s); {
		d.maybeFlush()
		c := s[i]
		if c >= 0x20 && c < 0x7F && c != '"' && c != '\\' {
			// A run of printable ASCII is written as it is, up to
			// flushSize bytes at a time.
			j := i + 1
			for j < len(s) && j-i < flushSize && s[j] >= 0x20 && s[j] < 0x7F && s[j] != '"' && s[j] != '\\' {
				j++
			}
			d.buf = append(d.buf, s[i:j]...)
			i = j
			continue
		}
		if c == '"' || c == '\\' {
			d.buf = append(d.buf, '\\', c)
			i++
			continue
		}
		if esc := shortEscape(c); esc != "" {
			d.buf = append(d.buf, esc...)
			i++
			continue
		}
		r, size := decodeWTF8(s[i:])
		i += size
		if r > 0xFFFF {
			r -= 0x10000
			d.buf = appendU4(d.buf, 0xD800+r>>10)
			d.buf = appendU4(d.buf, 0xDC00+r&0x3FF)
			continue
		}
		d.buf = appendU4(d.buf, r)
	}
	d.buf = append(d.buf, '"')
}

// shortEscape is the two-character escape json.dumps writes for c, or "".
func shortEscape(c byte) string {
	switch c {
	case '\n':
		return `\n`
	case '\r':
		return `\r`
	case '\t':
		return `\t`
	case '\b':
		return `\b`
	case '\f':
		return `\f`
	}
	return ""
}

// AppendFloat appends f as Python's float.__repr__ (as json.dumps uses it):
// the shortest digits that read back as f, in positional notation when the
// decimal exponent is from -4 to 15 (with ".0" for a whole number) and in
// scientific notation with a signed exponent of at least two digits
// otherwise; infinities as json.dumps writes them.
func AppendFloat(dst []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(dst, "Infinity"...)
	case math.IsInf(f, -1):
		return append(dst, "-Infinity"...)
	case math.IsNaN(f):
		return append(dst, "NaN"...)
	case f == 0:
		if math.Signbit(f) {
			return append(dst, "-0.0"...)
		}
		return append(dst, "0.0"...)
	}
	// Go's shortest formatting picks the same digits as Python's
	// (David Gay's mode 0): the fewest that round-trip, closest to f.
	sci := strconv.FormatFloat(f, 'e', -1, 64) // [-]d[.ddd]e±dd
	if sci[0] == '-' {
		dst = append(dst, '-')
		sci = sci[1:]
	}
	mantissa, exponent, _ := strings.Cut(sci, "e")
	digits := strings.Replace(mantissa, ".", "", 1)
	exp, _ := strconv.Atoi(exponent)
	// decpt is where the decimal point goes: f = 0.digits × 10^decpt.
	decpt := exp + 1
	if decpt > -4 && decpt <= 16 {
		switch {
		case decpt <= 0:
			dst = append(dst, "0."...)
			dst = append(dst, strings.Repeat("0", -decpt)...)
			return append(dst, digits...)
		case decpt >= len(digits):
			dst = append(dst, digits...)
			dst = append(dst, strings.Repeat("0", decpt-len(digits))...)
			return append(dst, ".0"...)
		default:
			dst = append(dst, digits[:decpt]...)
			dst = append(dst, '.')
			return append(dst, digits[decpt:]...)
		}
	}
	dst = append(dst, digits[0])
	if len(digits) > 1 {
		dst = append(dst, '.')
		dst = append(dst, digits[1:]...)
	}
	dst = append(dst, 'e')
	if exp < 0 {
		dst = append(dst, '-')
		exp = -exp
	} else {
		dst = append(dst, '+')
	}
	if exp < 10 {
		dst = append(dst, '0')
	}
	return strconv.AppendInt(dst, int64(exp), 10)
}
