package script

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

// Bad options fail before anything is written or run; running scripts
// needs root (chroot) and is tested in integration/stages.
func TestOptions(t *testing.T) {
	tests := []struct {
		name    string
		options string
		wantErr string
	}{
		{"missing", `{}`, `option "script": is required`},
		{"null", `{"script": null}`, `option "script": is required`},
		{"wrong type", `{"script": ["echo"]}`, `option "script": want string`},
		{"unknown option", `{"script": "#!/bin/sh\n", "interpreter": "/bin/bash"}`, `unknown option "interpreter"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := t.TempDir()
			err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(tt.options)})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Run: error %v, want one containing %q", err, tt.wantErr)
			}
			if ents, _ := os.ReadDir(tree); len(ents) != 0 {
				t.Errorf("a failed run left %v in the tree", ents)
			}
		})
	}
}

// The script file replaces a leftover, even a symlink pointing out of
// the tree, without writing through it.
func TestWriteScript(t *testing.T) {
	tree, outside := t.TempDir(), t.TempDir()
	victim := filepath.Join(outside, "victim")
	if err := os.WriteFile(victim, []byte("keep\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, filepath.Join(tree, scriptName)); err != nil {
		t.Fatal(err)
	}
	root, err := os.OpenRoot(tree)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := writeScript(root, "#!/bin/sh\necho hi\n"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Lstat(filepath.Join(tree, scriptName))
	if err != nil {
		t.Fatal(err)
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm() != 0o550 {
		t.Errorf("/%s: mode %v, want a regular file, 0550", scriptName, fi.Mode())
	}
	if b, _ := os.ReadFile(filepath.Join(tree, scriptName)); string(b) != "#!/bin/sh\necho hi\n" {
		t.Errorf("/%s = %q", scriptName, b)
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep\n" {
		t.Errorf("the write went through the symlink: victim = %q", b)
	}
}
