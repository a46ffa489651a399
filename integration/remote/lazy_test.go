package remote_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/forge-build/forge/integration/itest"
)

// TestLazyMount: host B mounts a tree of the bucket at once and walks it
// with no chunk fetched; reading fetches what is read, verified, and
// keeps it: a second mount reads it all from the store.
func TestLazyMount(t *testing.T) {
	s3 := itest.StartS3(t, itest.S3Options{})
	s3.CreateBucket(t, "forge-lazy")
	a, b := newHost(t, s3, "forge-lazy"), newHost(t, s3, "forge-lazy")
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, 8)
	a.importTree(src, "base")
	a.must("store", "push", "--store", a.store, "base")

	mnt := t.TempDir()
	fetched := func() (chunks, bytes, requests int) {
		t.Helper()
		b.must("store", "umount", "--store", b.store, mnt)
		log, err := os.ReadFile(filepath.Join(b.store, "daemon.log"))
		if err != nil {
			t.Fatal(err)
		}
		m := regexp.MustCompile(`remote mount of \w+ \(shared\) ended: (\d+) chunks fetched, (\d+) bytes, (\d+) requests`).FindAllStringSubmatch(string(log), -1)
		if len(m) == 0 {
			t.Fatalf("the daemon's log says nothing of the remote mount:\n%s", log)
		}
		c, _ := strconv.Atoi(m[len(m)-1][1])
		n, _ := strconv.Atoi(m[len(m)-1][2])
		r, _ := strconv.Atoi(m[len(m)-1][3])
		return c, n, r
	}
	names := func(dir string) string {
		t.Helper()
		out, err := exec.Command("sh", "-c", "cd "+dir+" && find . -printf '%p %M %s %n\\n' | sort").Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}

	b.must("store", "mount", "--store", b.store, "--remote", "shared", "base", mnt)
	if got, want := names(mnt), names(src); got != want {
		t.Errorf("the mount's names and metadata:\n%s\nwant:\n%s", got, want)
	}
	if c, _, _ := fetched(); c != 0 {
		t.Errorf("walking the tree fetched %d chunks, want none", c)
	}

	b.must("store", "mount", "--store", b.store, "--remote", "shared", "base", mnt)
	if got, err := os.ReadFile(filepath.Join(mnt, "etc/hostname")); err != nil || string(got) != "forge\n" {
		t.Errorf("etc/hostname through the mount: %q, %v", got, err)
	}
	if c, n, _ := fetched(); c != 1 || n != len("forge\n") {
		t.Errorf("reading one small file fetched %d chunks, %d bytes; want 1, 6", c, n)
	}

	b.must("store", "mount", "--store", b.store, "--remote", "shared", "base", mnt)
	if out, err := exec.Command("diff", "-r", "--no-dereference", src, mnt).CombinedOutput(); err != nil {
		t.Errorf("the mount's content differs: %v\n%s", err, out)
	}
	c, n, req := fetched()
	if c == 0 || n > 9<<20 {
		t.Errorf("reading the tree fetched %d chunks, %d bytes: want the ~8.3 MiB of distinct content once", c, n)
	}
	// Read-ahead: a sequential reader's misses grow into windows of the
	// pack: fewer requests than half the chunks (the tree object, the
	// footer and the lease included), where each chunk was one.
	if req*2 > c {
		t.Errorf("reading the tree took %d requests for %d chunks: want windows, not a request per chunk", req, c)
	}
	t.Logf("reading the tree: %d chunks, %d bytes, %d requests", c, n, req)

	// Kept: a second reading fetches nothing.
	b.must("store", "mount", "--store", b.store, "--remote", "shared", "base", mnt)
	if out, err := exec.Command("diff", "-r", "--no-dereference", src, mnt).CombinedOutput(); err != nil {
		t.Errorf("the mount's content differs: %v\n%s", err, out)
	}
	if c, _, _ := fetched(); c != 0 {
		t.Errorf("a second reading fetched %d chunks, want none", c)
	}
	b.must("store", "fsck", "--store", b.store)

	if r := b.run("store", "mount", "--store", b.store, "--remote", "shared", "--rw", "base", mnt); r.code != 2 || !strings.Contains(r.stderr, "read-only") {
		t.Errorf("--remote --rw: exit %d\n%s", r.code, r.stderr)
	}
}
