package locale

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		options string
		want    string // each file's content, when wantErr is ""
		wantErr string
	}{
		{"utf8", `{"language": "en_US.UTF-8"}`, "LANG=en_US.UTF-8\n", ""},
		{"C", `{"language": "C.UTF-8"}`, "LANG=C.UTF-8\n", ""},
		{"modifier", `{"language": "sr_RS@latin"}`, "LANG=sr_RS@latin\n", ""},
		{"missing", `{}`, "", `option "language": is required`},
		{"empty", `{"language": ""}`, "", `option "language": empty locale name`},
		{"space", `{"language": "en US"}`, "", `contains ' '`},
		{"quote", `{"language": "en\"US"}`, "", `contains '"'`},
		{"newline", `{"language": "en_US\nLC_ALL=C"}`, "", `contains '\n'`},
		{"path", `{"language": "../../x"}`, "", `does not start with a letter`},
		{"too long", `{"language": "` + strings.Repeat("a", 129) + `"}`, "", "longer than 128"},
		{"wrong type", `{"language": ["en_US"]}`, "", `option "language": want string`},
		{"unknown option", `{"language": "C", "keyboard": "us"}`, "", `unknown option "keyboard"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := t.TempDir()
			err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(tt.options)})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run: error %v, want one containing %q", err, tt.wantErr)
				}
				if _, err := os.Stat(filepath.Join(tree, "etc")); !os.IsNotExist(err) {
					t.Errorf("a failed run wrote to the tree (stat /etc: %v)", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			for _, f := range []string{"etc/locale.conf", "etc/default/locale"} {
				checkFile(t, filepath.Join(tree, f), tt.want, 0o644)
			}
		})
	}
}

// Debian's /etc/default/locale may already hold other variables (the
// locales package writes it); the stage replaces the file, as osbuild
// replaces /etc/locale.conf.
func TestReplaces(t *testing.T) {
	tree := t.TempDir()
	if err := os.MkdirAll(filepath.Join(tree, "etc/default"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"etc/locale.conf", "etc/default/locale"} {
		if err := os.WriteFile(filepath.Join(tree, f), []byte("LANG=C\nLC_ALL=C\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(`{"language": "de_DE.UTF-8"}`)}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"etc/locale.conf", "etc/default/locale"} {
		checkFile(t, filepath.Join(tree, f), "LANG=de_DE.UTF-8\n", 0o644)
	}
}

func checkFile(t *testing.T, path, want string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want a regular file with %v", path, fi.Mode(), mode)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s = %q, want %q", path, b, want)
	}
}
