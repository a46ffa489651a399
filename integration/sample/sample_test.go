// Package sample_test is forge's end-to-end test: it builds the sample
// Debian image (samples/debian-bookworm.json, format 2, its packages
// pinned, downloaded from the host's apt mirror) with `forge build`, boots
// it with qemu-system-x86_64 under TCG until the serial console shows a
// login prompt, and builds a variant that differs only in its hostname:
// only the stages from the hostname stage on run, and the store grows by
// less than 5% of the image's size. Then it removes the store's index: the
// store rebuilds it, every ref names the same tree, and a rerun is fully
// cached and exports the same image. The format-1 sample
// (samples/debian-bookworm-format1.json) is built and booted too.
package sample_test

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
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge-build/forge/builder"
	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/internal/fstree"
)

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		fmt.Println("skipping integration/sample: needs root (namespaces, FUSE, loop devices)")
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// tools builds forge (unless FORGE_TEST_BIN names one, with its libdir
// beside it), its libdir and gen-manifest into dir.
func tools(t *testing.T, dir string) (forge, libdir, gen string) {
	t.Helper()
	forge, err := itest.Forge(dir)
	if err != nil {
		t.Fatal(err)
	}
	if os.Getenv(itest.BinEnv) == "" {
		libdir = filepath.Join(dir, "libexec/forge")
		if err := itest.Libdir(libdir); err != nil {
			t.Fatal(err)
		}
	}
	gen = filepath.Join(dir, "gen-manifest")
	if err := itest.GoBuild(gen, "./samples/gen-manifest", false); err != nil {
		t.Fatal(err)
	}
	return forge, libdir, gen
}

// The samples: format 2 is what make run builds; format 1 is kept as a
// test of format 1.
const (
	sampleV2 = "samples/debian-bookworm.json"
	sampleV1 = "samples/debian-bookworm-format1.json"
)

func TestSampleImageBoots(t *testing.T) {
	testSample(t, sampleV2, true)
}

func TestFormat1SampleBoots(t *testing.T) {
	testSample(t, sampleV1, false)
}

// testSample builds the sample and boots it; full adds the cached rerun,
// the hostname variant and the index rebuild.
func testSample(t *testing.T, name string, full bool) {
	if testing.Short() {
		t.Skip("-short: builds a Debian image from a mirror and boots it, for several minutes")
	}
	itest.DebianMirror(t, "bookworm", "qemu-system-x86_64", "mmdebstrap")

	work := fstree.DiskTempDir(t)
	forge, libdir, gen := tools(t, filepath.Join(work, "bin"))
	store := filepath.Join(work, "store")
	t.Cleanup(func() { itest.StopDaemon(t, forge, store) })
	root, err := itest.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	sample := filepath.Join(root, name)

	manifest := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(gen, append(args, sample)...).Output()
		if err != nil {
			t.Fatalf("gen-manifest: %v", err)
		}
		p := filepath.Join(work, name)
		if err := os.WriteFile(p, out, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	build := func(m, out string) ([]builder.Event, time.Duration) {
		t.Helper()
		mon := filepath.Join(work, filepath.Base(m)+".events")
		f, err := os.Create(mon)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		args := []string{"build", "--store", store, "--output-directory", out, "--monitor-fd", "3"}
		if libdir != "" {
			args = append(args, "--libdir", libdir)
		}
		cmd := exec.Command(forge, append(args, m)...)
		cmd.ExtraFiles = []*os.File{f}
		var stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stderr, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			t.Fatalf("forge build %s: %v\n%s", m, err, stderr.String())
		}
		took := time.Since(start)
		t.Logf("forge build %s took %s:\n%s", filepath.Base(m), took.Round(time.Millisecond), stderr.String())
		b, _ := os.ReadFile(mon)
		var evs []builder.Event
		for _, rec := range bytes.Split(b, []byte{0x1e}) {
			var ev builder.Event
			if len(bytes.TrimSpace(rec)) > 0 && json.Unmarshal(rec, &ev) == nil && ev.Type != builder.EventLog {
				evs = append(evs, ev)
			}
		}
		return evs, took
	}

	out := filepath.Join(work, "output")
	m := manifest("sample.json")
	build(m, out)
	img := image(t, out)
	boot(t, img, filepath.Join(work, "console.log"))
	if !full {
		return
	}

	// A rerun is fully cached.
	evs, took := build(m, out)
	if ran := ranStages(evs); len(ran) != 0 {
		t.Errorf("the cached rerun ran %v", ran)
	}
	t.Logf("fully cached rerun: %s", took)

	// A variant with another hostname reruns from the hostname stage on
	// and stores little.
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	before := usage(t, store)
	evs, took = build(manifest("variant.json", "--hostname", "forge-variant"), filepath.Join(work, "variant"))
	grew := usage(t, store) - before
	ran := ranStages(evs)
	t.Logf("hostname variant: %s; ran %v; the store grew by %d bytes (%.2f%% of the image's %d)", took, ran, grew, 100*float64(grew)/float64(fi.Size()), fi.Size())
	if len(ran) == 0 || ran[0] != "org.osbuild.hostname" {
		t.Errorf("the variant ran %v; want the hostname stage first", ran)
	}
	for _, name := range ran {
		if strings.Contains(name, "mmdebstrap") || strings.Contains(name, ".apt") {
			t.Errorf("the variant reran %s", name)
		}
	}
	if float64(grew) >= 0.05*float64(fi.Size()) {
		t.Errorf("the store grew by %d bytes for the variant: not less than 5%% of the image's %d", grew, fi.Size())
	}

	// The index is a cache (issue 14): without it the store gives back
	// every ref and tree, and the rebuild is still fully cached and
	// exports the same image.
	refsBefore := refTrees(t, store)
	imgBefore := fileSum(t, img)
	itest.StopDaemon(t, forge, store)
	if err := os.RemoveAll(filepath.Join(store, "index")); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(forge, "store", "fsck", "--repair", "--store", store).CombinedOutput(); err != nil {
		t.Logf("fsck --repair: %v\n%s", err, out)
	}
	if out, err := exec.Command(forge, "store", "fsck", "--store", store).CombinedOutput(); err != nil {
		t.Fatalf("fsck after the index was rebuilt: %v\n%s", err, out)
	}
	if after := refTrees(t, store); !maps.Equal(after, refsBefore) {
		t.Fatalf("refs after the index was rebuilt: %v, want %v", after, refsBefore)
	}
	if err := os.Remove(img); err != nil {
		t.Fatal(err)
	}
	evs, _ = build(m, out)
	if ran := ranStages(evs); len(ran) != 0 {
		t.Errorf("the rerun after an index rebuild ran %v", ran)
	}
	if got := fileSum(t, img); got != imgBefore {
		t.Errorf("the image exported after an index rebuild differs: sha256 %s, was %s", got, imgBefore)
	}
}

// refTrees maps every ref of the store to its tree.
func refTrees(t *testing.T, store string) map[string]string {
	t.Helper()
	c := client.NewClient(store)
	defer c.Close()
	refs, err := c.Refs(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range refs {
		out[r.Name] = r.Tree
	}
	return out
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

func ranStages(evs []builder.Event) []string {
	var out []string
	for _, ev := range evs {
		if ev.Type == builder.EventStageStarted {
			out = append(out, ev.Name)
		}
	}
	return out
}

// image is the qcow2 image a build put into dir: the assembler's output
// (format 1), or in the exported pipeline's directory (format 2).
func image(t *testing.T, dir string) string {
	t.Helper()
	imgs, _ := filepath.Glob(filepath.Join(dir, "*.qcow2"))
	more, _ := filepath.Glob(filepath.Join(dir, "*", "*.qcow2"))
	imgs = append(imgs, more...)
	if len(imgs) != 1 {
		t.Fatalf("want one qcow2 image in %s, got %v", dir, imgs)
	}
	return imgs[0]
}

func usage(t *testing.T, store string) int64 {
	t.Helper()
	c := client.NewClient(store)
	defer c.Close()
	u, err := c.Usage(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return u.PackBytes
}

// boot starts the image under qemu (TCG: no KVM here; -snapshot leaves
// the image as built) with the serial console going to a file, and waits
// up to 5 minutes for a login prompt there.
func boot(t *testing.T, img, console string) {
	t.Helper()
	cmd := exec.Command("qemu-system-x86_64", "-m", "1024", "-smp", "1", "-display", "none", "-no-reboot",
		"-snapshot", "-drive", "file="+img+",if=virtio,format=qcow2",
		"-serial", "file:"+console, "-monitor", "none", "-nic", "none")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	}()
	start := time.Now()
	for {
		b, _ := os.ReadFile(console)
		if bytes.Contains(b, []byte("login:")) {
			t.Logf("login prompt on the serial console after %s", time.Since(start).Round(time.Second))
			return
		}
		select {
		case err := <-exited:
			exited <- err
			t.Fatalf("qemu exited before a login prompt (%v); console:\n%s", err, tail(b))
		case <-time.After(time.Second):
		}
		if time.Since(start) > 5*time.Minute {
			t.Fatalf("no login prompt after 5 minutes; console:\n%s", tail(b))
		}
	}
}

func tail(b []byte) string {
	if len(b) > 8192 {
		b = b[len(b)-8192:]
	}
	return string(b)
}
