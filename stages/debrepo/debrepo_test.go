package debrepo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/internal/deb822"
	"github.com/forge-build/forge/stages/stage"
)

// debs writes fake .debs (their content is never read as a .deb here)
// named by their SHA-256 into dir, and returns their stanzas.
func debs(t *testing.T, dir string, names ...string) (stanzas string, files map[string]json.RawMessage) {
	t.Helper()
	files = map[string]json.RawMessage{}
	var b strings.Builder
	for i, n := range names {
		data := []byte("deb of " + n)
		sum := sha256.Sum256(data)
		hexsum := hex.EncodeToString(sum[:])
		if err := os.WriteFile(filepath.Join(dir, "sha256:"+hexsum), data, 0o644); err != nil {
			t.Fatal(err)
		}
		files["sha256:"+hexsum] = json.RawMessage(`{}`)
		if i > 0 {
			b.WriteString("\n")
		}
		b.WriteString("Package: " + n + "\nVersion: 1.0\nArchitecture: amd64\nPriority: required\nFilename: pool/main/" + n + "_1.0_amd64.deb\n")
		b.WriteString("Size: " + itoa(len(data)) + "\nSHA256: " + hexsum + "\n")
	}
	return b.String(), files
}

func itoa(n int) string { b, _ := json.Marshal(n); return string(b) }

// args is a stage's arguments with the two inputs.
func args(t *testing.T, index string, pkgDir string, files map[string]json.RawMessage) stage.Args {
	t.Helper()
	idxDir := t.TempDir()
	sum := sha256.Sum256([]byte(index))
	name := "sha256:" + hex.EncodeToString(sum[:])
	if err := os.WriteFile(filepath.Join(idxDir, name), []byte(index), 0o644); err != nil {
		t.Fatal(err)
	}
	return stage.Args{Inputs: map[string]stage.Input{
		PackagesInput: {Path: pkgDir, Data: stage.InputData{Files: files}},
		IndexInput:    {Path: idxDir, Data: stage.InputData{Files: map[string]json.RawMessage{name: json.RawMessage(`{}`)}}},
	}}
}

func TestFromArgs(t *testing.T) {
	dir := t.TempDir()
	index, files := debs(t, dir, "zlib1g", "base-files", "dpkg")
	in, ok, err := FromArgs(args(t, index, dir, files))
	if err != nil || !ok {
		t.Fatalf("FromArgs: %v, %v", ok, err)
	}
	var got []string
	for _, st := range in.Stanzas {
		got = append(got, st.Value("Package"))
		if fn := st.Value("Filename"); !strings.HasPrefix(fn, "files/sha256:") || "sha256:"+st.Value("SHA256") != strings.TrimPrefix(fn, "files/") {
			t.Errorf("%s: Filename %q", st.Value("Package"), fn)
		}
	}
	if strings.Join(got, " ") != "base-files dpkg zlib1g" {
		t.Errorf("stanzas in the order %v, want by name", got)
	}
	repo := t.TempDir()
	if err := in.Write(repo, "bookworm"); err != nil {
		t.Fatal(err)
	}
	rel, err := os.ReadFile(filepath.Join(repo, "Release"))
	if err != nil {
		t.Fatal(err)
	}
	pkgs, err := os.ReadFile(filepath.Join(repo, "Packages"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(pkgs)
	for _, want := range []string{"Suite: bookworm\n", "Codename: bookworm\n", "Architectures: amd64\n", " " + hex.EncodeToString(sum[:]) + " "} {
		if !strings.Contains(string(rel), want) {
			t.Errorf("Release lacks %q:\n%s", want, rel)
		}
	}
	ps, err := deb822.Parse(pkgs)
	if err != nil || len(ps) != 3 {
		t.Fatalf("Packages: %d stanzas, %v", len(ps), err)
	}
	if ps[0].Value("Priority") != "required" {
		t.Errorf("the archive's fields are not kept: %q", ps[0].AppendTo(nil))
	}
}

func TestFromArgsErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(a *stage.Args, index *string, dir string)
		want string
	}{
		{"no inputs", func(a *stage.Args, _ *string, _ string) { a.Inputs = nil }, ""},
		{"packages only", func(a *stage.Args, _ *string, _ string) { delete(a.Inputs, IndexInput) }, `input "packages" without input "index"`},
		{"index only", func(a *stage.Args, _ *string, _ string) { delete(a.Inputs, PackagesInput) }, `input "index" without input "packages"`},
		{"a .deb missing", func(a *stage.Args, _ *string, _ string) {
			for n := range a.Inputs[PackagesInput].Data.Files {
				if strings.HasPrefix(n, "sha256:") {
					delete(a.Inputs[PackagesInput].Data.Files, n)
					break
				}
			}
		}, `is not in input "packages"`},
		{"an extra .deb", func(a *stage.Args, _ *string, dir string) {
			os.WriteFile(filepath.Join(dir, "sha256:"+strings.Repeat("0", 64)), []byte("x"), 0o644)
			a.Inputs[PackagesInput].Data.Files["sha256:"+strings.Repeat("0", 64)] = json.RawMessage(`{}`)
		}, "which no stanza of input \"index\" names"},
		{"wrong size", func(_ *stage.Args, index *string, _ string) {
			*index = strings.Replace(*index, "Size: ", "Size: 9", 1)
		}, "the index says 9"},
		{"no SHA256", func(_ *stage.Args, index *string, _ string) {
			*index = strings.Replace(*index, "SHA256: ", "SHA1: ", 1)
		}, "has no SHA256"},
		{"not deb822", func(_ *stage.Args, index *string, _ string) { *index = "garbage\n" }, "is not a field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			index, files := debs(t, dir, "a1", "b2")
			a := args(t, index, dir, files)
			tt.edit(&a, &index, dir)
			if a.Inputs != nil && a.Inputs[IndexInput].Path != "" {
				a2 := args(t, index, dir, files)
				a.Inputs[IndexInput] = a2.Inputs[IndexInput]
			}
			_, ok, err := FromArgs(a)
			if tt.want == "" {
				if ok || err != nil {
					t.Errorf("FromArgs = %v, %v; want no inputs, no error", ok, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("FromArgs error %v, want one with %q", err, tt.want)
			}
		})
	}
}
