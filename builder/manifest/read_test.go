package manifest

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRead(t *testing.T) {
	cases := []struct {
		name        string
		size, limit int64
		tooLarge    bool
	}{
		{"empty", 0, 10, false},
		{"under the limit", 9, 10, false},
		{"at the limit", 10, 10, false},
		{"one byte over", 11, 10, true},
		{"far over", 10 << 20, 1 << 20, true},
		{"several blocks", 20<<20 + 3, 64 << 20, false},
		{"no limit", 100, 1<<63 - 1, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			in := bytes.Repeat([]byte("0123456789"), int(tc.size/10)+1)[:tc.size]
			// A reader that is not a *bytes.Reader, as a pipe is.
			got, err := Read(io.MultiReader(bytes.NewReader(in)), "stdin", tc.limit)
			checkRead(t, got, err, in, tc.tooLarge, "stdin", tc.limit)

			file := filepath.Join(t.TempDir(), "manifest.json")
			if err := os.WriteFile(file, in, 0o644); err != nil {
				t.Fatal(err)
			}
			got, err = ReadFile(file, tc.limit)
			checkRead(t, got, err, in, tc.tooLarge, file, tc.limit)
		})
	}
}

func checkRead(t *testing.T, got []byte, err error, want []byte, tooLarge bool, name string, limit int64) {
	t.Helper()
	if !tooLarge {
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: read %d bytes, %v; want %d bytes", name, len(got), err, len(want))
		}
		return
	}
	var se *SizeError
	if !errors.As(err, &se) || !errors.Is(err, ErrTooLarge) || se.Name != name || se.Limit != limit {
		t.Fatalf("%s: %d bytes, %v; want a *SizeError for %s, limit %d", name, len(got), err, name, limit)
	}
	if msg := err.Error(); !strings.Contains(msg, name) || !strings.Contains(msg, "limit") {
		t.Errorf("message %q does not name the file and the limit", msg)
	}
}

// Files that are not regular: a pipe is read up to the limit, /dev/zero
// fails at it without reading on, a directory fails at once.
func TestReadFileNotRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	go func() {
		f, err := os.OpenFile(fifo, os.O_WRONLY, 0)
		if err != nil {
			return
		}
		defer f.Close()
		f.Write([]byte(hostnameManifest))
	}()
	data, err := ReadFile(fifo, 1<<20)
	if err != nil || string(data) != hostnameManifest {
		t.Errorf("FIFO: %q, %v; want the manifest written into it", data, err)
	}

	start := time.Now()
	_, err = ReadFile("/dev/zero", 1<<20)
	if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "/dev/zero") {
		t.Errorf("/dev/zero: %v; want a *SizeError naming it", err)
	}
	t.Logf("/dev/zero failed after %s", time.Since(start))

	_, err = ReadFile(dir, 1<<20)
	if !errors.Is(err, syscall.EISDIR) {
		t.Errorf("directory: %v; want EISDIR", err)
	}
	_, err = ReadFile(filepath.Join(dir, "missing"), 1<<20)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v; want ErrNotExist", err)
	}
}
