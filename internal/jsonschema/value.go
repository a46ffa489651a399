package jsonschema

import (
	"math"
	"math/big"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/forge-build/forge/builder/pyjson"
)

// This file holds what Python does with the values json.loads gives:
// len() of a str, comparing and dividing int and float, == as jsonschema's
// equal, and repr() for messages.

// decodeWTF8 decodes the first code point of s as pyjson stores strings:
// UTF-8, with lone surrogates in the same three-byte form as other BMP
// code points. Bytes that are neither decode as U+FFFD, one byte each.
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

// wtf8Runes is s's code points.
func wtf8Runes(s string) []rune {
	out := make([]rune, 0, len(s))
	for len(s) > 0 {
		r, n := decodeWTF8(s)
		out = append(out, r)
		s = s[n:]
	}
	return out
}

// pyLen is Python's len() of the str s: its code points.
func pyLen(s string) int64 {
	n := int64(0)
	for i := 0; i < len(s); {
		if s[i] < 0x80 {
			i++
		} else {
			_, size := decodeWTF8(s[i:])
			i += size
		}
		n++
	}
	return n
}

// number is a Python int or float.
type number struct {
	isInt bool
	small int64    // an int that fits
	big   *big.Int // an int that does not, else nil
	f     float64  // a float
}

func numberOf(v *pyjson.Value) number {
	if v.Kind == pyjson.Float {
		return number{f: v.Float}
	}
	if i, err := strconv.ParseInt(v.Int, 10, 64); err == nil {
		return number{isInt: true, small: i}
	}
	b, _ := new(big.Int).SetString(v.Int, 10)
	if b == nil {
		b = new(big.Int)
	}
	return number{isInt: true, big: b}
}

func isNumber(v *pyjson.Value) bool { return v.Kind == pyjson.Int || v.Kind == pyjson.Float }

func (n number) bigInt() *big.Int {
	if n.big != nil {
		return n.big
	}
	return big.NewInt(n.small)
}

// rat is n exactly; ok is false for an infinite float.
func (n number) rat() (*big.Rat, bool) {
	if n.isInt {
		return new(big.Rat).SetInt(n.bigInt()), true
	}
	if math.IsInf(n.f, 0) || math.IsNaN(n.f) {
		return nil, false
	}
	return new(big.Rat).SetFloat64(n.f), true
}

// float is float(n), as Python converts an int (rounding to nearest even);
// ok is false where Python raises OverflowError.
func (n number) float() (float64, bool) {
	if !n.isInt {
		return n.f, true
	}
	if n.big == nil {
		return float64(n.small), true
	}
	f, _ := new(big.Float).SetInt(n.big).Float64()
	return f, !math.IsInf(f, 0)
}

// cmpNumber compares a and b exactly, as Python compares int and float.
func cmpNumber(a, b number) int {
	switch {
	case a.isInt && b.isInt:
		if a.big == nil && b.big == nil {
			return cmpInt(a.small, b.small)
		}
		return a.bigInt().Cmp(b.bigInt())
	case !a.isInt && !b.isInt:
		switch {
		case a.f < b.f:
			return -1
		case a.f > b.f:
			return 1
		}
		return 0
	case a.isInt:
		return -cmpIntFloat(a, b.f)
	default:
		return cmpIntFloat(b, a.f)
	}
}

func cmpInt(a, b int64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// cmpIntFloat compares float f with int i: the sign of f - i.
func cmpIntFloat(i number, f float64) int {
	if math.IsInf(f, 1) {
		return 1
	}
	if math.IsInf(f, -1) {
		return -1
	}
	if i.big == nil && i.small > -1<<53 && i.small < 1<<53 {
		g := float64(i.small)
		switch {
		case f < g:
			return -1
		case f > g:
			return 1
		}
		return 0
	}
	return new(big.Float).SetFloat64(f).Cmp(new(big.Float).SetInt(i.bigInt()))
}

// notMultiple is jsonschema's multipleOf test: whether instance is not a
// multiple of by. raises reports the cases where Python raises
// OverflowError instead: an int too large for a float meeting a float, or
// an infinite instance and a float by.
func notMultiple(instance, by number) (notMult, raises bool) {
	if !by.isInt {
		x, ok := instance.float()
		if !ok || math.IsInf(x, 0) {
			return false, true
		}
		q := x / by.f
		if !math.IsInf(q, 0) {
			return q != math.Trunc(q), false
		}
		// Python falls back to Fraction(instance) / Fraction(by).
		a, _ := instance.rat()
		b, _ := by.rat()
		return !new(big.Rat).Quo(a, b).IsInt(), false
	}
	if instance.isInt {
		if instance.big == nil && by.big == nil {
			return instance.small%by.small != 0, false
		}
		return new(big.Int).Rem(instance.bigInt(), by.bigInt()).Sign() != 0, false
	}
	d, ok := by.float()
	if !ok {
		return false, true
	}
	// inf % d is nan, which is true.
	m := math.Mod(instance.f, d)
	return m != 0 || math.IsNaN(m), false
}

// pyEqual is jsonschema's equal: Python's == except that booleans equal
// only booleans (not 0 and 1), also inside arrays and objects.
func pyEqual(a, b *pyjson.Value, bud *budget) bool {
	bud.spend(1)
	switch {
	case a.Kind == pyjson.String || b.Kind == pyjson.String:
		return a.Kind == b.Kind && a.Str == b.Str
	case a.Kind == pyjson.Array && b.Kind == pyjson.Array:
		if len(a.Elems) != len(b.Elems) {
			return false
		}
		for i := range a.Elems {
			if !pyEqual(a.Elems[i], b.Elems[i], bud) {
				return false
			}
		}
		return true
	case a.Kind == pyjson.Object && b.Kind == pyjson.Object:
		bud.spend(int64(len(a.Members)+len(b.Members)) / 8)
		af, bf := a.Fields(), b.Fields()
		if len(af) != len(bf) {
			return false
		}
		bm := make(map[string]*pyjson.Value, len(bf))
		for _, m := range bf {
			bm[m.Key] = m.Value
		}
		for _, m := range af {
			w := bm[m.Key]
			if w == nil || !pyEqual(m.Value, w, bud) {
				return false
			}
		}
		return true
	case isNumber(a) && isNumber(b):
		return cmpNumber(numberOf(a), numberOf(b)) == 0
	case a.Kind == pyjson.Bool && b.Kind == pyjson.Bool:
		return a.Bool == b.Bool
	}
	return a.Kind == pyjson.Null && b.Kind == pyjson.Null
}

// equalKey appends to dst a string that is the same for two values exactly
// when pyEqual holds for them, so uniqueItems takes linear time.
func equalKey(dst []byte, v *pyjson.Value, bud *budget) []byte {
	bud.spend(1)
	switch v.Kind {
	case pyjson.Null:
		return append(dst, 'n')
	case pyjson.Bool:
		if v.Bool {
			return append(dst, 't')
		}
		return append(dst, 'f')
	case pyjson.String:
		dst = append(dst, 's')
		dst = strconv.AppendInt(dst, int64(len(v.Str)), 10)
		dst = append(dst, ':')
		return append(dst, v.Str...)
	case pyjson.Int:
		return append(append(append(dst, 'i'), v.Int...), ';')
	case pyjson.Float:
		f := v.Float
		if !math.IsInf(f, 0) && f == math.Trunc(f) {
			// Equal to the int of the same value.
			i, _ := new(big.Float).SetFloat64(f).Int(nil)
			dst = append(dst, 'i')
			dst = append(dst, i.String()...)
			return append(dst, ';')
		}
		return append(strconv.AppendFloat(append(dst, 'F'), f, 'g', -1, 64), ';')
	case pyjson.Array:
		dst = append(dst, '[')
		dst = strconv.AppendInt(dst, int64(len(v.Elems)), 10)
		dst = append(dst, ':')
		for _, e := range v.Elems {
			dst = equalKey(dst, e, bud)
		}
		return append(dst, ']')
	case pyjson.Object:
		fields := v.Fields()
		slices.SortFunc(fields, func(a, b pyjson.Member) int { return strings.Compare(a.Key, b.Key) })
		dst = append(dst, '{')
		dst = strconv.AppendInt(dst, int64(len(fields)), 10)
		dst = append(dst, ':')
		for _, m := range fields {
			dst = strconv.AppendInt(dst, int64(len(m.Key)), 10)
			dst = append(dst, ':')
			dst = append(dst, m.Key...)
			dst = equalKey(dst, m.Value, bud)
		}
		return append(dst, '}')
	}
	return dst
}

// reprWriter writes Python's repr() of values, up to a limit of bytes
// after which it writes "..." and stops: messages repeat the instance, and
// errors at every level of a deep document would otherwise repeat it
// quadratically.
type reprWriter struct {
	b     []byte
	limit int
	full  bool
}

func (w *reprWriter) done() bool {
	if !w.full && len(w.b) > w.limit {
		w.full = true
		w.b = append(w.b, "..."...)
	}
	return w.full
}

func (w *reprWriter) value(v *pyjson.Value) {
	if w.done() {
		return
	}
	switch v.Kind {
	case pyjson.Null:
		w.b = append(w.b, "None"...)
	case pyjson.Bool:
		if v.Bool {
			w.b = append(w.b, "True"...)
		} else {
			w.b = append(w.b, "False"...)
		}
	case pyjson.Int:
		w.b = append(w.b, v.Int...)
	case pyjson.Float:
		w.b = appendFloatRepr(w.b, v.Float)
	case pyjson.String:
		w.b = appendStrRepr(w.b, v.Str)
	case pyjson.Array:
		w.b = append(w.b, '[')
		for i, e := range v.Elems {
			if i > 0 {
				w.b = append(w.b, ", "...)
			}
			if w.done() {
				return
			}
			w.value(e)
		}
		w.b = append(w.b, ']')
	case pyjson.Object:
		w.b = append(w.b, '{')
		for i, m := range v.Fields() {
			if i > 0 {
				w.b = append(w.b, ", "...)
			}
			if w.done() {
				return
			}
			w.b = appendStrRepr(w.b, m.Key)
			w.b = append(w.b, ": "...)
			w.value(m.Value)
		}
		w.b = append(w.b, '}')
	}
}

// appendFloatRepr appends Python's repr(f).
func appendFloatRepr(dst []byte, f float64) []byte {
	switch {
	case math.IsInf(f, 1):
		return append(dst, "inf"...)
	case math.IsInf(f, -1):
		return append(dst, "-inf"...)
	case math.IsNaN(f):
		return append(dst, "nan"...)
	}
	return pyjson.AppendFloat(dst, f)
}

// appendStrRepr appends Python's repr(s) for a str: in single quotes
// unless s has a single quote and no double quote; backslash escapes for
// the quote, backslash, \t \n \r, other control characters and characters
// that are not printable.
func appendStrRepr(dst []byte, s string) []byte {
	quote := byte('\'')
	if strings.IndexByte(s, '\'') >= 0 && strings.IndexByte(s, '"') < 0 {
		quote = '"'
	}
	dst = append(dst, quote)
	for i := 0; i < len(s); {
		r, size := decodeWTF8(s[i:])
		if size == 1 && r == utf8.RuneError {
			r = rune(s[i]) // not WTF-8: show the byte
		}
		raw := s[i : i+size]
		i += size
		switch {
		case r == rune(quote) || r == '\\':
			dst = append(dst, '\\', byte(r))
		case r == '\t':
			dst = append(dst, `\t`...)
		case r == '\n':
			dst = append(dst, `\n`...)
		case r == '\r':
			dst = append(dst, `\r`...)
		case r < ' ' || r == 0x7f:
			dst = appendHexEscape(dst, 'x', r, 2)
		case r < 0x7f:
			dst = append(dst, byte(r))
		case r >= 0xD800 && r <= 0xDFFF, !unicode.IsPrint(r):
			switch {
			case r <= 0xff:
				dst = appendHexEscape(dst, 'x', r, 2)
			case r <= 0xffff:
				dst = appendHexEscape(dst, 'u', r, 4)
			default:
				dst = appendHexEscape(dst, 'U', r, 8)
			}
		default:
			dst = append(dst, raw...)
		}
	}
	return append(dst, quote)
}

func appendHexEscape(dst []byte, kind byte, r rune, digits int) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '\\', kind)
	for shift := (digits - 1) * 4; shift >= 0; shift -= 4 {
		dst = append(dst, hex[(r>>shift)&0xF])
	}
	return dst
}

// strRepr is Python's repr(s).
func strRepr(s string) string { return string(appendStrRepr(nil, s)) }
