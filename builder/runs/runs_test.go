package runs

import (
	"os"
	"path/filepath"
	"testing"
)

// TestRunDirectoriesArePrivate: the run directories hold mounts that
// honour set-id bits and device nodes, so the directory that holds them
// is made 0700 even when an older forge (or a user) made it 0755, and
// each run's directory is 0700; a symlink in its place is refused.
func TestRunDirectoriesArePrivate(t *testing.T) {
	store := t.TempDir()
	runs := filepath.Join(store, DirName)
	if err := os.Mkdir(runs, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(runs, 0o755); err != nil {
		t.Fatal(err)
	}
	dir, lock, err := newRunDir(runs)
	if err != nil {
		t.Fatal(err)
	}
	defer lock.Close()
	for _, d := range []string{runs, dir} {
		fi, err := os.Stat(d)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o700 {
			t.Errorf("%s has mode %#o, want 0700", d, fi.Mode().Perm())
		}
	}

	other := t.TempDir()
	linked := filepath.Join(t.TempDir(), DirName)
	if err := os.Symlink(other, linked); err != nil {
		t.Fatal(err)
	}
	if _, _, err := newRunDir(linked); err == nil {
		t.Errorf("newRunDir took %s, a symlink", linked)
	}
}
