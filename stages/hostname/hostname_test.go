package hostname

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
		want    string // /etc/hostname, when wantErr is ""
		wantErr string
	}{
		{"simple", `{"hostname": "forge-test"}`, "forge-test\n", ""},
		{"fqdn", `{"hostname": "db1.example.org"}`, "db1.example.org\n", ""},
		{"digits", `{"hostname": "0x1"}`, "0x1\n", ""},
		{"longest", `{"hostname": "` + strings.Repeat("a", 64) + `"}`, strings.Repeat("a", 64) + "\n", ""},
		{"missing", `{}`, "", `option "hostname": is required`},
		{"empty", `{"hostname": ""}`, "", `option "hostname": empty host name`},
		{"too long", `{"hostname": "` + strings.Repeat("a", 65) + `"}`, "", "longer than 64"},
		{"underscore", `{"hostname": "a_b"}`, "", `contains '_'`},
		{"space", `{"hostname": "a b"}`, "", `contains ' '`},
		{"newline", `{"hostname": "a\nb"}`, "", `option "hostname"`},
		{"slash", `{"hostname": "../x"}`, "", `option "hostname"`},
		{"leading dot", `{"hostname": ".a"}`, "", "empty label"},
		{"double dot", `{"hostname": "a..b"}`, "", "empty label"},
		{"leading hyphen", `{"hostname": "-a"}`, "", "starting or ending with '-'"},
		{"wrong type", `{"hostname": 5}`, "", `option "hostname": want string`},
		{"unknown option", `{"hostname": "a", "static": true}`, "", `unknown option "static"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := t.TempDir()
			err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(tt.options)})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run: error %v, want one containing %q", err, tt.wantErr)
				}
				if _, err := os.Stat(filepath.Join(tree, "etc/hostname")); !os.IsNotExist(err) {
					t.Errorf("a failed run left /etc/hostname behind (stat: %v)", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkFile(t, filepath.Join(tree, "etc/hostname"), tt.want, 0o644)
		})
	}
}

// An existing /etc/hostname, even a symlink, is replaced, and nothing
// else is left in /etc.
func TestReplaces(t *testing.T) {
	tree := t.TempDir()
	etc := filepath.Join(tree, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(etc, "old"), []byte("localhost\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("old", filepath.Join(etc, "hostname")); err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(`{"hostname": "new"}`)}); err != nil {
		t.Fatal(err)
	}
	checkFile(t, filepath.Join(etc, "hostname"), "new\n", 0o644)
	checkFile(t, filepath.Join(etc, "old"), "localhost\n", 0o600)
	ents, _ := os.ReadDir(etc)
	if len(ents) != 2 {
		t.Errorf("/etc holds %d entries, want 2 (hostname, old): %v", len(ents), ents)
	}
}

// A symlinked /etc pointing outside the tree is not followed.
func TestStaysInTree(t *testing.T) {
	tree, outside := t.TempDir(), t.TempDir()
	if err := os.Symlink(outside, filepath.Join(tree, "etc")); err != nil {
		t.Fatal(err)
	}
	err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(`{"hostname": "x"}`)})
	if err == nil {
		t.Fatal("Run followed /etc out of the tree without an error")
	}
	if _, err := os.Stat(filepath.Join(outside, "hostname")); !os.IsNotExist(err) {
		t.Errorf("Run wrote outside the tree (stat: %v)", err)
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
