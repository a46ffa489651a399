package pyjson

import (
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
	switch v.Kind {
	case Null:
		return append(dst, "null"...)
	case Bool:
		if v.Bool {
			return append(dst, "true"...)
		}
		return append(dst, "false"...)
	case Int:
		return append(dst, v.Int...)
	case Float:
		return AppendFloat(dst, v.Float)
	case String:
		return AppendString(dst, v.Str)
	case Array:
		dst = append(dst, '[')
		for i, e := range v.Elems {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = e.AppendDumps(dst)
		}
		return append(dst, ']')
	case Object:
		fields := v.Fields()
		// Byte order of WTF-8 is code point order, which is how Python
		// compares str (not UTF-16 units, as JavaScript would).
		sort.Slice(fields, func(i, j int) bool { return fields[i].Key < fields[j].Key })
		dst = append(dst, '{')
		for i, f := range fields {
			if i > 0 {
				dst = append(dst, ", "...)
			}
			dst = AppendString(dst, f.Key)
			dst = append(dst, ": "...)
			dst = f.Value.AppendDumps(dst)
		}
		return append(dst, '}')
	}
	panic("pyjson: Value of unknown kind " + v.Kind.String())
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
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c < 0x7F {
			if c == '"' || c == '\\' {
				dst = append(dst, '\\')
			}
			dst = append(dst, c)
			i++
			continue
		}
		if esc := shortEscape(c); esc != "" {
			dst = append(dst, esc...)
			i++
			continue
		}
		r, size := decodeWTF8(s[i:])
		i += size
		if r > 0xFFFF {
			r -= 0x10000
			dst = appendU4(dst, 0xD800+r>>10)
			dst = appendU4(dst, 0xDC00+r&0x3FF)
			continue
		}
		dst = appendU4(dst, r)
	}
	return append(dst, '"')
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
