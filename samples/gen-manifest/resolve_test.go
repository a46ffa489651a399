package main

import (
	"strings"
	"testing"

	"github.com/forge-build/forge/internal/deb822"
)

func TestInstRE(t *testing.T) {
	tests := []struct {
		line, name, version, arch string
	}{
		{"Inst base-files (12.4+deb12u13 Debian:12.15/oldstable [amd64])", "base-files", "12.4+deb12u13", "amd64"},
		{"Inst libargon2-1 (0~20171227-0.3+deb12u1 Debian:12.15/oldstable [amd64])", "libargon2-1", "0~20171227-0.3+deb12u1", "amd64"},
		{"Inst dmsetup (2:1.02.185-2 Debian:12.15/oldstable [amd64])", "dmsetup", "2:1.02.185-2", "amd64"},
		{"Inst adduser [3.133] (3.134 Debian:12.15/oldstable [all])", "adduser", "3.134", "all"},
		{"Inst libc6:amd64 (2.36-9+deb12u13 Debian:12.15/oldstable [amd64])", "libc6:amd64", "2.36-9+deb12u13", "amd64"},
	}
	for _, tt := range tests {
		m := instRE.FindStringSubmatch(tt.line)
		if m == nil || m[1] != tt.name || m[2] != tt.version || m[3] != tt.arch {
			t.Errorf("%q: got %q, want %s %s %s", tt.line, m, tt.name, tt.version, tt.arch)
		}
	}
}

func stanza(t *testing.T, text string) deb822.Paragraph {
	t.Helper()
	ps, err := deb822.Parse([]byte(text))
	if err != nil || len(ps) != 1 {
		t.Fatalf("%q: %v", text, err)
	}
	return ps[0]
}

func TestPin(t *testing.T) {
	sum := strings.Repeat("ab", 32)
	good := stanza(t, "Package: libargon2-1\nFilename: pool/main/a/argon2/libargon2-1_0~20171227-0.3+deb12u1_amd64.deb\nSHA256: "+sum+"\n")
	p, err := pin([]deb822.Paragraph{good}, "http://deb.example/debian/")
	if err != nil {
		t.Fatal(err)
	}
	// The Filename as it is: "~" and "+" not quoted.
	if got, want := p.debs["sha256:"+sum], "http://deb.example/debian/pool/main/a/argon2/libargon2-1_0~20171227-0.3+deb12u1_amd64.deb"; got != want {
		t.Errorf("URL %q, want %q", got, want)
	}
	if string(p.index) != string(good.AppendTo(nil)) {
		t.Errorf("index %q", p.index)
	}
	bad := []struct{ name, text, want string }{
		{"short hash", "Package: a\nFilename: pool/a.deb\nSHA256: abc\n", "is not a SHA-256"},
		{"dot dot", "Package: a\nFilename: pool/../../etc/passwd\nSHA256: " + sum + "\n", "is not a path in the archive"},
		{"absolute", "Package: a\nFilename: /etc/passwd\nSHA256: " + sum + "\n", "is not a path in the archive"},
		{"query", "Package: a\nFilename: pool/a.deb?x=1\nSHA256: " + sum + "\n", "is not a path in the archive"},
		{"none", "Package: a\nSHA256: " + sum + "\n", "is not a path in the archive"},
	}
	for _, tt := range bad {
		if _, err := pin([]deb822.Paragraph{stanza(t, tt.text)}, "http://m"); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

func TestRetarget(t *testing.T) {
	m := map[string]any{
		"version": "2",
		"pipelines": []any{map[string]any{"stages": []any{
			map[string]any{"type": "org.osbuild.mmdebstrap", "options": map[string]any{"mirror": "http://deb.debian.org/debian"}},
		}}},
		"sources": map[string]any{"org.osbuild.curl": map[string]any{"items": map[string]any{
			"sha256:1": map[string]any{"url": "http://deb.debian.org/debian/pool/main/a/a.deb"},
			"sha256:2": "http://deb.debian.org/debian/pool/main/b/b.deb",
			"sha256:3": map[string]any{"url": "http://elsewhere.example/c.deb"},
		}}},
	}
	n, err := retarget(m, "http://mirror.local/debian/")
	if err != nil || n != 2 {
		t.Fatalf("retarget = %d, %v; want 2", n, err)
	}
	items := m["sources"].(map[string]any)["org.osbuild.curl"].(map[string]any)["items"].(map[string]any)
	if got := items["sha256:1"].(map[string]any)["url"]; got != "http://mirror.local/debian/pool/main/a/a.deb" {
		t.Errorf("item 1: %v", got)
	}
	if got := items["sha256:2"]; got != "http://mirror.local/debian/pool/main/b/b.deb" {
		t.Errorf("item 2: %v", got)
	}
	if got := items["sha256:3"].(map[string]any)["url"]; got != "http://elsewhere.example/c.deb" {
		t.Errorf("item 3 changed: %v", got)
	}
	// The stage, and so its ID, stays.
	st := m["pipelines"].([]any)[0].(map[string]any)["stages"].([]any)[0].(map[string]any)
	if st["options"].(map[string]any)["mirror"] != "http://deb.debian.org/debian" {
		t.Errorf("the stage's mirror changed")
	}
}
