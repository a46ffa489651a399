package aptmirror

import (
	"os"
	"path/filepath"
	"testing"
)

func TestDeb822(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"plain", "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n", "http://m.example/debian"},
		{"other suite", "Types: deb\nURIs: http://m.example/debian\nSuites: trixie\n", ""},
		{"deb-src only", "Types: deb-src\nURIs: http://m.example/debian\nSuites: bookworm\n", ""},
		{"disabled", "Enabled: no\nTypes: deb\nURIs: http://a/\nSuites: bookworm\n\nTypes: deb\nURIs: http://b/\nSuites: bookworm\n", "http://b/"},
		{"comments and continuation", "# c\nTypes: deb\nURIs:\n http://c/debian\n http://d/debian\nSuites: bookworm\n", "http://c/debian"},
		{"case of field names", "types: deb\nuris: http://e/\nsuites: bookworm\n", "http://e/"},
		{"second stanza", "Types: deb\nURIs: http://sec/\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://main/\nSuites: bookworm\n", "http://main/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Deb822(tt.text, "bookworm"); got != tt.want {
				t.Errorf("Deb822 = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestOneLine(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"plain", "deb http://m/debian bookworm main\n", "http://m/debian"},
		{"options", "deb [arch=amd64 signed-by=/k.gpg] http://o/debian bookworm main\n", "http://o/debian"},
		{"comment", "# deb http://x/ bookworm main\ndeb http://y/ bookworm main # trailing\n", "http://y/"},
		{"src and other suites", "deb-src http://s/ bookworm main\ndeb http://t/ bookworm-updates main\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := OneLine(tt.text, "bookworm"); got != tt.want {
				t.Errorf("OneLine = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestFindOrder(t *testing.T) {
	root := t.TempDir()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := Find(root, "bookworm"); err == nil {
		t.Fatal("Find in an empty root: want an error")
	}
	must(os.MkdirAll(filepath.Join(root, "etc/apt/sources.list.d"), 0o755))
	must(os.WriteFile(filepath.Join(root, "etc/apt/sources.list"), []byte("deb http://list/ bookworm main\n"), 0o644))
	uri, from, err := Find(root, "bookworm")
	if err != nil || uri != "http://list/" || from != filepath.Join(root, "etc/apt/sources.list") {
		t.Fatalf("Find = %q, %q, %v", uri, from, err)
	}
	// deb822 files come first.
	must(os.WriteFile(filepath.Join(root, "etc/apt/sources.list.d/debian.sources"), []byte("Types: deb\nURIs: http://deb822/\nSuites: bookworm\n"), 0o644))
	if uri, _, _ := Find(root, "bookworm"); uri != "http://deb822/" {
		t.Fatalf("Find = %q, want the deb822 mirror", uri)
	}
}
