package builder_test

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

// imageManifest is a format-2 manifest of osbuild's shape: a tree
// pipeline, then an image pipeline that makes disk.img, an ext4 on a
// loop device over it, and copies the tree into it through an ext4 mount.
// b is the content of the tree's last file.
func imageManifest(b string) obj {
	loop := obj{"type": "org.osbuild.loopback", "options": obj{"filename": "disk.img", "lock": true}}
	return obj{
		"version": "2",
		"pipelines": []obj{
			{"name": "tree", "stages": []obj{
				{"type": "test.write", "options": obj{"path": "etc/a", "content": "A\n"}},
				{"type": "test.write", "options": obj{"path": "etc/b", "content": b}},
			}},
			{"name": "image", "stages": []obj{
				{"type": "org.osbuild.truncate", "options": obj{"filename": "disk.img", "size": "64M"}},
				{"type": "org.osbuild.mkfs.ext4", "options": obj{"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "label": "root"},
					"devices": obj{"device": loop}},
				{"type": "org.osbuild.copy",
					"inputs":  obj{"root-tree": obj{"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": []string{"name:tree"}}},
					"devices": obj{"disk": loop},
					"mounts":  []obj{{"name": "root", "type": "org.osbuild.ext4", "source": "disk", "target": "/"}},
					"options": obj{"paths": []obj{{"from": "input://root-tree/", "to": "mount://root/"}}}},
			}},
		},
	}
}

// debugfsCat reads a file of an ext4 image without mounting it.
func debugfsCat(t *testing.T, img, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s in %s: %v", path, img, err)
	}
	return string(out)
}

// The image test: the exported disk.img holds the tree, a rerun
// runs nothing, and a change in the tree pipeline reruns only the stages
// that depend on it.
func TestV2ImagePipeline(t *testing.T) {
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Fatal("debugfs (e2fsprogs) is needed")
	}
	store := storeDir(t)
	out := t.TempDir()
	r := mustBuild(t, store, imageManifest("B\n"), "--export", "image", "--output-directory", out)
	want := []string{"pipelines[0].stages[0]", "pipelines[0].stages[1]", "pipelines[1].stages[0]", "pipelines[1].stages[1]", "pipelines[1].stages[2]"}
	if !slices.Equal(r.ran(), want) {
		t.Fatalf("ran %v, want %v", r.ran(), want)
	}
	img := filepath.Join(out, "image", "disk.img")
	if got := debugfsCat(t, img, "/etc/a") + debugfsCat(t, img, "/etc/b"); got != "A\nB\n" {
		t.Errorf("disk.img holds %q, want the tree's files", got)
	}
	var res struct {
		Success   bool
		Pipelines map[string]string
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || !res.Success || len(res.Pipelines) != 2 {
		t.Errorf("--json: %q (%v)", r.stdout, err)
	}

	r = mustBuild(t, store, imageManifest("B\n"), "--export", "image", "--output-directory", out)
	if len(r.ran()) != 0 {
		t.Errorf("rerun ran %v, want nothing", r.ran())
	}

	r = mustBuild(t, store, imageManifest("changed\n"), "--export", "image", "--output-directory", out)
	if want := []string{"pipelines[0].stages[1]", "pipelines[1].stages[2]"}; !slices.Equal(r.ran(), want) {
		t.Errorf("after changing the tree's last file: ran %v, want %v", r.ran(), want)
	}
	if got := debugfsCat(t, img, "/etc/b"); got != "changed\n" {
		t.Errorf("disk.img's /etc/b is %q after the change", got)
	}
	if loops := itestLoops(); len(loops) > 0 {
		t.Errorf("loop devices left over the store: %v", loops)
	}
}

// filesManifest copies a source file into a tree (org.osbuild.copy from
// an org.osbuild.files input), as hostname names the tree apart.
func filesManifest(url, checksum, hostname string) obj {
	return obj{
		"version": "2",
		"sources": obj{"org.osbuild.curl": obj{"items": obj{checksum: obj{"url": url}}}},
		"pipelines": []obj{{"name": "os", "stages": []obj{
			{"type": "test.write", "options": obj{"path": "etc/hostname", "content": hostname}},
			{"type": "org.osbuild.copy",
				"inputs":  obj{"motd": obj{"type": "org.osbuild.files", "origin": "org.osbuild.source", "references": []string{checksum}}},
				"options": obj{"paths": []obj{{"from": "input://motd/" + checksum, "to": "tree:///etc/motd"}}}},
		}}},
	}
}

// A source is downloaded once per store, serves two builds, and a build
// whose sources are all stored needs no server; a download whose content
// is not what its checksum says fails, naming the URL and both hashes,
// and keeps nothing.
func TestV2Sources(t *testing.T) {
	content := []byte("welcome to forge\n")
	sum := sha256.Sum256(content)
	checksum := "sha256:" + hex.EncodeToString(sum[:])
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/bad" {
			w.Write([]byte("not what you pinned\n"))
			return
		}
		w.Write(content)
	}))
	defer srv.Close()
	store := storeDir(t)

	out := t.TempDir()
	mustBuild(t, store, filesManifest(srv.URL+"/motd", checksum, "one\n"), "--output-directory", out)
	if b, err := os.ReadFile(filepath.Join(out, "os", "etc/motd")); err != nil || string(b) != string(content) {
		t.Fatalf("exported etc/motd: %q, %v", b, err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d downloads, want 1", hits.Load())
	}
	// Another build sharing the source, the server gone: the store has it.
	srv.Close()
	mustBuild(t, store, filesManifest(srv.URL+"/motd", checksum, "two\n"), "--output-directory", out)
	if b, err := os.ReadFile(filepath.Join(out, "os", "etc/hostname")); err != nil || string(b) != "two\n" {
		t.Fatalf("second build's etc/hostname: %q, %v", b, err)
	}

	bad := httptest.NewServer(srv.Config.Handler)
	defer bad.Close()
	other := sha256.Sum256([]byte("something else"))
	otherSum := "sha256:" + hex.EncodeToString(other[:])
	r := build(t, store, filesManifest(bad.URL+"/bad", otherSum, "three\n"))
	if r.code != 1 {
		t.Fatalf("a bad checksum: exit %d, want 1\n%s", r.code, r.stderr)
	}
	gotSum := sha256.Sum256([]byte("not what you pinned\n"))
	for _, s := range []string{bad.URL + "/bad", hex.EncodeToString(other[:]), hex.EncodeToString(gotSum[:])} {
		if !strings.Contains(r.stderr+r.stdout, s) {
			t.Errorf("the error does not name %s:\n%s", s, r.stderr)
		}
	}
	refs, err := exec.Command(forgeBin, "store", "ls", "--store", store).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(refs), otherSum) {
		t.Errorf("the store kept the bad download:\n%s", refs)
	}
}

func itestLoops() []string {
	out, _ := exec.Command("losetup", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	var loops []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "forge") {
			loops = append(loops, l)
		}
	}
	return loops
}
