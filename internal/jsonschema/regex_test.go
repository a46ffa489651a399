package jsonschema

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// search runs re.search with a fresh budget, reporting a budget overrun as
// an error.
func search(re *regex, s string) (ok bool, err error) {
	return searchBudget(re, s, MaxSteps)
}

func searchBudget(re *regex, s string, steps int64) (ok bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			if r != errBudget {
				panic(r)
			}
			err = ErrTooComplex
		}
	}()
	b := budget{steps}
	return re.search(s, &b), nil
}

func TestRegexSearch(t *testing.T) {
	// Answers are Python 3.11's bool(re.search(pattern, s)).
	tests := []struct {
		pattern string
		yes, no []string
	}{
		// Unanchored search.
		{`[0-9]+`, []string{"abc1", "7"}, []string{"", "abc"}},
		{`b`, []string{"abc"}, []string{"ac"}},
		// $ matches before a final newline, \Z only at the end.
		{`^[a-z]+$`, []string{"abc", "abc\n"}, []string{"abc\n\n", "ab1", "\nabc"}},
		{`^[a-z]+\Z`, []string{"abc"}, []string{"abc\n"}},
		{`\Aab`, []string{"abc"}, []string{"cab"}},
		// . does not match a newline.
		{`^.+$`, []string{"a b", "x\n"}, []string{"a\nb", ""}},
		{`(?s)^.+$`, []string{"a\nb"}, []string{""}},
		// MULTILINE.
		{`(?m)^b$`, []string{"a\nb\nc"}, []string{"a\nbc"}},
		// \d, \w and \s are Unicode.
		{`^\d+$`, []string{"123", "١٢٣"}, []string{"1a", "²"}},
		{`^\w+$`, []string{"abc_1", "é", "日本", "²"}, []string{"a-b", "a b"}},
		{`^\s$`, []string{" ", "\v", "\u00a0", "\u2028", "\x1c"}, []string{"a", "\u200b"}},
		{`(?a)^\w+$`, []string{"abc"}, []string{"é"}},
		// \b is a Unicode word boundary and never matches in "".
		{`\bx`, []string{"x", "a x", "-x"}, []string{"ax", "éx", ""}},
		{`a\B`, []string{"ab"}, []string{"a", "a-"}},
		// Lookahead and lookbehind.
		{`^(?!org\.osbuild).+`, []string{"com.x", "org"}, []string{"org.osbuild.rpm"}},
		{`(?=^.{1,5}$)^[a-z]+$`, []string{"abc"}, []string{"abcdef", ""}},
		{`^/(?!\.\.)((?!/\.\./).)+$`, []string{"/a/b", "/a..b"}, []string{"/../a", "/a/../b", "/"}},
		{`(?<=a)b`, []string{"ab"}, []string{"b", "cb"}},
		{`(?<!a)b`, []string{"b", "cb"}, []string{"ab"}},
		// Quantifiers.
		{`^a{2,3}$`, []string{"aa", "aaa"}, []string{"a", "aaaa"}},
		{`^a{,2}$`, []string{"", "aa"}, []string{"aaa"}},
		{`^a{2}$`, []string{"aa"}, []string{"aaa"}},
		{`^x{a}$`, []string{"x{a}"}, []string{"x"}},
		{`^a{}$`, []string{"a{}"}, []string{"a"}},
		{`^(a|ab)(c|bcd)(d*)$`, []string{"abcd", "acd"}, []string{"ab"}},
		{`^(?:a+)+$`, []string{"aaa"}, []string{"aab"}},
		{`^a*?b`, []string{"aab"}, []string{"aa"}},
		{`^a++a`, nil, []string{"aaa"}},
		{`^(?>a+)a`, nil, []string{"aaa"}},
		{`^(?>a|ab)c`, []string{"ac"}, []string{"abc"}},
		{`^(a|)*$`, []string{"", "aaa"}, []string{"b"}},
		// Backreferences and conditionals.
		{`^(a+)-\1$`, []string{"aa-aa"}, []string{"aa-a", "a-aa"}},
		{`^(?P<x>[ab])(?P=x)$`, []string{"aa", "bb"}, []string{"ab"}},
		{`^(<)?a(?(1)>)$`, []string{"<a>", "a"}, []string{"<a", "a>"}},
		// Classes.
		{`^[]a]+$`, []string{"]a"}, []string{"b"}},
		{`^[^]a]+$`, []string{"bc"}, []string{"a", "]"}},
		{`^[a-]+$`, []string{"a-"}, []string{"b"}},
		{`^[\w.-]+$`, []string{"a.b-c_é"}, []string{"a/b"}},
		{`^[\d-]$`, []string{"5", "-"}, []string{"y"}},
		{`^[\x41-\x43]$`, []string{"B"}, []string{"D"}},
		{`^\x41\u00e9\101$`, []string{"AéA"}, nil},
		{`^\/\.\-\@$`, []string{"/.-@"}, nil},
		// Case folding.
		{`(?i)^abc$`, []string{"ABC", "aBc"}, []string{"abd"}},
		{`(?i)^[a-c]+$`, []string{"ABC"}, []string{"D"}},
		{`(?i)^k$`, []string{"K", "\u212a"}, nil},
		{`^(?i:a)b$`, []string{"Ab"}, []string{"AB"}},
		// Verbose.
		{"(?x) ^ a  b # comment\n $", []string{"ab"}, []string{"a b"}},
		{`(?x)^a\ b$`, []string{"a b"}, []string{"ab"}},
		// Alternation of whole patterns, as patternProperties are joined.
		{`^mount://[^/]+/|^tree:///`, []string{"tree:///x", "mount://a/b"}, []string{"input://a/b"}},
		// Code points, not bytes.
		{`^.{3}$`, []string{"aé日", "\U0001F600ab"}, []string{"ab"}},
		{`^\ud800$`, []string{"\xed\xa0\x80"}, nil},
	}
	for _, tt := range tests {
		re, err := compileRegex(tt.pattern)
		if err != nil {
			t.Errorf("compileRegex(%q): %v", tt.pattern, err)
			continue
		}
		for _, want := range []bool{true, false} {
			strs := tt.yes
			if !want {
				strs = tt.no
			}
			for _, s := range strs {
				got, err := search(re, s)
				if err != nil || got != want {
					t.Errorf("search(%q, %q) = %v, %v; want %v", tt.pattern, s, got, err, want)
				}
			}
		}
	}
}

func TestRegexCompileErrors(t *testing.T) {
	// Patterns Python's re.compile refuses.
	for _, pattern := range []string{
		`(`, `)`, `a)`, `[a`, `[]`, `*a`, `a**`, `a{2}{3}`, `^*`, `\b+`, `a{3,2}`,
		`\q`, `\`, `[\q]`, `\1`, `(a)\2`, `(a\1)`, `[b-a]`, `[\d-z]x[a-\w]`,
		`(?<=a+)b`, `(?<=a|bc)d`, `(?P<1>a)`, `(?P<a>x)(?P<a>y)`, `(?P=b)`,
		`a(?i)b`, `(?L)a`, `(?au)a`, `(?-a:b)`, `(?i-i:a)`, `(?z)`, `(?<x)`,
		`(?#unterminated`, `\x4`, `\u12`, `\U00110000`, `\777`, `[\777]`,
		`a{4294967295}`, `(?(2)a|b)(c)`, `(?(0)a)`, `(?(1)a|b|c)(d)`, `[\8]`,
	} {
		if _, err := compileRegex(pattern); err == nil {
			t.Errorf("compileRegex(%q) succeeded; Python refuses it", pattern)
		}
	}
	if _, err := compileRegex(`\N{EM DASH}`); !errors.Is(err, errRegexUnsupported) {
		t.Errorf(`compileRegex(\N{EM DASH}): %v, want errRegexUnsupported`, err)
	}
}

// TestRegexBounded: a pattern that backtracks exponentially ends with
// ErrTooComplex, and a long string through a repeated group recursing
// too deep does too, rather than crashing.
func TestRegexBounded(t *testing.T) {
	re, err := compileRegex(`^(a|aa)+$`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := searchBudget(re, strings.Repeat("a", 80)+"b", 1<<22); !errors.Is(err, ErrTooComplex) {
		t.Errorf("exponential backtracking: %v, want ErrTooComplex", err)
	}
	re, err = compileRegex(`^(a|bc)+$`)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := search(re, strings.Repeat("abc", reMaxDepth)); !errors.Is(err, ErrTooComplex) {
		t.Errorf("deep recursion: %v, want ErrTooComplex", err)
	}
	// A repeat of a single character iterates, however long the string.
	re, err = compileRegex(`^/(?!\.\.)((?!/\.\./).)+$`)
	if err != nil {
		t.Fatal(err)
	}
	if ok, err := search(re, "/"+strings.Repeat("a/", 1<<20)); !ok || err != nil {
		t.Errorf("long path: %v, %v; want a match", ok, err)
	}
}

// pythonRe asks python3 (testdata/pyre.py) about cases; it skips the test
// when there is no python3.
type pyCase struct {
	Pattern string
	Strings []string
}

type pyAnswer struct {
	Error *string `json:"error"`
	Match []bool  `json:"match"`
}

func pythonRe(t *testing.T, cases []pyCase) []pyAnswer {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 to compare with")
	}
	in := make([][2]any, len(cases))
	for i, c := range cases {
		in[i] = [2]any{c.Pattern, c.Strings}
	}
	// encoding/json would turn a lone surrogate (WTF-8) into U+FFFD;
	// write strings so that Python reads the code points we mean.
	var buf bytes.Buffer
	buf.WriteByte('[')
	for i, c := range cases {
		if i > 0 {
			buf.WriteByte(',')
		}
		buf.WriteByte('[')
		writeJSONString(&buf, c.Pattern)
		buf.WriteString(",[")
		for j, s := range c.Strings {
			if j > 0 {
				buf.WriteByte(',')
			}
			writeJSONString(&buf, s)
		}
		buf.WriteString("]]")
	}
	buf.WriteByte(']')
	cmd := exec.Command("python3", filepath.Join("testdata", "pyre.py"))
	cmd.Stdin = &buf
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3 pyre.py: %v", err)
	}
	var answers []pyAnswer
	if err := json.Unmarshal(out, &answers); err != nil {
		t.Fatal(err)
	}
	if len(answers) != len(cases) {
		t.Fatalf("python3 answered %d cases of %d", len(answers), len(cases))
	}
	return answers
}

// writeJSONString writes s, WTF-8, as a JSON string with \u escapes for
// everything outside printable ASCII.
func writeJSONString(buf *bytes.Buffer, s string) {
	buf.WriteByte('"')
	for _, r := range wtf8Runes(s) {
		switch {
		case r == '"' || r == '\\':
			buf.WriteByte('\\')
			buf.WriteRune(r)
		case r >= 0x20 && r < 0x7f:
			buf.WriteRune(r)
		case r > 0xffff:
			r -= 0x10000
			fmt.Fprintf(buf, `\u%04x\u%04x`, 0xd800+(r>>10), 0xdc00+(r&0x3ff))
		default:
			fmt.Fprintf(buf, `\u%04x`, r)
		}
	}
	buf.WriteByte('"')
}

// compareWithPython checks compileRegex and search against Python's
// answers for cases.
func compareWithPython(t *testing.T, cases []pyCase) {
	t.Helper()
	answers := pythonRe(t, cases)
	mismatches := 0
	for i, c := range cases {
		a := answers[i]
		re, err := compileRegex(c.Pattern)
		if errors.Is(err, errRegexUnsupported) {
			continue
		}
		if (err != nil) != (a.Error != nil) {
			mismatches++
			if mismatches < 20 {
				t.Errorf("compileRegex(%q): %v; Python: %v", c.Pattern, err, deref(a.Error))
			}
			continue
		}
		if err != nil {
			continue
		}
		for j, s := range c.Strings {
			got, err := search(re, s)
			if errors.Is(err, ErrTooComplex) {
				continue
			}
			if got != a.Match[j] {
				mismatches++
				if mismatches < 20 {
					t.Errorf("search(%q, %q) = %v; Python: %v", c.Pattern, s, got, a.Match[j])
				}
			}
		}
	}
	if mismatches > 0 {
		t.Errorf("%d mismatches with Python", mismatches)
	}
}

func deref(s *string) string {
	if s == nil {
		return "compiles"
	}
	return *s
}

// randomPattern builds a pattern from pieces that exercise Python's
// syntax, some of it invalid on purpose.
func randomPattern(r *rand.Rand, depth int) string {
	atoms := []string{
		"a", "b", ".", `\.`, "-", "/", `\d`, `\w`, `\s`, `\D`, `\W`, `\S`, `\b`, `\B`, "^", "$", `\A`, `\Z`,
		"[ab]", "[^a]", "[a-c]", `[\w.-]`, `[\s/]`, "[]a]", "[a-]", `\n`, `\x61`, `\u00e9`, "é", "[é-ê]",
		`\1`, "{", "}", "{2}", "]", `\-`, `\/`, "*", "+", "?",
	}
	var b strings.Builder
	n := 1 + r.IntN(4)
	for range n {
		if depth > 0 && r.IntN(4) == 0 {
			open := []string{"(", "(?:", "(?=", "(?!", "(?<=", "(?<!", "(?>", "(?P<g>", "(?i:", "(?s:"}[r.IntN(10)]
			b.WriteString(open)
			b.WriteString(randomPattern(r, depth-1))
			if r.IntN(3) == 0 {
				b.WriteString("|")
				b.WriteString(randomPattern(r, depth-1))
			}
			b.WriteString(")")
		} else {
			b.WriteString(atoms[r.IntN(len(atoms))])
		}
		if r.IntN(3) == 0 {
			b.WriteString([]string{"*", "+", "?", "{1,2}", "{,2}", "{2}", "*?", "+?", "??", "*+", "++", "{0,1}?"}[r.IntN(12)])
		}
	}
	if r.IntN(4) == 0 {
		return b.String() + "|" + randomPattern(r, depth)
	}
	return b.String()
}

func randomString(r *rand.Rand) string {
	alphabet := []string{"a", "b", "c", "A", "B", ".", "-", "/", " ", "\n", "1", "٣", "é", "É", "_", "]", "{", "}", "\xed\xa0\x80", "😀"}
	var b strings.Builder
	for range r.IntN(7) {
		b.WriteString(alphabet[r.IntN(len(alphabet))])
	}
	return b.String()
}

// TestRegexAgainstPython compares random patterns and strings with Python.
func TestRegexAgainstPython(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	var cases []pyCase
	for range 5000 {
		pattern := randomPattern(r, 3)
		if r.IntN(8) == 0 {
			pattern = []string{"(?i)", "(?m)", "(?s)", "(?x)", "(?a)"}[r.IntN(5)] + pattern
		}
		c := pyCase{Pattern: pattern}
		for range 12 {
			c.Strings = append(c.Strings, randomString(r))
		}
		cases = append(cases, c)
	}
	compareWithPython(t, cases)
}
