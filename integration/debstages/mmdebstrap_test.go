package debstages_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forge-build/forge/internal/aptmirror"
)

// assertClean fails t if anything of a stage's run is left in the tree:
// mounts, processes, originals set aside by the apt stage.
func assertClean(t *testing.T, tree string) {
	t.Helper()
	if m := mountsBelow(tree); len(m) > 0 {
		t.Errorf("still mounted below the tree: %s", strings.Join(m, ", "))
	}
	if p := processesIn(tree); len(p) > 0 {
		t.Errorf("processes still running in the tree: %s", strings.Join(p, ", "))
	}
	for _, dir := range []string{"etc", "usr/sbin"} {
		saved, _ := filepath.Glob(filepath.Join(tree, dir, ".*.forge-saved"))
		if len(saved) > 0 {
			t.Errorf("originals still set aside: %s", strings.Join(saved, ", "))
		}
	}
}

// TestDebianTree bootstraps a tree with org.osbuild.mmdebstrap, checks
// it, then installs into it with org.osbuild.apt (testApt), in that
// order.
func TestDebianTree(t *testing.T) {
	tree, mirror := bootstrapped(t)
	t.Run("mmdebstrap", func(t *testing.T) { checkBootstrap(t, tree, mirror) })
	t.Run("apt", func(t *testing.T) { testApt(t, tree) })
}

// checkBootstrap: the bootstrap made a working minbase tree whose apt
// sources name the mirror, with package lists and without .debs, and
// left nothing mounted or running.
func checkBootstrap(t *testing.T, tree, mirror string) {
	t.Logf("org.osbuild.mmdebstrap of a minbase %s took %s", suite, boot.took.Round(time.Second))

	for _, pkg := range []string{"apt", "dpkg", "base-files", "debian-archive-keyring"} {
		if got := packageStatus(t, tree, pkg); got != installed {
			t.Errorf("dpkg status of %s: %q, want %q", pkg, got, installed)
		}
	}
	if out, code := chrootOutput(t, tree, "/usr/bin/dpkg", "--audit"); code != 0 || strings.TrimSpace(out) != "" {
		t.Errorf("dpkg --audit in the tree: exit %d\n%s", code, out)
	}
	// The tree's own sources name the mirror for the suite.
	named, _, err := aptmirror.Find(tree, suite)
	if err != nil {
		t.Error(err)
	}
	if strings.TrimRight(named, "/") != strings.TrimRight(mirror, "/") {
		t.Errorf("the tree's apt sources name %q for %s, want the mirror %s", named, suite, mirror)
	}
	// The lists stay (for org.osbuild.apt with update false), the .debs
	// do not.
	if got, _ := filepath.Glob(filepath.Join(tree, "var/lib/apt/lists/*_Packages")); len(got) == 0 {
		t.Error("no package lists in the tree's var/lib/apt/lists")
	}
	if got, _ := filepath.Glob(filepath.Join(tree, "var/cache/apt/archives/*.deb")); len(got) > 0 {
		t.Errorf("%d .debs left in the tree's apt cache, e.g. %s", len(got), got[0])
	}
	assertClean(t, tree)
}

// Bad options and a tree that is not empty fail before anything runs,
// with an error naming the problem, through the real executable.
func TestMmdebstrapRefuses(t *testing.T) {
	mirror, _, err := aptMirror()
	if err != nil {
		t.Fatal(err)
	}
	full := t.TempDir()
	if err := os.WriteFile(filepath.Join(full, "etc"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.gpg")
	tests := []struct {
		name    string
		tree    string
		options map[string]any
		want    string
	}{
		{"tree not empty", full, map[string]any{"suite": suite, "mirror": mirror}, "is not empty (it has etc)"},
		{"bad package", t.TempDir(), map[string]any{"suite": suite, "mirror": mirror, "packages": []string{"less", "Bad_Name"}}, `option "packages": "Bad_Name"`},
		{"missing keyring", t.TempDir(), map[string]any{"suite": suite, "mirror": mirror, "keyrings": []string{missing}}, `option "keyrings": keyring ` + missing},
		{"no suite", t.TempDir(), map[string]any{"mirror": mirror}, `option "suite": required`},
		{"bad mirror", t.TempDir(), map[string]any{"suite": suite, "mirror": "rsync://" + suite}, `option "mirror"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := runStage(t, "org.osbuild.mmdebstrap", tt.tree, tt.options)
			if err == nil {
				t.Fatalf("the stage succeeded, want exit 1 with %q", tt.want)
			}
			if !strings.Contains(out, "org.osbuild.mmdebstrap: ") || !strings.Contains(out, tt.want) {
				t.Errorf("output %q, want the stage's error with %q", out, tt.want)
			}
			if strings.Contains("\n"+out, "\n+ ") {
				t.Errorf("the stage ran a tool despite the error:\n%s", out)
			}
			if entries, _ := os.ReadDir(tt.tree); len(entries) > 0 && tt.tree != full {
				t.Errorf("the stage wrote into the tree: %v", entries)
			}
		})
	}
}

// A bootstrap stopped by SIGTERM (what the builder sends on cancel) while
// mmdebstrap waits on a mirror that never answers ends at once, with
// nothing left running or mounted.
func TestMmdebstrapCancel(t *testing.T) {
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		t.Fatalf("needs mmdebstrap (apt-get install mmdebstrap): %v", err)
	}
	mirror, requests := stuckMirror(t)
	tree := t.TempDir()
	run := startStuck(t, "org.osbuild.mmdebstrap", tree, map[string]any{"suite": suite, "mirror": mirror}, "mmdebstrap", requests)
	run.cancel(t, "mmdebstrap")
	assertClean(t, tree)
}
