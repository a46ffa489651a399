package timezone

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

// tzif is a minimal RFC 8536 version 1 zone file: UTC, no transitions.
func tzif() []byte {
	b := append([]byte("TZif"), make([]byte, 16)...) // magic, version 1, unused
	for _, n := range []uint32{0, 0, 0, 0, 1, 4} {   // isut, isstd, leap, time, type, char counts
		b = binary.BigEndian.AppendUint32(b, n)
	}
	b = append(b, 0, 0, 0, 0, 0, 0) // one ttinfo: utoff 0, isdst 0, idx 0
	return append(b, "UTC\x00"...)
}

// zoneTree makes a tree whose zoneinfo holds Europe/Berlin, Etc/UTC and
// UTC (a relative symlink, as tzdata ships it), Etc/GMT+5, a non-zone
// file and a directory.
func zoneTree(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	zi := filepath.Join(tree, zoneinfo)
	for _, z := range []string{"Europe/Berlin", "Etc/UTC", "Etc/GMT+5"} {
		if err := os.MkdirAll(filepath.Join(zi, filepath.Dir(z)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(zi, z), tzif(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink("Etc/UTC", filepath.Join(zi, "UTC")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(zi, "zone.tab"), []byte("# tzdb zone descriptions\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return tree
}

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		options string
		zone    string // the zone set, when wantErr is ""
		wantErr string
	}{
		{"zone", `{"zone": "Europe/Berlin"}`, "Europe/Berlin", ""},
		{"symlinked zone", `{"zone": "UTC"}`, "UTC", ""},
		{"plus", `{"zone": "Etc/GMT+5"}`, "Etc/GMT+5", ""},
		{"missing", `{}`, "", `option "zone": is required`},
		{"empty", `{"zone": ""}`, "", `option "zone": empty zone name`},
		{"not in tree", `{"zone": "Mars/Olympus_Mons"}`, "", `no zone "Mars/Olympus_Mons" in the tree`},
		{"escape", `{"zone": "../../../etc/passwd"}`, "", `has a ".." component`},
		{"escape inside", `{"zone": "Europe/../Etc/UTC"}`, "", `has a ".." component`},
		{"dot", `{"zone": "./UTC"}`, "", `has a "." component`},
		{"absolute", `{"zone": "/usr/share/zoneinfo/UTC"}`, "", "not a relative name"},
		{"trailing slash", `{"zone": "Europe/"}`, "", "not a relative name"},
		{"directory", `{"zone": "Europe"}`, "", "not a zone file"},
		{"not tzif", `{"zone": "zone.tab"}`, "", "not a TZif zone file"},
		{"space", `{"zone": "America/New York"}`, "", `contains ' '`},
		{"wrong type", `{"zone": 1}`, "", `option "zone": want string`},
		{"unknown option", `{"zone": "UTC", "utc": true}`, "", `unknown option "utc"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := zoneTree(t)
			err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(tt.options)})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run: error %v, want one containing %q", err, tt.wantErr)
				}
				if _, err := os.Lstat(filepath.Join(tree, "etc")); !os.IsNotExist(err) {
					t.Errorf("a failed run wrote to the tree (lstat /etc: %v)", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			checkZone(t, tree, tt.zone)
		})
	}
}

func checkZone(t *testing.T, tree, zone string) {
	t.Helper()
	target, err := os.Readlink(filepath.Join(tree, "etc/localtime"))
	if err != nil {
		t.Fatal(err)
	}
	if want := "../usr/share/zoneinfo/" + zone; target != want {
		t.Errorf("/etc/localtime -> %q, want %q", target, want)
	}
	// The link resolves, inside the tree, to a zone file.
	b, err := os.ReadFile(filepath.Join(tree, "etc", target))
	if err != nil || !strings.HasPrefix(string(b), "TZif") {
		t.Errorf("/etc/localtime does not resolve to a zone file in the tree: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(tree, "etc/timezone"))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != zone+"\n" {
		t.Errorf("/etc/timezone = %q, want %q", got, zone+"\n")
	}
	if fi, _ := os.Stat(filepath.Join(tree, "etc/timezone")); fi.Mode().Perm() != 0o644 {
		t.Errorf("/etc/timezone mode %v, want 0644", fi.Mode())
	}
}

// A second run replaces the first's link and file (Debian's base system
// ships /etc/localtime as a link to Etc/UTC), and leaves no temporary
// files.
func TestReplaces(t *testing.T) {
	tree := zoneTree(t)
	for _, zone := range []string{"Etc/UTC", "Europe/Berlin"} {
		if err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(`{"zone": "` + zone + `"}`)}); err != nil {
			t.Fatal(err)
		}
		checkZone(t, tree, zone)
	}
	ents, _ := os.ReadDir(filepath.Join(tree, "etc"))
	if len(ents) != 2 {
		t.Errorf("/etc holds %v, want localtime and timezone only", ents)
	}
}
