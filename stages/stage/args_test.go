package stage

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fullArgs is format-2 arguments as osbuild's Stage.run writes them for a
// copy stage with an input, two devices and two mounts.
const fullArgs = `{"tree": "/run/osbuild/tree",
 "paths": {"devices": "/dev", "inputs": "/run/osbuild/inputs", "mounts": "/run/osbuild/mounts"},
 "devices": {"root": {"path": "/dev/loop3", "node": {"major": 7, "minor": 3}}, "efi": {"path": "/dev/loop4"}},
 "inputs": {"root-tree": {"path": "/run/osbuild/inputs/root-tree", "data": {}},
            "motd": {"path": "/run/osbuild/inputs/motd", "data": {"files": {"sha256:33": {"a": 1}}}}},
 "mounts": {"root": {"path": "/run/osbuild/mounts/."}, "efi": {"path": "/run/osbuild/mounts/boot/efi"}, "none": {}},
 "options": {"paths": []},
 "meta": {"id": "0123abcd", "source-epoch": 1700000000}}`

func TestReadArgsFile(t *testing.T) {
	tests := []struct {
		name, in string
		kind     Kind
		wantErr  string
	}{
		{"full", fullArgs, KindStage, ""},
		{"minimal", `{"tree": "/t", "meta": {"id": "x"}}`, KindStage, ""},
		{"no tree", `{"meta": {"id": "x"}}`, KindStage, `"tree" must be an absolute path`},
		{"relative tree", `{"tree": "t", "meta": {"id": "x"}}`, KindStage, `"tree" must be an absolute path`},
		{"no meta", `{"tree": "/t"}`, KindStage, `"meta" has no "id"`},
		{"relative paths", `{"tree": "/t", "meta": {"id": "x"}, "paths": {"inputs": "inputs"}}`, KindStage, `"paths": "inputs" must be an absolute path`},
		{"device without path", `{"tree": "/t", "meta": {"id": "x"}, "devices": {"d": {}}}`, KindStage, `"devices": "d": "path" must be an absolute path`},
		{"relative input", `{"tree": "/t", "meta": {"id": "x"}, "inputs": {"i": {"path": "i"}}}`, KindStage, `"inputs": "i": "path"`},
		{"relative mount", `{"tree": "/t", "meta": {"id": "x"}, "mounts": {"m": {"path": "m"}}}`, KindStage, `"mounts": "m": "path"`},
		{"empty name", `{"tree": "/t", "meta": {"id": "x"}, "mounts": {"": {}}}`, KindStage, `an empty name`},
		{"assembler", `{"tree": "/t", "meta": {"id": "x"}}`, KindAssembler, `"output_dir"`},
		{"wrong type", `{"tree": "/t", "meta": {"id": "x"}, "devices": []}`, KindStage, "arguments in args"},
		{"not JSON", `tree`, KindStage, "arguments in args"},
		{"trailing data", `{"tree": "/t", "meta": {"id": "x"}} {}`, KindStage, "trailing data"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, err := ReadArgsFile(strings.NewReader(tt.in), "args", tt.kind)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if a.Format != 2 || len(a.Options) == 0 {
				t.Errorf("format %d, options %q", a.Format, a.Options)
			}
		})
	}
}

func TestReadArgsFileFields(t *testing.T) {
	a, err := ReadArgsFile(strings.NewReader(fullArgs), "args", KindStage)
	if err != nil {
		t.Fatal(err)
	}
	switch {
	case a.Tree != "/run/osbuild/tree" || a.Paths.Mounts != "/run/osbuild/mounts" || a.Paths.Devices != "/dev":
		t.Errorf("tree %q paths %+v", a.Tree, a.Paths)
	case a.Devices["root"].Path != "/dev/loop3" || a.Devices["root"].Node == nil || a.Devices["root"].Node.Minor != 3:
		t.Errorf("devices %+v", a.Devices)
	case a.Inputs["motd"].Path != "/run/osbuild/inputs/motd" || string(a.Inputs["motd"].Data.Files["sha256:33"]) != `{"a": 1}`:
		t.Errorf("inputs %+v", a.Inputs)
	case a.Mounts["efi"].Path != "/run/osbuild/mounts/boot/efi" || a.Mounts["none"].Path != "":
		t.Errorf("mounts %+v", a.Mounts)
	case a.Meta.ID != "0123abcd" || a.Meta.SourceEpoch == nil || *a.Meta.SourceEpoch != 1700000000:
		t.Errorf("meta %+v", a.Meta)
	case string(a.Options) != `{"paths": []}`:
		t.Errorf("options %s", a.Options)
	}
}

func TestReadArgsFileTooLarge(t *testing.T) {
	r := io.MultiReader(strings.NewReader(`{"tree": "/t", "options": {"x": "`), io.LimitReader(zeros{}, maxArgsFile))
	if _, err := ReadArgsFile(r, "args", KindStage); err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("error %v, want larger than", err)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'a'
	}
	return len(p), nil
}

func TestLoadArgs(t *testing.T) {
	dir := t.TempDir()
	argsPath := filepath.Join(dir, "arguments")
	stdin := `{"tree": "/from-stdin", "options": {}}`

	// No arguments file: format 1 from stdin.
	a, err := LoadArgs(argsPath, strings.NewReader(stdin), KindStage)
	if err != nil || a.Format != 1 || a.Tree != "/from-stdin" {
		t.Fatalf("format 1: %+v, %v", a, err)
	}
	// The file: format 2, stdin unread.
	if err := os.WriteFile(argsPath, []byte(`{"tree": "/from-file", "meta": {"id": "x"}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	a, err = LoadArgs(argsPath, strings.NewReader(stdin), KindStage)
	if err != nil || a.Format != 2 || a.Tree != "/from-file" {
		t.Fatalf("format 2: %+v, %v", a, err)
	}
	// An arguments file that cannot be read is an error, not format 1.
	if _, err := LoadArgs(dir, strings.NewReader(stdin), KindStage); err == nil {
		t.Error("a directory as the arguments file: no error")
	}
}

func TestArgumentsFile(t *testing.T) {
	t.Setenv(ArgumentsEnv, "")
	if got := ArgumentsFile(); got != ArgumentsPath {
		t.Errorf("%q, want %q", got, ArgumentsPath)
	}
	t.Setenv(ArgumentsEnv, "/tmp/x")
	if got := ArgumentsFile(); got != "/tmp/x" {
		t.Errorf("%q, want /tmp/x", got)
	}
}

func TestSourceEpoch(t *testing.T) {
	epoch := int64(42)
	tests := []struct {
		name   string
		meta   *int64
		env    string
		want   int64
		wantOK bool
	}{
		{"meta", &epoch, "7", 42, true},
		{"environment", nil, "7", 7, true},
		{"zero", nil, "0", 0, true},
		{"unset", nil, "", 0, false},
		{"not a number", nil, "yesterday", 0, false},
		{"negative", nil, "-5", 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("SOURCE_DATE_EPOCH", tt.env)
			got, ok := Args{Meta: Meta{SourceEpoch: tt.meta}}.SourceEpoch()
			if got != tt.want || ok != tt.wantOK {
				t.Errorf("(%d, %v), want (%d, %v)", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestDevice(t *testing.T) {
	a := Args{Format: 2, Devices: map[string]Device{"device": {Path: "/dev/loop3"}}}
	if p, err := a.Device("device"); err != nil || p != "/dev/loop3" {
		t.Errorf("%q, %v", p, err)
	}
	if _, err := a.Device("other"); err == nil || !strings.Contains(err.Error(), `needs a device "other"`) {
		t.Errorf("missing device: %v", err)
	}
	if _, err := (Args{Format: 1}).Device("device"); err == nil || !strings.Contains(err.Error(), "format 2 only") {
		t.Errorf("format 1: %v", err)
	}
}

func TestDispatchRunner(t *testing.T) {
	tests := []struct {
		name     string
		argv     []string
		wantPath string
		passwd   bool // a format-2 runner, which makes /etc/passwd
	}{
		{"format 1", []string{"/run/osbuild/lib/osbuild-run", "/run/osbuild/lib/stages/org.osbuild.noop"}, "/run/osbuild/lib/stages/org.osbuild.noop", false},
		{"format 2", []string{"/run/osbuild/runner/org.osbuild.linux", "/run/osbuild/bin/org.osbuild.noop"}, "/run/osbuild/bin/org.osbuild.noop", true},
		{"any name in the runner directory", []string{"/run/osbuild/runner/org.osbuild.fedora38", "/run/osbuild/bin/org.osbuild.noop"}, "/run/osbuild/bin/org.osbuild.noop", true},
		{"libdir runner", []string{"/usr/libexec/forge/runners/org.osbuild.linux", "/x/org.osbuild.noop", "arg"}, "/x/org.osbuild.noop", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			passwd := filepath.Join(t.TempDir(), "passwd")
			var gotPath string
			var gotArgv []string
			h := host{passwdPath: passwd, exec: func(p string, argv, env []string) error {
				gotPath, gotArgv = p, argv
				return os.ErrPermission
			}}
			var stderr bytes.Buffer
			code := dispatch(context.Background(), h, nil, tt.argv, nil, io.Discard, &stderr)
			if code != 127 || gotPath != tt.wantPath || strings.Join(gotArgv, " ") != strings.Join(tt.argv[1:], " ") {
				t.Errorf("exit %d, exec %q %q; stderr %q", code, gotPath, gotArgv, stderr.String())
			}
			b, err := os.ReadFile(passwd)
			if tt.passwd && (err != nil || string(b) != minimalPasswd) {
				t.Errorf("passwd %q, %v", b, err)
			}
			if !tt.passwd && err == nil {
				t.Errorf("osbuild-run wrote %s", passwd)
			}
		})
	}
	// An existing passwd is kept.
	passwd := filepath.Join(t.TempDir(), "passwd")
	os.WriteFile(passwd, []byte("mine"), 0o644)
	h := host{passwdPath: passwd, exec: func(string, []string, []string) error { return os.ErrPermission }}
	dispatch(context.Background(), h, nil, []string{"/run/osbuild/runner/org.osbuild.linux", "/x"}, nil, io.Discard, io.Discard)
	if b, _ := os.ReadFile(passwd); string(b) != "mine" {
		t.Errorf("passwd replaced: %q", b)
	}
	// No stage given.
	if code := dispatch(context.Background(), h, nil, []string{"/run/osbuild/runner/org.osbuild.linux"}, nil, io.Discard, io.Discard); code != 2 {
		t.Errorf("no stage: exit %d, want 2", code)
	}
}

func TestDispatchFormat2(t *testing.T) {
	dir := t.TempDir()
	argsPath := filepath.Join(dir, "arguments")
	if err := os.WriteFile(argsPath, []byte(fullArgs), 0o644); err != nil {
		t.Fatal(err)
	}
	var got Args
	stages := []Stage{{Name: "org.example.ok", Kind: KindStage, Run: func(ctx context.Context, a Args) error { got = a; return nil }}}
	h := host{argsPath: argsPath}
	var stderr bytes.Buffer
	// As osbuild runs it: the runner execs /run/osbuild/bin/NAME, stdin
	// is /dev/null.
	code := dispatch(context.Background(), h, stages, []string{"/run/osbuild/bin/org.example.ok"}, strings.NewReader(""), io.Discard, &stderr)
	if code != 0 || got.Format != 2 || got.Devices["root"].Path != "/dev/loop3" {
		t.Errorf("exit %d, args %+v, stderr %q", code, got, stderr.String())
	}
	// Bad arguments fail the stage, naming it.
	os.WriteFile(argsPath, []byte(`{"tree": "/t"}`), 0o644)
	stderr.Reset()
	code = dispatch(context.Background(), h, stages, []string{"/run/osbuild/bin/org.example.ok"}, strings.NewReader(""), io.Discard, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), `org.example.ok: arguments in `) {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}
}

func TestLinkMeta(t *testing.T) {
	dir := t.TempDir()
	stages := []Stage{
		{Name: "org.example.s", Kind: KindStage, MetaJSON: []byte(`{"summary": "s"}`)},
		{Name: "org.example.a", Kind: KindAssembler, MetaJSON: []byte(`{"summary": "a"}`)},
		{Name: "org.example.none", Kind: KindStage},
	}
	for range 2 {
		if err := Link(dir, stages); err != nil {
			t.Fatal(err)
		}
	}
	for p, want := range map[string]string{"stages/org.example.s.meta.json": `{"summary": "s"}`, "assemblers/org.example.a.meta.json": `{"summary": "a"}`} {
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil || string(b) != want {
			t.Errorf("%s: %q, %v", p, b, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "stages/org.example.none.meta.json")); err == nil {
		t.Error("a meta.json for a stage without one")
	}
	self, _ := os.Executable()
	si, _ := os.Stat(self)
	for _, r := range Runners {
		fi, err := os.Stat(filepath.Join(dir, "runners", r))
		if err != nil || !os.SameFile(si, fi) {
			t.Errorf("runners/%s: %v; want a hard link of the executable", r, err)
		}
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "stages"))
	for _, e := range ents {
		if strings.HasSuffix(e.Name(), ".tmp") {
			t.Errorf("temporary file left: %s", e.Name())
		}
	}
}

func TestToolString(t *testing.T) {
	tool := Tool{Name: "mkfs.ext4", Args: []string{"-U", "u", "/dev/loop3"}, Env: []string{"E2FSPROGS_FAKE_TIME=5"}}
	if got, want := tool.String(), "E2FSPROGS_FAKE_TIME=5 mkfs.ext4 -U u /dev/loop3"; got != want {
		t.Errorf("%q, want %q", got, want)
	}
	if err := (Tool{Name: "forge-no-such-tool"}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "not in the build root") {
		t.Errorf("missing tool: %v", err)
	}
	if err := (Tool{Name: "false"}).Run(context.Background()); err == nil || !strings.Contains(err.Error(), "false: exit status 1") {
		t.Errorf("failing tool: %v", err)
	}
}
