package jsonschema

import (
	"strconv"
	"unicode"
)

// This file runs the patterns regex.go compiles: character sets, and the
// backtracking matcher.

// charSet is the set of code points one position may hold.
type charSet struct {
	negate bool
	any    bool // '.': all but '\n' unless dotAll
	dotAll bool
	fold   foldMode
	items  []setItem
}

type foldMode uint8

const (
	noFold foldMode = iota
	unicodeFold
	asciiFold
)

func foldOf(flags reFlags) foldMode {
	switch {
	case flags&flagIgnoreCase == 0:
		return noFold
	case flags&flagASCII != 0:
		return asciiFold
	}
	return unicodeFold
}

type category uint8

const (
	catNone category = iota
	catDigit
	catSpace
	catWord
)

type setItem struct {
	lo, hi rune
	cat    category
	not    bool // \D \S \W
	ascii  bool
}

func categoryItem(c rune, ascii bool) setItem {
	it := setItem{ascii: ascii}
	switch c {
	case 'd', 'D':
		it.cat = catDigit
	case 's', 'S':
		it.cat = catSpace
	case 'w', 'W':
		it.cat = catWord
	}
	it.not = c == 'D' || c == 'S' || c == 'W'
	return it
}

func literalSet(c rune, flags reFlags) *charSet {
	return &charSet{fold: foldOf(flags), items: []setItem{{lo: c, hi: c}}}
}

// isSpace is Python's str.isspace, which \s follows.
func isSpace(r rune) bool {
	switch {
	case r >= '\t' && r <= '\r', r >= 0x1c && r <= ' ', r == 0x85, r == 0xa0, r == 0x1680,
		r >= 0x2000 && r <= 0x200a, r == 0x2028, r == 0x2029, r == 0x202f, r == 0x205f, r == 0x3000:
		return true
	}
	return false
}

// isWord is \w: Python's str.isalnum or '_'.
func isWord(r rune, ascii bool) bool {
	if r < 0x80 || ascii {
		return r < 0x80 && (r == '_' || isDec(r) || isASCIILetter(r))
	}
	return unicode.IsLetter(r) || unicode.IsNumber(r)
}

func (it *setItem) contains(r rune) bool {
	var in bool
	switch it.cat {
	case catNone:
		return r >= it.lo && r <= it.hi
	case catDigit:
		if it.ascii || r < 0x80 {
			in = isDec(r)
		} else {
			in = unicode.Is(unicode.Nd, r)
		}
	case catSpace:
		if it.ascii {
			in = r == ' ' || (r >= '\t' && r <= '\r')
		} else {
			in = isSpace(r)
		}
	case catWord:
		in = isWord(r, it.ascii)
	}
	return in != it.not
}

func (cs *charSet) contains(r rune) bool {
	for i := range cs.items {
		if cs.items[i].contains(r) {
			return true
		}
	}
	return false
}

func (cs *charSet) match(r rune) bool {
	if cs.any {
		return r != '\n' || cs.dotAll
	}
	in := cs.contains(r)
	if !in {
		switch cs.fold {
		case unicodeFold:
			for f := unicode.SimpleFold(r); f != r; f = unicode.SimpleFold(f) {
				if cs.contains(f) {
					in = true
					break
				}
			}
		case asciiFold:
			if r < 0x80 && isASCIILetter(r) {
				in = cs.contains(r ^ 0x20)
			}
		}
	}
	return in != cs.negate
}

// reText is the subject of a match: its code points, as Python's str
// holds them.
type reText struct {
	s string // when ASCII
	r []rune // otherwise
	n int
}

func newText(s string) reText {
	for i := 0; i < len(s); i++ {
		if s[i] >= 0x80 {
			r := wtf8Runes(s)
			return reText{r: r, n: len(r)}
		}
	}
	return reText{s: s, n: len(s)}
}

func (t *reText) at(i int) rune {
	if t.r != nil {
		return t.r[i]
	}
	return rune(t.s[i])
}

type reMatcher struct {
	re    *regex
	text  reText
	caps  []int // start, end per group; -1 when unset
	b     *budget
	depth int
}

// search reports whether re matches anywhere in s, as Python's
// bool(re.search(pattern, s)). It spends b and panics with errBudget when
// b runs out.
func (re *regex) search(s string, b *budget) bool {
	m := &reMatcher{re: re, text: newText(s), b: b}
	if re.caps {
		m.caps = make([]int, 2*(re.groups+1))
	}
	accept := func(int) bool { return true }
	last := m.text.n
	if re.anchored {
		last = 0
	}
	for start := 0; start <= last; start++ {
		for i := range m.caps {
			m.caps[i] = -1
		}
		if m.match(re.root, start, accept) {
			return true
		}
	}
	return false
}

func (m *reMatcher) isWordAt(i int, ascii bool) bool {
	return i >= 0 && i < m.text.n && isWord(m.text.at(i), ascii)
}

func (m *reMatcher) assert(n *reNode, pos int) bool {
	t := &m.text
	switch n.at {
	case atBeginning, atBeginString:
		return pos == 0
	case atBeginLine:
		return pos == 0 || t.at(pos-1) == '\n'
	case atEnd:
		return pos == t.n || (pos == t.n-1 && t.at(pos) == '\n')
	case atEndLine:
		return pos == t.n || t.at(pos) == '\n'
	case atEndString:
		return pos == t.n
	case atBoundary:
		return t.n > 0 && m.isWordAt(pos-1, n.ascii) != m.isWordAt(pos, n.ascii)
	case atNonBoundary:
		return t.n > 0 && m.isWordAt(pos-1, n.ascii) == m.isWordAt(pos, n.ascii)
	}
	return false
}

func (m *reMatcher) look(n *reNode, pos int) bool {
	sub := n.subs[0]
	var saved []int
	if m.caps != nil && n.negate {
		saved = append([]int(nil), m.caps...)
	}
	var ok bool
	if n.behind {
		w := int(sub.minW)
		if pos-w >= 0 {
			ok = m.match(sub, pos-w, func(e int) bool { return e == pos })
		}
	} else {
		ok = m.match(sub, pos, func(int) bool { return true })
	}
	if saved != nil {
		copy(m.caps, saved)
	}
	return ok != n.negate
}

func (m *reMatcher) backref(n *reNode, pos int) (int, bool) {
	s, e := m.caps[2*n.group], m.caps[2*n.group+1]
	if s < 0 || e < 0 {
		return 0, false
	}
	if pos+(e-s) > m.text.n {
		return 0, false
	}
	m.b.spend(int64(e-s) / 8)
	for i := 0; i < e-s; i++ {
		a, b := m.text.at(s+i), m.text.at(pos+i)
		if a == b {
			continue
		}
		if !n.fold || !foldEqual(a, b, n.ascii) {
			return 0, false
		}
	}
	return pos + (e - s), true
}

func foldEqual(a, b rune, ascii bool) bool {
	if ascii {
		return a < 0x80 && b < 0x80 && isASCIILetter(a) && a^0x20 == b
	}
	for f := unicode.SimpleFold(a); f != a; f = unicode.SimpleFold(f) {
		if f == b {
			return true
		}
	}
	return false
}

func (m *reMatcher) enter() {
	m.b.spend(1)
	m.depth++
	if m.depth > reMaxDepth {
		panic(errBudget)
	}
}

// run matches a det node at pos and returns where it ends.
func (m *reMatcher) run(n *reNode, pos int) (int, bool) {
	m.b.spend(1)
	switch n.op {
	case reChar:
		m.b.spend(int64(len(n.set.items) / 8)) // a long class costs more
		if pos < m.text.n && n.set.match(m.text.at(pos)) {
			return pos + 1, true
		}
		return 0, false
	case reAssert:
		return pos, m.assert(n, pos)
	case reLook:
		return pos, m.look(n, pos)
	case reGroup:
		return m.run(n.subs[0], pos)
	case reConcat:
		for _, s := range n.subs {
			var ok bool
			if pos, ok = m.run(s, pos); !ok {
				return 0, false
			}
		}
		return pos, true
	case reAlt:
		for _, s := range n.subs {
			if e, ok := m.run(s, pos); ok {
				return e, true
			}
		}
		return 0, false
	case reBackref:
		return m.backref(n, pos)
	case reCond:
		if m.caps[2*n.group+1] >= 0 {
			return m.run(n.subs[0], pos)
		}
		return m.run(n.subs[1], pos)
	case reRepeat:
		if n.mode != possessive {
			for i := int64(0); i < n.min; i++ {
				var ok bool
				if pos, ok = m.run(n.subs[0], pos); !ok {
					return 0, false
				}
			}
			return pos, true
		}
	}
	// reAtomic and possessive repeats: the first way the node matches.
	end := -1
	var inner *reNode
	if n.op == reAtomic {
		inner = n.subs[0]
	} else {
		cp := *n
		cp.mode = greedy
		cp.det = n.subs[0].det && n.min == n.max
		inner = &cp
	}
	m.match(inner, pos, func(e int) bool { end = e; return true })
	return end, end >= 0
}

// match matches n at pos and then k where n ends, backtracking over the
// ways n can match until k accepts one.
func (m *reMatcher) match(n *reNode, pos int, k func(int) bool) bool {
	if n.det {
		e, ok := m.run(n, pos)
		return ok && k(e)
	}
	m.enter()
	defer func() { m.depth-- }()
	switch n.op {
	case reGroup:
		if n.group == 0 || m.caps == nil {
			return m.match(n.subs[0], pos, k)
		}
		i := 2 * n.group
		return m.match(n.subs[0], pos, func(e int) bool {
			s0, e0 := m.caps[i], m.caps[i+1]
			m.caps[i], m.caps[i+1] = pos, e
			if k(e) {
				return true
			}
			m.caps[i], m.caps[i+1] = s0, e0
			return false
		})
	case reConcat:
		return m.seq(n.subs, pos, k)
	case reAlt:
		for _, s := range n.subs {
			if m.match(s, pos, k) {
				return true
			}
		}
		return false
	case reCond:
		if m.caps[2*n.group+1] >= 0 {
			return m.match(n.subs[0], pos, k)
		}
		if n.subs[1] == nil {
			return k(pos)
		}
		return m.match(n.subs[1], pos, k)
	case reRepeat:
		if n.subs[0].det {
			return m.repeatDet(n, pos, k)
		}
		return m.repeat(n, 0, pos, k)
	}
	panic("jsonschema: regex node not det: " + strconv.Itoa(int(n.op)))
}

// seq matches subs one after another, then k.
func (m *reMatcher) seq(subs []*reNode, pos int, k func(int) bool) bool {
	for len(subs) > 0 && subs[0].det {
		var ok bool
		if pos, ok = m.run(subs[0], pos); !ok {
			return false
		}
		subs = subs[1:]
	}
	if len(subs) == 0 {
		return k(pos)
	}
	if len(subs) == 1 {
		return m.match(subs[0], pos, k)
	}
	rest := subs[1:]
	return m.match(subs[0], pos, func(e int) bool { return m.seq(rest, e, k) })
}

// repeatDet runs a repeat of a det node without recursion: each count of
// iterations has one end.
func (m *reMatcher) repeatDet(n *reNode, pos int, k func(int) bool) bool {
	sub := n.subs[0]
	if w := int(sub.minW); sub.minW == sub.maxW && w > 0 {
		// Fixed width: count iterations, the ends follow.
		count := int64(0)
		for cur := pos; count < n.max; count++ {
			e, ok := m.run(sub, cur)
			if !ok {
				break
			}
			cur = e
		}
		if count < n.min {
			return false
		}
		if n.mode == lazy {
			for c := n.min; c <= count; c++ {
				if k(pos + int(c)*w) {
					return true
				}
			}
			return false
		}
		for c := count; c >= n.min; c-- {
			if k(pos + int(c)*w) {
				return true
			}
		}
		return false
	}
	ends := []int{pos}
	cur := pos
	empty := false // an iteration matched the empty string at cur
	for count := int64(0); count < n.max; count++ {
		e, ok := m.run(sub, cur)
		if !ok {
			break
		}
		if e == cur {
			// Every further iteration is empty too: any count
			// from here on ends at cur.
			empty = true
			break
		}
		cur = e
		ends = append(ends, e)
	}
	count := int64(len(ends) - 1)
	if count < n.min {
		return empty && k(cur)
	}
	if n.mode == lazy {
		for c := n.min; c <= count; c++ {
			if k(ends[c]) {
				return true
			}
		}
		return false
	}
	for c := count; c >= n.min; c-- {
		if k(ends[c]) {
			return true
		}
	}
	return false
}

// repeat runs a repeat of a node with several possible ends, count
// iterations having been matched, the last ending at pos.
func (m *reMatcher) repeat(n *reNode, count int64, pos int, k func(int) bool) bool {
	m.enter()
	defer func() { m.depth-- }()
	more := func() bool {
		if count >= n.max {
			return false
		}
		return m.match(n.subs[0], pos, func(e int) bool {
			if e == pos && count >= n.min {
				// An empty iteration changes nothing; stop here.
				return false
			}
			return m.repeat(n, count+1, e, k)
		})
	}
	if n.mode == lazy {
		if count >= n.min && k(pos) {
			return true
		}
		return more()
	}
	if more() {
		return true
	}
	return count >= n.min && k(pos)
}
