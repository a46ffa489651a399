package remote_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/forge-build/forge/integration/itest"
)

// writeText writes n bytes of text zstd shrinks several times over.
func writeText(t *testing.T, name string, n int) {
	t.Helper()
	var b strings.Builder
	for i := 0; b.Len() < n; i++ {
		fmt.Fprintf(&b, "line %d of a text file that compresses well, %s\n", i, strings.Repeat("ab", i%40))
	}
	if err := os.MkdirAll(filepath.Dir(name), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(name, []byte(b.String()[:n]), 0o644); err != nil {
		t.Fatal(err)
	}
}

// du is forge store du --json of h's store.
func (h *host) du() (logical, stored, packs int64) {
	h.t.Helper()
	var u struct {
		Logical int64 `json:"logical_bytes"`
		Stored  int64 `json:"stored_bytes"`
		Packs   int64 `json:"pack_bytes"`
	}
	if err := json.Unmarshal([]byte(h.must("store", "du", "--store", h.store, "--json")), &u); err != nil {
		h.t.Fatal(err)
	}
	return u.Logical, u.Stored, u.Packs
}

// TestCompressedPushPull: host A stores chunks zstd-compressed and pushes
// them so; host B (compression off) pulls the same tree, keeps the chunks
// as sent, and reads them; host C mounts the tree lazily and reads the
// text through FUSE; a flipped byte inside a compressed chunk in the
// bucket fails a pull, naming the chunk and the object.
func TestCompressedPushPull(t *testing.T) {
	s3 := itest.StartS3(t, itest.S3Options{})
	s3.CreateBucket(t, "forge-zstd")
	a, b, c := newHost(t, s3, "forge-zstd"), newHost(t, s3, "forge-zstd"), newHost(t, s3, "forge-zstd")
	if got := strings.TrimSpace(a.must("store", "compression", "--store", a.store)); got != "none" {
		t.Fatalf("a new store's compression: %q, want none", got)
	}
	a.must("store", "compression", "--store", a.store, "zstd")
	if r := a.run("store", "compression", "--store", a.store, "lz4"); r.code != 2 || !strings.Contains(r.stderr, "zstd") {
		t.Errorf("compression lz4: exit %d\n%s", r.code, r.stderr)
	}
	src := filepath.Join(t.TempDir(), "src")
	writeTree(t, src, 2)
	const textSize = 16 << 20
	writeText(t, filepath.Join(src, "usr/share/doc/text"), textSize)
	tree := a.importTree(src, "base")
	_, _, aPacks := a.du()
	if aPacks > 8<<20 {
		t.Fatalf("host A's packs hold %d bytes: the 16 MiB text was not compressed", aPacks)
	}

	a.must("store", "push", "--store", a.store, "base")
	bk := bucket(t, s3, "forge-zstd")
	var packBytes int64
	for _, n := range keys(t, bk, "packs/") {
		packBytes += n
	}
	if packBytes > 8<<20 {
		t.Errorf("the bucket's packs hold %d bytes: the text went uncompressed", packBytes)
	}

	if got := lastLine(b.must("store", "pull", "--store", b.store, "base")); got != tree {
		t.Fatalf("pull: tree %s, want %s", got, tree)
	}
	out := filepath.Join(t.TempDir(), "out")
	b.must("store", "export", "--store", b.store, "base", out)
	sameTree(t, src, out)
	b.must("store", "fsck", "--store", b.store)
	if _, _, bPacks := b.du(); bPacks > 8<<20 {
		t.Errorf("host B's packs hold %d bytes: the pull did not keep the chunks compressed", bPacks)
	}

	mnt := t.TempDir()
	c.must("store", "mount", "--store", c.store, "--remote", "shared", "base", mnt)
	if out, err := exec.Command("cmp", filepath.Join(src, "usr/share/doc/text"), filepath.Join(mnt, "usr/share/doc/text")).CombinedOutput(); err != nil {
		t.Errorf("the text through host C's lazy mount: %v\n%s", err, out)
	}
	c.must("store", "umount", "--store", c.store, mnt)
	c.must("store", "fsck", "--store", c.store)

	// Damage the pack holding the text's chunks, inside its blobs.
	ctx := context.Background()
	var damaged string
	for k, size := range keys(t, bk, "packs/") {
		body, _, err := bk.Get(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(body), "\x28\xb5\x2f\xfd") { // zstd's frame magic
			continue
		}
		i := strings.Index(string(body), "\x28\xb5\x2f\xfd")
		body[i+200] ^= 0x55
		if _, err := bk.Put(ctx, k, body); err != nil {
			t.Fatal(err)
		}
		damaged = k
		t.Logf("damaged %s (%d bytes) at %d", k, size, i+200)
		break
	}
	if damaged == "" {
		t.Fatal("no pack in the bucket holds a zstd frame")
	}
	d := newHost(t, s3, "forge-zstd")
	r := d.run("store", "pull", "--store", d.store, "base")
	if r.code == 0 {
		t.Fatalf("pull of a damaged compressed chunk succeeded:\n%s", r.stderr)
	}
	if !regexp.MustCompile(`chunk [0-9a-f]{64} in ` + regexp.QuoteMeta(damaged) + ` at offset \d+ is damaged`).MatchString(r.stderr) {
		t.Errorf("the error does not name the chunk and %s:\n%s", damaged, r.stderr)
	}
	if out := d.must("store", "ls", "--store", d.store); strings.Contains(out, "base") {
		t.Errorf("the failed pull left a ref:\n%s", out)
	}
}
