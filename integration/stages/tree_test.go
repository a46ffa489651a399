package stages_test

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// newTree makes an empty tree, root:root 0755 as a real one is.
func newTree(t *testing.T) string {
	t.Helper()
	tree := filepath.Join(t.TempDir(), "tree")
	must(t, os.Mkdir(tree, 0o755))
	return tree
}

// baseFiles are a Debian base system's account files, cut down.
var baseFiles = map[string]struct {
	mode    os.FileMode
	content string
}{
	"etc/passwd": {0o644, "root:x:0:0:root:/root:/bin/bash\n" +
		"daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n" +
		"nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n" +
		"admin:x:999:999:Admin:/home/admin:/bin/sh\n"},
	"etc/group": {0o644, "root:x:0:\ndaemon:x:1:\nadm:x:4:\nsudo:x:27:\nusers:x:100:\nnogroup:x:65534:\nadmin:x:999:\n"},
	"etc/shadow": {0o640, "root:*:19000:0:99999:7:::\ndaemon:*:19000:0:99999:7:::\n" +
		"nobody:*:19000:0:99999:7:::\nadmin:!:19000:0:99999:7:::\n"},
	"etc/gshadow":         {0o640, "root:*::\ndaemon:*::\nadm:*::\nsudo:*::\nusers:*::\nnogroup:*::\nadmin:!::\n"},
	"etc/login.defs":      {0o644, "UMASK\t\t022\nUID_MIN\t\t1000\nUID_MAX\t\t60000\nGID_MIN\t\t1000\nGID_MAX\t\t60000\nUSERGROUPS_ENAB yes\nENCRYPT_METHOD SHA512\n"},
	"etc/default/useradd": {0o644, "SHELL=/bin/sh\n"},
	"etc/skel/.profile":   {0o644, "# ~/.profile: executed by the command interpreter for login shells.\n"},
	"etc/skel/.bashrc":    {0o644, "# ~/.bashrc: executed by bash(1) for non-login shells.\n"},
}

// accountTree makes a tree with Debian's account files, /etc/skel, /home
// and /root, and an "admin" user (UID 999) whose home does not exist yet.
func accountTree(t *testing.T) string {
	t.Helper()
	tree := newTree(t)
	for _, d := range []string{"etc/skel", "etc/default", "home", "root", "var/log", "usr/sbin", "tmp"} {
		must(t, os.MkdirAll(filepath.Join(tree, d), 0o755))
	}
	must(t, os.Chmod(filepath.Join(tree, "root"), 0o700))
	for name, f := range baseFiles {
		must(t, os.WriteFile(filepath.Join(tree, name), []byte(f.content), f.mode))
		must(t, os.Chmod(filepath.Join(tree, name), f.mode))
	}
	return tree
}

// installHostBinaries copies host programs into the tree at the same
// paths, with the shared libraries ldd says they need, so they run
// chrooted into it.
func installHostBinaries(t *testing.T, tree string, programs ...string) {
	t.Helper()
	for _, p := range programs {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Skipf("needs %s on the host to copy into the tree: %v", p, err)
		}
		files := []string{path}
		out, err := exec.Command("ldd", path).Output()
		if err != nil && !strings.Contains(string(out), "not a dynamic executable") {
			t.Fatalf("ldd %s: %v", path, err)
		}
		sc := bufio.NewScanner(strings.NewReader(string(out)))
		for sc.Scan() {
			for _, f := range strings.Fields(sc.Text()) {
				if strings.HasPrefix(f, "/") {
					files = append(files, f)
				}
			}
		}
		for _, f := range files {
			copyHostFile(t, f, filepath.Join(tree, f))
		}
		// A program found on PATH as /usr/bin/x may be wanted as /bin/x.
		if name := filepath.Base(p); name == "sh" {
			copyHostFile(t, path, filepath.Join(tree, "bin/sh"))
		}
	}
}

// copyHostFile copies a host file's content and mode (following
// symlinks) to dst, making its directories.
func copyHostFile(t *testing.T, src, dst string) {
	t.Helper()
	in, err := os.Open(src)
	must(t, err)
	defer in.Close()
	fi, err := in.Stat()
	must(t, err)
	must(t, os.MkdirAll(filepath.Dir(dst), 0o755))
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, fi.Mode().Perm())
	must(t, err)
	_, err = io.Copy(out, in)
	must(t, err)
	must(t, out.Close())
}

// writeFiles writes files into the tree, making their directories.
func writeFiles(t *testing.T, tree string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(tree, name)
		must(t, os.MkdirAll(filepath.Dir(p), 0o755))
		must(t, os.WriteFile(p, []byte(content), 0o644))
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return string(b)
}

// checkFile checks a file's content, mode and owner.
func checkFile(t *testing.T, path, content string, mode os.FileMode, uid, gid int) {
	t.Helper()
	if got := read(t, path); got != content {
		t.Errorf("%s = %q, want %q", path, got, content)
	}
	checkOwner(t, path, mode, uid, gid)
}

// checkOwner checks a file's mode (type and permissions) and owner.
func checkOwner(t *testing.T, path string, mode os.FileMode, uid, gid int) {
	t.Helper()
	fi, err := os.Lstat(path)
	must(t, err)
	if fi.Mode() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
	}
	if u, g := owner(fi); u != uid || g != gid {
		t.Errorf("%s: owner %d:%d, want %d:%d", path, u, g, uid, gid)
	}
}
func owner(fi os.FileInfo) (int, int) {
	st := fi.Sys().(*syscall.Stat_t)
	return int(st.Uid), int(st.Gid)
}
