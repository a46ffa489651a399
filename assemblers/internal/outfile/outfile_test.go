package outfile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestCheckName(t *testing.T) {
	good := []string{"disk.qcow2", "root.tar.xz", ".hidden", "with space", "..x", strings.Repeat("n", 200)}
	for _, n := range good {
		if err := CheckName(n); err != nil {
			t.Errorf("CheckName(%q): %v", n, err)
		}
	}
	bad := []string{"", ".", "..", "a/b", "/abs", "dir/", "nul\x00", strings.Repeat("n", 240)}
	for _, n := range bad {
		if err := CheckName(n); err == nil {
			t.Errorf("CheckName(%q) accepted it", n)
		}
	}
}

func entries(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// TestPartial: the output shows up under its name only on Commit; Remove
// leaves nothing, and is harmless after Commit.
func TestPartial(t *testing.T) {
	dir := t.TempDir()
	p, err := Create(dir, "out.img")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := p.WriteString("content"); err != nil {
		t.Fatal(err)
	}
	if names := entries(t, dir); len(names) != 1 || !strings.HasPrefix(names[0], ".forge-partial-") {
		t.Fatalf("while writing: %v, want one hidden partial file", names)
	}
	if err := p.Commit(); err != nil {
		t.Fatal(err)
	}
	p.Remove()
	if names := entries(t, dir); len(names) != 1 || names[0] != "out.img" {
		t.Fatalf("after Commit: %v", names)
	}
	fi, err := os.Stat(filepath.Join(dir, "out.img"))
	if err != nil || fi.Size() != 7 || fi.Mode().Perm() != 0o644 {
		t.Errorf("output: %v, %v", fi, err)
	}
	if err := p.Commit(); err == nil {
		t.Error("second Commit succeeded")
	}

	q, err := Create(dir, "failed.img")
	if err != nil {
		t.Fatal(err)
	}
	q.Remove()
	if names := entries(t, dir); len(names) != 1 || names[0] != "out.img" {
		t.Errorf("after Remove: %v", names)
	}
	if _, err := Create(dir, "../x"); err == nil {
		t.Error("Create with ../x succeeded")
	}
}
