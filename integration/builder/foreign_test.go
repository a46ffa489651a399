package builder_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/forge-build/forge/builder"
)

// foreignLibdir makes a libdir that is not forge's: testdata/foreignlib's
// Python stages, and a runner named as osbuild names this host's, a shell
// script that runs the stage (osbuild's runners do their setup, then the
// same).
func foreignLibdir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, d := range []string{"runners", "stages"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	runner := filepath.Join(dir, "runners", builder.HostRunnerName(""))
	if err := os.WriteFile(runner, []byte("#!/bin/sh\nexec \"$@\"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"test.v2args", "test.v2fail"} {
		b, err := os.ReadFile(filepath.Join("testdata/foreignlib/stages", s))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "stages", s), b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// A libdir that is not forge's gets what osbuild gives its stages: the
// arguments file with meta, inputs and paths; SOURCE_DATE_EPOCH; osbuild's
// environment; an /etc forge did not fill; no network; and an exception a
// stage sends to the API socket is the build's error.
func TestV2ForeignLibdir(t *testing.T) {
	lib := foreignLibdir(t)
	store := storeDir(t)
	out := t.TempDir()
	m := obj{"version": "2", "pipelines": []obj{
		{"name": "base", "stages": []obj{{"type": "test.v2args", "options": obj{"first": true}}}},
		{"name": "os", "source-epoch": 1700000000, "stages": []obj{
			{"type": "test.v2args", "options": obj{"second": 2},
				"inputs": obj{"base": obj{"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": []string{"name:base"}}}},
		}},
	}}
	r := build(t, store, m, "--libdir", lib, "--output-directory", out)
	if r.code != 0 {
		t.Fatalf("forge build with a foreign libdir: exit %d\n%s", r.code, r.stderr)
	}
	b, err := os.ReadFile(filepath.Join(out, "os", "seen.json"))
	if err != nil {
		t.Fatal(err)
	}
	var seen struct {
		Arguments struct {
			Tree    string
			Options map[string]any
			Meta    map[string]any
			Paths   map[string]string
			Inputs  map[string]struct{ Path string }
		}
		Env    map[string]*string
		Etc    []string
		Inputs map[string][]string
		API    []string
		Net    []string
	}
	if err := json.Unmarshal(b, &seen); err != nil {
		t.Fatalf("seen.json %s: %v", b, err)
	}
	a := seen.Arguments
	if a.Tree != "/run/osbuild/tree" || a.Options["second"] != 2.0 || a.Paths["inputs"] != "/run/osbuild/inputs" {
		t.Errorf("arguments: %+v", a)
	}
	if a.Meta["source-epoch"] != 1700000000.0 || len(a.Meta["id"].(string)) != 64 {
		t.Errorf("meta: %v", a.Meta)
	}
	if a.Inputs["base"].Path != "/run/osbuild/inputs/base" || !slices.Contains(seen.Inputs["base"], "seen.json") {
		t.Errorf("the base input: %+v, holds %v", a.Inputs["base"], seen.Inputs["base"])
	}
	if e := seen.Env["SOURCE_DATE_EPOCH"]; e == nil || *e != "1700000000" {
		t.Errorf("SOURCE_DATE_EPOCH %v", e)
	}
	if e := seen.Env["PYTHONPATH"]; e == nil || *e != "/run/osbuild/lib" {
		t.Errorf("PYTHONPATH %v", e)
	}
	for _, f := range seen.Etc {
		if f == "passwd" || f == "resolv.conf" || f == "ld.so.cache" {
			t.Errorf("/etc has %s: forge's runner steps ran for a foreign runner (%v)", f, seen.Etc)
		}
	}
	if !slices.Equal(seen.Net, []string{"lo"}) {
		t.Errorf("network interfaces %v: a foreign stage runs without network, as in osbuild", seen.Net)
	}
	if !slices.Contains(seen.API, "osbuild") || !slices.Contains(seen.API, "arguments") {
		t.Errorf("/run/osbuild/api holds %v", seen.API)
	}
	var meta bool
	for _, ev := range r.events {
		meta = meta || ev.Type == builder.EventMetadata && strings.Contains(string(ev.Metadata), "test.v2args")
	}
	if !meta {
		t.Errorf("no metadata event for what the stage wrote to /run/osbuild/meta")
	}

	fail := obj{"version": "2", "pipelines": []obj{{"name": "x", "stages": []obj{{"type": "test.v2fail"}}}}}
	r = build(t, store, fail, "--libdir", lib)
	if r.code != 1 || !strings.Contains(r.stderr, "ValueError: boom from a python stage") {
		t.Errorf("a stage's exception: exit %d, stderr:\n%s", r.code, r.stderr)
	}
}
