package client

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A daemon that exits at start is reported by the error it printed, not by
// a cut through whatever it logged before (a pebble dump runs for pages).
func TestLogTail(t *testing.T) {
	dump := strings.Repeat("  | github.com/cockroachdb/pebble/v2.(*DB).Get\n  | \t/root/go/pkg/mod/...:547\n", 200)
	tests := []struct {
		name, before, log, want string
	}{
		{"the error line after a dump", "old run\n", "index: on-disk corruption\n" + dump + "forge daemon: open store index /s/index: permission denied\n",
			"open store index /s/index: permission denied"},
		{"the last error line of this start only", "forge daemon: an earlier start's error\n", "starting\nforge daemon: this one\n", "this one"},
		{"no error line: the last lines", "", "a\nb\nc\nd\ne\nf\ng\n", "c\nd\ne\nf\ng (see "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "daemon.log")
			if err := os.WriteFile(path, []byte(tt.before+tt.log), 0o600); err != nil {
				t.Fatal(err)
			}
			got := logTail(path, int64(len(tt.before)))
			if !strings.HasPrefix(got, tt.want) {
				t.Errorf("logTail = %q, want it to start with %q", got, tt.want)
			}
			if strings.Contains(got, "pebble/v2") {
				t.Errorf("logTail carries the dump: %q", got)
			}
		})
	}
}
