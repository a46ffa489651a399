package manifest

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeModule writes libdir/DIR/NAME.meta.json.
func writeModule(t *testing.T, libdir, dir, name, meta string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(libdir, dir), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(libdir, dir, name+".meta.json"), []byte(meta), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestValidateModules: a format-2 manifest is checked against the
// libdir's module schemas the way osbuild builds them (get_schema), with
// forge's JSON paths; modules without a meta.json are not checked.
func TestValidateModules(t *testing.T) {
	lib := t.TempDir()
	writeModule(t, lib, "stages", "test.hostname", `{"summary": "s", "schema_2": {"options": {"additionalProperties": false, "required": ["hostname"], "properties": {"hostname": {"type": "string", "pattern": "^[a-z]+$"}}}}}`)
	// A stage with only a format-1 schema: its options, and no inputs.
	writeModule(t, lib, "stages", "test.v1only", `{"schema": {"additionalProperties": false, "properties": {"n": {"type": "integer"}}}}`)
	writeModule(t, lib, "devices", "org.osbuild.loopback", `{"schema_2": {"additionalProperties": false, "required": ["filename"], "properties": {"filename": {"type": "string"}, "start": {"type": "number"}}}}`)
	writeModule(t, lib, "mounts", "org.osbuild.ext4", `{"schema_2": {"additionalProperties": false, "required": ["name", "type", "source", "target"], "properties": {"name": {"type": "string"}, "type": {"type": "string"}, "source": {"type": "string"}, "target": {"type": "string"}, "options": {"type": "object"}}}}`)
	stage := func(s string) string {
		return `{"version": "2", "pipelines": [{"name": "p", "stages": [` + s + `]}]}`
	}
	for _, tc := range []struct {
		name, manifest string
		want           []string // "path: message part"; none: valid
	}{
		{"valid", stage(`{"type": "test.hostname", "options": {"hostname": "forge"}}`), nil},
		{"no meta.json", stage(`{"type": "test.unknown", "options": {"anything": 1}}`), nil},
		{"unknown option", stage(`{"type": "test.hostname", "options": {"hostname": "a", "x": 1}}`),
			[]string{"pipelines[0].stages[0].options: Additional properties are not allowed ('x' was unexpected)"}},
		{"wrong type and pattern", stage(`{"type": "test.hostname", "options": {"hostname": "UPPER"}}`),
			[]string{"pipelines[0].stages[0].options.hostname: 'UPPER' does not match"}},
		{"required option", stage(`{"type": "test.hostname", "options": {}}`),
			[]string{"pipelines[0].stages[0].options: 'hostname' is a required property"}},
		{"format-1 schema takes no inputs", stage(`{"type": "test.v1only", "options": {"n": 1}, "inputs": {"t": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": {"raw-id": {}}}}}`),
			[]string{"pipelines[0].stages[0]: Additional properties are not allowed ('inputs' was unexpected)"}},
		{"integer, not float", stage(`{"type": "test.v1only", "options": {"n": 1.0}}`),
			[]string{"pipelines[0].stages[0].options.n: 1.0 is not of type 'integer'"}},
		{"device options", stage(`{"type": "test.hostname", "options": {"hostname": "a"}, "devices": {"d": {"type": "org.osbuild.loopback", "options": {"start": "0"}}}}`),
			[]string{"pipelines[0].stages[0].devices.d.options: 'filename' is a required property", "pipelines[0].stages[0].devices.d.options.start: '0' is not of type 'number'"}},
		{"mount without target", stage(`{"type": "test.hostname", "options": {"hostname": "a"}, "devices": {"d": {"type": "org.osbuild.loopback", "options": {"filename": "disk.img"}}}, "mounts": [{"name": "root", "type": "org.osbuild.ext4", "source": "d"}]}`),
			[]string{"pipelines[0].stages[0].mounts[0]: 'target' is a required property"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := Parse([]byte(tc.manifest))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			err = m.ValidateModules(lib)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("ValidateModules: %v", err)
				}
				return
			}
			var es Errors
			if !errors.As(err, &es) {
				t.Fatalf("ValidateModules = %v, want Errors", err)
			}
			for _, w := range tc.want {
				path, msg, _ := strings.Cut(w, ": ")
				found := false
				for _, e := range es {
					found = found || e.Path == path && strings.Contains(e.Msg, msg)
				}
				if !found {
					t.Errorf("no error %q in:\n%v", w, err)
				}
			}
			if len(es) != len(tc.want) {
				t.Errorf("%d errors, want %d:\n%v", len(es), len(tc.want), err)
			}
		})
	}
	// A meta.json that is not a schema is an error naming the file, not a
	// pass.
	writeModule(t, lib, "stages", "test.broken", `{"schema_2": {"options": {"type": "no-such-type"}}}`)
	m, err := Parse([]byte(stage(`{"type": "test.broken"}`)))
	if err != nil {
		t.Fatal(err)
	}
	if err := m.ValidateModules(lib); err == nil || !strings.Contains(err.Error(), "test.broken.meta.json") {
		t.Errorf("a broken schema: %v", err)
	}
}
