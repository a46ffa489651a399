package truncate

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

// sizeTests are truncate --size strings applied to a 10-byte file, with
// the size coreutils 9.1's truncate leaves (or "" where it refuses the
// string); pinned by running it on Debian 12.
var sizeTests = []struct {
	in   string
	want int64
	ok   bool
}{
	{"10", 10, true},
	{"0", 0, true},
	{"00", 0, true},
	{"010", 10, true},
	{"268435456", 268435456, true},
	{"10K", 10240, true},
	{"10k", 10240, true},
	{"10KB", 10000, true},
	{"10kB", 10000, true},
	{"10KD", 10000, true},
	{"10KiB", 10240, true},
	{"1kiB", 1024, true},
	{"K", 1024, true},
	{"k", 1024, true},
	{"M", 1048576, true},
	{"10M", 10485760, true},
	{"1MD", 1000000, true},
	{"1G", 1073741824, true},
	{"1g", 1073741824, true},
	{"1t", 1099511627776, true},
	{"1T", 1099511627776, true},
	{"1P", 1125899906842624, true},
	{"7E", 8070450532247928832, true},
	{"1EiB", 1152921504606846976, true},
	{" 10", 10, true},
	{"\t10", 10, true},
	{"+5", 15, true},
	{" +5", 15, true},
	{"+00010k", 10250, true},
	{"-5", 5, true},
	{"-100", 0, true},
	{"-0", 10, true},
	{"+0", 10, true},
	{"<5", 5, true},
	{"< 5", 5, true},
	{" < 5", 5, true},
	{"<0", 0, true},
	{"<K", 10, true},
	{">5", 10, true},
	{"> 5", 10, true},
	{"/3", 9, true},
	{"%3", 12, true},
	{"%K", 1024, true},
	{"0k", 0, true},
	{"9223372036854775807", 9223372036854775807, true},
	// Refused.
	{"", 0, false},
	{"10 ", 0, false},
	{"5 k", 0, false},
	{"+ 5", 0, false},
	{"+", 0, false},
	{"<", 0, false},
	{"+K", 0, false},
	{"<+5", 0, false},
	{"<-5", 0, false},
	{"+-5", 0, false},
	{"%0", 0, false},
	{"/0", 0, false},
	{"1Ki", 0, false},
	{"1KIB", 0, false},
	{"1iB", 0, false},
	{"1b", 0, false},
	{"1B", 0, false},
	{"1mb", 0, false},
	{"1p", 0, false},
	{"1e", 0, false},
	{"1Q", 0, false},
	{"0x10", 0, false},
	{"5MiBx", 0, false},
	{"10E", 0, false},
	{"8E", 0, false},
	{"1Z", 0, false},
	{"9223372036854775808", 0, false},
}

func TestParseSize(t *testing.T) {
	for _, tt := range sizeTests {
		t.Run(strconv.Quote(tt.in), func(t *testing.T) {
			sz, err := ParseSize(tt.in)
			if !tt.ok {
				if err == nil {
					t.Fatalf("parsed as %+v, want an error", sz)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, err := sz.Apply(10)
			if err != nil || got != tt.want {
				t.Errorf("applied to 10 bytes: %d, %v; want %d", got, err, tt.want)
			}
		})
	}
}

// TestParseSizeCoreutils runs the host's truncate on each string, when
// there is one, and compares (sizes that fit a test file only).
func TestParseSizeCoreutils(t *testing.T) {
	if _, err := exec.LookPath("truncate"); err != nil {
		t.Skip("no truncate here")
	}
	dir := t.TempDir()
	for i, tt := range sizeTests {
		if tt.ok && tt.want > 1<<30 {
			continue
		}
		f := filepath.Join(dir, strconv.Itoa(i))
		os.WriteFile(f, []byte("abcdefghij"), 0o644)
		err := exec.Command("truncate", "--size", tt.in, f).Run()
		if tt.ok != (err == nil) {
			// A suffix a newer coreutils knows (R, Q) is still too large.
			t.Errorf("%q: truncate says %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if fi, _ := os.Stat(f); tt.ok && fi.Size() != tt.want {
			t.Errorf("%q: truncate made %d bytes, want %d", tt.in, fi.Size(), tt.want)
		}
	}
}

func TestApplyOverflow(t *testing.T) {
	big := int64(1<<63 - 10)
	for _, in := range []string{"+20", "%1000"} {
		sz, err := ParseSize(in)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := sz.Apply(big); err == nil || !strings.Contains(err.Error(), "overflow") {
			t.Errorf("%q on %d: %v, want an overflow", in, big, err)
		}
	}
}

func TestParseOptions(t *testing.T) {
	tests := []struct {
		raw, wantName, wantErr string
	}{
		{`{"filename": "disk.img", "size": "1G"}`, "disk.img", ""},
		{`{"filename": "/disk.img", "size": "1G"}`, "disk.img", ""},
		{`{"filename": "//images//disk.img", "size": "1G"}`, "images/disk.img", ""},
		{`{"size": "1G"}`, "", `option "filename": is required`},
		{`{"filename": "disk.img"}`, "", `option "size": is required`},
		{`{"filename": "disk.img", "size": 1073741824}`, "", `option "size": want string, got number`},
		{`{"filename": "disk.img", "size": "1X"}`, "", `option "size": "1X": not a size`},
		{`{"filename": "", "size": "1"}`, "", `names no file`},
		{`{"filename": "/", "size": "1"}`, "", `names no file`},
		{`{"filename": "../disk.img", "size": "1"}`, "", `contains ".."`},
		{`{"filename": "a/../b", "size": "1"}`, "", `contains ".."`},
		{`{"filename": "disk.img", "size": "1", "sparse": true}`, "", `unknown option "sparse"`},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			p, err := parse([]byte(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || p.name != tt.wantName {
				t.Fatalf("name %q, %v; want %q", p.name, err, tt.wantName)
			}
		})
	}
}

func run(t *testing.T, tree, filename, size string) error {
	t.Helper()
	opts, _ := json.Marshal(map[string]string{"filename": filename, "size": size})
	return Run(context.Background(), stage.Args{Tree: tree, Options: opts, Format: 1})
}

func TestRun(t *testing.T) {
	tree := t.TempDir()
	outside := t.TempDir()
	img := filepath.Join(tree, "disk.img")

	// A new file: sparse, the size asked for.
	if err := run(t, tree, "/disk.img", "64M"); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(img)
	if err != nil || fi.Size() != 64<<20 {
		t.Fatalf("size %v, %v", fi, err)
	}
	if st := fi.Sys().(*syscall.Stat_t); st.Blocks != 0 {
		t.Errorf("%d blocks allocated: not sparse", st.Blocks)
	}
	// Relative to the current size, keeping the content.
	os.WriteFile(img, []byte("0123456789"), 0o644)
	if err := run(t, tree, "disk.img", "+6"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(img); string(b) != "0123456789\x00\x00\x00\x00\x00\x00" {
		t.Errorf("content %q", b)
	}
	if err := run(t, tree, "disk.img", "/5"); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(img); string(b) != "0123456789\x00\x00\x00\x00\x00" {
		t.Errorf("content %q", b)
	}

	// Not through a symbolic link out of the tree.
	os.Symlink(outside, filepath.Join(tree, "out"))
	if err := run(t, tree, "out/disk.img", "1M"); err == nil {
		t.Error("wrote through a link out of the tree")
	}
	if _, err := os.Stat(filepath.Join(outside, "disk.img")); err == nil {
		t.Error("file made outside the tree")
	}
	// A link inside the tree is followed.
	os.Symlink("disk.img", filepath.Join(tree, "link.img"))
	if err := run(t, tree, "link.img", "100"); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(img); fi.Size() != 100 {
		t.Errorf("through a link: %d bytes", fi.Size())
	}
	// Missing directory, a directory, a FIFO.
	if err := run(t, tree, "no/disk.img", "1"); err == nil || !strings.Contains(err.Error(), `option "filename"`) {
		t.Errorf("missing directory: %v", err)
	}
	os.Mkdir(filepath.Join(tree, "dir"), 0o755)
	if err := run(t, tree, "dir", "1"); err == nil {
		t.Error("truncated a directory")
	}
	// A FIFO with no reader: the open fails at once (ENXIO) rather than
	// waiting; with one, it is not a regular file.
	fifo := filepath.Join(tree, "fifo")
	syscall.Mkfifo(fifo, 0o644)
	if err := run(t, tree, "fifo", "1"); err == nil || !strings.Contains(err.Error(), `option "filename": /fifo`) {
		t.Errorf("FIFO: %v", err)
	}
	r, err := os.OpenFile(fifo, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := run(t, tree, "fifo", "1"); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("FIFO with a reader: %v", err)
	}
}
