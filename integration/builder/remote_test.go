package builder_test

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/forge-build/forge/integration/itest"
)

// TestRemoteBuild: host A builds with --push, host B (its own store and
// daemon) builds the same manifest with --remote: no stage runs on B and
// its image is A's, byte for byte. A change in the tree then runs on A
// alone, and B takes its new stages from the bucket too.
func TestRemoteBuild(t *testing.T) {
	s3 := itest.StartS3(t, itest.S3Options{})
	s3.CreateBucket(t, "forge-builds")
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	storeA, storeB := storeDir(t), storeDir(t)
	for _, s := range []string{storeA, storeB} {
		if out, err := exec.Command(forgeBin, "store", "remote", "add", "--store", s, "shared", "s3://forge-builds", "--endpoint", s3.Endpoint).CombinedOutput(); err != nil {
			t.Fatalf("remote add: %v\n%s", err, out)
		}
	}
	outA, outB := t.TempDir(), t.TempDir()
	all := []string{"pipelines[0].stages[0]", "pipelines[0].stages[1]", "pipelines[1].stages[0]", "pipelines[1].stages[1]", "pipelines[1].stages[2]"}

	r := mustBuild(t, storeA, imageManifest("B\n"), "--export", "image", "--output-directory", outA, "--remote", "shared", "--push")
	if !slices.Equal(r.ran(), all) {
		t.Fatalf("A ran %v, want %v", r.ran(), all)
	}
	if n := strings.Count(r.stderr, "pushed to remote shared"); n != len(all) {
		t.Errorf("A pushed %d stages, want %d:\n%s", n, len(all), r.stderr)
	}

	r = mustBuild(t, storeB, imageManifest("B\n"), "--export", "image", "--output-directory", outB, "--remote", "shared")
	if len(r.ran()) != 0 {
		t.Errorf("B ran %v, want nothing: every stage is in the bucket", r.ran())
	}
	if !strings.Contains(r.stderr, "pulled from remote shared") {
		t.Errorf("B says nothing of pulling:\n%s", r.stderr)
	}
	sameFile(t, filepath.Join(outA, "image", "disk.img"), filepath.Join(outB, "image", "disk.img"))
	// B took the image pipeline's last stage alone: the one it exports,
	// which holds the work of every stage before it.
	out, err := exec.Command(forgeBin, "store", "ls", "--store", storeB, "--json").Output()
	if err != nil {
		t.Fatal(err)
	}
	var refs []struct{ Name string }
	if err := json.Unmarshal(out, &refs); err != nil || len(refs) != 1 {
		t.Errorf("B's refs: %s (%v), want the image pipeline's last stage alone", out, err)
	}

	// Changed on A: the tree's last stage and the copy run there, and
	// are pushed; B runs nothing again.
	r = mustBuild(t, storeA, imageManifest("changed\n"), "--export", "image", "--output-directory", outA, "--remote", "shared", "--push")
	if want := []string{"pipelines[0].stages[1]", "pipelines[1].stages[2]"}; !slices.Equal(r.ran(), want) {
		t.Errorf("A, changed: ran %v, want %v", r.ran(), want)
	}
	r = mustBuild(t, storeB, imageManifest("changed\n"), "--export", "image", "--output-directory", outB, "--remote", "shared")
	if len(r.ran()) != 0 {
		t.Errorf("B, changed: ran %v, want nothing", r.ran())
	}
	sameFile(t, filepath.Join(outA, "image", "disk.img"), filepath.Join(outB, "image", "disk.img"))

	// A stage the bucket lacks runs on B, and without --push stays there.
	r = mustBuild(t, storeB, imageManifest("only on B\n"), "--export", "image", "--output-directory", outB, "--remote", "shared")
	if want := []string{"pipelines[0].stages[1]", "pipelines[1].stages[2]"}; !slices.Equal(r.ran(), want) {
		t.Errorf("B, a new change: ran %v, want %v", r.ran(), want)
	}
	if strings.Contains(r.stderr, "pushed to remote") {
		t.Errorf("B pushed without --push:\n%s", r.stderr)
	}

	if r := build(t, storeB, imageManifest("B\n"), "--push"); r.code != 2 || !strings.Contains(r.stderr, "--push needs --remote") {
		t.Errorf("--push without --remote: exit %d\n%s", r.code, r.stderr)
	}
}

// TestRemoteBuildRace: two hosts build the same manifest at once, both
// with --push: both succeed; for each stage one host's pointer wins and
// the other is told it adopted it; a third host then builds from the
// bucket and runs nothing.
func TestRemoteBuildRace(t *testing.T) {
	s3 := itest.StartS3(t, itest.S3Options{})
	s3.CreateBucket(t, "forge-race")
	t.Setenv("AWS_ACCESS_KEY_ID", s3.AccessKey)
	t.Setenv("AWS_SECRET_ACCESS_KEY", s3.SecretKey)
	stores := []string{storeDir(t), storeDir(t), storeDir(t)}
	for _, s := range stores {
		if out, err := exec.Command(forgeBin, "store", "remote", "add", "--store", s, "shared", "s3://forge-race", "--endpoint", s3.Endpoint).CombinedOutput(); err != nil {
			t.Fatalf("remote add: %v\n%s", err, out)
		}
	}
	m := imageManifest("raced\n")
	results := make([]*result, 2)
	done := make(chan int)
	for i := range 2 {
		go func() {
			results[i] = build(t, stores[i], m, "--export", "image", "--output-directory", t.TempDir(), "--remote", "shared", "--push")
			done <- i
		}()
	}
	<-done
	<-done
	pushed := 0
	for i, r := range results {
		if r.code != 0 {
			t.Fatalf("host %d: exit %d\n%s", i, r.code, r.stderr)
		}
		pushed += strings.Count(r.stderr, "pushed to remote shared")
		t.Logf("host %d ran %d stages, adopted %d", i, len(r.ran()), strings.Count(r.stderr, "another host pushed this stage first"))
	}
	// Each stage was pushed by one host at least; a host that found a
	// stage in the bucket before running it pulled it instead.
	if pushed < 5 {
		t.Errorf("%d stage pushes in all, want at least the 5 stages", pushed)
	}
	out := t.TempDir()
	r := mustBuild(t, stores[2], m, "--export", "image", "--output-directory", out, "--remote", "shared")
	if len(r.ran()) != 0 {
		t.Errorf("the third host ran %v, want nothing", r.ran())
	}
	if got := debugfsCat(t, filepath.Join(out, "image", "disk.img"), "/etc/b"); got != "raced\n" {
		t.Errorf("the third host's image holds %q", got)
	}
}

func sameFile(t *testing.T, a, b string) {
	t.Helper()
	x, err := os.ReadFile(a)
	if err != nil {
		t.Fatal(err)
	}
	y, err := os.ReadFile(b)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(x, y) {
		t.Errorf("%s and %s differ", a, b)
	}
}
