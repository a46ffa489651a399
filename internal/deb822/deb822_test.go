package deb822

import (
	"strings"
	"testing"
)

const packages = `Package: adduser
Version: 3.134
Installed-Size: 849
Maintainer: Debian Adduser Developers <adduser@packages.debian.org>
Architecture: all
Depends: passwd
Description: add and remove users and groups
Multi-Arch: foreign
Priority: important
Filename: pool/main/a/adduser/adduser_3.134_all.deb
Size: 178964
SHA256: 0d5ec3d64bc4e4f8b1ef7d4e6a6bc1d2f0a2e0c6a4e0c2d1e4f2b6a8c0d2e4f6

Package: apt
Version: 2.6.1
Description: commandline package manager
 This package provides commandline tools for searching and
 .
 managing as well as querying information about packages
Filename: pool/main/a/apt/apt_2.6.1_amd64.deb
`

func TestRoundTrip(t *testing.T) {
	ps, err := Parse([]byte(packages))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 {
		t.Fatalf("%d paragraphs, want 2", len(ps))
	}
	if got := string(Format(ps)); got != packages {
		t.Errorf("written again:\n%s\nwant:\n%s", got, packages)
	}
	if v := ps[1].Value("description"); !strings.HasPrefix(v, "commandline package manager\n This package") {
		t.Errorf("multi-line Description = %q", v)
	}
	if v, ok := ps[0].Get("SHA256"); !ok || len(v) != 64 {
		t.Errorf("SHA256 = %q, %v", v, ok)
	}
}

func TestSetDelete(t *testing.T) {
	ps, err := Parse([]byte(packages))
	if err != nil {
		t.Fatal(err)
	}
	p := &ps[0]
	p.Set("Filename", "files/sha256:0d5e")
	p.Set("X-New", "yes")
	p.Delete("Description")
	want := strings.Replace(packages[:strings.Index(packages, "\n\n")+1],
		"Filename: pool/main/a/adduser/adduser_3.134_all.deb", "Filename: files/sha256:0d5e", 1)
	want = strings.Replace(want, "Description: add and remove users and groups\n", "", 1) + "X-New: yes\n"
	if got := string(p.AppendTo(nil)); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"continuation first", " foo\n", "line 1: a continuation line"},
		{"no colon", "Package: a\nnot a field\n", "line 2: \"not a field\" is not a field"},
		{"space in name", "Pack age: a\n", "line 1:"},
		{"duplicate", "Package: a\npackage: b\n", "line 2: field package given twice"},
		{"comment", "# hi\n", "line 1:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q) = %v, want an error with %q", tt.in, err, tt.want)
			}
		})
	}
}

func TestBlankLinesAndCRLF(t *testing.T) {
	ps, err := Parse([]byte("\n\nA: 1\r\nB: 2\r\n\r\n\r\nA: 3\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Value("B") != "2" || ps[1].Value("A") != "3" {
		t.Errorf("got %+v", ps)
	}
}

// BenchmarkParseLongField is a hostile index's shape: one field continued
// over many lines. Parsing is linear in it.
func BenchmarkParseLongField(b *testing.B) {
	data := []byte("Package: a\nDescription: x\n" + strings.Repeat(" continued line\n", 20000))
	for b.Loop() {
		if _, err := Parse(data); err != nil {
			b.Fatal(err)
		}
	}
}
