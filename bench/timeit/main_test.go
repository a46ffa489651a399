package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestRunRecordsStatus(t *testing.T) {
	tests := []struct {
		name   string
		argv   []string
		status int
	}{
		{"success", []string{"true"}, 0},
		{"exit status", []string{"sh", "-c", "exit 3"}, 3},
		{"killed by a signal", []string{"sh", "-c", "kill -9 $$"}, 128 + 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "times")
			// Two runs: the figures are appended, not overwritten.
			for range 2 {
				status, err := run(out, tt.argv)
				if err != nil {
					t.Fatalf("run %v: %v", tt.argv, err)
				}
				if status != tt.status {
					t.Errorf("run %v returned status %d, want %d", tt.argv, status, tt.status)
				}
			}
			data, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(data), "\n"), "\n")
			if len(lines) != 2 {
				t.Fatalf("got %d lines, want 2: %q", len(lines), data)
			}
			for _, line := range lines {
				f := strings.Fields(line)
				if len(f) != 5 {
					t.Fatalf("line %q has %d fields, want 5", line, len(f))
				}
				for _, s := range f[:3] {
					if v, err := strconv.ParseFloat(s, 64); err != nil || v < 0 {
						t.Errorf("line %q: %q is not a duration in seconds", line, s)
					}
				}
				if f[4] != strconv.Itoa(tt.status) {
					t.Errorf("line %q records status %s, want %d", line, f[4], tt.status)
				}
			}
		})
	}
}

func TestRunMissingCommand(t *testing.T) {
	out := filepath.Join(t.TempDir(), "times")
	if _, err := run(out, []string{filepath.Join(t.TempDir(), "no-such-command")}); err == nil {
		t.Fatal("run of a missing command returned no error")
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a command that did not start left figures in %s", out)
	}
}
