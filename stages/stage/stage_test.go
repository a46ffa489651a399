package stage

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDecodeOptions(t *testing.T) {
	type opts struct {
		Hostname string   `json:"hostname"`
		Count    int      `json:"count"`
		Names    []string `json:"names"`
	}
	tests := []struct {
		name, raw, wantErr string
	}{
		{"valid", `{"hostname": "h", "count": 2, "names": ["a"]}`, ""},
		{"empty", ``, ""},
		{"unknown option", `{"hostnam": "h"}`, `unknown option "hostnam"`},
		{"wrong type", `{"hostname": 3}`, `option "hostname": want string, got number`},
		{"wrong element type", `{"names": [1]}`, `option "names": want string, got number`},
		{"integer wanted", `{"count": "x"}`, `option "count": want integer, got string`},
		{"not an object", `[1]`, `options: want an object, got array`},
		{"trailing data", `{} {}`, `trailing data`},
		{"bad JSON", `{"hostname": }`, `options:`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var o opts
			err := DecodeOptions([]byte(tt.raw), &o)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestReadArgs(t *testing.T) {
	tests := []struct {
		name, in string
		kind     Kind
		wantErr  string
	}{
		{"stage", `{"tree": "/run/osbuild/tree", "options": {"a": 1}}`, KindStage, ""},
		{"no options", `{"tree": "/t"}`, KindStage, ""},
		{"relative tree", `{"tree": "t", "options": {}}`, KindStage, `"tree" must be an absolute path`},
		{"assembler without output", `{"tree": "/t", "options": {}}`, KindAssembler, `"output_dir"`},
		{"assembler", `{"tree": "/t", "options": {}, "output_dir": "/o"}`, KindAssembler, ""},
		{"not JSON", `tree`, KindStage, "arguments on stdin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ReadArgs(strings.NewReader(tt.in), tt.kind)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(a.Options) == 0 {
				t.Errorf("options empty; want {} at least")
			}
		})
	}
}

func TestMainDispatch(t *testing.T) {
	var got Args
	stages := []Stage{
		{Name: "org.example.ok", Kind: KindStage, Run: func(ctx context.Context, a Args) error { got = a; return nil }},
		{Name: "org.example.fail", Kind: KindStage, Run: func(ctx context.Context, a Args) error { return errors.New("it failed") }},
	}
	var stdout, stderr bytes.Buffer
	in := `{"tree": "/tree", "options": {"x": 1}}`
	if code := main1(context.Background(), stages, []string{"/lib/stages/org.example.ok"}, strings.NewReader(in), &stdout, &stderr); code != 0 || got.Tree != "/tree" {
		t.Errorf("ok stage: exit %d, args %+v, stderr %q", code, got, stderr.String())
	}
	stderr.Reset()
	if code := main1(context.Background(), stages, []string{"org.example.fail"}, strings.NewReader(in), &stdout, &stderr); code != 1 || !strings.Contains(stderr.String(), "org.example.fail: it failed") {
		t.Errorf("failing stage: exit %d, stderr %q", code, stderr.String())
	}
	if code := main1(context.Background(), stages, []string{"forge-stages", "list"}, nil, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "stages/org.example.ok\n") {
		t.Errorf("list: exit %d, stdout %q", code, stdout.String())
	}
	if code := main1(context.Background(), stages, []string{"something-else"}, nil, &stdout, &stderr); code != 2 {
		t.Errorf("unknown name: exit %d, want 2", code)
	}
}

func TestLink(t *testing.T) {
	dir := t.TempDir()
	stages := []Stage{{Name: "org.example.s", Kind: KindStage}, {Name: "org.example.a", Kind: KindAssembler}}
	for range 2 { // twice: links are replaced, not duplicated
		if err := Link(dir, stages); err != nil {
			t.Fatal(err)
		}
	}
	self, _ := os.Executable()
	si, _ := os.Stat(self)
	for _, p := range []string{RunnerName, "stages/org.example.s", "assemblers/org.example.a"} {
		fi, err := os.Stat(filepath.Join(dir, p))
		if err != nil || !os.SameFile(si, fi) {
			t.Errorf("%s: %v; want a hard link of the executable", p, err)
		}
	}
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	root, err := os.OpenRoot(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if err := WriteFile(root, "etc/sub/file", []byte("one"), 0o640); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(root, "etc/sub/file", []byte("two"), 0o644); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "etc/sub/file"))
	fi, _ := os.Stat(filepath.Join(dir, "etc/sub/file"))
	if string(b) != "two" || fi.Mode().Perm() != 0o644 {
		t.Errorf("content %q mode %v", b, fi.Mode())
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "etc/sub"))
	if len(ents) != 1 {
		t.Errorf("temporary files left: %v", ents)
	}
	// A symlink in the tree cannot send the write outside it.
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(dir, "escape"))
	if err := WriteFile(root, "escape/file", []byte("x"), 0o644); err == nil {
		t.Error("write through a symlink leaving the tree succeeded")
	}
	if _, err := os.Stat(filepath.Join(outside, "file")); err == nil {
		t.Error("file written outside the tree")
	}
}

// TestDispatchSharedName: a stage and an assembler of one name (osbuild's
// org.osbuild.qemu) run as the one their directory names.
func TestDispatchSharedName(t *testing.T) {
	var ran Kind
	run := func(k Kind) Func {
		return func(ctx context.Context, a Args) error { ran = k; return nil }
	}
	stages := []Stage{
		{Name: "org.example.both", Kind: KindStage, Run: run(KindStage)},
		{Name: "org.example.both", Kind: KindAssembler, Run: run(KindAssembler)},
	}
	tests := []struct {
		argv0, in string
		want      Kind
	}{
		{"/run/osbuild/lib/assemblers/org.example.both", `{"tree": "/t", "output_dir": "/o"}`, KindAssembler},
		{"/run/osbuild/lib/stages/org.example.both", `{"tree": "/t"}`, KindStage},
		{"/run/osbuild/bin/org.example.both", `{"tree": "/t"}`, KindStage},
		{"org.example.both", `{"tree": "/t"}`, KindStage},
	}
	for _, tt := range tests {
		ran = ""
		h := host{argsPath: filepath.Join(t.TempDir(), "none")}
		var stderr bytes.Buffer
		if code := dispatch(context.Background(), h, stages, []string{tt.argv0}, strings.NewReader(tt.in), io.Discard, &stderr); code != 0 || ran != tt.want {
			t.Errorf("%s: exit %d, ran the %q one, want %q; stderr %q", tt.argv0, code, ran, tt.want, stderr.String())
		}
	}
	// An assembler alone keeps its name wherever it runs from.
	only := stages[1:]
	ran = ""
	h := host{argsPath: filepath.Join(t.TempDir(), "none")}
	if code := dispatch(context.Background(), h, only, []string{"/x/org.example.both"}, strings.NewReader(`{"tree": "/t", "output_dir": "/o"}`), io.Discard, io.Discard); code != 0 || ran != KindAssembler {
		t.Errorf("assembler alone: exit %d, ran %q", code, ran)
	}
}
