package jsonschema

import (
	"errors"
	"fmt"
	"strconv"
	"unicode"
)

// This file is a regular expression engine for Python's re syntax, because
// osbuild's schemas are written for Python's re.search: several of them
// use lookahead, which Go's regexp lacks, and Python's \d, \w, \s, \b and $
// mean other things than Go's. It parses what Python 3.11's re parser
// accepts (refusing the same patterns, as check_schema's "regex" format
// does) and runs it by backtracking over code points, as Python's sre
// does. Only whether a pattern matches somewhere is needed, never what it
// matched, so capturing groups are tracked only when a backreference or a
// conditional group reads them.
//
// Backtracking can take exponential time, as it can in Python; every step
// is charged to the validation's budget (see budget), so a pathological
// pattern ends a validation with ErrTooComplex instead of running forever.

// reFlags are Python's inline flags.
type reFlags uint8

const (
	flagIgnoreCase reFlags = 1 << iota // i
	flagMultiline                      // m
	flagDotAll                         // s
	flagVerbose                        // x
	flagASCII                          // a
	flagUnicode                        // u
)

const (
	// reMaxRepeat is Python's MAXREPEAT, which also stands for "no upper
	// bound" in a repeat.
	reMaxRepeat = 4294967295
	// reMaxCode is the furthest a lookbehind may look (Python's MAXCODE).
	reMaxCode = 1<<32 - 1
	// widthInf is an unbounded width; widths saturate there.
	widthInf = int64(1) << 62
	// reMaxDepth bounds the matcher's recursion: nested continuations,
	// one per iteration of a repeated group whose match is not unique.
	// Python's sre iterates where this engine recurses, so a pattern like
	// (a|bc)+ on a string of more than this many iterations ends with
	// ErrTooComplex here although Python would match it. (A repeat of
	// something with one possible end, such as (a|b)+ or
	// ((?!/\.\./).)+, iterates.)
	reMaxDepth = 50000
)

type reOp uint8

const (
	reChar    reOp = iota // one code point in a set
	reAssert              // ^ $ \A \Z \b \B
	reLook                // (?=...) (?!...) (?<=...) (?<!...)
	reGroup               // (...) with group > 0, or (?:...) and (?flags:...) with group 0
	reConcat              // a sequence
	reAlt                 // a|b
	reRepeat              // * + ? {m,n}, greedy, lazy or possessive
	reAtomic              // (?>...)
	reBackref             // \1 (?P=name)
	reCond                // (?(1)yes|no)
)

type atKind uint8

const (
	atBeginning   atKind = iota // ^
	atBeginLine                 // ^ under MULTILINE
	atEnd                       // $: at the end or before a final newline
	atEndLine                   // $ under MULTILINE
	atBeginString               // \A
	atEndString                 // \Z
	atBoundary                  // \b
	atNonBoundary               // \B
)

type repMode uint8

const (
	greedy repMode = iota
	lazy
	possessive
)

type reNode struct {
	op       reOp
	set      *charSet // reChar
	at       atKind   // reAssert
	ascii    bool     // reAssert (\b \B), reBackref: ASCII rules
	fold     bool     // reBackref: compare ignoring case
	behind   bool     // reLook
	negate   bool     // reLook
	group    int      // reGroup (0: no capture), reBackref, reCond
	subs     []*reNode
	min, max int64 // reRepeat
	mode     repMode

	minW, maxW int64 // width in code points
	// det: the node can end at one position only, for a given start
	// and captures, so it is run without continuations (run).
	det bool
}

// regex is a compiled Python pattern.
type regex struct {
	src      string
	root     *reNode
	groups   int  // capturing groups
	caps     bool // backreferences or conditionals read the captures
	anchored bool // matches only at the start of the string
}

// errRegex is a pattern Python's re.compile refuses, with its message.
type errRegex struct {
	msg string
	pos int // in code points
}

func (e *errRegex) Error() string { return fmt.Sprintf("%s at position %d", e.msg, e.pos) }

// errRegexUnsupported marks a pattern Python accepts but this engine does
// not run: \N{...} named characters and the TEMPLATE flag.
var errRegexUnsupported = errors.New("unsupported in forge's engine")

// token is one unit of Python's tokenizer: a character, or a backslash and
// the character after it.
type token struct {
	c   rune
	esc bool
	end bool
}

func (t token) is(c rune) bool { return !t.end && !t.esc && t.c == c }

type reParser struct {
	src         []rune
	pos         int
	flags       reFlags    // global flags
	groupWidths [][2]int64 // per group (index 0 unused); closed[g] says whether known
	closed      []bool
	names       map[string]int
	lookbehind  int // groups open when the outermost lookbehind began, or -1
	condRefs    map[int]int
	caps        bool
}

func (p *reParser) errorf(back int, format string, args ...any) error {
	return &errRegex{msg: fmt.Sprintf(format, args...), pos: max(p.pos-back, 0)}
}

// peek returns the next token without taking it.
func (p *reParser) peek() (token, error) {
	if p.pos >= len(p.src) {
		return token{end: true}, nil
	}
	c := p.src[p.pos]
	if c != '\\' {
		return token{c: c}, nil
	}
	if p.pos+1 >= len(p.src) {
		return token{}, &errRegex{msg: "bad escape (end of pattern)", pos: p.pos}
	}
	return token{c: p.src[p.pos+1], esc: true}, nil
}

func (p *reParser) get() (token, error) {
	t, err := p.peek()
	if err != nil || t.end {
		return t, err
	}
	if t.esc {
		p.pos += 2
	} else {
		p.pos++
	}
	return t, nil
}

// match takes the next token if it is the plain character c.
func (p *reParser) match(c rune) (bool, error) {
	t, err := p.peek()
	if err != nil {
		return false, err
	}
	if t.is(c) {
		p.pos++
		return true, nil
	}
	return false, nil
}

func (t token) text() string {
	if t.esc {
		return `\` + string(t.c)
	}
	return string(t.c)
}

// getUntil reads tokens up to terminator, as Python's getuntil.
func (p *reParser) getUntil(terminator rune, name string) (string, error) {
	var result []rune
	for {
		t, err := p.get()
		if err != nil {
			return "", err
		}
		if t.end {
			if len(result) == 0 {
				return "", p.errorf(0, "missing %s", name)
			}
			return "", p.errorf(len(result), "missing %c, unterminated name", terminator)
		}
		if t.is(terminator) {
			if len(result) == 0 {
				return "", p.errorf(1, "missing %s", name)
			}
			return string(result), nil
		}
		result = append(result, []rune(t.text())...)
	}
}

// getWhile reads up to n plain characters for which ok holds.
func (p *reParser) getWhile(n int, ok func(rune) bool) string {
	var s []rune
	for len(s) < n && p.pos < len(p.src) && p.src[p.pos] != '\\' && ok(p.src[p.pos]) {
		s = append(s, p.src[p.pos])
		p.pos++
	}
	return string(s)
}

func isOct(c rune) bool { return c >= '0' && c <= '7' }
func isDec(c rune) bool { return c >= '0' && c <= '9' }
func isHex(c rune) bool { return isDec(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') }
func isASCIILetter(c rune) bool {
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
}

// isIdentifier approximates Python's str.isidentifier.
func isIdentifier(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if r == '_' || unicode.IsLetter(r) || unicode.Is(unicode.Nl, r) {
			continue
		}
		if i > 0 && (unicode.IsDigit(r) || unicode.Is(unicode.Mn, r) || unicode.Is(unicode.Mc, r) || unicode.Is(unicode.Pc, r)) {
			continue
		}
		return false
	}
	return true
}

// compileRegex parses a pattern as Python's re.compile(pattern) does.
func compileRegex(src string) (*regex, error) {
	p := &reParser{
		src:         wtf8Runes(src),
		groupWidths: make([][2]int64, 1),
		closed:      make([]bool, 1),
		names:       map[string]int{},
		lookbehind:  -1,
		condRefs:    map[int]int{},
	}
	root, err := p.parseSub(false, 0, 0)
	if err != nil {
		return nil, err
	}
	if p.flags&flagASCII != 0 && p.flags&flagUnicode != 0 {
		return nil, &errRegex{msg: "ASCII and UNICODE flags are incompatible"}
	}
	if p.pos < len(p.src) {
		return nil, p.errorf(0, "unbalanced parenthesis")
	}
	for g, pos := range p.condRefs {
		if g >= len(p.groupWidths) {
			return nil, &errRegex{msg: fmt.Sprintf("invalid group reference %d", g), pos: pos}
		}
	}
	// Global flags sit at the very start (parse refuses them anywhere
	// else), so every node was built knowing them.
	re := &regex{src: src, root: root, groups: len(p.groupWidths) - 1, caps: p.caps}
	analyze(root, re.caps)
	re.anchored = anchoredAtStart(root)
	return re, nil
}

// node constructors, computing widths.

func charNode(set *charSet) *reNode {
	return &reNode{op: reChar, set: set, minW: 1, maxW: 1}
}

func addW(a, b int64) int64 {
	if a >= widthInf-b {
		return widthInf
	}
	return a + b
}

func mulW(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a >= widthInf/b {
		return widthInf
	}
	return a * b
}

func concatNode(items []*reNode) *reNode {
	n := &reNode{op: reConcat, subs: items}
	for _, it := range items {
		n.minW = addW(n.minW, it.minW)
		n.maxW = addW(n.maxW, it.maxW)
	}
	return n
}

func altNode(items []*reNode) *reNode {
	n := &reNode{op: reAlt, subs: items, minW: widthInf}
	for _, it := range items {
		n.minW = min(n.minW, it.minW)
		n.maxW = max(n.maxW, it.maxW)
	}
	return n
}

// reMaxNesting bounds the nesting of groups (two levels each), where
// Python's recursive parser raises RecursionError (near 500 groups).
const reMaxNesting = 1000

func (p *reParser) parseSub(verbose bool, flags reFlags, nested int) (*reNode, error) {
	if nested > reMaxNesting {
		return nil, p.errorf(0, "groups nest too deeply (Python raises RecursionError)")
	}
	var items []*reNode
	for {
		item, err := p.parse(verbose, flags, nested+1, nested == 0 && len(items) == 0)
		if err != nil {
			return nil, err
		}
		items = append(items, item)
		ok, err := p.match('|')
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		if nested == 0 {
			verbose = p.flags&flagVerbose != 0
		}
	}
	if len(items) == 1 {
		return items[0], nil
	}
	return altNode(items), nil
}

// parse reads one alternative: a sequence of items up to '|' or ')'.
func (p *reParser) parse(verbose bool, flags reFlags, nested int, first bool) (*reNode, error) {
	var items []*reNode
	for {
		t, err := p.peek()
		if err != nil {
			return nil, err
		}
		if t.end || t.is('|') || t.is(')') {
			break
		}
		start := p.pos
		p.get()
		if verbose && !t.esc {
			if t.c == ' ' || t.c == '\t' || t.c == '\n' || t.c == '\r' || t.c == '\v' || t.c == '\f' {
				continue
			}
			if t.c == '#' {
				for {
					t, err := p.get()
					if err != nil {
						return nil, err
					}
					if t.end || t.is('\n') {
						break
					}
				}
				continue
			}
		}
		cur := flags | p.flags
		switch {
		case t.esc:
			n, err := p.escape(t, cur)
			if err != nil {
				return nil, err
			}
			items = append(items, n)
		case t.c == '[':
			n, err := p.class(start, cur)
			if err != nil {
				return nil, err
			}
			items = append(items, n)
		case t.c == '*' || t.c == '+' || t.c == '?' || t.c == '{':
			here := p.pos
			var lo, hi int64
			switch t.c {
			case '?':
				lo, hi = 0, 1
			case '*':
				lo, hi = 0, reMaxRepeat
			case '+':
				lo, hi = 1, reMaxRepeat
			case '{':
				if nt, _ := p.peek(); nt.is('}') {
					items = append(items, charNode(literalSet('{', cur)))
					continue
				}
				los := p.getWhile(1<<30, isDec)
				his := los
				if ok, _ := p.match(','); ok {
					his = p.getWhile(1<<30, isDec)
				}
				if ok, _ := p.match('}'); !ok {
					items = append(items, charNode(literalSet('{', cur)))
					p.pos = here
					continue
				}
				lo, hi = 0, reMaxRepeat
				if los != "" {
					v, err := strconv.ParseInt(los, 10, 64)
					if err != nil || v >= reMaxRepeat {
						return nil, p.errorf(0, "the repetition number is too large")
					}
					lo = v
				}
				if his != "" {
					v, err := strconv.ParseInt(his, 10, 64)
					if err != nil || v >= reMaxRepeat {
						return nil, p.errorf(0, "the repetition number is too large")
					}
					hi = v
					if hi < lo {
						return nil, p.errorf(p.pos-here, "min repeat greater than max repeat")
					}
				}
			}
			if len(items) == 0 || items[len(items)-1].op == reAssert {
				return nil, p.errorf(p.pos-here+1, "nothing to repeat")
			}
			last := items[len(items)-1]
			if last.op == reRepeat {
				return nil, p.errorf(p.pos-here+1, "multiple repeat")
			}
			n := &reNode{op: reRepeat, subs: []*reNode{last}, min: lo, max: hi}
			if ok, err := p.match('?'); err != nil {
				return nil, err
			} else if ok {
				n.mode = lazy
			} else if ok, err := p.match('+'); err != nil {
				return nil, err
			} else if ok {
				n.mode = possessive
			}
			n.minW = mulW(last.minW, lo)
			if hi == reMaxRepeat && last.maxW > 0 {
				n.maxW = widthInf
			} else {
				n.maxW = mulW(last.maxW, hi)
			}
			items[len(items)-1] = n
		case t.c == '.':
			items = append(items, charNode(&charSet{any: true, dotAll: cur&flagDotAll != 0}))
		case t.c == '(':
			n, global, err := p.group(start, verbose, flags, nested, first && len(items) == 0)
			if err != nil {
				return nil, err
			}
			if global {
				verbose = p.flags&flagVerbose != 0
				continue
			}
			if n != nil {
				items = append(items, n)
			}
		case t.c == '^':
			at := atBeginning
			if cur&flagMultiline != 0 {
				at = atBeginLine
			}
			items = append(items, &reNode{op: reAssert, at: at})
		case t.c == '$':
			at := atEnd
			if cur&flagMultiline != 0 {
				at = atEndLine
			}
			items = append(items, &reNode{op: reAssert, at: at})
		default:
			items = append(items, charNode(literalSet(t.c, cur)))
		}
	}
	if len(items) == 1 {
		return items[0], nil
	}
	return concatNode(items), nil
}

// group reads what follows '(' (at start). It returns global=true for a
// global flags group such as (?i), nil for a comment.
func (p *reParser) group(start int, verbose bool, flags reFlags, nested int, first bool) (n *reNode, global bool, err error) {
	capture := true
	atomic := false
	name := ""
	var add, del reFlags
	if ok, err := p.match('?'); err != nil {
		return nil, false, err
	} else if ok {
		c, err := p.get()
		if err != nil {
			return nil, false, err
		}
		if c.end {
			return nil, false, p.errorf(0, "unexpected end of pattern")
		}
		switch {
		case c.is('P'):
			if ok, _ := p.match('<'); ok {
				name, err = p.getUntil('>', "group name")
				if err != nil {
					return nil, false, err
				}
				if !isIdentifier(name) {
					return nil, false, p.errorf(len([]rune(name))+1, "bad character in group name %q", name)
				}
			} else if ok, _ := p.match('='); ok {
				name, err = p.getUntil(')', "group name")
				if err != nil {
					return nil, false, err
				}
				if !isIdentifier(name) {
					return nil, false, p.errorf(len([]rune(name))+1, "bad character in group name %q", name)
				}
				gid, ok := p.names[name]
				if !ok {
					return nil, false, p.errorf(len([]rune(name))+1, "unknown group name %q", name)
				}
				n, err := p.backref(gid, len([]rune(name))+1, flags|p.flags)
				return n, false, err
			} else {
				c, err := p.get()
				if err != nil {
					return nil, false, err
				}
				if c.end {
					return nil, false, p.errorf(0, "unexpected end of pattern")
				}
				return nil, false, p.errorf(0, "unknown extension ?P%s", c.text())
			}
		case c.is(':'):
			capture = false
		case c.is('#'):
			for {
				if p.pos >= len(p.src) {
					return nil, false, p.errorf(p.pos-start, "missing ), unterminated comment")
				}
				t, err := p.get()
				if err != nil {
					return nil, false, err
				}
				if t.is(')') {
					return nil, false, nil
				}
			}
		case c.is('=') || c.is('!') || c.is('<'):
			behind := false
			if c.is('<') {
				c, err = p.get()
				if err != nil {
					return nil, false, err
				}
				if c.end {
					return nil, false, p.errorf(0, "unexpected end of pattern")
				}
				if !c.is('=') && !c.is('!') {
					return nil, false, p.errorf(0, "unknown extension ?<%s", c.text())
				}
				behind = true
			}
			outer := p.lookbehind
			if behind && outer < 0 {
				p.lookbehind = len(p.groupWidths)
			}
			sub, err := p.parseSub(verbose, flags, nested+1)
			if err != nil {
				return nil, false, err
			}
			if behind {
				p.lookbehind = outer
			}
			if ok, _ := p.match(')'); !ok {
				return nil, false, p.errorf(p.pos-start, "missing ), unterminated subpattern")
			}
			if behind {
				if sub.minW > reMaxCode {
					return nil, false, &errRegex{msg: "looks too much behind", pos: start}
				}
				if sub.minW != sub.maxW {
					return nil, false, &errRegex{msg: "look-behind requires fixed-width pattern", pos: start}
				}
			}
			return &reNode{op: reLook, behind: behind, negate: c.is('!'), subs: []*reNode{sub}}, false, nil
		case c.is('('):
			condName, err := p.getUntil(')', "group name")
			if err != nil {
				return nil, false, err
			}
			var gid int
			if isIdentifier(condName) {
				g, ok := p.names[condName]
				if !ok {
					return nil, false, p.errorf(len([]rune(condName))+1, "unknown group name %q", condName)
				}
				gid = g
			} else {
				v, err := strconv.Atoi(condName)
				if err != nil || v < 0 || !allDigits(condName) {
					return nil, false, p.errorf(len([]rune(condName))+1, "bad character in group name %q", condName)
				}
				if v == 0 {
					return nil, false, p.errorf(len([]rune(condName))+1, "bad group number")
				}
				if v >= 1<<30-1 {
					return nil, false, p.errorf(len([]rune(condName))+1, "invalid group reference %d", v)
				}
				if _, ok := p.condRefs[v]; !ok {
					p.condRefs[v] = p.pos - len([]rune(condName)) - 1
				}
				gid = v
			}
			if err := p.checkLookbehindGroup(gid); err != nil {
				return nil, false, err
			}
			yes, err := p.parse(verbose, flags, nested+1, false)
			if err != nil {
				return nil, false, err
			}
			var no *reNode
			if ok, _ := p.match('|'); ok {
				no, err = p.parse(verbose, flags, nested+1, false)
				if err != nil {
					return nil, false, err
				}
				if t, _ := p.peek(); t.is('|') {
					return nil, false, p.errorf(0, "conditional backref with more than two branches")
				}
			}
			if ok, _ := p.match(')'); !ok {
				return nil, false, p.errorf(p.pos-start, "missing ), unterminated subpattern")
			}
			p.caps = true
			n := &reNode{op: reCond, group: gid, subs: []*reNode{yes, no}}
			n.minW, n.maxW = yes.minW, yes.maxW
			if no != nil {
				n.minW, n.maxW = min(n.minW, no.minW), max(n.maxW, no.maxW)
			} else {
				n.minW = 0
			}
			return n, false, nil
		case c.is('>'):
			capture = false
			atomic = true
		case !c.esc && (c.c == '-' || isFlagChar(c.c)):
			a, d, global, err := p.parseFlags(c.c)
			if err != nil {
				return nil, false, err
			}
			if global {
				if !first {
					return nil, false, p.errorf(p.pos-start, "global flags not at the start of the expression")
				}
				return nil, true, nil
			}
			add, del = a, d
			capture = false
		default:
			return nil, false, p.errorf(0, "unknown extension ?%s", c.text())
		}
	}
	gid := 0
	if capture {
		gid = len(p.groupWidths)
		if gid > 1<<30-1 {
			return nil, false, &errRegex{msg: "too many groups"}
		}
		p.groupWidths = append(p.groupWidths, [2]int64{})
		p.closed = append(p.closed, false)
		if name != "" {
			if old, ok := p.names[name]; ok {
				return nil, false, p.errorf(len([]rune(name))+1, "redefinition of group name %q as group %d; was group %d", name, gid, old)
			}
			p.names[name] = gid
		}
	}
	subVerbose := (verbose || add&flagVerbose != 0) && del&flagVerbose == 0
	sub, err := p.parseSub(subVerbose, (flags|add)&^del, nested+1)
	if err != nil {
		return nil, false, err
	}
	if ok, _ := p.match(')'); !ok {
		return nil, false, p.errorf(p.pos-start, "missing ), unterminated subpattern")
	}
	if gid > 0 {
		p.groupWidths[gid] = [2]int64{sub.minW, sub.maxW}
		p.closed[gid] = true
	}
	op := reGroup
	if atomic {
		op = reAtomic
	}
	return &reNode{op: op, group: gid, subs: []*reNode{sub}, minW: sub.minW, maxW: sub.maxW}, false, nil
}

func allDigits(s string) bool {
	for _, c := range s {
		if !isDec(c) {
			return false
		}
	}
	return s != ""
}

func isFlagChar(c rune) bool {
	switch c {
	case 'i', 'L', 'm', 's', 'x', 'a', 't', 'u':
		return true
	}
	return false
}

func flagOf(c rune) (reFlags, error) {
	switch c {
	case 'i':
		return flagIgnoreCase, nil
	case 'm':
		return flagMultiline, nil
	case 's':
		return flagDotAll, nil
	case 'x':
		return flagVerbose, nil
	case 'a':
		return flagASCII, nil
	case 'u':
		return flagUnicode, nil
	case 'L':
		return 0, &errRegex{msg: "bad inline flags: cannot use 'L' flag with a str pattern"}
	}
	// 't' (TEMPLATE) is undocumented and turns off backtracking.
	return 0, fmt.Errorf("inline flag %q: %w", c, errRegexUnsupported)
}

const typeFlags = flagASCII | flagUnicode

// parseFlags reads inline flags after "(?", first being the first flag or
// '-'. global reports (?flags) without a colon, which sets p.flags.
func (p *reParser) parseFlags(first rune) (add, del reFlags, global bool, err error) {
	c := first
	if c != '-' {
		for {
			f, err := flagOf(c)
			if err != nil {
				if e, ok := err.(*errRegex); ok {
					e.pos = p.pos
				}
				return 0, 0, false, err
			}
			add |= f
			if f&typeFlags != 0 && add&typeFlags != f {
				return 0, 0, false, p.errorf(0, "bad inline flags: flags 'a', 'u' and 'L' are incompatible")
			}
			t, err := p.get()
			if err != nil {
				return 0, 0, false, err
			}
			if t.end {
				return 0, 0, false, p.errorf(0, "missing -, : or )")
			}
			if t.is(')') || t.is('-') || t.is(':') {
				c = t.c
				break
			}
			if t.esc || !isFlagChar(t.c) {
				if !t.esc && unicode.IsLetter(t.c) {
					return 0, 0, false, p.errorf(1, "unknown flag")
				}
				return 0, 0, false, p.errorf(1, "missing -, : or )")
			}
			c = t.c
		}
	}
	if c == ')' {
		p.flags |= add
		return 0, 0, true, nil
	}
	if c == '-' {
		t, err := p.get()
		if err != nil {
			return 0, 0, false, err
		}
		if t.end {
			return 0, 0, false, p.errorf(0, "missing flag")
		}
		if t.esc || !isFlagChar(t.c) {
			if !t.esc && unicode.IsLetter(t.c) {
				return 0, 0, false, p.errorf(1, "unknown flag")
			}
			return 0, 0, false, p.errorf(1, "missing flag")
		}
		for {
			f, err := flagOf(t.c)
			if err != nil {
				return 0, 0, false, err
			}
			if f&typeFlags != 0 {
				return 0, 0, false, p.errorf(0, "bad inline flags: cannot turn off flags 'a', 'u' and 'L'")
			}
			del |= f
			t, err = p.get()
			if err != nil {
				return 0, 0, false, err
			}
			if t.end {
				return 0, 0, false, p.errorf(0, "missing :")
			}
			if t.is(':') {
				break
			}
			if t.esc || !isFlagChar(t.c) {
				if !t.esc && unicode.IsLetter(t.c) {
					return 0, 0, false, p.errorf(1, "unknown flag")
				}
				return 0, 0, false, p.errorf(1, "missing :")
			}
		}
	}
	if add&del != 0 {
		return 0, 0, false, p.errorf(1, "bad inline flags: flag turned on and off")
	}
	return add, del, false, nil
}

func (p *reParser) checkLookbehindGroup(gid int) error {
	if p.lookbehind < 0 {
		return nil
	}
	if gid >= len(p.groupWidths) || !p.closed[gid] {
		return p.errorf(0, "cannot refer to an open group")
	}
	if gid >= p.lookbehind {
		return p.errorf(0, "cannot refer to group defined in the same lookbehind subpattern")
	}
	return nil
}

func (p *reParser) backref(gid, back int, flags reFlags) (*reNode, error) {
	if gid >= len(p.groupWidths) || !p.closed[gid] {
		return nil, p.errorf(back, "cannot refer to an open group")
	}
	if err := p.checkLookbehindGroup(gid); err != nil {
		return nil, err
	}
	p.caps = true
	w := p.groupWidths[gid]
	return &reNode{op: reBackref, group: gid, fold: flags&flagIgnoreCase != 0, ascii: flags&flagASCII != 0,
		minW: w[0], maxW: w[1]}, nil
}

// escape reads an escape outside a class (Python's _escape).
func (p *reParser) escape(t token, flags reFlags) (*reNode, error) {
	ascii := flags&flagASCII != 0
	switch t.c {
	case 'A':
		return &reNode{op: reAssert, at: atBeginString}, nil
	case 'Z':
		return &reNode{op: reAssert, at: atEndString}, nil
	case 'b':
		return &reNode{op: reAssert, at: atBoundary, ascii: ascii}, nil
	case 'B':
		return &reNode{op: reAssert, at: atNonBoundary, ascii: ascii}, nil
	case 'd', 'D', 's', 'S', 'w', 'W':
		return charNode(&charSet{items: []setItem{categoryItem(t.c, ascii)}}), nil
	}
	if c, ok := simpleEscape(t.c); ok {
		return charNode(literalSet(c, flags)), nil
	}
	switch {
	case t.c == 'x' || t.c == 'u' || t.c == 'U' || t.c == 'N':
		c, err := p.hexEscape(t.c)
		if err != nil {
			return nil, err
		}
		return charNode(literalSet(c, flags)), nil
	case t.c == '0':
		s := p.getWhile(2, isOct)
		v, _ := strconv.ParseInt("0"+s, 8, 32)
		return charNode(literalSet(rune(v), flags)), nil
	case isDec(t.c):
		digits := string(t.c)
		if p.pos < len(p.src) && isDec(p.src[p.pos]) {
			digits += string(p.src[p.pos])
			p.pos++
			if isOct(rune(digits[0])) && isOct(rune(digits[1])) && p.pos < len(p.src) && isOct(p.src[p.pos]) {
				digits += string(p.src[p.pos])
				p.pos++
				v, _ := strconv.ParseInt(digits, 8, 32)
				if v > 0o377 {
					return nil, p.errorf(len(digits)+1, `octal escape value \%s outside of range 0-0o377`, digits)
				}
				return charNode(literalSet(rune(v), flags)), nil
			}
		}
		gid, _ := strconv.Atoi(digits)
		if gid < len(p.groupWidths) {
			return p.backref(gid, len(digits)+1, flags)
		}
		return nil, p.errorf(len(digits), "invalid group reference %d", gid)
	case isASCIILetter(t.c):
		return nil, p.errorf(2, `bad escape \%c`, t.c)
	}
	return charNode(literalSet(t.c, flags)), nil
}

func simpleEscape(c rune) (rune, bool) {
	switch c {
	case 'a':
		return '\a', true
	case 'f':
		return '\f', true
	case 'n':
		return '\n', true
	case 'r':
		return '\r', true
	case 't':
		return '\t', true
	case 'v':
		return '\v', true
	case '\\':
		return '\\', true
	}
	return 0, false
}

// hexEscape reads the digits of \x, \u or \U (kind).
func (p *reParser) hexEscape(kind rune) (rune, error) {
	var n int
	switch kind {
	case 'x':
		n = 2
	case 'u':
		n = 4
	case 'U':
		n = 8
	default: // 'N'
		return 0, fmt.Errorf(`\N{...} named character: %w`, errRegexUnsupported)
	}
	s := p.getWhile(n, isHex)
	if len(s) != n {
		return 0, p.errorf(len(s)+2, `incomplete escape \%c%s`, kind, s)
	}
	v, _ := strconv.ParseUint(s, 16, 32)
	if v > unicode.MaxRune {
		return 0, p.errorf(len(s)+2, `bad escape \%c%s`, kind, s)
	}
	return rune(v), nil
}

// classEscape reads an escape inside a class (Python's _class_escape). It
// returns a literal (ok) or a category item.
func (p *reParser) classEscape(t token, flags reFlags) (c rune, cat *setItem, err error) {
	switch t.c {
	case 'd', 'D', 's', 'S', 'w', 'W':
		it := categoryItem(t.c, flags&flagASCII != 0)
		return 0, &it, nil
	case 'b':
		return '\b', nil, nil
	}
	if c, ok := simpleEscape(t.c); ok {
		return c, nil, nil
	}
	switch {
	case t.c == 'x' || t.c == 'u' || t.c == 'U' || t.c == 'N':
		c, err := p.hexEscape(t.c)
		return c, nil, err
	case isOct(t.c):
		s := string(t.c) + p.getWhile(2, isOct)
		v, _ := strconv.ParseInt(s, 8, 32)
		if v > 0o377 {
			return 0, nil, p.errorf(len(s)+1, `octal escape value \%s outside of range 0-0o377`, s)
		}
		return rune(v), nil, nil
	case isDec(t.c) || isASCIILetter(t.c):
		return 0, nil, p.errorf(2, `bad escape \%c`, t.c)
	}
	return t.c, nil, nil
}

// class reads a character class after '[' (at start).
func (p *reParser) class(start int, flags reFlags) (*reNode, error) {
	set := &charSet{fold: foldOf(flags)}
	negate, err := p.match('^')
	if err != nil {
		return nil, err
	}
	n := 0 // items so far, as Python's set list
	for {
		t, err := p.get()
		if err != nil {
			return nil, err
		}
		if t.end {
			return nil, p.errorf(p.pos-start, "unterminated character set")
		}
		if t.is(']') && n > 0 {
			break
		}
		var lo rune
		var cat *setItem
		if t.esc {
			lo, cat, err = p.classEscape(t, flags)
			if err != nil {
				return nil, err
			}
		} else {
			lo = t.c
		}
		if ok, err := p.match('-'); err != nil {
			return nil, err
		} else if ok {
			that, err := p.get()
			if err != nil {
				return nil, err
			}
			if that.end {
				return nil, p.errorf(p.pos-start, "unterminated character set")
			}
			if that.is(']') {
				if cat != nil {
					set.items = append(set.items, *cat)
				} else {
					set.items = append(set.items, setItem{lo: lo, hi: lo})
				}
				set.items = append(set.items, setItem{lo: '-', hi: '-'})
				n += 2
				break
			}
			var hi rune
			var cat2 *setItem
			if that.esc {
				hi, cat2, err = p.classEscape(that, flags)
				if err != nil {
					return nil, err
				}
			} else {
				hi = that.c
			}
			if cat != nil || cat2 != nil || hi < lo {
				return nil, p.errorf(len(t.text())+1+len(that.text()), "bad character range %s-%s", t.text(), that.text())
			}
			set.items = append(set.items, setItem{lo: lo, hi: hi})
			n++
			continue
		}
		if cat != nil {
			set.items = append(set.items, *cat)
		} else {
			set.items = append(set.items, setItem{lo: lo, hi: lo})
		}
		n++
	}
	set.negate = negate
	return charNode(set), nil
}

// analyze marks the nodes whose end is unique (det) bottom-up. With
// captures read (caps), a capturing group has a side effect and is never
// det.
func analyze(n *reNode, caps bool) {
	for _, s := range n.subs {
		if s != nil {
			analyze(s, caps)
		}
	}
	switch n.op {
	case reChar, reAssert, reLook, reAtomic, reBackref:
		n.det = true
	case reGroup:
		n.det = n.subs[0].det && (n.group == 0 || !caps)
	case reConcat:
		n.det = true
		for _, s := range n.subs {
			n.det = n.det && s.det
		}
	case reAlt:
		n.det = true
		for _, s := range n.subs {
			n.det = n.det && s.det && s.minW == s.maxW && s.minW == n.subs[0].minW
		}
	case reRepeat:
		n.det = n.mode == possessive || (n.subs[0].det && n.min == n.max)
	case reCond:
		yes, no := n.subs[0], n.subs[1]
		n.det = yes.det && no != nil && no.det && yes.minW == yes.maxW && no.minW == no.maxW && yes.minW == no.minW
	}
}

// anchoredAtStart reports a pattern that can match only at position 0.
func anchoredAtStart(n *reNode) bool {
	for {
		switch n.op {
		case reAssert:
			return n.at == atBeginning || n.at == atBeginString
		case reConcat:
			if len(n.subs) == 0 {
				return false
			}
			n = n.subs[0]
		case reGroup, reAtomic:
			n = n.subs[0]
		default:
			return false
		}
	}
}
