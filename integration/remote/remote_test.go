// Package remote_test checks forge's remote stores end to end: stores
// with their own daemons sharing one bucket of a real S3 server
// (SeaweedFS, built by scripts/install-s3-server), through the forge CLI.
package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/remote/objstore"
)

var forgeBin string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping integration/remote: needs root (a store daemon, FUSE)")
		os.Exit(0)
	}
	os.Exit(itest.RunWithForge(m, &forgeBin))
}

// host is one store with its own daemon, as a build host has, and the
// credentials its commands run with.
type host struct {
	t     *testing.T
	store string
	env   []string
}

func newHost(t *testing.T, s3 *itest.S3Server, bucket string) *host {
	t.Helper()
	h := &host{t: t, store: filepath.Join(t.TempDir(), "store"),
		env: []string{"AWS_ACCESS_KEY_ID=" + s3.AccessKey, "AWS_SECRET_ACCESS_KEY=" + s3.SecretKey}}
	t.Cleanup(func() {
		itest.StopDaemon(t, forgeBin, h.store)
		if m := itest.MountsUnder(h.store); len(m) > 0 {
			t.Errorf("mounts left under %s: %v", h.store, m)
		}
	})
	h.must("store", "remote", "add", "--store", h.store, "shared", "s3://"+bucket+"/ci", "--endpoint", s3.Endpoint)
	return h
}

type result struct {
	stdout, stderr string
	code           int
}

func (h *host) run(args ...string) result {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, forgeBin, args...)
	cmd.Env = append(os.Environ(), h.env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errb.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		h.t.Fatalf("forge %s: %v", strings.Join(args, " "), err)
	}
	return r
}

func (h *host) must(args ...string) string {
	h.t.Helper()
	r := h.run(args...)
	if r.code != 0 {
		h.t.Fatalf("forge %s: exit %d\n%s", strings.Join(args, " "), r.code, r.stderr)
	}
	return r.stdout
}

// lastLine is a command's last line of stdout: a tree hash.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return strings.TrimSpace(lines[len(lines)-1])
}

func (h *host) importTree(dir, ref string) string {
	h.t.Helper()
	return lastLine(h.must("store", "import", "--store", h.store, "--ref", ref, dir))
}

// writeTree makes a tree of files: random ones (incompressible, unique)
// and copies of them, a hard link, a symlink, an empty file, a hole.
func writeTree(t *testing.T, dir string, randomMiB int) {
	t.Helper()
	files := map[string][]byte{
		"etc/hostname": []byte("forge\n"),
		"empty":        nil,
	}
	big := make([]byte, randomMiB<<20)
	rand.Read(big)
	files["usr/lib/big.bin"] = big
	files["usr/lib/copy.bin"] = big // the same content: stored once
	small := make([]byte, 300<<10)
	rand.Read(small)
	files["usr/share/small"] = small
	for name, b := range files {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Link(filepath.Join(dir, "usr/share/small"), filepath.Join(dir, "usr/share/small.link")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../etc/hostname", filepath.Join(dir, "usr/hostname")); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(filepath.Join(dir, "sparse"))
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte("end"), 64<<20)
	f.Close()
}

// sameTree compares two directories with diff -r and their metadata.
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	if out, err := exec.Command("diff", "-r", "--no-dereference", a, b).CombinedOutput(); err != nil {
		t.Fatalf("%s and %s differ: %v\n%s", a, b, err, out)
	}
	ls := func(d string) string {
		out, err := exec.Command("sh", "-c", "cd "+d+" && find . -printf '%p %M %U %G %n %s %T@\\n' | sort").Output()
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
	if la, lb := ls(a), ls(b); la != lb {
		t.Fatalf("metadata differs:\n%s\n---\n%s", la, lb)
	}
}

// bucket opens the test bucket directly, to look at and damage objects.
func bucket(t *testing.T, s3 *itest.S3Server, name string) *objstore.Bucket {
	t.Helper()
	b, err := objstore.Open(context.Background(), objstore.Location{Endpoint: s3.Endpoint, Region: s3.Region, Bucket: name, Prefix: "ci"},
		objstore.Credentials{AccessKeyID: s3.AccessKey, SecretAccessKey: s3.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func keys(t *testing.T, b *objstore.Bucket, prefix string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	if err := b.List(context.Background(), prefix, func(o objstore.Object) error { out[o.Key] = o.Size; return nil }); err != nil {
		t.Fatal(err)
	}
	return out
}

var pushedRE = regexp.MustCompile(`(\d+) of (\d+) chunks were new, .* in (\d+) packs; (\d+) requests, ([0-9.]+ [KMG]?i?B) sent`)

// TestPushPull: a tree pushed from host A and pulled by host B is the
// same tree (hash, content, metadata); pushing again sends no pack; a
// tree that differs in one file pushes about that file's bytes.
func TestPushPull(t *testing.T) {
	s3 := itest.StartS3(t, itest.S3Options{})
	s3.CreateBucket(t, "forge-pushpull")
	a, b := newHost(t, s3, "forge-pushpull"), newHost(t, s3, "forge-pushpull")
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, 24)
	tree := a.importTree(src, "base")

	r := a.run("store", "push", "--store", a.store, "base")
	if r.code != 0 || lastLine(r.stdout) != tree {
		t.Fatalf("push: exit %d, stdout %q (want %s)\n%s", r.code, r.stdout, tree, r.stderr)
	}
	t.Logf("push: %s", strings.TrimSpace(r.stderr))
	bk := bucket(t, s3, "forge-pushpull")
	packs := keys(t, bk, "packs/")
	var packBytes int64
	for _, n := range packs {
		packBytes += n
	}
	// big.bin and copy.bin are one content: stored once, and the hole
	// is not stored at all.
	if packBytes > 26<<20 {
		t.Errorf("the bucket's packs hold %d bytes for ~24.3 MiB of distinct content", packBytes)
	}
	if _, ok := keys(t, bk, "refs/")["refs/base"]; !ok {
		t.Errorf("no refs/base in the bucket")
	}

	// Again: nothing new to send.
	r = a.run("store", "push", "--store", a.store, "base")
	m := pushedRE.FindStringSubmatch(r.stderr)
	if r.code != 0 || m == nil || m[1] != "0" || m[3] != "0" {
		t.Errorf("second push: want 0 new chunks in 0 packs:\n%s", r.stderr)
	}
	if len(keys(t, bk, "packs/")) != len(packs) {
		t.Errorf("second push added packs")
	}

	// Host B: the same tree, hash and all.
	r = b.run("store", "pull", "--store", b.store, "base")
	if r.code != 0 || lastLine(r.stdout) != tree {
		t.Fatalf("pull: exit %d, stdout %q (want %s)\n%s", r.code, r.stdout, tree, r.stderr)
	}
	t.Logf("pull: %s", strings.TrimSpace(r.stderr))
	out := filepath.Join(t.TempDir(), "out")
	b.must("store", "export", "--store", b.store, "base", out)
	sameTree(t, src, out)
	b.must("store", "fsck", "--store", b.store)

	// A tree that differs in one 2 MiB file pushes about 2 MiB.
	changed := make([]byte, 2<<20)
	rand.Read(changed)
	if err := os.WriteFile(filepath.Join(src, "etc/new.bin"), changed, 0o644); err != nil {
		t.Fatal(err)
	}
	tree2 := a.importTree(src, "base2")
	r = a.run("store", "push", "--store", a.store, "base2")
	m = pushedRE.FindStringSubmatch(r.stderr)
	if r.code != 0 || m == nil {
		t.Fatalf("push of the changed tree: exit %d\n%s", r.code, r.stderr)
	}
	var sent int64
	for k, n := range keys(t, bk, "packs/") {
		if _, old := packs[k]; !old {
			sent += n
		}
	}
	if sent > 2*int64(len(changed)) {
		t.Errorf("the changed tree pushed %d bytes of packs for %d bytes of new data", sent, len(changed))
	}
	if got := lastLine(b.must("store", "pull", "--store", b.store, "base2")); got != tree2 {
		t.Errorf("pull of base2: tree %s, want %s", got, tree2)
	}
	// B already had every chunk but the new file's: it fetched only those.
	t.Logf("pushed %d bytes for a %d-byte change", sent, len(changed))
}

// TestPullDamagedPack: a pack in the bucket with a flipped byte fails the
// pull, naming the chunk and the object, and nothing of it is stored.
func TestPullDamagedPack(t *testing.T) {
	s3 := itest.StartS3(t, itest.S3Options{})
	s3.CreateBucket(t, "forge-damage")
	a, b := newHost(t, s3, "forge-damage"), newHost(t, s3, "forge-damage")
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, 4)
	a.importTree(src, "base")
	a.must("store", "push", "--store", a.store, "base")

	bk := bucket(t, s3, "forge-damage")
	ctx := context.Background()
	var damaged string
	for k := range keys(t, bk, "packs/") {
		body, _, err := bk.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		body[len(body)/3] ^= 0x40 // inside a chunk, far from the footer
		if _, err := bk.Put(ctx, k, body); err != nil {
			t.Fatal(err)
		}
		damaged = k
		break
	}
	r := b.run("store", "pull", "--store", b.store, "base")
	if r.code == 0 {
		t.Fatalf("pull of a damaged pack succeeded:\n%s", r.stderr)
	}
	if !strings.Contains(r.stderr, damaged) || !regexp.MustCompile(`chunk [0-9a-f]{64} in `+regexp.QuoteMeta(damaged)+` at offset \d+ is damaged`).MatchString(r.stderr) {
		t.Errorf("the error does not name the chunk and %s:\n%s", damaged, r.stderr)
	}
	if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n != 0 {
		t.Errorf("the error takes %d lines:\n%s", n+1, r.stderr)
	}
	if out := b.must("store", "ls", "--store", b.store); strings.Contains(out, "base") {
		t.Errorf("the failed pull left a ref:\n%s", out)
	}
	// The damage may be in the footer that placed the chunk: it is not
	// kept for the next pull.
	packHash := strings.TrimSuffix(strings.TrimPrefix(damaged, "packs/"), ".pack")
	if m, _ := filepath.Glob(filepath.Join(b.store, "remote-cache", "*", "footers", packHash)); len(m) != 0 {
		t.Errorf("the damaged pack's footer stays cached: %v", m)
	}
	b.must("store", "fsck", "--store", b.store)
}

// TestRemoteErrors: wrong credentials, a missing bucket, a server that is
// not there: one clear line each, exit 1.
func TestRemoteErrors(t *testing.T) {
	s3 := itest.StartS3(t, itest.S3Options{})
	s3.CreateBucket(t, "forge-errors")
	h := newHost(t, s3, "forge-errors")
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, 1)
	h.importTree(src, "base")
	h.must("store", "remote", "add", "--store", h.store, "nobucket", "s3://forge-no-such-bucket", "--endpoint", s3.Endpoint)
	h.must("store", "remote", "add", "--store", h.store, "noserver", "s3://forge-errors", "--endpoint", "http://127.0.0.1:1")

	tests := []struct {
		name string
		env  []string
		args []string
		want string
	}{
		{"wrong secret", []string{"AWS_SECRET_ACCESS_KEY=wrong"}, []string{"store", "push", "--remote", "shared", "base"}, "access denied"},
		{"unknown key", []string{"AWS_ACCESS_KEY_ID=FTNOSUCHKEY"}, []string{"store", "pull", "--remote", "shared", "base"}, "access denied"},
		{"missing bucket", nil, []string{"store", "push", "--remote", "nobucket", "base"}, "the bucket does not exist"},
		{"no server", nil, []string{"store", "pull", "--remote", "noserver", "base"}, "cannot reach the endpoint"},
		{"not in the bucket", nil, []string{"store", "pull", "--remote", "shared", "nothing-here"}, "not found in the bucket"},
		{"several remotes, none named", nil, []string{"store", "pull", "base"}, "say which with --remote"},
		{"no credentials", []string{"AWS_ACCESS_KEY_ID=", "AWS_SECRET_ACCESS_KEY=", "AWS_SHARED_CREDENTIALS_FILE=/nonexistent", "AWS_CONFIG_FILE=/nonexistent", "AWS_EC2_METADATA_DISABLED=true"},
			[]string{"store", "pull", "--remote", "shared", "base"}, "credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hh := *h
			hh.t = t
			hh.env = append(append([]string(nil), h.env...), tt.env...)
			args := append(append(append([]string(nil), tt.args[:2]...), "--store", h.store), tt.args[2:]...)
			start := time.Now()
			r := hh.run(args...)
			if r.code != 1 {
				t.Errorf("exit %d, want 1\n%s", r.code, r.stderr)
			}
			msg := strings.TrimSpace(r.stderr)
			if !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("want one line saying %q, got:\n%s", tt.want, msg)
			}
			if strings.Contains(msg, s3.SecretKey) {
				t.Errorf("the error shows the secret key")
			}
			if d := time.Since(start); d > 30*time.Second {
				t.Errorf("took %v to fail", d)
			}
		})
	}
	if b, err := os.ReadFile(filepath.Join(h.store, "remotes.json")); err != nil || bytes.Contains(b, []byte(s3.SecretKey)) || bytes.Contains(b, []byte(s3.AccessKey)) {
		t.Errorf("remotes.json holds credentials or cannot be read (%v)", err)
	}
}

// TestPushInterrupted: the S3 server killed in the middle of a push fails
// it with a clear error, and the bucket names no tree whose data is
// missing; once the server is back, the push completes and pulls.
func TestPushInterrupted(t *testing.T) {
	s3 := itest.StartS3(t, itest.S3Options{})
	s3.CreateBucket(t, "forge-crash")
	a, b := newHost(t, s3, "forge-crash"), newHost(t, s3, "forge-crash")
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, 200) // 200 MiB of new content: several 64 MiB packs
	tree := a.importTree(src, "base")

	bk := bucket(t, s3, "forge-crash")
	cmd := exec.Command(forgeBin, "store", "push", "--store", a.store, "base")
	cmd.Env = append(os.Environ(), a.env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	// Kill the server once the first pack is in.
	deadline := time.Now().Add(2 * time.Minute)
	for len(keys(t, bk, "packs/")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no pack arrived within 2 minutes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	s3.KillGateway(t)
	var err error
	select {
	case err = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("the push did not end within 2 minutes of the server's death")
	}
	done <- err // for the cleanup
	msg := strings.TrimSpace(stderr.String())
	if err == nil {
		t.Fatalf("the push succeeded with the server killed:\n%s", msg)
	}
	if !strings.Contains(msg, "cannot reach the endpoint") || strings.Contains(msg, "\n") {
		t.Errorf("want one line saying the endpoint cannot be reached, got:\n%s", msg)
	}
	s3.RestartGateway(t)
	if n := len(keys(t, bk, "refs/")) + len(keys(t, bk, "trees/")); n != 0 {
		t.Errorf("after the failed push the bucket names %d trees or refs", n)
	}
	r := b.run("store", "pull", "--store", b.store, "base")
	if r.code == 0 || !strings.Contains(r.stderr, "not found in the bucket") {
		t.Errorf("pull after the failed push: exit %d, want 'not found in the bucket'\n%s", r.code, r.stderr)
	}

	if got := lastLine(a.must("store", "push", "--store", a.store, "base")); got != tree {
		t.Fatalf("push after restart: tree %s, want %s", got, tree)
	}
	if got := lastLine(b.must("store", "pull", "--store", b.store, "base")); got != tree {
		t.Fatalf("pull: tree %s, want %s", got, tree)
	}
	out := filepath.Join(t.TempDir(), "out")
	b.must("store", "export", "--store", b.store, "base", out)
	sameTree(t, src, out)
}

// TestPullLosesAVolumeServer: with three volume servers and replication
// 001 (a second copy on another server of the rack), a volume server
// that dies before a pull does not stop the pull.
func TestPullLosesAVolumeServer(t *testing.T) {
	s3 := itest.StartS3(t, itest.S3Options{VolumeServers: 3, Replication: "001"})
	s3.CreateBucket(t, "forge-replica")
	a, b := newHost(t, s3, "forge-replica"), newHost(t, s3, "forge-replica")
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, 16)
	tree := a.importTree(src, "base")
	a.must("store", "push", "--store", a.store, "base")

	bk := bucket(t, s3, "forge-replica")
	var pack string
	for k := range keys(t, bk, "packs/") {
		pack = k
	}
	holders := s3.VolumeServersHolding(t, "forge-replica", "ci/"+pack)
	if len(holders) == 0 {
		t.Fatalf("no volume server holds %s", pack)
	}
	s3.KillVolumeServer(t, holders[0])
	if got := lastLine(b.must("store", "pull", "--store", b.store, "base")); got != tree {
		t.Fatalf("pull: tree %s, want %s", got, tree)
	}
	out := filepath.Join(t.TempDir(), "out")
	b.must("store", "export", "--store", b.store, "base", out)
	sameTree(t, src, out)
}
