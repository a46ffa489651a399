package sources

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The source types forge fetches.
const (
	Curl   = "org.osbuild.curl"
	Inline = "org.osbuild.inline"
)

// unsupported are osbuild's other sources, which fetch no plain files.
var unsupported = map[string]string{
	"org.osbuild.ostree":             "ostree commits",
	"org.osbuild.skopeo":             "container images",
	"org.osbuild.skopeo-index":       "container image indexes",
	"org.osbuild.containers-storage": "container images from the host's storage",
	"org.osbuild.librepo":            "RPMs through librepo's mirror lists",
}

// Inline encodings (osbuild's org.osbuild.inline).
const (
	EncodingBase64     = "base64"
	EncodingLZMABase64 = "lzma+base64"
)

// Item is one file a source provides.
type Item struct {
	Checksum string // "sha256:…": the file's name and what its content must hash to
	Type     string // Curl or Inline

	// Curl.
	URL      string
	Insecure bool   // skip TLS verification for this item
	Secrets  string // the secrets provider's name ("org.osbuild.mtls"); "" for none

	// Inline.
	Encoding string // EncodingBase64 or EncodingLZMABase64
	Data     []byte // the data, base64-decoded (still compressed for lzma+base64)
}

// Sources are the items of a manifest's "sources", by checksum. A checksum
// that two sources provide is the inline one: it needs no network.
type Sources struct {
	Items map[string]*Item
}

// Checksums lists the items' checksums, sorted.
func (s *Sources) Checksums() []string {
	out := make([]string, 0, len(s.Items))
	for c := range s.Items {
		out = append(out, c)
	}
	sort.Strings(out)
	return out
}

// algorithms are the checksums osbuild's sources accept, with their hex
// digest lengths.
var algorithms = map[string]struct {
	hexLen int
	new    func() hash.Hash
}{
	"md5":    {32, md5.New},
	"sha1":   {40, sha1.New},
	"sha256": {64, sha256.New},
	"sha384": {96, sha512.New384},
	"sha512": {128, sha512.New},
}

// ErrChecksum is what a malformed checksum's error wraps.
var ErrChecksum = errors.New("bad checksum")

// ValidChecksum checks that s is an item's checksum: md5, sha1, sha256,
// sha384 or sha512, ":", and a lowercase hex digest of that algorithm's
// length. (osbuild's schemas ask for 32 to 128 hex digits after any of
// those names; a digest of the wrong length or in upper case could never
// match, as osbuild compares it with Python's lowercase hexdigest.)
func ValidChecksum(s string) error {
	algo, digest, ok := strings.Cut(s, ":")
	a, known := algorithms[algo]
	switch {
	case !ok || !known:
		return fmt.Errorf("%w %q: want md5, sha1, sha256, sha384 or sha512, \":\" and a hex digest", ErrChecksum, short(s))
	case len(digest) != a.hexLen:
		return fmt.Errorf("%w %q: a %s digest has %d hex digits, not %d", ErrChecksum, short(s), algo, a.hexLen, len(digest))
	case strings.IndexFunc(digest, func(r rune) bool { return !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') }) >= 0:
		return fmt.Errorf("%w %q: want lowercase hex digits after %q", ErrChecksum, short(s), algo+":")
	}
	return nil
}

// newHash returns the hash of a valid checksum's algorithm.
func newHash(checksum string) hash.Hash {
	algo, _, _ := strings.Cut(checksum, ":")
	return algorithms[algo].new()
}

// short cuts a long string for a message.
func short(s string) string {
	if len(s) <= 140 {
		return s
	}
	cut := 128
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

// Error is one problem with a manifest's sources, at a JSON path.
type Error struct {
	Path string // like `sources["org.osbuild.curl"].items["sha256:…"].url`
	Msg  string
}

func (e *Error) Error() string { return e.Path + ": " + e.Msg }

// Errors are the problems Parse found, sorted by path (at most
// maxErrors, then one saying how many more).
type Errors []*Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives errors.As every problem.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

const maxErrors = 100

type parser struct {
	errs []*Error
}

func (p *parser) add(path, format string, args ...any) {
	p.errs = append(p.errs, &Error{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func (p *parser) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	sort.SliceStable(p.errs, func(i, j int) bool { return p.errs[i].Path < p.errs[j].Path })
	if n := len(p.errs); n > maxErrors {
		p.errs = append(p.errs[:maxErrors], &Error{Path: "sources", Msg: fmt.Sprintf("%d more problems not listed", n-maxErrors)})
	}
	return Errors(p.errs)
}

// Parse reads a format-2 manifest's "sources" object (raw JSON; null or
// empty means none), as osbuild's schemas for org.osbuild.curl and
// org.osbuild.inline take it: {"org.osbuild.curl": {"items": {CHECKSUM: URL
// or {"url", "insecure", "secrets": {"name"}}}}, "org.osbuild.inline":
// {"items": {CHECKSUM: {"encoding", "data"}}}}. Neither takes "options"
// (osbuild's schemas for them refuse it). Every problem is an *Error naming
// its JSON path; the error returned is an Errors.
func Parse(raw []byte) (*Sources, error) {
	return parse(raw, false)
}

// ParseFormat1 reads a format-1 manifest's "sources": osbuild's v1 loader
// takes {"org.osbuild.files": {"urls": {CHECKSUM: URL or {"url", …}}}} as
// org.osbuild.curl, and no other source forge fetches.
func ParseFormat1(raw []byte) (*Sources, error) {
	return parse(raw, true)
}

func parse(raw []byte, format1 bool) (*Sources, error) {
	s := &Sources{Items: map[string]*Item{}}
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return s, nil
	}
	p := &parser{}
	types, ok := p.object("sources", raw)
	if !ok {
		return nil, p.err()
	}
	for _, name := range sortedKeys(types) {
		path := join("sources", name)
		fields, ok := p.object(path, types[name])
		if !ok {
			continue
		}
		itemsKey := "items"
		typ := name
		switch {
		case format1 && name == "org.osbuild.files":
			itemsKey, typ = "urls", Curl
		case format1:
			p.add(path, "unknown source type: a format-1 manifest's sources are org.osbuild.files (downloads)")
			continue
		case name == Curl || name == Inline:
		case unsupported[name] != "":
			p.add(path, "source type %s is not supported by forge: it fetches %s, not files; forge fetches %s and %s", name, unsupported[name], Curl, Inline)
			continue
		default:
			p.add(path, "unknown source type %q: forge supports %s and %s", short(name), Curl, Inline)
			continue
		}
		for _, k := range sortedKeys(fields) {
			if k != itemsKey {
				p.add(join(path, k), "unknown key: %s takes only %q", name, itemsKey)
			}
		}
		rawItems, ok := fields[itemsKey]
		if !ok {
			p.add(path, "%q is required", itemsKey)
			continue
		}
		items, ok := p.object(join(path, itemsKey), rawItems)
		if !ok {
			continue
		}
		for _, checksum := range sortedKeys(items) {
			ipath := join(join(path, itemsKey), checksum)
			if err := ValidChecksum(checksum); err != nil {
				p.add(ipath, "%v", err)
				continue
			}
			var it *Item
			if typ == Curl {
				it = p.curlItem(ipath, items[checksum])
			} else {
				it = p.inlineItem(ipath, items[checksum])
			}
			if it == nil {
				continue
			}
			it.Checksum, it.Type = checksum, typ
			if old := s.Items[checksum]; old == nil || old.Type == Curl {
				s.Items[checksum] = it
			}
		}
	}
	if err := p.err(); err != nil {
		return nil, err
	}
	return s, nil
}

func (p *parser) curlItem(path string, raw json.RawMessage) *Item {
	if kind(raw) == "string" {
		var url string
		if err := json.Unmarshal(raw, &url); err != nil {
			p.add(path, "%v", err)
			return nil
		}
		return &Item{URL: url}
	}
	if kind(raw) != "object" {
		p.add(path, "want a URL (a string) or an object, got %s", kind(raw))
		return nil
	}
	fields, ok := p.object(path, raw)
	if !ok {
		return nil
	}
	it := &Item{}
	for _, k := range sortedKeys(fields) {
		v := fields[k]
		switch k {
		case "url":
			if !p.decode(join(path, k), v, "string", &it.URL) {
				return nil
			}
		case "insecure":
			if !p.decode(join(path, k), v, "boolean", &it.Insecure) {
				return nil
			}
		case "secrets":
			sec, ok := p.object(join(path, k), v)
			if !ok {
				return nil
			}
			for _, sk := range sortedKeys(sec) {
				if sk != "name" {
					p.add(join(join(path, k), sk), `unknown key: secrets have only "name"`)
					return nil
				}
			}
			if _, ok := sec["name"]; !ok {
				p.add(join(path, k), `"name" is required`)
				return nil
			}
			if !p.decode(join(join(path, k), "name"), sec["name"], "string", &it.Secrets) {
				return nil
			}
		default:
			p.add(join(path, k), `unknown key: an item has "url", "insecure" and "secrets"`)
			return nil
		}
	}
	if _, ok := fields["url"]; !ok {
		p.add(path, `"url" is required`)
		return nil
	}
	return it
}

func (p *parser) inlineItem(path string, raw json.RawMessage) *Item {
	fields, ok := p.object(path, raw)
	if !ok {
		return nil
	}
	it := &Item{}
	var data string
	for _, k := range sortedKeys(fields) {
		v := fields[k]
		switch k {
		case "encoding":
			if !p.decode(join(path, k), v, "string", &it.Encoding) {
				return nil
			}
			if it.Encoding != EncodingBase64 && it.Encoding != EncodingLZMABase64 {
				p.add(join(path, k), "unknown encoding %q: want %q or %q", short(it.Encoding), EncodingBase64, EncodingLZMABase64)
				return nil
			}
		case "data":
			if !p.decode(join(path, k), v, "string", &data) {
				return nil
			}
		default:
			p.add(join(path, k), `unknown key: an inline item has "encoding" and "data"`)
			return nil
		}
	}
	for _, k := range []string{"encoding", "data"} {
		if _, ok := fields[k]; !ok {
			p.add(path, "%q is required", k)
			return nil
		}
	}
	var err error
	if it.Data, err = decodeBase64(data); err != nil {
		p.add(join(path, "data"), "%v", err)
		return nil
	}
	return it
}

// decodeBase64 decodes as Python's base64.b64decode does by default (not
// validating): characters outside the alphabet (line breaks, spaces) are
// skipped, input stops at the padding that ends a group of four, and a
// last group left short without padding is an error.
func decodeBase64(s string) ([]byte, error) {
	out := make([]byte, 0, len(s)*3/4)
	var acc uint32 // bits of the group so far
	pos, pads, chars := 0, 0, 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == '=' {
			if pos >= 2 {
				pads++
				if pos+pads >= 4 {
					return out, nil
				}
			}
			continue
		}
		v := strings.IndexByte(base64Alphabet, c)
		if v < 0 {
			continue
		}
		chars++
		acc = acc<<6 | uint32(v)
		pos++
		switch pos {
		case 2:
			out = append(out, byte(acc>>4))
			acc &= 0x0f
		case 3:
			out = append(out, byte(acc>>2))
			acc &= 0x03
		case 4:
			out = append(out, byte(acc))
			acc, pos = 0, 0
		}
	}
	switch pos {
	case 0:
		return out, nil
	case 1:
		return nil, fmt.Errorf("not base64: %d data characters, 1 more than a multiple of 4", chars)
	}
	return nil, errors.New("not base64: incorrect padding")
}

const base64Alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"

// object decodes a JSON object, or records why raw is not one.
func (p *parser) object(path string, raw json.RawMessage) (map[string]json.RawMessage, bool) {
	if k := kind(raw); k != "object" {
		p.add(path, "want an object, got %s", k)
		return nil, false
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		p.add(path, "%v", err)
		return nil, false
	}
	return m, true
}

// decode decodes a JSON value of the kind want into v.
func (p *parser) decode(path string, raw json.RawMessage, want string, v any) bool {
	if k := kind(raw); k != want {
		p.add(path, "want a %s, got %s", want, k)
		return false
	}
	if err := json.Unmarshal(raw, v); err != nil {
		p.add(path, "%v", err)
		return false
	}
	return true
}

// kind names a JSON value's type as the manifest's errors do.
func kind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "object"
	case '[':
		return "array"
	case '"':
		return "string"
	case 't', 'f':
		return "boolean"
	case 'n':
		return "null"
	}
	if bytes.ContainsAny(raw, ".eE") {
		return "number"
	}
	return "integer"
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// join appends an object key to a JSON path as builder/manifest's errors
// do: ".key" for a plain word, else a quoted ["key"], a long key cut (past
// the length of a sha512 checksum, which a path shows whole).
func join(path, key string) string {
	const maxKey = 140
	if len(key) > maxKey {
		cut := maxKey
		for cut > 0 && !utf8.RuneStart(key[cut]) {
			cut--
		}
		return path + "[" + strconv.Quote(key[:cut]) + "...+" + strconv.Itoa(len(key)-cut) + " bytes]"
	}
	plain := key != ""
	for _, c := range key {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			plain = false
			break
		}
	}
	if !plain {
		return path + "[" + strconv.Quote(key) + "]"
	}
	return path + "." + key
}
