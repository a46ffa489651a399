package debstages_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/internal/aptmirror"
)

// aptMirror returns the first URI the host's apt sources give for the
// suite, and the file that says so: the mirror is the machine's, never a
// name written here.
func aptMirror() (uri, from string, err error) { return aptmirror.Find("/", suite) }

// checkMirror fails unless the mirror serves the suite's Release file.
func checkMirror(mirror, from string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := aptmirror.Check(ctx, mirror, suite); err != nil {
		return fmt.Errorf("the host's Debian mirror (from %s): %w", from, err)
	}
	return nil
}

// mountsBelow lists the mountpoints strictly below dir, from this
// process's mount table (the stages ran in this mount namespace).
func mountsBelow(dir string) []string {
	var out []string
	for _, m := range itest.MountsUnder(dir) {
		if m != filepath.Clean(dir) {
			out = append(out, m)
		}
	}
	return out
}

// processesIn lists the processes whose root directory is tree, as
// "PID (comm)".
func processesIn(tree string) []string {
	rootSt, err := os.Stat(tree)
	if err != nil {
		return []string{"(" + err.Error() + ")"}
	}
	entries, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		st, err := os.Stat("/proc/" + e.Name() + "/root")
		if err != nil || !os.SameFile(st, rootSt) {
			continue
		}
		comm, _ := os.ReadFile("/proc/" + e.Name() + "/comm")
		out = append(out, e.Name()+" ("+strings.TrimSpace(string(comm))+")")
	}
	return out
}
