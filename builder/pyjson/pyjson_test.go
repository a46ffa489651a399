package pyjson

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os/exec"
	"reflect"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// dumpsCases are inputs and what Python 3 prints for them;
// TestDumpsCasesMatchPython checks the expectations themselves against
// python3.
var dumpsCases = []struct {
	name, in, want string
}{
	{"null", `null`, `null`},
	{"true", `true`, `true`},
	{"false", ` false `, `false`},
	{"empty object", `{}`, `{}`},
	{"empty array", `[ ]`, `[]`},
	{"separators", `{"a":[1,2,{"b":null}]}`, `{"a": [1, 2, {"b": null}]}`},
	{"key order", `{"b":1,"a":2,"B":3,"":4,"aa":5}`, `{"": 4, "B": 3, "a": 2, "aa": 5, "b": 1}`},
	{"duplicate keys keep the last", `{"b":1,"a":2,"b":3}`, `{"a": 2, "b": 3}`},
	{"duplicate keys nested", `{"x":{"k":1},"x":{"k":2,"k":[]}}`, `{"x": {"k": []}}`},
	// U+FF61 sorts before U+1F600 by code point, after it by UTF-16 unit.
	{"code point order", `{"😀":1,"\uff61":2,"\ud800":3,"\ue000":4}`, `{"\ud800": 3, "\ue000": 4, "\uff61": 2, "\ud83d\ude00": 1}`},
	{"short escapes", `"\" \\ \/ \b \f \n \r \t"`, `"\" \\ / \b \f \n \r \t"`},
	{"control escapes", `"\u0000\u001F\u007f\u0080"`, `"\u0000\u001f\u007f\u0080"`},
	{"raw DEL", "\"a\x7fb\"", `"a\u007fb"`},
	{"non-ASCII", `"é中\u2028"`, `"\u00e9\u4e2d\u2028"`},
	{"astral raw", `"😀𐀀􏿿"`, `"\ud83d\ude00\ud800\udc00\udbff\udfff"`},
	{"astral escaped", `"\uD83D\uDE00"`, `"\ud83d\ude00"`},
	{"lone high surrogate", `"\ud800"`, `"\ud800"`},
	{"lone low surrogate", `"\udc00x"`, `"\udc00x"`},
	{"low then high", `"\udc00\ud800"`, `"\udc00\ud800"`},
	{"high then non-low escape", `"\ud800\u0041"`, `"\ud800A"`},
	{"high then raw astral", `"\ud800😀"`, `"\ud800\ud83d\ude00"`},
	{"two highs then low", `"\ud800\ud800\udc00"`, `"\ud800\ud800\udc00"`},
	{"zero", `0`, `0`},
	{"minus zero int", `-0`, `0`},
	{"minus zero float", `-0.0`, `-0.0`},
	{"big int", `123456789012345678901234567890`, `123456789012345678901234567890`},
	{"big negative int", `-98765432109876543210987654321`, `-98765432109876543210987654321`},
	{"float one", `1.0`, `1.0`},
	{"float exponent int", `1E2`, `100.0`},
	{"1e16", `1e16`, `1e+16`},
	{"1e15", `1e15`, `1000000000000000.0`},
	{"below 1e16", `9999999999999998.0`, `9999999999999998.0`},
	{"1e-4", `1e-4`, `0.0001`},
	{"1e-5", `1e-5`, `1e-05`},
	{"0.1", `0.1`, `0.1`},
	{"1e22", `1e22`, `1e+22`},
	{"1.5e300", `1.5e300`, `1.5e+300`},
	{"1e100", `1e100`, `1e+100`},
	{"min subnormal", `5e-324`, `5e-324`},
	{"underflow", `1e-400`, `0.0`},
	{"negative underflow", `-1e-400`, `-0.0`},
	{"overflow", `1e400`, `Infinity`},
	{"negative overflow", `-1e400`, `-Infinity`},
	{"huge exponent", `1e999999999999999999999`, `Infinity`},
	{"zero huge exponent", `0e999999999999999999999`, `0.0`},
	{"max float", `1.7976931348623157e308`, `1.7976931348623157e+308`},
	{"rounding to even", `9007199254740993.0`, `9007199254740992.0`},
	{"long mantissa", `0.1000000000000000055511151231257827021181583404541015625`, `0.1`},
	{"123.456e-7", `123.456e-7`, `1.23456e-05`},
	{"nested", `[[],[{}],{"a":{"b":[true,false,null]}}]`, `[[], [{}], {"a": {"b": [true, false, null]}}]`},
	{"whitespace", " \t\r\n{ \"a\" \n: \r1 ,\t\"b\":2 } \n", `{"a": 1, "b": 2}`},
}

// errorCases are inputs Python's json.loads refuses (or that Parse refuses
// on purpose, with the sentinel it wraps).
var errorCases = []struct {
	name, in string
	is       error
}{
	{"empty", ``, nil},
	{"space only", ` `, nil},
	{"extra data", `{} x`, nil},
	{"two values", `1 2`, nil},
	{"trailing comma array", `[1,]`, nil},
	{"trailing comma object", `{"a":1,}`, nil},
	{"unquoted key", `{a:1}`, nil},
	{"single quotes", `'a'`, nil},
	{"leading zero", `01`, nil},
	{"leading plus", `+1`, nil},
	{"bare dot", `1.`, nil},
	{"dot first", `.5`, nil},
	{"bare exponent", `1e`, nil},
	{"minus alone", `-`, nil},
	{"hex", `0x10`, nil},
	{"raw newline in string", "\"a\nb\"", nil},
	{"raw tab in string", "\"a\tb\"", nil},
	{"bad escape", `"\x41"`, nil},
	{"short unicode escape", `"\u12"`, nil},
	{"bad hex", `"\u12g4"`, nil},
	{"unterminated", `"abc`, nil},
	{"unterminated object", `{"a":1`, nil},
	{"missing colon", `{"a" 1}`, nil},
	{"TRUE", `TRUE`, nil},
	{"nul", `nul`, nil},
	{"invalid UTF-8", "\"\xff\"", nil},
	{"encoded surrogate", "\"\xed\xa0\x80\"", nil},
	{"overlong UTF-8", "\"\xc0\xaf\"", nil},
	{"BOM", "\xef\xbb\xbf{}", nil},
	{"NaN", `NaN`, ErrNonFinite},
	{"Infinity", `[Infinity]`, ErrNonFinite},
	{"-Infinity", `-Infinity`, ErrNonFinite},
	{"int too long", strings.Repeat("7", MaxIntDigits+1), ErrIntTooLong},
	{"too deep", strings.Repeat("[", MaxDepth+1) + strings.Repeat("]", MaxDepth+1), ErrTooDeep},
	{"a million levels deep", strings.Repeat("[", 1e6) + strings.Repeat("]", 1e6), ErrTooDeep},
	{"too many values", "[" + strings.Repeat("0,", MaxValues) + "0]", ErrTooManyValues},
}

func TestDumps(t *testing.T) {
	for _, tc := range dumpsCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Dumps([]byte(tc.in))
			if err != nil {
				t.Fatalf("Dumps(%q): %v", tc.in, err)
			}
			if string(got) != tc.want {
				t.Errorf("Dumps(%q)\n got %s\nwant %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestDumpsErrors(t *testing.T) {
	for _, tc := range errorCases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Dumps([]byte(tc.in))
			var syntax *SyntaxError
			if !errors.As(err, &syntax) {
				t.Fatalf("Dumps(%.40q) = %q, %v; want a *SyntaxError", tc.in, got, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Dumps(%.40q) error %v; want it to wrap %v", tc.in, err, tc.is)
			}
		})
	}
}

func TestDepthLimit(t *testing.T) {
	deep := strings.Repeat(`{"a":[`, MaxDepth/2) + strings.Repeat("]}", MaxDepth/2)
	if _, err := Dumps([]byte(deep)); err != nil {
		t.Errorf("nesting of exactly MaxDepth: %v", err)
	}
}

func TestValuesLimit(t *testing.T) {
	// The array and MaxValues-1 elements: exactly MaxValues values.
	in := "[" + strings.Repeat("0,", MaxValues-2) + "0]"
	if _, err := Parse([]byte(in)); err != nil {
		t.Errorf("exactly MaxValues values: %v", err)
	}
}

// smallWrites is a writer that records the size of each write.
type smallWrites struct {
	bytes.Buffer
	largest int
}

func (w *smallWrites) Write(b []byte) (int, error) {
	w.largest = max(w.largest, len(b))
	return w.Buffer.Write(b)
}

// WriteDumps writes what AppendDumps appends, in pieces of about
// flushSize however long a string is.
func TestWriteDumps(t *testing.T) {
	long := func(unit string) string { return strings.Repeat(unit, 3*flushSize/len(unit)+7) }
	docs := []string{
		`{"b": [1, 2.5, null, true], "a": "x"}`,
		`"` + long("a") + `"`,
		`"` + long("é") + `"`,
		`"` + long(`\ud83d\ude00`) + `"`,
		`"` + long(`a\"\n`) + `"`,
		`{"` + long("k") + `": ["` + long(`\u0001`) + `", {"` + long("j") + `": 1}]}`,
		"[" + strings.Repeat(`"abc", `, flushSize) + `"end"]`,
	}
	for i, doc := range docs {
		v, err := Parse([]byte(doc))
		if err != nil {
			t.Fatalf("doc %d: %v", i, err)
		}
		var w smallWrites
		if err := v.WriteDumps(&w); err != nil {
			t.Fatal(err)
		}
		if want := v.AppendDumps(nil); !bytes.Equal(w.Bytes(), want) {
			t.Errorf("doc %d: WriteDumps wrote %d bytes that differ from AppendDumps's %d", i, w.Len(), len(want))
		}
		if w.largest > 2*flushSize+16 {
			t.Errorf("doc %d: a write of %d bytes, want at most about %d", i, w.largest, 2*flushSize)
		}
	}
}

// failingWriter fails every write.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("no room") }

func TestWriteDumpsError(t *testing.T) {
	v, err := Parse([]byte(`"` + strings.Repeat("a", 3*flushSize) + `"`))
	if err != nil {
		t.Fatal(err)
	}
	if err := v.WriteDumps(failingWriter{}); err == nil || err.Error() != "no room" {
		t.Errorf("WriteDumps to a failing writer: %v, want its error", err)
	}
}

// A string's text takes one allocation no longer than its source, whatever
// it holds: Parse of a document that is one long string allocates little
// more than the string.
func TestLongStringAllocations(t *testing.T) {
	const size = 8 << 20
	for _, unit := range []string{"a", "é", "😀", `\u00e9`, `\n`, `\ud83d\ude00`, `a\\`} {
		doc := []byte(`"` + strings.Repeat(unit, size/len(unit)) + `"`)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		v, err := Parse(doc)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("%q: %v", unit, err)
		}
		if got := after.TotalAlloc - before.TotalAlloc; got > uint64(len(doc))+16<<10 {
			t.Errorf("%q: Parse of a %d-byte string allocated %d bytes, want at most the source's length", unit, len(doc), got)
		}
		runtime.KeepAlive(v)
	}
}

func TestSyntaxErrorPosition(t *testing.T) {
	_, err := Parse([]byte("{\n  \"a\": 1,\n  \"b\" 2\n}"))
	var syntax *SyntaxError
	if !errors.As(err, &syntax) {
		t.Fatalf("got %v, want a *SyntaxError", err)
	}
	if syntax.Line != 3 || syntax.Column != 7 || syntax.Offset != 18 {
		t.Errorf("error at line %d column %d offset %d, want line 3 column 7 offset 18 (%v)", syntax.Line, syntax.Column, syntax.Offset, err)
	}
}

func TestRawAndFields(t *testing.T) {
	v, err := Parse([]byte(` { "x" : [ 1 , 2 ] , "y":"s", "x": {"k" :1} } `))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := string(v.Raw), `{ "x" : [ 1 , 2 ] , "y":"s", "x": {"k" :1} }`; got != want {
		t.Errorf("Raw = %q, want %q", got, want)
	}
	if got, want := string(v.Members[0].Value.Raw), `[ 1 , 2 ]`; got != want {
		t.Errorf("first x Raw = %q, want %q", got, want)
	}
	if got, want := string(v.Get("x").Raw), `{"k" :1}`; got != want {
		t.Errorf("Get(x).Raw = %q, want %q (the last x)", got, want)
	}
	if v.Get("z") != nil {
		t.Errorf("Get(z) = %v, want nil", v.Get("z"))
	}
	fields := v.Fields()
	if len(fields) != 2 || fields[0].Key != "x" || fields[1].Key != "y" || fields[0].Value.Kind != Object {
		t.Errorf("Fields() = %+v, want x (the last value, first position), y", fields)
	}
}

func TestAppendFloat(t *testing.T) {
	// Switch points of Python's repr, and the two ends of the range.
	cases := map[float64]string{
		1e16: "1e+16", 1e15: "1000000000000000.0", 1.234e16: "1.234e+16",
		1e-4: "0.0001", 1e-5: "1e-05", 0.00012: "0.00012", 9.99e-5: "9.99e-05",
		math.MaxFloat64: "1.7976931348623157e+308", math.SmallestNonzeroFloat64: "5e-324",
		-2.5: "-2.5", 100: "100.0", math.Inf(1): "Infinity", math.Inf(-1): "-Infinity",
		math.Copysign(0, -1): "-0.0", 0: "0.0",
	}
	for f, want := range cases {
		if got := string(AppendFloat(nil, f)); got != want {
			t.Errorf("AppendFloat(%v) = %s, want %s", f, got, want)
		}
	}
}

func TestAppendStringInvalidBytes(t *testing.T) {
	if got, want := string(AppendString(nil, "a\xffb\xed\xa0")), `"a\ufffdb\ufffd\ufffd"`; got != want {
		t.Errorf("AppendString = %s, want %s", got, want)
	}
}

// pythonScript prints, for each document of the JSON list on stdin,
// [true, dumps] or [false, error].
const pythonScript = `
import json, sys
out = []
for doc in json.load(sys.stdin):
    try:
        out.append([True, json.dumps(json.loads(doc), sort_keys=True)])
    except (ValueError, RecursionError) as e:
        out.append([False, str(e)])
json.dump(out, sys.stdout)
`

type pythonResult struct {
	OK     bool
	Output string
}

// pythonDumps runs one python3 over all docs.
func pythonDumps(t *testing.T, docs []string) []pythonResult {
	t.Helper()
	python, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3 to compare with Python's json module")
	}
	in, err := json.Marshal(docs)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(python, "-c", pythonScript)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.Bytes())
	}
	var raw [][2]json.RawMessage
	if err := json.Unmarshal(out, &raw); err != nil {
		t.Fatalf("python3 output: %v", err)
	}
	if len(raw) != len(docs) {
		t.Fatalf("python3 answered %d documents, want %d", len(raw), len(docs))
	}
	results := make([]pythonResult, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r[0], &results[i].OK); err != nil {
			t.Fatal(err)
		}
		if err := json.Unmarshal(r[1], &results[i].Output); err != nil {
			t.Fatal(err)
		}
	}
	return results
}

func TestDumpsCasesMatchPython(t *testing.T) {
	var docs []string
	for _, tc := range dumpsCases {
		docs = append(docs, tc.in)
	}
	for _, tc := range errorCases {
		if tc.is == nil && !strings.ContainsAny(tc.in, "\xff\xed\xc0\xef") {
			// Python reads text; these bytes cannot be passed as a
			// str, and Python's own UTF-8 decoding refuses them.
			docs = append(docs, tc.in)
		}
	}
	results := pythonDumps(t, docs)
	for i, tc := range dumpsCases {
		if !results[i].OK || results[i].Output != tc.want {
			t.Errorf("%s: python3 says %v %s, the case wants %s", tc.name, results[i].OK, results[i].Output, tc.want)
		}
	}
	for _, r := range results[len(dumpsCases):] {
		if r.OK {
			t.Errorf("python3 accepts an input in errorCases: %s", r.Output)
		}
	}
}

// generator makes random JSON documents aimed at the corners of Python's
// json.dumps.
type generator struct {
	rng *rand.Rand
}

func (g *generator) space() string {
	if g.rng.IntN(3) > 0 {
		return ""
	}
	return []string{" ", "\n", "\t", "\r\n  ", "  "}[g.rng.IntN(5)]
}

func (g *generator) value(depth int) string {
	n := 9
	if depth <= 0 {
		n = 6 // no containers
	}
	switch g.rng.IntN(n) {
	case 0:
		return []string{"null", "true", "false"}[g.rng.IntN(3)]
	case 1, 2:
		return g.integer()
	case 3, 4:
		return g.float()
	case 5:
		return g.str()
	case 6:
		var elems []string
		for range g.rng.IntN(5) {
			elems = append(elems, g.space()+g.value(depth-1)+g.space())
		}
		return "[" + strings.Join(elems, ",") + "]"
	default:
		var members []string
		for range g.rng.IntN(6) {
			members = append(members, g.space()+g.key()+g.space()+":"+g.space()+g.value(depth-1)+g.space())
		}
		return "{" + strings.Join(members, ",") + "}"
	}
}

// key draws from a small pool often, so that objects repeat keys.
func (g *generator) key() string {
	if g.rng.IntN(2) == 0 {
		pool := []string{`"a"`, `"b"`, `"A"`, `""`, `"a b"`, `"\u00e9"`, `"é"`, `"\uff61"`, `"😀"`, `"\ud83d\ude00"`, `"\ud800"`, `"\udfff"`, `"\ue000"`, `"\uffff"`, `"𐀀"`, `"\u0000"`, `"~"`, `"\u007f"`}
		return pool[g.rng.IntN(len(pool))]
	}
	return g.str()
}

func (g *generator) digits(n int) string {
	var b strings.Builder
	for range n {
		b.WriteByte(byte('0' + g.rng.IntN(10)))
	}
	return b.String()
}

func (g *generator) integer() string {
	sign := ""
	if g.rng.IntN(3) == 0 {
		sign = "-"
	}
	if g.rng.IntN(8) == 0 {
		return sign + "0"
	}
	n := 1 + g.rng.IntN(19)
	if g.rng.IntN(4) == 0 {
		n = 1 + g.rng.IntN(60)
	}
	return sign + string(rune('1'+g.rng.IntN(9))) + g.digits(n-1)
}

func (g *generator) float() string {
	sign := ""
	if g.rng.IntN(3) == 0 {
		sign = "-"
	}
	switch g.rng.IntN(5) {
	case 0:
		// Any float64, written exactly.
		f := math.Float64frombits(g.rng.Uint64())
		if math.IsInf(f, 0) || math.IsNaN(f) {
			f = 1.5
		}
		format := []byte{'e', 'g', 'f', 'E'}[g.rng.IntN(4)]
		s := strconv.FormatFloat(f, format, -1, 64)
		if !strings.ContainsAny(s, ".eE") {
			s += ".0"
		}
		return s
	case 1:
		// Near Python's switch points 1e16 and 1e-4, and at powers of ten.
		exp := []int{16, 15, 17, -4, -5, -3, 0, 22, 23, -1}[g.rng.IntN(10)]
		mant := []string{"1", "9.999999999999999", "9.9999999999999999", "1.0000000000000001", "5", "9.99", "1.23"}[g.rng.IntN(7)]
		return fmt.Sprintf("%s%se%d", sign, mant, exp)
	case 2:
		// Short decimal fractions.
		return sign + g.digits(1+g.rng.IntN(6)) + "." + g.digits(1+g.rng.IntN(8))
	case 3:
		// Long mantissas, rounding corners, and exponents out of range.
		e := []string{"e", "E", "e+", "e-", "E-"}[g.rng.IntN(5)]
		return sign + string(rune('1'+g.rng.IntN(9))) + "." + g.digits(1+g.rng.IntN(30)) + e + strconv.Itoa(g.rng.IntN(420))
	default:
		return sign + string(rune('1'+g.rng.IntN(9))) + g.digits(g.rng.IntN(3)) + []string{"e", "E", "e-", "e+"}[g.rng.IntN(4)] + strconv.Itoa(g.rng.IntN(30))
	}
}

func (g *generator) str() string {
	pieces := []string{
		"a", "Z", " ", "~", "/", `\/`, `\"`, `\\`, `\b`, `\f`, `\n`, `\r`, `\t`,
		"\x7f", "é", "中", "\u2028", "\uffff", "\ufeff", "😀", "𐀀", "\U0010ffff",
		`\u0000`, `\u001F`, `\u001f`, `\u0020`, `\u00E9`, `\uABCD`, `\ud83d\ude00`, `\uD83D\uDE00`,
		`\ud800`, `\udbff`, `\udc00`, `\udfff`, `\udc00\ud800`, `\ud800\u0041`, `\ud800😀`,
	}
	var b strings.Builder
	b.WriteByte('"')
	for range g.rng.IntN(8) {
		b.WriteString(pieces[g.rng.IntN(len(pieces))])
	}
	b.WriteByte('"')
	return b.String()
}

func TestDumpsMatchesPython(t *testing.T) {
	g := &generator{rng: rand.New(rand.NewPCG(2024, 11))}
	const count = 4000
	docs := make([]string, count)
	for i := range docs {
		docs[i] = g.space() + g.value(1+g.rng.IntN(4)) + g.space()
	}
	results := pythonDumps(t, docs)
	failures, refused := 0, 0
	for i, doc := range docs {
		if !results[i].OK {
			refused++
		}
		got, err := Dumps([]byte(doc))
		want := results[i]
		switch {
		case !want.OK && err == nil:
			t.Errorf("document %q: python3 fails (%s), Dumps gives %s", doc, want.Output, got)
		case want.OK && err != nil:
			t.Errorf("document %q: Dumps fails (%v), python3 gives %s", doc, err, want.Output)
		case want.OK && string(got) != want.Output:
			t.Errorf("document %q:\n   Dumps %s\n python3 %s", doc, got, want.Output)
		default:
			continue
		}
		if failures++; failures >= 10 {
			t.Fatal("stopping after 10 differences")
		}
	}
	t.Logf("compared %d documents with python3; both refused %d", len(docs), refused)
}

// TestFloatReprMatchesPython compares AppendFloat with Python's repr on
// random float64 bit patterns (all magnitudes, subnormals included) and on
// values next to repr's switch points.
func TestFloatReprMatchesPython(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	var floats []float64
	for range 20000 {
		f := math.Float64frombits(rng.Uint64())
		if !math.IsInf(f, 0) && !math.IsNaN(f) {
			floats = append(floats, f)
		}
	}
	for _, edge := range []float64{1e16, 1e-4, 1e-5, 1e15, 1e17, 0.001} {
		f := edge
		for range 5 {
			floats = append(floats, f, -f)
			f = math.Nextafter(f, math.Inf(1))
		}
		f = edge
		for range 5 {
			f = math.Nextafter(f, 0)
			floats = append(floats, f)
		}
	}
	docs := make([]string, len(floats))
	for i, f := range floats {
		// 'e' with all 17 digits is exact enough to read back as f in
		// both languages, whatever Go's own shortest form is.
		docs[i] = strconv.FormatFloat(f, 'e', 16, 64)
	}
	results := pythonDumps(t, docs)
	for i, f := range floats {
		if got := string(AppendFloat(nil, f)); !results[i].OK || got != results[i].Output {
			t.Fatalf("AppendFloat(%s) = %s, python3 repr %s", docs[i], got, results[i].Output)
		}
	}
	t.Logf("%d floats printed as python3 does", len(floats))
}

// FuzzDumps checks that Dumps never panics, accepts only JSON that Go's
// decoder accepts too, refuses JSON Go accepts only for the reasons it
// documents, and prints JSON that Go decodes to the same value as the input
// (where Go can decode the input) and that Dumps prints unchanged.
func FuzzDumps(f *testing.F) {
	for _, tc := range dumpsCases {
		f.Add([]byte(tc.in))
	}
	for _, tc := range errorCases {
		if len(tc.in) < 100 {
			f.Add([]byte(tc.in))
		}
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		out, err := Dumps(in)
		if err != nil {
			var syntax *SyntaxError
			if !errors.As(err, &syntax) {
				t.Fatalf("error %v is not a *SyntaxError", err)
			}
			if json.Valid(in) && !bytes.HasPrefix(in, utf8BOM) && !errors.Is(err, ErrIntTooLong) && !errors.Is(err, ErrTooDeep) && !errors.Is(err, ErrTooManyValues) && utf8.Valid(in) {
				t.Fatalf("Dumps refuses JSON Go accepts: %q: %v", in, err)
			}
			return
		}
		if !json.Valid(in) {
			t.Fatalf("Dumps accepts %q, which Go's decoder refuses", in)
		}
		var want any
		if json.Unmarshal(in, &want) != nil {
			return // a number out of float64's range: Python prints Infinity, not JSON
		}
		var got any
		if err := json.Unmarshal(out, &got); err != nil {
			t.Fatalf("Dumps(%q) = %s, which Go cannot decode: %v", in, out, err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Dumps(%q) = %s, which decodes to %#v, not %#v", in, out, got, want)
		}
		v, _ := Parse(in)
		var w bytes.Buffer
		if err := v.WriteDumps(&w); err != nil || !bytes.Equal(w.Bytes(), out) {
			t.Fatalf("WriteDumps of %q wrote %s, %v; want %s", in, w.Bytes(), err, out)
		}
		again, err := Dumps(out)
		if err != nil || !bytes.Equal(again, out) {
			t.Fatalf("Dumps(Dumps(%q)) = %s, %v; want %s", in, again, err, out)
		}
	})
}

// TestDumpsUnsorted: json.dumps without sort_keys keeps document order,
// and a repeated key where it first appeared with its last value.
func TestDumpsUnsorted(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`{"b": 1, "a": [{"z": null, "y": 1.5}]}`, `{"b": 1, "a": [{"z": null, "y": 1.5}]}`},
		{`{"k": 1, "j": 2, "k": 3}`, `{"k": 3, "j": 2}`},
		{`{"é": "\u00e9"}`, `{"\u00e9": "\u00e9"}`},
	} {
		v, err := Parse([]byte(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if got := string(v.AppendDumpsUnsorted(nil)); got != tc.want {
			t.Errorf("AppendDumpsUnsorted(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}
