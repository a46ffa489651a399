package mmdebstrap

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

// keyring makes a keyring file to name in options: the stage checks that
// keyrings exist, and the tests must not depend on the machine's.
func keyring(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "archive.gpg")
	if err := os.WriteFile(p, []byte("not checked here"), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParseOptions(t *testing.T) {
	k := keyring(t)
	kq := `"keyrings": ["` + k + `"]`
	missing := filepath.Join(t.TempDir(), "missing.gpg")
	tests := []struct {
		name    string
		json    string
		wantErr string // "" for valid options
	}{
		{"minimal", `{"suite": "bookworm", "mirror": "http://deb.example.org/debian", ` + kq + `}`, ""},
		{"everything", `{"suite": "bookworm-backports", "variant": "buildd", "mirror": "https://deb.example.org/debian/",
			"components": ["main", "non-free-firmware", "main/debian-installer"], "packages": ["less", "g++", "libstdc++6", "python3.11"],
			"architectures": ["amd64", "i386"], ` + kq + `}`, ""},
		{"file mirror", `{"suite": "sid", "mirror": "file:///srv/debian", ` + kq + `}`, ""},
		{"keyring directory", `{"suite": "bookworm", "mirror": "http://m/debian", "keyrings": ["` + filepath.Dir(k) + `"]}`, ""},
		{"empty architectures", `{"suite": "bookworm", "mirror": "http://m/debian", "architectures": [], ` + kq + `}`, ""},

		{"no suite", `{"mirror": "http://m/debian", ` + kq + `}`, `option "suite": required`},
		{"suite with slash", `{"suite": "bookworm/updates", "mirror": "http://m/debian", ` + kq + `}`, `option "suite": "bookworm/updates"`},
		{"suite upper case", `{"suite": "Bookworm", "mirror": "http://m/debian", ` + kq + `}`, `option "suite": "Bookworm"`},
		{"suite option", `{"suite": "--variant=x", "mirror": "http://m/debian", ` + kq + `}`, `option "suite"`},
		{"suite number", `{"suite": 12, "mirror": "http://m/debian", ` + kq + `}`, `option "suite": want string`},
		{"no mirror", `{"suite": "bookworm", ` + kq + `}`, `option "mirror": required`},
		{"ftp mirror", `{"suite": "bookworm", "mirror": "ftp://m/debian", ` + kq + `}`, `option "mirror": "ftp://m/debian"`},
		{"no scheme", `{"suite": "bookworm", "mirror": "deb.example.org/debian", ` + kq + `}`, `option "mirror"`},
		{"no host", `{"suite": "bookworm", "mirror": "http:///debian", ` + kq + `}`, `option "mirror": "http:///debian" has no host`},
		{"mirror with space", `{"suite": "bookworm", "mirror": "http://m/debian bookworm main", ` + kq + `}`, `option "mirror"`},
		{"relative file", `{"suite": "bookworm", "mirror": "file:srv/debian", ` + kq + `}`, `option "mirror"`},
		{"query", `{"suite": "bookworm", "mirror": "http://m/debian?x=1", ` + kq + `}`, `option "mirror"`},
		{"bad variant", `{"suite": "bookworm", "variant": "tiny", "mirror": "http://m/debian", ` + kq + `}`, `option "variant": "tiny"`},
		{"no components", `{"suite": "bookworm", "components": [], "mirror": "http://m/debian", ` + kq + `}`, `option "components": want at least one`},
		{"component with comma", `{"suite": "bookworm", "components": ["main", "contrib,non-free"], "mirror": "http://m/debian", ` + kq + `}`, `option "components": "contrib,non-free"`},
		{"package upper case", `{"suite": "bookworm", "packages": ["less", "Vim"], "mirror": "http://m/debian", ` + kq + `}`, `option "packages": "Vim"`},
		{"package one letter", `{"suite": "bookworm", "packages": ["a"], "mirror": "http://m/debian", ` + kq + `}`, `option "packages": "a"`},
		{"package option", `{"suite": "bookworm", "packages": ["-oAPT::X=1"], "mirror": "http://m/debian", ` + kq + `}`, `option "packages": "-oAPT::X=1"`},
		{"package with comma", `{"suite": "bookworm", "packages": ["less,vim"], "mirror": "http://m/debian", ` + kq + `}`, `option "packages": "less,vim"`},
		{"package not a string", `{"suite": "bookworm", "packages": [1], "mirror": "http://m/debian", ` + kq + `}`, `option "packages": want string`},
		{"bad architecture", `{"suite": "bookworm", "architectures": ["AMD64"], "mirror": "http://m/debian", ` + kq + `}`, `option "architectures": "AMD64"`},
		{"architecture twice", `{"suite": "bookworm", "architectures": ["amd64", "amd64"], "mirror": "http://m/debian", ` + kq + `}`, `option "architectures": "amd64" is given twice`},
		{"missing keyring", `{"suite": "bookworm", "mirror": "http://m/debian", "keyrings": ["` + missing + `"]}`, `option "keyrings": keyring ` + missing},
		{"relative keyring", `{"suite": "bookworm", "mirror": "http://m/debian", "keyrings": ["keys.gpg"]}`, `option "keyrings": "keys.gpg"`},
		{"no keyrings", `{"suite": "bookworm", "mirror": "http://m/debian", "keyrings": []}`, `option "keyrings": want at least one`},
		{"unknown option", `{"suite": "bookworm", "mirror": "http://m/debian", "extra-packages": ["less"], ` + kq + `}`, `unknown option "extra-packages"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseOptions(json.RawMessage(tt.json))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("no error, want one with %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("error %q, want one with %q", err, tt.wantErr)
			}
		})
	}
}

func TestParseOptionsDefaults(t *testing.T) {
	if _, err := os.Stat(DefaultKeyring); err != nil {
		// Without the default keyring, its absence is the error.
		_, err := parseOptions(json.RawMessage(`{"suite": "bookworm", "mirror": "http://m/debian"}`))
		if err == nil || !strings.Contains(err.Error(), "debian-archive-keyring") {
			t.Errorf("without %s: %v, want an error saying to install debian-archive-keyring", DefaultKeyring, err)
		}
		return
	}
	o, err := parseOptions(json.RawMessage(`{"suite": "bookworm", "mirror": "http://m/debian"}`))
	if err != nil {
		t.Fatal(err)
	}
	want := Options{Suite: "bookworm", Variant: DefaultVariant, Mirror: "http://m/debian",
		Components: []string{"main"}, Keyrings: []string{DefaultKeyring}}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("options with defaults %+v, want %+v", o, want)
	}
}

func TestArgs(t *testing.T) {
	k := keyring(t)
	o := Options{Suite: "bookworm", Variant: "minbase", Mirror: "http://m/debian",
		Components: []string{"main", "contrib"}, Packages: []string{"less", "vim"},
		Keyrings: []string{k}, Architectures: []string{"amd64"}}
	mm, err := toolArgs(toolMmdebstrap, o, "/run/osbuild/tree")
	if err != nil {
		t.Fatal(err)
	}
	wantMM := []string{"mmdebstrap", "--mode=root", "--format=directory", "--variant=minbase",
		"--components=main,contrib", "--architectures=amd64", "--include=less,vim",
		"--keyring=" + k, "--skip=cleanup/apt/lists", "bookworm", "/run/osbuild/tree", "http://m/debian"}
	if !reflect.DeepEqual(mm, wantMM) {
		t.Errorf("mmdebstrap args\n%q, want\n%q", mm, wantMM)
	}
	db, err := toolArgs(toolDebootstrap, o, "/run/osbuild/tree")
	if err != nil {
		t.Fatal(err)
	}
	wantDB := []string{"debootstrap", "--variant=minbase", "--components=main,contrib", "--arch=amd64",
		"--include=less,vim", "--keyring=" + k, "bookworm", "/run/osbuild/tree", "http://m/debian"}
	if !reflect.DeepEqual(db, wantDB) {
		t.Errorf("debootstrap args\n%q, want\n%q", db, wantDB)
	}

	// The smallest options: mmdebstrap's defaults are spelled out, and
	// debootstrap's default variant is mmdebstrap's "important".
	o = Options{Suite: "sid", Variant: "debootstrap", Mirror: "http://m/debian", Components: []string{"main"}, Keyrings: []string{k}}
	db, err = toolArgs(toolDebootstrap, o, "/t")
	if err != nil {
		t.Fatal(err)
	}
	wantDB = []string{"debootstrap", "--components=main", "--keyring=" + k, "sid", "/t", "http://m/debian"}
	if !reflect.DeepEqual(db, wantDB) {
		t.Errorf("debootstrap args\n%q, want\n%q", db, wantDB)
	}
}

func TestDebootstrapCannot(t *testing.T) {
	k := keyring(t)
	base := Options{Suite: "bookworm", Variant: "minbase", Mirror: "http://m/debian", Components: []string{"main"}, Keyrings: []string{k}}
	tests := []struct {
		name    string
		change  func(o *Options)
		wantErr string
	}{
		{"essential variant", func(o *Options) { o.Variant = "essential" }, `option "variant": "essential" needs mmdebstrap`},
		{"standard variant", func(o *Options) { o.Variant = "standard" }, `option "variant": "standard" needs mmdebstrap`},
		{"two architectures", func(o *Options) { o.Architectures = []string{"amd64", "i386"} }, `option "architectures"`},
		{"two keyrings", func(o *Options) { o.Keyrings = []string{k, k} }, `option "keyrings"`},
		{"keyring directory", func(o *Options) { o.Keyrings = []string{filepath.Dir(k)} }, `option "keyrings"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := base
			tt.change(&o)
			_, err := toolArgs(toolDebootstrap, o, "/t")
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("error %v, want one with %q", err, tt.wantErr)
			}
			if _, err := toolArgs(toolMmdebstrap, o, "/t"); err != nil {
				t.Errorf("mmdebstrap refuses it too: %v", err)
			}
		})
	}
}

// Run checks the options and the tree before it runs anything.
func TestRunRefuses(t *testing.T) {
	k := keyring(t)
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "etc"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, tree, options, wantErr string
	}{
		{"bad options", t.TempDir(), `{"suite": "bookworm"}`, `option "mirror": required`},
		{"tree not empty", full, `{"suite": "bookworm", "mirror": "http://m/debian", "keyrings": ["` + k + `"]}`, "is not empty (it has etc)"},
		{"no tree", filepath.Join(full, "missing"), `{"suite": "bookworm", "mirror": "http://m/debian", "keyrings": ["` + k + `"]}`, "missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Run(context.Background(), stage.Args{Tree: tt.tree, Options: json.RawMessage(tt.options)})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Run: %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

func TestSourceURIs(t *testing.T) {
	tree := t.TempDir()
	files := map[string]string{
		"etc/apt/sources.list": `# a comment
deb http://one.example/debian bookworm main
deb [ signed-by=/usr/share/keyrings/k.gpg arch=amd64 ] http://two.example/debian bookworm main contrib
deb-src http://three.example/debian bookworm main # trailing comment
deb incomplete
`,
		"etc/apt/sources.list.d/extra.list": "deb [trusted=yes] file:///srv/debian ./ \n",
		"etc/apt/sources.list.d/debian.sources": `Types: deb
URIs: http://four.example/debian
  http://five.example/debian
Suites: bookworm
Components: main

# disabled
Types: deb
URIs: http://six.example/debian
Enabled: no
Suites: bookworm
`,
	}
	for name, text := range files {
		p := filepath.Join(tree, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := sourceURIs(tree)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"http://one.example/debian", "http://two.example/debian", "http://three.example/debian",
		"file:///srv/debian", "http://four.example/debian", "http://five.example/debian"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("sourceURIs = %q, want %q", got, want)
	}
	if err := checkSources(tree, "http://five.example/debian/"); err != nil {
		t.Errorf("checkSources with a trailing slash: %v", err)
	}
	if err := checkSources(tree, "http://six.example/debian"); err == nil {
		t.Error("checkSources accepts a mirror only a disabled stanza names")
	}
	if err := checkSources(t.TempDir(), "http://one.example/debian"); err == nil {
		t.Error("checkSources accepts a tree without sources")
	}
}
