package mkdir

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name, raw, wantErr string
	}{
		{"paths", `{"paths": [{"path": "/boot/efi", "parents": true}, {"path": "mount://root/x", "mode": 448, "exist_ok": true}]}`, ""},
		{"no paths", `{}`, `option "paths": is required`},
		{"empty paths", `{"paths": []}`, ""},
		{"no path", `{"paths": [{"mode": 493}]}`, `option "paths[0].path": is required`},
		{"empty path", `{"paths": [{"path": ""}]}`, `option "paths[0].path": is required`},
		{"big mode", `{"paths": [{"path": "/x", "mode": 4096}]}`, `option "paths[0].mode": 4096 (010000)`},
		{"float mode", `{"paths": [{"path": "/x", "mode": 493.5}]}`, `want integer`},
		{"unknown", `{"paths": [{"path": "/x", "owner": 0}]}`, `unknown option "owner"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse([]byte(tt.raw))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestRun(t *testing.T) {
	old := syscall.Umask(0o022)
	defer syscall.Umask(old)
	base := t.TempDir()
	tree, mnt, outside := filepath.Join(base, "tree"), filepath.Join(base, "mounts"), filepath.Join(base, "outside")
	for _, d := range []string{tree, mnt, outside, filepath.Join(tree, "etc")} {
		os.MkdirAll(d, 0o755)
	}
	os.WriteFile(filepath.Join(tree, "etc/file"), nil, 0o644)
	os.Symlink(outside, filepath.Join(tree, "out"))
	a := stage.Args{Tree: tree, Format: 2, Paths: stage.Paths{Mounts: mnt},
		Mounts: map[string]stage.Mount{"root": {Path: mnt}}}
	run := func(options string) error {
		a.Options = []byte(options)
		return Run(context.Background(), a)
	}
	mode := func(p string) fs.FileMode {
		fi, err := os.Lstat(p)
		if err != nil {
			t.Fatal(err)
		}
		return fi.Mode()
	}

	if err := run(`{"paths": [
		{"path": "/boot"},
		{"path": "tree:///boot/efi", "mode": 448},
		{"path": "var/lib/x", "parents": true, "mode": 456},
		{"path": "mount://root/tmp", "mode": 1023},
		{"path": "mount:///home"}]}`); err != nil {
		t.Fatal(err)
	}
	for p, want := range map[string]fs.FileMode{
		"tree/boot":      fs.ModeDir | 0o755,
		"tree/boot/efi":  fs.ModeDir | 0o700,
		"tree/var":       fs.ModeDir | 0o755,
		"tree/var/lib":   fs.ModeDir | 0o755,
		"tree/var/lib/x": fs.ModeDir | 0o710, // 0710 less umask 022
		"mounts/tmp":     fs.ModeDir | fs.ModeSticky | 0o755,
		"mounts/home":    fs.ModeDir | 0o755,
	} {
		if got := mode(filepath.Join(base, p)); got != want {
			t.Errorf("%s: %v, want %v", p, got, want)
		}
	}

	for _, tt := range []struct{ name, options, wantErr string }{
		{"exists", `{"paths": [{"path": "/boot"}]}`, "file exists"},
		{"exists, ok", `{"paths": [{"path": "/boot", "exist_ok": true}]}`, ""},
		{"exists with parents", `{"paths": [{"path": "/boot", "parents": true}]}`, "file exists"},
		{"exists with parents, ok", `{"paths": [{"path": "/boot", "parents": true, "exist_ok": true}]}`, ""},
		// As osbuild's os.mkdir: without parents, exist_ok takes a file.
		{"a file, ok", `{"paths": [{"path": "/etc/file", "exist_ok": true}]}`, ""},
		{"a file with parents", `{"paths": [{"path": "/etc/file", "parents": true, "exist_ok": true}]}`, "not a directory"},
		{"no parent", `{"paths": [{"path": "/a/b"}]}`, "no such file"},
		{"through a link out", `{"paths": [{"path": "/out/x"}]}`, "escapes"},
		{"parents through a link out", `{"paths": [{"path": "/out/x/y", "parents": true}]}`, "escapes"},
		{"dot dot", `{"paths": [{"path": "/../x"}]}`, `contains ".."`},
		{"unknown mount", `{"paths": [{"path": "mount://boot/x"}]}`, `no mount "boot"`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := run(tt.options)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
	if ents, _ := os.ReadDir(outside); len(ents) != 0 {
		t.Errorf("made outside the tree: %v", ents)
	}
}
