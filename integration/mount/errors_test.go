package mount_test

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/forge-build/forge/fusefs"
	"github.com/forge-build/forge/internal/fstree"
)

// TestCorruptChunk flips one byte of one chunk in a pack: reading the file
// that holds it fails with EIO (again and again, never wrong data), the
// mount logs the chunk and its pack, and every other file still reads.
func TestCorruptChunk(t *testing.T) {
	requireFUSE(t)
	dir := testDir(t)
	src := filepath.Join(dir, "src")
	if err := os.Mkdir(src, 0o755); err != nil {
		t.Fatal(err)
	}
	victim := fstree.RandomBytes("victim", 1<<20)
	other := fstree.RandomBytes("other", 1<<20)
	for name, data := range map[string][]byte{"victim": victim, "other": other, "small": []byte("small\n")} {
		if err := os.WriteFile(filepath.Join(src, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s := openStore(t, dir)
	tree := importTree(t, s, src)

	// Find the victim's chunk that holds byte 600000, and that byte in a
	// pack (random content: 64 bytes from it occur once).
	const at = 600000
	root, err := s.Node(tree)
	if err != nil {
		t.Fatal(err)
	}
	i, ok := root.Lookup("victim")
	if !ok {
		t.Fatal("victim not in the tree")
	}
	file, err := s.Node(root.Entries[i].Hash)
	if err != nil {
		t.Fatal(err)
	}
	var chunkHex string
	for off, j := uint64(0), 0; j < len(file.Chunks); j++ {
		if off <= at && at < off+file.Chunks[j].Size {
			chunkHex = file.Chunks[j].Hash.String()
		}
		off += file.Chunks[j].Size
	}
	pack := flipByte(t, filepath.Join(s.Dir(), "packs"), victim[at:at+64])

	logs := &logBuffer{t: t}
	m := mountTree(t, s, tree, dir, "mnt", fusefs.Options{Logf: logs.logf})
	mnt := m.Mountpoint()

	for attempt := range 2 {
		_, err := os.ReadFile(filepath.Join(mnt, "victim"))
		if !errors.Is(err, syscall.EIO) {
			t.Errorf("reading the corrupted file (attempt %d): %v, want EIO", attempt+1, err)
		}
	}
	// The chunks before the bad one still read, and are right.
	f, err := os.Open(filepath.Join(mnt, "victim"))
	if err != nil {
		t.Fatal(err)
	}
	head := make([]byte, 4096)
	if _, err := io.ReadFull(f, head); err != nil || !bytes.Equal(head, victim[:4096]) {
		t.Errorf("first 4 KiB of the corrupted file: %v, equal: %v", err, bytes.Equal(head, victim[:4096]))
	}
	f.Close()

	for name, want := range map[string][]byte{"other": other, "small": []byte("small\n")} {
		got, err := os.ReadFile(filepath.Join(mnt, name))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s after the corrupted read: %v (content equal: %v)", name, err, bytes.Equal(got, want))
		}
	}
	if _, err := os.ReadDir(mnt); err != nil {
		t.Errorf("listing the mount after the corrupted read: %v", err)
	}

	log := logs.String()
	for _, want := range []string{chunkHex, pack, "/victim"} {
		if !strings.Contains(log, want) {
			t.Errorf("the mount's log does not name %s:\n%s", want, log)
		}
	}
}

// flipByte finds the pack under dir that holds needle, inverts the byte in
// the middle of it, and returns the pack's ID (its name without .pack).
func flipByte(t testing.TB, dir string, needle []byte) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		p := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		at := bytes.Index(data, needle)
		if at < 0 {
			continue
		}
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		at += len(needle) / 2
		_, err = f.WriteAt([]byte{^data[at]}, int64(at))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSuffix(e.Name(), ".pack")
	}
	t.Fatal("no pack holds the chunk's bytes (stored compressed?)")
	return ""
}
