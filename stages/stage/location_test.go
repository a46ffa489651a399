package stage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseLocation(t *testing.T) {
	a := Args{
		Tree:   "/run/osbuild/tree",
		Paths:  Paths{Mounts: "/run/osbuild/mounts"},
		Inputs: map[string]Input{"tree": {Path: "/run/osbuild/inputs/tree"}, "motd": {Path: "/run/osbuild/inputs/motd"}},
		Mounts: map[string]Mount{"root": {Path: "/run/osbuild/mounts"}, "efi": {Path: "/run/osbuild/mounts/boot/efi"}, "bare": {}},
	}
	tests := []struct {
		url, wantPath, wantErr string
	}{
		{"tree:///etc/motd", "/run/osbuild/tree/etc/motd", ""},
		{"tree:///", "/run/osbuild/tree/.", ""},
		{"tree:///etc/", "/run/osbuild/tree/etc/.", ""},
		{"tree:///etc//./x", "/run/osbuild/tree/etc/x", ""},
		{"/etc/motd", "/run/osbuild/tree/etc/motd", ""},
		{"input://tree/", "/run/osbuild/inputs/tree/.", ""},
		{"input://motd/sha256:3333", "/run/osbuild/inputs/motd/sha256:3333", ""},
		{"mount://root/", "/run/osbuild/mounts/.", ""},
		{"mount://efi/EFI/BOOT", "/run/osbuild/mounts/boot/efi/EFI/BOOT", ""},
		{"mount:///boot", "/run/osbuild/mounts/boot", ""},
		{"etc/motd", "", "neither an absolute path"},
		{"file:///etc/motd", "", `unknown scheme "file"`},
		{"input://nope/x", "", `no input "nope" (it has motd, tree)`},
		{"mount://nope/x", "", `no mount "nope"`},
		{"mount://bare/x", "", `mount "bare" has no path`},
		{"input://tree", "", "has no path"},
		{"tree://etc/motd", "", "a tree URL has no name"},
		{"tree:///../etc", "", `contains ".."`},
		{"input://tree/a/../../b", "", `contains ".."`},
		{"tree:///a?b", "", `"?", "#"`},
		{"tree:///a#b", "", `"?", "#"`},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			l, err := a.ParseLocation(tt.url)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if l.Path() != tt.wantPath {
				t.Errorf("path %q, want %q", l.Path(), tt.wantPath)
			}
		})
	}
	if _, err := (Args{Tree: "/t"}).ParseLocation("mount:///x"); err == nil {
		t.Error("mount:/// without a mounts directory: no error")
	}
}

// TestLocationStat checks that symbolic links are followed only within
// the location's root.
func TestLocationStat(t *testing.T) {
	tree := t.TempDir()
	outside := t.TempDir()
	os.WriteFile(filepath.Join(outside, "secret"), []byte("x"), 0o644)
	os.MkdirAll(filepath.Join(tree, "etc/real"), 0o755)
	os.WriteFile(filepath.Join(tree, "etc/real/file"), []byte("x"), 0o644)
	os.Symlink("real", filepath.Join(tree, "etc/inside"))
	os.Symlink(outside, filepath.Join(tree, "abs"))
	os.Symlink("../../../../../../../../"+outside, filepath.Join(tree, "etc/climb"))
	os.Symlink("/etc/real", filepath.Join(tree, "etc/absinside"))
	a := Args{Tree: tree}

	tests := []struct {
		url               string
		lstatErr, statErr string // "" for none
		statIsFile        bool
	}{
		{url: "tree:///etc/real/file", statIsFile: true},
		{url: "tree:///etc/inside/file", statIsFile: true},
		{url: "tree:///abs/secret", lstatErr: "escapes", statErr: "escapes"},
		{url: "tree:///etc/climb/secret", lstatErr: "escapes", statErr: "escapes"},
		// An absolute link is not followed, even one that would stay
		// inside were it read from the tree's root.
		{url: "tree:///etc/absinside/file", lstatErr: "escapes", statErr: "escapes"},
		// The final link itself: Lstat sees it, Stat will not follow it.
		{url: "tree:///abs", statErr: "escapes"},
		{url: "tree:///etc/missing", lstatErr: "no such file", statErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			l, err := a.ParseLocation(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			_, err = l.Lstat()
			checkErr(t, "Lstat", err, tt.lstatErr)
			fi, err := l.Stat()
			checkErr(t, "Stat", err, tt.statErr)
			if err == nil && tt.statIsFile && !fi.Mode().IsRegular() {
				t.Errorf("Stat: %v, want a regular file", fi.Mode())
			}
		})
	}
	l, _ := a.ParseLocation("tree:///etc/missing")
	if _, err := l.Stat(); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v, want fs.ErrNotExist wrapped", err)
	}
	if p := l.Parent(); p.Rel != "etc" || p.Contents {
		t.Errorf("parent %+v", p)
	}
}

func checkErr(t *testing.T, what string, err error, want string) {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("%s: %v", what, err)
	case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
		t.Errorf("%s: error %v, want %q", what, err, want)
	}
}
