// Package deb822 reads and writes the control-file format of Debian's
// archive indices (deb822(5)): paragraphs of "Name: value" fields,
// separated by blank lines, a value continued on lines that start with a
// space or a tab.
//
// It keeps a field's value as written, continuation lines included, so
// that a paragraph read and written again is byte for byte the archive's:
// forge pins the archive's own stanzas (its Priority overrides differ from
// the .debs' control files), and rewrites only the fields it must.
package deb822

import (
	"bytes"
	"fmt"
	"strings"
)

// Field is one field of a paragraph.
type Field struct {
	// Name is the field's name as written (matched without regard to
	// case, as dpkg does).
	Name string
	// Raw is everything after the colon, continuation lines included
	// ("\n" and their leading space or tab kept), without the final
	// newline.
	Raw string
}

// Paragraph is one stanza: its fields in order.
type Paragraph struct {
	Fields []Field
}

// Get returns the field's value without its surrounding white space, and
// whether the paragraph has it. For a multi-line field it is the whole
// value, continuation lines included.
func (p *Paragraph) Get(name string) (string, bool) {
	for _, f := range p.Fields {
		if strings.EqualFold(f.Name, name) {
			return strings.TrimSpace(f.Raw), true
		}
	}
	return "", false
}

// Value is Get without the second result.
func (p *Paragraph) Value(name string) string {
	v, _ := p.Get(name)
	return v
}

// Set gives the field the one-line value, in its place if the paragraph
// has it, else at the end.
func (p *Paragraph) Set(name, value string) {
	raw := " " + value
	for i, f := range p.Fields {
		if strings.EqualFold(f.Name, name) {
			p.Fields[i].Raw = raw
			return
		}
	}
	p.Fields = append(p.Fields, Field{Name: name, Raw: raw})
}

// Delete removes the field, if the paragraph has it.
func (p *Paragraph) Delete(name string) {
	out := p.Fields[:0]
	for _, f := range p.Fields {
		if !strings.EqualFold(f.Name, name) {
			out = append(out, f)
		}
	}
	p.Fields = out
}

// AppendTo appends the paragraph, each field on its own line(s), without
// the blank line that separates paragraphs.
func (p *Paragraph) AppendTo(b []byte) []byte {
	for _, f := range p.Fields {
		b = append(b, f.Name...)
		b = append(b, ':')
		b = append(b, f.Raw...)
		b = append(b, '\n')
	}
	return b
}

// Format writes paragraphs separated by blank lines, as archive indices
// are.
func Format(ps []Paragraph) []byte {
	var b []byte
	for i := range ps {
		if i > 0 {
			b = append(b, '\n')
		}
		b = ps[i].AppendTo(b)
	}
	return b
}

// Parse reads every paragraph of data. A line that is neither a field,
// a continuation nor blank is an error naming its line number; so is a
// field name repeated within a paragraph. Comment lines (starting with
// "#") are not part of the format of archive indices and are errors too.
func Parse(data []byte) ([]Paragraph, error) {
	var (
		ps    []Paragraph
		cur   *Paragraph
		names map[string]bool // the current paragraph's, lower case
		cont  []string        // the current field's continuation lines
	)
	// endField joins the current field's continuation lines once: a
	// field continued over many lines costs their length, not its square.
	endField := func() {
		if cur != nil && len(cont) > 0 {
			last := &cur.Fields[len(cur.Fields)-1]
			last.Raw += "\n" + strings.Join(cont, "\n")
		}
		cont = cont[:0]
	}
	for n, line := range bytes.Split(data, []byte("\n")) {
		lineNo := n + 1
		s := strings.TrimSuffix(string(line), "\r")
		switch {
		case strings.TrimSpace(s) == "":
			endField()
			cur = nil
		case s[0] == ' ' || s[0] == '\t':
			if cur == nil {
				return nil, fmt.Errorf("line %d: a continuation line with no field before it", lineNo)
			}
			cont = append(cont, s)
		default:
			endField()
			name, raw, ok := strings.Cut(s, ":")
			if !ok || name == "" || strings.ContainsAny(name, " \t") || name[0] == '#' || name[0] == '-' {
				return nil, fmt.Errorf("line %d: %q is not a field (Name: value)", lineNo, truncate(s))
			}
			if cur == nil {
				ps = append(ps, Paragraph{})
				cur = &ps[len(ps)-1]
				names = map[string]bool{}
			}
			key := strings.ToLower(name)
			if names[key] {
				return nil, fmt.Errorf("line %d: field %s given twice in one paragraph", lineNo, name)
			}
			names[key] = true
			cur.Fields = append(cur.Fields, Field{Name: name, Raw: raw})
		}
	}
	endField()
	return ps, nil
}

// truncate shortens s for an error message.
func truncate(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
