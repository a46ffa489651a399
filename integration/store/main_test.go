// Package store_test runs the `forge store` CLI as root against real
// filesystems and checks the store's contract (issue 2, "What must hold"):
// fidelity, dedup, crash safety, integrity, bad input, diff and gc.
//
// TestMain builds the CLI once from the module root with
// `go build -o <tmp>/forge ./cmd/forge`, unless $FORGE_TEST_BIN names one
// to test. When not run as root every test skips, saying so.
package store_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/forge-build/forge/integration/itest"
)

// harness is what TestMain learns once for all tests; nothing writes it
// after TestMain.
var harness struct {
	bin      string // path of the forge binary under test
	built    bool   // bin was built for this run (not $FORGE_TEST_BIN)
	skip     string // why every test skips, if it does
	buildErr error  // why building forge failed, if it did
}

func TestMain(m *testing.M) {
	os.Exit(runMain(m))
}

func runMain(m *testing.M) int {
	if os.Geteuid() != 0 {
		harness.skip = "needs root: the store tests chown, mknod, set trusted.* xattrs, mount and attach loop devices"
		fmt.Fprintln(os.Stderr, "integration/store: skipping every test:", harness.skip)
		return m.Run()
	}
	tmp, err := os.MkdirTemp("", "forge-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "integration/store:", err)
		return 1
	}
	defer os.RemoveAll(tmp)
	harness.built = os.Getenv(itest.BinEnv) == ""
	harness.bin, harness.buildErr = itest.Forge(tmp)
	if harness.buildErr != nil {
		fmt.Fprintln(os.Stderr, "integration/store:", harness.buildErr)
	}
	code := m.Run()
	// Tests stop what they caused; this catches what a failed one left.
	// Only a binary of this run's own tells its processes apart from
	// everyone else's.
	if harness.built {
		stopForgeProcesses("", func(format string, args ...any) {
			fmt.Fprintf(os.Stderr, "integration/store: "+format+"\n", args...)
		})
	}
	return code
}

// forgeBin returns the CLI under test, or skips or fails t when there is none.
func forgeBin(t testing.TB) string {
	t.Helper()
	if harness.skip != "" {
		t.Skip(harness.skip)
	}
	if harness.buildErr != nil {
		t.Fatal(harness.buildErr)
	}
	return harness.bin
}
