package manifest

import (
	"os"
	"testing"
)

// TestCacheKeys: where osbuild's IDs cannot tell two trees apart (stages
// that differ only in their devices), the cache keys do, and the
// difference carries to what builds on them; elsewhere a key is the ID.
func TestCacheKeys(t *testing.T) {
	data, err := os.ReadFile("testdata/v2/loopback-device.json")
	if err != nil {
		t.Fatal(err)
	}
	m, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	a, b := m.Pipelines()[0], m.Pipelines()[1]
	if a.Stages[0].CacheKey != a.Stages[0].ID || b.Stages[0].CacheKey != a.Stages[0].CacheKey {
		t.Errorf("truncate (no devices): keys %s, %s; want the ID %s", a.Stages[0].CacheKey, b.Stages[0].CacheKey, a.Stages[0].ID)
	}
	if a.Stages[1].ID != b.Stages[1].ID {
		t.Fatalf("osbuild's IDs of the two mkfs stages differ; the testdata pins them equal")
	}
	if a.Stages[1].CacheKey == b.Stages[1].CacheKey || a.Stages[1].CacheKey == a.Stages[1].ID {
		t.Errorf("mkfs on other devices: keys %s and %s (ID %s), want two keys of their own", a.Stages[1].CacheKey, b.Stages[1].CacheKey, a.Stages[1].ID)
	}

	// Downstream: a stage after the mkfs, a pipeline taking its tree, a
	// pipeline built on it: all keyed apart, with equal IDs.
	chain := func(loop string) *Manifest {
		t.Helper()
		m, err := Parse([]byte(`{"version": "2", "pipelines": [
			{"name": "img", "stages": [
				{"type": "mkfs", "devices": {"device": {"type": "org.osbuild.loopback", "options": {"filename": "` + loop + `"}}}},
				{"type": "after"}]},
			{"name": "user", "stages": [{"type": "copy", "inputs": {"t": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": ["name:img"]}}}]},
			{"name": "built", "build": "name:img", "stages": [{"type": "x"}]},
			{"name": "plain", "stages": [{"type": "x"}]}]}`))
		if err != nil {
			t.Fatal(err)
		}
		return m
	}
	m1, m2 := chain("disk.img"), chain("other.img")
	for i, p1 := range m1.Pipelines() {
		p2 := m2.Pipelines()[i]
		for j, s1 := range p1.Stages {
			s2 := p2.Stages[j]
			if s1.ID != s2.ID {
				t.Fatalf("%s: osbuild IDs differ", s1.Path)
			}
			if p1.Name == "plain" {
				if s1.CacheKey != s1.ID || s2.CacheKey != s2.ID {
					t.Errorf("%s: key %s, want the ID", s1.Path, s1.CacheKey)
				}
				continue
			}
			if s1.CacheKey == s2.CacheKey {
				t.Errorf("%s: one key %s for trees made on other devices", s1.Path, s1.CacheKey)
			}
		}
	}
	// Format 1 keys are its IDs.
	f1 := mustParse(t, hostnameManifest)
	if s := f1.Pipeline.Stages[0]; s.CacheKey != s.ID {
		t.Errorf("format 1: key %s, ID %s", s.CacheKey, s.ID)
	}
}
