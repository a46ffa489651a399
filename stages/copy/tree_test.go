package copy

import (
	"os"
	"path/filepath"
	"testing"
)

// TestCanCopyContents: only into an empty directory, or one holding just
// a lost+found the source lacks.
func TestCanCopyContents(t *testing.T) {
	base := t.TempDir()
	mk := func(names ...string) string {
		d, err := os.MkdirTemp(base, "d")
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			if err := os.Mkdir(filepath.Join(d, n), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		return d
	}
	plain := mk("etc")
	withLF := mk("etc", "lost+found")
	tests := []struct {
		name     string
		src, dst string
		want     bool
	}{
		{"empty", plain, mk(), true},
		{"a fresh ext4", plain, mk("lost+found"), true},
		{"lost+found in both", withLF, mk("lost+found"), false},
		{"something else there", plain, mk("etc"), false},
		{"lost+found and more", plain, mk("lost+found", "boot"), false},
		{"no destination", plain, filepath.Join(base, "missing"), false},
	}
	for _, tt := range tests {
		if got := canCopyContents(tt.src, tt.dst); got != tt.want {
			t.Errorf("%s: canCopyContents = %v, want %v", tt.name, got, tt.want)
		}
	}
}
