package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		bad  bool
	}{
		{in: "1048576", want: 1 << 20},
		{in: "500M", want: 500 << 20},
		{in: "20G", want: 20 << 30},
		{in: "1.5T", want: 3 << 39},
		{in: "64MiB", want: 64 << 20},
		{in: "2gb", want: 2 << 30},
		{in: "", bad: true},
		{in: "G", bad: true},
		{in: "-1G", bad: true},
		{in: "lots", bad: true},
	}
	for _, tt := range tests {
		got, err := parseSize(tt.in)
		if (err != nil) != tt.bad || (!tt.bad && got != tt.want) {
			t.Errorf("parseSize(%q) = %d, %v; want %d (error: %v)", tt.in, got, err, tt.want, tt.bad)
		}
	}
}

func TestHumanBytes(t *testing.T) {
	tests := map[int64]string{0: "0 B", 1023: "1023 B", 1024: "1.0 KiB", 1536: "1.5 KiB", 5 << 30: "5.0 GiB"}
	for in, want := range tests {
		if got := humanBytes(in); got != want {
			t.Errorf("humanBytes(%d) = %q, want %q", in, got, want)
		}
	}
}

// The command line: what is found, what is refused and with which status.
func TestRunDispatch(t *testing.T) {
	tests := []struct {
		args   []string
		code   int
		stdout string // a substring
		stderr string // a substring
	}{
		{args: nil, code: 0, stdout: "Commands:"},
		{args: []string{"help"}, code: 0, stdout: "store import"},
		{args: []string{"store"}, code: 0, stdout: "forge store COMMAND"},
		{args: []string{"store", "import", "--help"}, code: 0, stdout: "Example:"},
		{args: []string{"help", "store", "gc"}, code: 0, stdout: "--max-size"},
		{args: []string{"nonsense"}, code: 2, stderr: `unknown command "nonsense"`},
		{args: []string{"store", "import", "--no-such-flag"}, code: 2, stderr: "unknown flag"},
		{args: []string{"store", "import", "--store", "/nonexistent-forge-test"}, code: 2, stderr: "want one PATH"},
		{args: []string{"store", "import", "--ref", "has space", "/tmp"}, code: 2, stderr: "ref name"},
		{args: []string{"store", "import", "--ref", "", "/tmp"}, code: 2, stderr: "ref name"},
		{args: []string{"store", "import", "--ref", "ok", "--ref", "../up", "/tmp"}, code: 2, stderr: "ref name"},
		{args: []string{"store", "commit", "--ref", "", "/tmp"}, code: 2, stderr: "ref name"},
		{args: []string{"store", "gc", "--max-size", "lots"}, code: 2, stderr: "--max-size"},
		{args: []string{"run", "--commit-ref", "", "--", "true"}, code: 2, stderr: "--commit-ref: ref name"},
		{args: []string{"run", "--commit-ref", "a\nb", "--", "true"}, code: 2, stderr: "--commit-ref: ref name"},
		{args: []string{"inspect", "--max-manifest-size", "lots", "m.json"}, code: 2, stderr: "--max-manifest-size"},
		{args: []string{"inspect", "--max-manifest-size", "0", "m.json"}, code: 2, stderr: "want a size above 0"},
		{args: []string{"inspect", "--max-manifest-size", "1K", "/dev/zero"}, code: 2,
			stderr: "manifest /dev/zero is larger than the limit of 1024 bytes (1 KiB); --max-manifest-size raises the limit"},
		{args: []string{"build", "/dev/zero"}, code: 2, stderr: "limit of 67108864 bytes (64 MiB)"},
		{args: []string{"inspect", "/"}, code: 2, stderr: "is a directory"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out, errOut bytes.Buffer
			code := run(context.Background(), &env{stdout: &out, stderr: &errOut}, tt.args)
			if code != tt.code || !strings.Contains(out.String(), tt.stdout) || !strings.Contains(errOut.String(), tt.stderr) {
				t.Fatalf("exit %d (want %d)\nstdout: %s\nstderr: %s", code, tt.code, out.String(), errOut.String())
			}
		})
	}
}
