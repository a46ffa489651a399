package copy

import (
	"context"
	"os"
	"os/exec"
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
		{"input to mount", `{"paths": [{"from": "input://root-tree/", "to": "mount://root/"}]}`, ""},
		{"files input to tree", `{"paths": [{"from": "input://motd/sha256:33", "to": "tree:///etc/motd", "remove_destination": true}]}`, ""},
		{"tree to tree", `{"paths": [{"from": "tree:///a", "to": "tree:///b"}, {"from": "mount://m/x", "to": "mount://n/"}]}`, ""},
		{"no paths", `{}`, `option "paths": is required`},
		{"empty paths", `{"paths": []}`, `option "paths": want at least one item`},
		{"no from", `{"paths": [{"to": "tree:///b"}]}`, `option "paths[0].from": is required`},
		{"no to", `{"paths": [{"from": "tree:///b"}]}`, `option "paths[0].to": is required`},
		{"to an input", `{"paths": [{"from": "tree:///a", "to": "input://i/a"}]}`, `option "paths[0].to": "input://i/a" is not a mount://, tree:// URL`},
		{"bare path", `{"paths": [{"from": "/etc/a", "to": "tree:///b"}]}`, `option "paths[0].from"`},
		{"unnamed mount", `{"paths": [{"from": "tree:///a", "to": "mount:///b"}]}`, `names no mount`},
		{"named tree", `{"paths": [{"from": "tree://x/a", "to": "tree:///b"}]}`, `want tree:///PATH`},
		{"no path", `{"paths": [{"from": "input://i", "to": "tree:///b"}]}`, `has no path`},
		{"unknown key", `{"paths": [{"from": "tree:///a", "to": "tree:///b", "preserve": true}]}`, `unknown option "preserve"`},
		{"second item", `{"paths": [{"from": "tree:///a", "to": "tree:///b"}, {"from": "tree:///a"}]}`, `option "paths[1].to"`},
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

// fixture is a stage's view with a tree, an input and a mount, and a
// directory outside them all.
type fixture struct {
	a                           stage.Args
	tree, input, mount, outside string
}

func newFixture(t *testing.T) fixture {
	t.Helper()
	base := t.TempDir()
	f := fixture{
		tree:    filepath.Join(base, "tree"),
		input:   filepath.Join(base, "inputs/root-tree"),
		mount:   filepath.Join(base, "mounts"),
		outside: filepath.Join(base, "outside"),
	}
	for _, d := range []string{f.tree, f.input, f.mount, f.outside, filepath.Join(f.tree, "etc"), filepath.Join(f.input, "etc")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	f.a = stage.Args{
		Tree:   f.tree,
		Format: 2,
		Paths:  stage.Paths{Mounts: f.mount, Inputs: filepath.Dir(f.input)},
		Inputs: map[string]stage.Input{"root-tree": {Path: f.input}},
		Mounts: map[string]stage.Mount{"root": {Path: f.mount}},
	}
	return f
}

func TestPlan(t *testing.T) {
	f := newFixture(t)
	os.WriteFile(filepath.Join(f.input, "etc/motd"), []byte("hi"), 0o644)
	os.WriteFile(filepath.Join(f.tree, "etc/file"), []byte("x"), 0o644)
	os.Symlink(f.outside, filepath.Join(f.tree, "out"))
	os.Symlink(filepath.Join(f.outside, "file"), filepath.Join(f.tree, "etc/abs-link"))
	os.Symlink("file", filepath.Join(f.tree, "etc/rel-link"))
	os.Symlink(f.outside, filepath.Join(f.input, "out"))
	os.Mkdir(filepath.Join(f.tree, "inside"), 0o755)
	os.Symlink(filepath.Join(f.outside, "motd"), filepath.Join(f.tree, "inside/motd"))

	tests := []struct {
		name, from, to string
		remove         bool
		want, wantErr  string
	}{
		{"tree into a mount", "input://root-tree/", "mount://root/", false,
			"cp -a --reflink=auto " + f.input + "/. " + f.mount + "/.", ""},
		{"a file to a new name", "input://root-tree/etc/motd", "tree:///etc/motd", false,
			"cp -a --reflink=auto " + f.input + "/etc/motd " + f.tree + "/etc/motd", ""},
		{"over a file", "input://root-tree/etc/motd", "tree:///etc/file", true,
			"cp -a --reflink=auto --remove-destination " + f.input + "/etc/motd " + f.tree + "/etc/file", ""},
		{"a directory into a directory", "input://root-tree/etc", "tree:///etc", false,
			"cp -a --reflink=auto " + f.input + "/etc " + f.tree + "/etc", ""},
		{"through a link inside", "input://root-tree/etc/motd", "tree:///etc/rel-link", false,
			"cp -a --reflink=auto " + f.input + "/etc/motd " + f.tree + "/etc/rel-link", ""},
		{"replacing a link out", "input://root-tree/etc/motd", "tree:///etc/abs-link", true,
			"cp -a --reflink=auto --remove-destination " + f.input + "/etc/motd " + f.tree + "/etc/abs-link", ""},
		// A source link is copied as a link, whatever it points to.
		{"a link as the source", "input://root-tree/out", "tree:///etc/copied-link", false,
			"cp -a --reflink=auto " + f.input + "/out " + f.tree + "/etc/copied-link", ""},

		{"missing source", "input://root-tree/nope", "tree:///etc/x", false, "", "from: input://root-tree/nope"},
		{"source out of the input", "input://root-tree/out/", "tree:///etc/x", false, "", "escapes"},
		{"content of a file", "input://root-tree/etc/motd/", "tree:///etc/x", false, "", "not a directory"},
		{"into a directory out of the tree", "input://root-tree/etc/motd", "tree:///out/", false, "", "escapes"},
		{"below a link out of the tree", "input://root-tree/etc/motd", "tree:///out/motd", false, "", "escapes"},
		{"through a link out", "input://root-tree/etc/motd", "tree:///etc/abs-link", false, "", "a symbolic link cp would follow"},
		{"replacing a link with a directory", "input://root-tree/etc", "tree:///etc/abs-link", true, "", "a symbolic link cp would follow"},
		{"into a directory holding a link out", "input://root-tree/etc/motd", "tree:///inside/", false, "", "tree:///inside/motd is a symbolic link cp would follow"},
		{"into a directory holding a link out, replaced", "input://root-tree/etc/motd", "tree:///inside", true,
			"cp -a --reflink=auto --remove-destination " + f.input + "/etc/motd " + f.tree + "/inside", ""},
		{"no directory", "input://root-tree/etc/motd", "tree:///nope/motd", false, "", "its directory"},
		{"parent a file", "input://root-tree/etc/motd", "tree:///etc/file/motd", false, "", "not a directory"},
		{"unknown mount", "input://root-tree/etc/motd", "mount://boot/motd", false, "", `no mount "boot"`},
		{"dot dot", "input://root-tree/../x", "tree:///etc/x", false, "", `contains ".."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tool, _, err := plan(f.a, item{From: &tt.from, To: &tt.to, RemoveDestination: tt.remove})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := tool.String(); got != tt.want {
				t.Errorf("command\n %s\nwant\n %s", got, tt.want)
			}
		})
	}
}

// TestRun copies with the host's cp, as the stage does in a build root:
// content, modes, hard links and symbolic links arrive as they were.
func TestRun(t *testing.T) {
	if _, err := exec.LookPath("cp"); err != nil {
		t.Skip("no cp here")
	}
	f := newFixture(t)
	os.WriteFile(filepath.Join(f.input, "etc/motd"), []byte("hello"), 0o640)
	os.Link(filepath.Join(f.input, "etc/motd"), filepath.Join(f.input, "etc/motd.hard"))
	os.Symlink("/etc/motd", filepath.Join(f.input, "etc/motd.sym"))
	os.Chmod(filepath.Join(f.input, "etc"), 0o750)
	f.a.Options = []byte(`{"paths": [{"from": "input://root-tree/", "to": "mount://root/"}, {"from": "input://root-tree/etc/motd", "to": "tree:///etc/motd"}]}`)
	if err := Run(context.Background(), f.a); err != nil {
		t.Fatal(err)
	}
	if b, err := os.ReadFile(filepath.Join(f.mount, "etc/motd")); err != nil || string(b) != "hello" {
		t.Errorf("content %q, %v", b, err)
	}
	a, _ := os.Stat(filepath.Join(f.mount, "etc/motd"))
	b, _ := os.Stat(filepath.Join(f.mount, "etc/motd.hard"))
	if !os.SameFile(a, b) || a.Mode().Perm() != 0o640 {
		t.Errorf("hard link lost (%v) or mode %v", os.SameFile(a, b), a.Mode())
	}
	if d, _ := os.Stat(filepath.Join(f.mount, "etc")); d.Mode().Perm() != 0o750 {
		t.Errorf("directory mode %v", d.Mode())
	}
	if target, err := os.Readlink(filepath.Join(f.mount, "etc/motd.sym")); err != nil || target != "/etc/motd" {
		t.Errorf("symlink %q, %v", target, err)
	}
	if fi, err := os.Stat(filepath.Join(f.tree, "etc/motd")); err != nil || fi.Sys().(*syscall.Stat_t).Nlink != 1 {
		t.Errorf("tree's motd: %v", err)
	}
	// A failing cp fails the stage and names the item.
	f.a.Options = []byte(`{"paths": [{"from": "input://root-tree/etc", "to": "tree:///etc/motd"}]}`)
	if err := Run(context.Background(), f.a); err == nil || !strings.Contains(err.Error(), "paths[0]: cp -a") {
		t.Errorf("directory over a file: %v", err)
	}
}
