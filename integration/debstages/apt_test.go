package debstages_test

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// stuckMirror serves a Debian mirror that never answers, until the test
// ends: a stage that asks it waits until it is stopped. The channel gets
// the path of every request.
func stuckMirror(t *testing.T) (url string, requests <-chan string) {
	t.Helper()
	reqs := make(chan string, 16)
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case reqs <- r.URL.Path:
		default:
		}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})
	return srv.URL + "/debian", reqs
}

// stuckRun is a stage started against a stuck mirror.
type stuckRun struct {
	cmd    *exec.Cmd
	out    *bytes.Buffer
	exited chan error
}

// startStuck starts a stage whose tool (apt-get, mmdebstrap) fetches from
// a stuck mirror, and returns once the mirror has a request from it; a
// stage that ends before that fails t.
func startStuck(t *testing.T, name, tree string, options any, tool string, requests <-chan string) *stuckRun {
	t.Helper()
	cmd, out := stageCmd(t, name, tree, options)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	r := &stuckRun{cmd: cmd, out: out, exited: make(chan error, 1)}
	go func() { r.exited <- cmd.Wait() }()
	select {
	case path := <-requests:
		t.Logf("%s asks the stuck mirror for %s", tool, path)
	case err := <-r.exited:
		t.Fatalf("the stage ended (%v) before %s asked the mirror:\n%s", err, tool, out.String())
	}
	return r
}

// cancel sends the stage SIGTERM, as the builder does on cancel; the
// stage must fail, saying that tool was stopped.
func (r *stuckRun) cancel(t *testing.T, tool string) {
	t.Helper()
	if err := r.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := <-r.exited; err == nil {
		t.Errorf("the stage succeeded after SIGTERM:\n%s", r.out.String())
	}
	t.Logf("the stage's output ends:\n%s", tail(r.out.String(), 4))
	if !strings.Contains(r.out.String(), "stopped") {
		t.Errorf("the stage's output does not say %s was stopped:\n%s", tool, tail(r.out.String(), 20))
	}
}

// treeFile is what the tree has at a path: nothing, a file, or a symlink.
type treeFile struct {
	kind    string // "none", "file" or "symlink"
	content string // a file's content or a symlink's target
	mode    os.FileMode
}

// setTreeFile makes path in the tree be f, replacing whatever is there.
func setTreeFile(t *testing.T, tree, rel string, f treeFile) {
	t.Helper()
	p := filepath.Join(tree, rel)
	if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var err error
	switch f.kind {
	case "file":
		if err = os.WriteFile(p, []byte(f.content), f.mode); err == nil {
			err = os.Chmod(p, f.mode)
		}
	case "symlink":
		err = os.Symlink(f.content, p)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// assertTreeFile fails t unless path in the tree is f.
func assertTreeFile(t *testing.T, tree, rel string, f treeFile) {
	t.Helper()
	p := filepath.Join(tree, rel)
	st, err := os.Lstat(p)
	switch {
	case f.kind == "none":
		if !os.IsNotExist(err) {
			t.Errorf("/%s after the stage: %v, want it absent as before", rel, err)
		}
		return
	case err != nil:
		t.Errorf("/%s after the stage: %v, want the tree's own %s back", rel, err, f.kind)
		return
	}
	switch f.kind {
	case "file":
		b, _ := os.ReadFile(p)
		if !st.Mode().IsRegular() || st.Mode().Perm() != f.mode || string(b) != f.content {
			t.Errorf("/%s after the stage: %v %q, want the tree's own file back: %v %q", rel, st.Mode(), b, f.mode, f.content)
		}
	case "symlink":
		target, _ := os.Readlink(p)
		if st.Mode()&os.ModeSymlink == 0 || target != f.content {
			t.Errorf("/%s after the stage: %v -> %q, want the tree's own symlink to %q back", rel, st.Mode(), target, f.content)
		}
	}
}

const (
	policyRCD  = "usr/sbin/policy-rc.d"
	resolvConf = "etc/resolv.conf"
)

// testApt installs into the bootstrapped tree, one run after the other:
// each starts from a different policy-rc.d and resolv.conf in the tree
// (none, a file, a symlink), which must be back afterwards, whatever the
// run's end; nothing may stay mounted or running.
func testApt(t *testing.T, tree string) {
	hostResolv, err := os.ReadFile("/etc/resolv.conf")
	if err != nil {
		t.Fatalf("the host's resolv.conf, which the stage copies into the tree: %v", err)
	}

	// A stage stopped by SIGTERM (what the builder sends on cancel)
	// while apt-get waits on a mirror that never answers: apt is killed,
	// and the stage undoes everything before it exits.
	t.Run("cancel", func(t *testing.T) {
		setTreeFile(t, tree, policyRCD, treeFile{kind: "none"})
		setTreeFile(t, tree, resolvConf, treeFile{kind: "none"})
		stuck, requests := stuckMirror(t)
		sources := filepath.Join(tree, "etc/apt/sources.list")
		orig, err := os.ReadFile(sources)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := os.WriteFile(sources, orig, 0o644); err != nil {
				t.Errorf("restore the tree's sources.list: %v", err)
			}
		})
		if err := os.WriteFile(sources, []byte("deb "+stuck+" "+suite+" main\n"), 0o644); err != nil {
			t.Fatal(err)
		}

		run := startStuck(t, "org.osbuild.apt", tree, map[string]any{"packages": []string{"hello"}}, "apt-get", requests)

		// While apt runs: the stage's policy-rc.d, the host's resolv.conf,
		// the chroot's mounts.
		if b, err := os.ReadFile(filepath.Join(tree, policyRCD)); err != nil || !strings.Contains(string(b), "exit 101") {
			t.Errorf("policy-rc.d while apt runs: %q (%v), want one that exits 101", b, err)
		}
		if b, err := os.ReadFile(filepath.Join(tree, resolvConf)); err != nil || string(b) != string(hostResolv) {
			t.Errorf("resolv.conf while apt runs: %q (%v), want the host's %q", b, err, hostResolv)
		}
		mounted := strings.Join(mountsBelow(tree), " ")
		for _, m := range []string{"/proc", "/sys", "/dev", "/dev/pts", "/dev/null", "/dev/urandom"} {
			if !strings.Contains(mounted+" ", tree+m+" ") {
				t.Errorf("%s is not mounted while apt runs (mounted: %s)", tree+m, mounted)
			}
		}

		run.cancel(t, "apt-get")
		assertClean(t, tree)
		assertTreeFile(t, tree, policyRCD, treeFile{kind: "none"})
		assertTreeFile(t, tree, resolvConf, treeFile{kind: "none"})
	})

	t.Run("missing package", func(t *testing.T) {
		resolv := treeFile{kind: "file", content: "# the tree's own\nnameserver 192.0.2.1\n", mode: 0o600}
		setTreeFile(t, tree, policyRCD, treeFile{kind: "none"})
		setTreeFile(t, tree, resolvConf, resolv)
		out, err := runStage(t, "org.osbuild.apt", tree, map[string]any{
			"packages": []string{"hello", "forge-no-such-package"}, "update": false,
		})
		if err == nil {
			t.Errorf("installing a package that does not exist succeeded:\n%s", out)
		}
		if !strings.Contains(out, "Unable to locate package forge-no-such-package") {
			t.Errorf("apt's complaint is not in the output:\n%s", tail(out, 20))
		}
		if got := packageStatus(t, tree, "hello"); got == installed {
			t.Error("hello is installed although apt-get failed")
		}
		assertClean(t, tree)
		assertTreeFile(t, tree, policyRCD, treeFile{kind: "none"})
		assertTreeFile(t, tree, resolvConf, resolv)
	})

	t.Run("install", func(t *testing.T) {
		policy := treeFile{kind: "file", content: "#!/bin/sh\n# the tree's own\nexit 0\n", mode: 0o755}
		resolv := treeFile{kind: "symlink", content: "../run/systemd/resolve/stub-resolv.conf"}
		setTreeFile(t, tree, policyRCD, policy)
		setTreeFile(t, tree, resolvConf, resolv)
		out, err := runStage(t, "org.osbuild.apt", tree, map[string]any{"packages": []string{"hello"}})
		if err != nil {
			t.Fatalf("org.osbuild.apt: %v\n%s", err, tail(out, 30))
		}
		if got := packageStatus(t, tree, "hello"); got != installed {
			t.Errorf("dpkg status of hello: %q, want %q", got, installed)
		}
		if out, code := chrootOutput(t, tree, "/usr/bin/hello"); code != 0 || !strings.Contains(out, "Hello, world!") {
			t.Errorf("hello in the tree: exit %d, %q", code, out)
		}
		if got, _ := filepath.Glob(filepath.Join(tree, "var/cache/apt/archives/*.deb")); len(got) > 0 {
			t.Errorf("apt-get clean (the default) left %s", strings.Join(got, ", "))
		}
		assertClean(t, tree)
		assertTreeFile(t, tree, policyRCD, policy)
		assertTreeFile(t, tree, resolvConf, resolv)
	})

	// Without an update, from the lists the tree has; without clean, the
	// .deb stays.
	t.Run("no update, no clean", func(t *testing.T) {
		setTreeFile(t, tree, policyRCD, treeFile{kind: "none"})
		out, err := runStage(t, "org.osbuild.apt", tree, map[string]any{
			"packages": []string{"less"}, "update": false, "clean": false,
		})
		if err != nil {
			t.Fatalf("org.osbuild.apt: %v\n%s", err, tail(out, 30))
		}
		if strings.Contains(out, "apt-get update") {
			t.Errorf("the stage ran apt-get update with update false:\n%s", out)
		}
		if got := packageStatus(t, tree, "less"); got != installed {
			t.Errorf("dpkg status of less: %q, want %q", got, installed)
		}
		if got, _ := filepath.Glob(filepath.Join(tree, "var/cache/apt/archives/less_*.deb")); len(got) != 1 {
			t.Errorf("with clean false, want less's .deb in the apt cache, got %v", got)
		}
		assertClean(t, tree)
		assertTreeFile(t, tree, policyRCD, treeFile{kind: "none"})
	})
}
