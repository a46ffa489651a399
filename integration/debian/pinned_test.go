// Package debian_test builds pinned Debian trees and images the format-2
// way (issue 17): a template resolved by samples/gen-manifest into .debs
// pinned by SHA256, installed by org.osbuild.mmdebstrap and
// org.osbuild.apt from their inputs alone, then osbuild's image pipelines.
// Two cold builds into two new stores store the same tree after every
// stage and make the same qcow2 bytes; a store that has the sources builds
// with no network at all; a .deb that is not what its pin says fails the
// build, naming the file and both hashes.
package debian_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/internal/fstree"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping integration/debian: needs root (namespaces, FUSE)")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// template is minbase and one package, then a stage that is not dpkg's
// (its files' times are clamped too), and a partitioned ext4 image of the
// tree with GRUB, written by the kernel through a loop device, and its
// qcow2: osbuild's image pipelines.
const template = `{
  "version": "2",
  "pipelines": [
    {
      "name": "os",
      "stages": [
        {"type": "org.osbuild.mmdebstrap", "options": {"suite": "bookworm", "variant": "minbase"}},
        {"type": "org.osbuild.apt", "options": {"packages": ["less"]}},
        {"type": "org.osbuild.hostname", "options": {"hostname": "forge-pinned"}}
      ]
    },
    {
      "name": "image",
      "stages": [
        {"type": "org.osbuild.truncate", "options": {"filename": "disk.img", "size": "1073741824"}},
        {"type": "org.osbuild.sfdisk", "options": {"label": "dos", "uuid": "14fc63d2",
          "partitions": [{"start": 2048, "size": 2095104, "type": "83", "bootable": true}]},
          "devices": {"device": {"type": "org.osbuild.loopback", "options": {"filename": "disk.img"}}}},
        {"type": "org.osbuild.mkfs.ext4", "options": {"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "label": "root"},
          "devices": {"device": {"type": "org.osbuild.loopback", "options": {"filename": "disk.img", "start": 2048, "size": 2095104}}}},
        {"type": "org.osbuild.copy",
          "inputs": {"tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": ["name:os"]}},
          "options": {"paths": [{"from": "input://tree/", "to": "mount://root/"}]},
          "devices": {"root": {"type": "org.osbuild.loopback", "options": {"filename": "disk.img", "start": 2048, "size": 2095104}}},
          "mounts": [{"name": "root", "type": "org.osbuild.ext4", "source": "root", "target": "/"}]},
        {"type": "org.osbuild.grub2.inst", "options": {"filename": "disk.img", "platform": "i386-pc", "location": 1,
          "core": {"type": "mkimage", "partlabel": "dos", "filesystem": "ext4"},
          "prefix": {"type": "partition", "partlabel": "dos", "number": 0, "path": "/boot/grub"}}}
      ]
    },
    {
      "name": "qcow2",
      "stages": [
        {"type": "org.osbuild.qemu",
          "inputs": {"image": {"type": "org.osbuild.files", "origin": "org.osbuild.pipeline", "references": {"name:image": {"file": "disk.img"}}}},
          "options": {"filename": "disk.qcow2", "format": {"type": "qcow2", "compression": false}}}
      ]
    }
  ]
}`

type tools struct{ forge, libdir, gen string }

func build(t *testing.T, dir string) tools {
	t.Helper()
	var tl tools
	var err error
	if tl.forge, err = itest.Forge(dir); err != nil {
		t.Fatal(err)
	}
	if os.Getenv(itest.BinEnv) == "" {
		tl.libdir = filepath.Join(dir, "libexec/forge")
		if err := itest.Libdir(tl.libdir); err != nil {
			t.Fatal(err)
		}
	}
	tl.gen = filepath.Join(dir, "gen-manifest")
	if err := itest.GoBuild(tl.gen, "./samples/gen-manifest", false); err != nil {
		t.Fatal(err)
	}
	return tl
}

// forgeBuild builds manifest into store, exporting the last pipeline into
// out, with prefix (like unshare --net) before forge, and returns forge's
// output.
func (tl tools) forgeBuild(t *testing.T, store, out, manifest string, prefix ...string) (string, error) {
	t.Helper()
	args := append(prefix, tl.forge, "build", "--store", store, "--output-directory", out)
	if tl.libdir != "" {
		args = append(args, "--libdir", tl.libdir)
	}
	args = append(args, manifest)
	cmd := exec.Command(args[0], args[1:]...)
	var log bytes.Buffer
	cmd.Stdout, cmd.Stderr = &log, &log
	start := time.Now()
	err := cmd.Run()
	t.Logf("%s: %v in %s", strings.Join(args, " "), err, time.Since(start).Round(time.Millisecond))
	return log.String(), err
}

// stageTrees are a store's refs other than sources: stage IDs → trees.
func stageTrees(t *testing.T, store string) map[string]string {
	t.Helper()
	c := client.NewClient(store)
	defer c.Close()
	refs, err := c.Refs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range refs {
		if !strings.HasPrefix(r.Name, "source/") {
			out[r.Name] = r.Tree
		}
	}
	return out
}

func TestPinnedBuild(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: resolves against the mirror and builds Debian trees three times")
	}
	mirror := itest.DebianMirror(t, "bookworm", "mmdebstrap", "apt-get", "unshare")

	work := fstree.DiskTempDir(t)
	tl := build(t, filepath.Join(work, "bin"))
	tmpl := filepath.Join(work, "template.json")
	if err := os.WriteFile(tmpl, []byte(template), 0o644); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd := exec.Command(tl.gen, "--resolve", "--mirror", mirror, tmpl)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("gen-manifest --resolve: %v\n%s", err, stderr.String())
	}
	manifest := filepath.Join(work, "manifest.json")
	if err := os.WriteFile(manifest, out, 0o644); err != nil {
		t.Fatal(err)
	}
	var m struct {
		Pipelines []struct {
			SourceEpoch *int64 `json:"source-epoch"`
		} `json:"pipelines"`
		Sources map[string]struct {
			Items map[string]json.RawMessage `json:"items"`
		} `json:"sources"`
	}
	if err := json.Unmarshal(out, &m); err != nil {
		t.Fatal(err)
	}
	debs := m.Sources["org.osbuild.curl"].Items
	if len(debs) < 50 || m.Pipelines[0].SourceEpoch == nil {
		t.Fatalf("the resolved manifest pins %d .debs and has source-epoch %v; want minbase's (~96) and one", len(debs), m.Pipelines[0].SourceEpoch)
	}

	// Two cold builds into two new stores: the same tree after every stage.
	// The same image bytes too: what the kernel wrote into the ext4
	// filesystem is normalized (internal/ext4repro).
	stores := []string{filepath.Join(work, "a"), filepath.Join(work, "b")}
	var images []string
	for _, s := range stores {
		t.Cleanup(func() { itest.StopDaemon(t, tl.forge, s) })
		if log, err := tl.forgeBuild(t, s, s+".out", manifest); err != nil {
			t.Fatalf("build into %s: %v\n%s", s, err, log)
		}
		images = append(images, fileSum(t, filepath.Join(s+".out", "qcow2", "disk.qcow2")))
	}
	a, b := stageTrees(t, stores[0]), stageTrees(t, stores[1])
	if len(a) != 9 {
		t.Fatalf("store a has %d stage trees, want 9: %v", len(a), a)
	}
	if !maps.Equal(a, b) {
		t.Errorf("two cold builds stored different trees:\n a: %v\n b: %v\n(forge store diff names the paths)", a, b)
	}
	if images[0] != images[1] {
		t.Errorf("two cold builds made different qcow2 images: sha256 %s and %s", images[0], images[1])
	}

	// Offline: store b keeps its sources, loses its trees, and builds
	// again in a network namespace without interfaces.
	rm := append([]string{"store", "rm", "--store", stores[1]}, slices.Collect(maps.Keys(b))...)
	for _, args := range [][]string{rm, {"store", "gc", "--store", stores[1]}} {
		if out, err := exec.Command(tl.forge, args...).CombinedOutput(); err != nil {
			t.Fatalf("forge %v: %v\n%s", args, err, out)
		}
	}
	if n := len(stageTrees(t, stores[1])); n != 0 {
		t.Fatalf("store b still has %d stage trees", n)
	}
	itest.StopDaemon(t, tl.forge, stores[1]) // so that the build's daemon starts offline too
	log, err := tl.forgeBuild(t, stores[1], filepath.Join(work, "offline.out"), manifest, "unshare", "--net")
	if err != nil {
		t.Fatalf("offline build: %v\n%s", err, log)
	}
	if strings.Contains(log, "downloaded") || strings.Contains(log, "fetched (") {
		t.Errorf("the offline build downloaded sources, though the store had them all:\n%s", log)
	}
	if got := stageTrees(t, stores[1]); !maps.Equal(got, a) {
		t.Errorf("the offline build stored other trees:\n got %v\nwant %v", got, a)
	}

	// A .deb that is not what its pin says: two pins' URLs swapped.
	var keys []string
	for k := range debs {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	k1, k2 := keys[0], keys[1]
	bad := bytes.Replace(out, debs[k1], []byte("SWAP"), 1)
	bad = bytes.Replace(bad, debs[k2], debs[k1], 1)
	bad = bytes.Replace(bad, []byte("SWAP"), debs[k2], 1)
	badManifest := filepath.Join(work, "bad.json")
	if err := os.WriteFile(badManifest, bad, 0o644); err != nil {
		t.Fatal(err)
	}
	c := filepath.Join(work, "c")
	t.Cleanup(func() { itest.StopDaemon(t, tl.forge, c) })
	log, err = tl.forgeBuild(t, c, c+".out", badManifest)
	if err == nil {
		t.Fatalf("a build with swapped .debs succeeded:\n%s", log)
	}
	var url1 struct {
		URL string `json:"url"`
	}
	json.Unmarshal(debs[k1], &url1)
	for _, want := range []string{k1, k2, filepath.Base(url1.URL)} {
		if !strings.Contains(log, want) {
			t.Errorf("the failed build's output does not name %s:\n%s", want, log)
		}
	}
	if n := len(stageTrees(t, c)); n != 0 {
		t.Errorf("the failed build stored %d stage trees", n)
	}
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil))
}
