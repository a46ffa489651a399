package sources

import (
	"errors"
	"strings"
	"testing"
)

const (
	sumA = "sha256:1111111111111111111111111111111111111111111111111111111111111111"
	sumB = "sha256:2222222222222222222222222222222222222222222222222222222222222222"
	// sha256 of "forge\n"
	sumForge = "sha256:b036dee0a8d15016320782000503a31f3a2898d287ff82b03afe5f3cfaefe0c1"
)

func TestValidChecksum(t *testing.T) {
	good := []string{
		"md5:" + strings.Repeat("a", 32),
		"sha1:" + strings.Repeat("0", 40),
		sumA,
		"sha384:" + strings.Repeat("f", 96),
		"sha512:" + strings.Repeat("9", 128),
	}
	for _, c := range good {
		if err := ValidChecksum(c); err != nil {
			t.Errorf("ValidChecksum(%s): %v", c, err)
		}
	}
	bad := map[string]string{
		"":                                         "want md5",
		"sha256":                                   "want md5",
		"sha256" + strings.Repeat("1", 64):         "want md5",
		"sha3:" + strings.Repeat("1", 64):          "want md5",
		"SHA256:" + strings.Repeat("1", 64):        "want md5",
		"sha256:" + strings.Repeat("1", 63):        "64 hex digits, not 63",
		"sha256:" + strings.Repeat("1", 65):        "64 hex digits, not 65",
		"md5:" + strings.Repeat("1", 64):           "32 hex digits, not 64",
		"sha256:" + strings.Repeat("A", 64):        "lowercase hex",
		"sha256:" + strings.Repeat("g", 64):        "lowercase hex",
		" sha256:" + strings.Repeat("1", 64):       "want md5",
		"sha256:" + strings.Repeat("1", 63) + "\n": "lowercase hex",
	}
	for c, says := range bad {
		err := ValidChecksum(c)
		if !errors.Is(err, ErrChecksum) || !strings.Contains(err.Error(), says) {
			t.Errorf("ValidChecksum(%q) = %v, want %v saying %q", c, err, ErrChecksum, says)
		}
	}
}

func TestParse(t *testing.T) {
	raw := `{
	  "org.osbuild.curl": {"items": {
	    "` + sumA + `": "https://example.com/a b.rpm",
	    "` + sumB + `": {"url": "https://example.com/b", "insecure": true, "secrets": {"name": "org.osbuild.mtls"}}
	  }},
	  "org.osbuild.inline": {"items": {
	    "` + sumForge + `": {"encoding": "base64", "data": "Zm9y\nZ2UK"},
	    "` + sumB + `": {"encoding": "lzma+base64", "data": ""}
	  }}
	}`
	s, err := Parse([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(s.Checksums(), " "); got != sumA+" "+sumB+" "+sumForge {
		t.Fatalf("checksums %s", got)
	}
	a := s.Items[sumA]
	if a.Type != Curl || a.URL != "https://example.com/a b.rpm" || a.Insecure || a.Secrets != "" || a.Checksum != sumA {
		t.Errorf("item a: %+v", a)
	}
	// Provided by both: the inline one wins.
	if b := s.Items[sumB]; b.Type != Inline || b.Encoding != EncodingLZMABase64 {
		t.Errorf("item b: %+v, want the inline one", b)
	}
	if f := s.Items[sumForge]; f.Type != Inline || string(f.Data) != "forge\n" {
		t.Errorf("inline item: %+v (data %q)", f, f.Data)
	}

	s, err = Parse([]byte(`{"org.osbuild.curl": {"items": {"` + sumB + `": {"url": "https://example.com/b", "insecure": true, "secrets": {"name": "org.osbuild.mtls"}}}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if b := s.Items[sumB]; !b.Insecure || b.Secrets != "org.osbuild.mtls" || b.URL != "https://example.com/b" {
		t.Errorf("item b: %+v", b)
	}
	for _, empty := range []string{"", "null", "{}", " \n"} {
		s, err := Parse([]byte(empty))
		if err != nil || len(s.Items) != 0 {
			t.Errorf("Parse(%q) = %v, %v; want no items", empty, s, err)
		}
	}
}

func TestParseFormat1(t *testing.T) {
	s, err := ParseFormat1([]byte(`{"org.osbuild.files": {"urls": {"` + sumA + `": "http://example.com/a"}}}`))
	if err != nil {
		t.Fatal(err)
	}
	if a := s.Items[sumA]; a == nil || a.Type != Curl || a.URL != "http://example.com/a" {
		t.Fatalf("item: %+v", a)
	}
	_, err = ParseFormat1([]byte(`{"org.osbuild.curl": {"items": {}}}`))
	if err == nil || !strings.Contains(err.Error(), `sources["org.osbuild.curl"]: unknown source type`) {
		t.Fatalf("format 1 with a format-2 source: %v", err)
	}
}

func TestParseErrors(t *testing.T) {
	curl := func(items string) string { return `{"org.osbuild.curl": {"items": {` + items + `}}}` }
	inline := func(items string) string { return `{"org.osbuild.inline": {"items": {` + items + `}}}` }
	p := `sources["org.osbuild.curl"].items["` + sumA + `"]`
	ip := `sources["org.osbuild.inline"].items["` + sumA + `"]`
	tests := []struct {
		name, raw string
		want      []string // lines of the error
	}{
		{"not an object", `[]`, []string{"sources: want an object, got array"}},
		{"source not an object", `{"org.osbuild.curl": "x"}`, []string{`sources["org.osbuild.curl"]: want an object, got string`}},
		{"unknown source type", `{"org.example.torrent": {"items": {}}}`, []string{`sources["org.example.torrent"]: unknown source type "org.example.torrent": forge supports org.osbuild.curl and org.osbuild.inline`}},
		{"ostree", `{"org.osbuild.ostree": {"items": {}}}`, []string{`sources["org.osbuild.ostree"]: source type org.osbuild.ostree is not supported by forge: it fetches ostree commits, not files`}},
		{"skopeo", `{"org.osbuild.skopeo": {"items": {}}}`, []string{`not supported by forge: it fetches container images`}},
		{"no items", `{"org.osbuild.curl": {}}`, []string{`sources["org.osbuild.curl"]: "items" is required`}},
		{"options", `{"org.osbuild.curl": {"items": {}, "options": {}}}`, []string{`sources["org.osbuild.curl"].options: unknown key: org.osbuild.curl takes only "items"`}},
		{"urls in format 2", `{"org.osbuild.curl": {"urls": {}}}`, []string{`sources["org.osbuild.curl"]: "items" is required`, `sources["org.osbuild.curl"].urls: unknown key`}},
		{"items not an object", `{"org.osbuild.curl": {"items": []}}`, []string{`sources["org.osbuild.curl"].items: want an object, got array`}},
		{"bad checksum", curl(`"sha256:AB": "http://x/"`), []string{`sources["org.osbuild.curl"].items["sha256:AB"]: bad checksum "sha256:AB": a sha256 digest has 64 hex digits, not 2`}},
		{"unknown algorithm", curl(`"crc32:00000000": "http://x/"`), []string{`bad checksum "crc32:00000000": want md5, sha1, sha256, sha384 or sha512`}},
		{"url a number", curl(`"` + sumA + `": 3`), []string{p + ": want a URL (a string) or an object, got integer"}},
		{"no url", curl(`"` + sumA + `": {"insecure": true}`), []string{p + `: "url" is required`}},
		{"insecure a string", curl(`"` + sumA + `": {"url": "http://x/", "insecure": "yes"}`), []string{p + ".insecure: want a boolean, got string"}},
		{"unknown item key", curl(`"` + sumA + `": {"url": "http://x/", "mirror": "y"}`), []string{p + `.mirror: unknown key: an item has "url", "insecure" and "secrets"`}},
		{"secrets without name", curl(`"` + sumA + `": {"url": "http://x/", "secrets": {}}`), []string{p + `.secrets: "name" is required`}},
		{"inline a string", inline(`"` + sumA + `": "Zm9yZ2UK"`), []string{ip + ": want an object, got string"}},
		{"no encoding", inline(`"` + sumA + `": {"data": ""}`), []string{ip + `: "encoding" is required`}},
		{"no data", inline(`"` + sumA + `": {"encoding": "base64"}`), []string{ip + `: "data" is required`}},
		{"bad encoding", inline(`"` + sumA + `": {"encoding": "gzip", "data": ""}`), []string{ip + `.encoding: unknown encoding "gzip": want "base64" or "lzma+base64"`}},
		{"bad base64", inline(`"` + sumA + `": {"encoding": "base64", "data": "Zm9yZ"}`), []string{ip + ".data: not base64: 5 data characters"}},
		{"missing padding", inline(`"` + sumA + `": {"encoding": "base64", "data": "Zm9yZ2U"}`), []string{ip + ".data: not base64"}},
		{"several, sorted by path", `{"org.osbuild.ostree": {}, "org.osbuild.curl": {"items": {"x": "y"}}}`, []string{
			`sources["org.osbuild.curl"].items.x: bad checksum`, `sources["org.osbuild.ostree"]: source type org.osbuild.ostree is not supported`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.raw))
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("Parse: %v, want Errors", err)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(tt.want) {
				t.Fatalf("error:\n%s\nwant %d lines", err, len(tt.want))
			}
			for i, w := range tt.want {
				if !strings.Contains(lines[i], w) {
					t.Errorf("line %d: %q, want it to contain %q", i, lines[i], w)
				}
			}
		})
	}
}

func TestRefNameAndComposeEntry(t *testing.T) {
	if got := RefName(sumA); got != "source/"+sumA {
		t.Fatalf("RefName = %s", got)
	}
	e := ComposeEntry(sumA)
	if string(e.Name) != sumA || e.Tree != "source/"+sumA || string(e.Path) != sumA {
		t.Fatalf("ComposeEntry = %+v", e)
	}
	if es := ComposeEntries([]string{sumA, sumB}); len(es) != 2 || string(es[1].Name) != sumB {
		t.Fatalf("ComposeEntries = %+v", es)
	}
}

// Inline data decodes as Python's base64.b64decode decodes it.
func TestDecodeBase64LikePython(t *testing.T) {
	tests := map[string]string{
		"Zm9yZ2UK":     "forge\n",
		"Zm9yZ2UK=":    "forge\n",
		"Zm9yZ2UK==":   "forge\n",
		"Zm9y\nZ2UK":   "forge\n",
		"Zm9y Z2UK":    "forge\n",
		"Zm9yZ2U*K":    "forge\n",
		"Zm9=yZ2UK":    "fo",
		"Zm9yZg==Zm9y": "forf",
		"Zm8=":         "fo",
		"":             "",
		"====":         "",
	}
	for in, want := range tests {
		got, err := decodeBase64(in)
		if err != nil || string(got) != want {
			t.Errorf("decodeBase64(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"Zm9yZ2U", "Zm9yZ", "Zg=", "Z"} {
		if got, err := decodeBase64(in); err == nil {
			t.Errorf("decodeBase64(%q) = %q, want an error", in, got)
		}
	}
}
