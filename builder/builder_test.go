package builder

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"

	"github.com/forge-build/forge/builder/manifest"
)

func TestCachedPrefix(t *testing.T) {
	stages := []*manifest.Stage{{ID: "a"}, {ID: "b"}, {ID: "c"}}
	tests := []struct {
		name   string
		stored []string
		want   int
	}{
		{"nothing stored", nil, 0},
		{"first", []string{"a"}, 1},
		{"all", []string{"a", "b", "c"}, 3},
		// The last stage's tree holds all before it, even when their own
		// refs were removed.
		{"only the last", []string{"c"}, 3},
		{"a gap", []string{"a", "c"}, 3},
		{"middle", []string{"b"}, 2},
		{"unrelated", []string{"x"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := cachedPrefix(stages, func(id string) bool {
				for _, s := range tt.stored {
					if s == id {
						return true
					}
				}
				return false
			})
			if got != tt.want {
				t.Errorf("cachedPrefix = %d, want %d", got, tt.want)
			}
		})
	}
	if got := cachedPrefix(nil, func(string) bool { return true }); got != 0 {
		t.Errorf("cachedPrefix(no stages) = %d", got)
	}
}

func TestInspect(t *testing.T) {
	m, err := manifest.Parse([]byte(`{
		"build": {"stages": [{"name": "org.osbuild.noop"}]},
		"stages": [{"name": "org.osbuild.hostname", "options": {"hostname": "forge-test"}}, {"name": "org.osbuild.noop"}],
		"assembler": {"name": "org.osbuild.tar", "options": {"filename": "t.tar"}}
	}`))
	if err != nil {
		t.Fatal(err)
	}
	stored := map[string]bool{m.Pipeline.Stages[0].ID: true}
	info := Inspect(m.Pipeline, func(id string) bool { return stored[id] })
	if len(info.Stages) != 2 || !info.Stages[0].Cached || info.Stages[1].Cached {
		t.Errorf("stages: %+v", info.Stages)
	}
	if info.Build == nil || len(info.Build.Stages) != 1 || info.Build.Stages[0].Cached {
		t.Errorf("build: %+v", info.Build)
	}
	if info.Assembler == nil || info.Assembler.Cached || info.OutputID != m.Pipeline.Assembler.ID || info.TreeID != m.Pipeline.Stages[1].ID {
		t.Errorf("assembler %+v, output %s, tree %s", info.Assembler, info.OutputID, info.TreeID)
	}
}

func TestStageOutput(t *testing.T) {
	var live bytes.Buffer
	var lines []string
	o := &stageOutput{live: &live, line: func(l string) { lines = append(lines, l) }}
	for _, chunk := range []string{"one\ntw", "o\n", "three", "\xff\n", "no newline"} {
		o.Write([]byte(chunk))
	}
	o.flush()
	want := []string{"one", "two", "three\uFFFD", "no newline"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Errorf("lines %q, want %q", lines, want)
	}
	if live.String() != "one\ntwo\nthree\xff\nno newline" {
		t.Errorf("live got %q", live.String())
	}

	// Only the end is kept, and the report says so.
	o = &stageOutput{}
	o.Write(bytes.Repeat([]byte("x"), maxKeptOutput))
	o.Write([]byte("the error at the end\n"))
	s := o.String()
	if !strings.HasSuffix(s, "the error at the end\n") || !strings.HasPrefix(s, "[… first 21 bytes not kept …]") {
		t.Errorf("kept output starts %q, ends %q", s[:40], s[len(s)-30:])
	}

	// A very long line is split into bounded events.
	lines = nil
	o = &stageOutput{line: func(l string) { lines = append(lines, l) }}
	o.Write(bytes.Repeat([]byte("y"), 2*maxLine+5))
	o.flush()
	if len(lines) != 3 || len(lines[0]) != maxLine || len(lines[2]) != 5 {
		t.Errorf("long line split into %d events", len(lines))
	}
}

func TestJSONSeq(t *testing.T) {
	var buf bytes.Buffer
	emit := JSONSeq(&buf)
	emit(Event{Type: EventStageStarted, Path: "stages[0]", Name: "org.osbuild.noop"})
	emit(Event{Type: EventLog, Line: "with \x1e inside"})
	recs := bytes.Split(buf.Bytes(), []byte{0x1e})
	if len(recs) != 3 || len(recs[0]) != 0 {
		t.Fatalf("records: %q", buf.Bytes())
	}
	for _, r := range recs[1:] {
		if r[len(r)-1] != '\n' {
			t.Errorf("record %q does not end with LF", r)
		}
		var ev Event
		if err := json.Unmarshal(r, &ev); err != nil {
			t.Errorf("record %q: %v", r, err)
		}
	}
}
