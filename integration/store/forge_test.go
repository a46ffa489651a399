package store_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/forge-build/forge/internal/fstree"
	"github.com/forge-build/forge/internal/mountinfo"
)

// commandTimeout only keeps a hung CLI from hanging the whole test run;
// nothing asserts on durations.
const commandTimeout = 10 * time.Minute

// Chunk sizes from DESIGN §3; bounds in the tests derive from them.
const (
	minChunk = 16 << 10
	maxChunk = 256 << 10
)

var hashLine = regexp.MustCompile(`^[0-9a-f]{64}$`)

// result is one finished CLI run.
type result struct {
	args           []string
	stdout, stderr string
	code           int
}

func (r result) String() string {
	return fmt.Sprintf("forge %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(quoteArgs(r.args), " "), r.code, r.stdout, r.stderr)
}

func quoteArgs(args []string) []string {
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = fstree.QuotePath(a)
	}
	return q
}

// forgeCommand prepares a CLI run; FORGE_STORE is cleared so that only
// --store names a store.
func forgeCommand(ctx context.Context, t testing.TB, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(ctx, forgeBin(t), args...)
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "FORGE_STORE=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	return cmd
}

// runForge runs the CLI to the end and returns what it printed and its
// exit code; failing to start it at all fails t.
func runForge(t testing.TB, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := forgeCommand(ctx, t, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit) && exit.ExitCode() >= 0:
		r.code = exit.ExitCode()
	case ctx.Err() != nil:
		t.Fatalf("forge %s did not finish within %v", strings.Join(quoteArgs(args), " "), commandTimeout)
	default:
		t.Fatalf("forge %s: %v", strings.Join(quoteArgs(args), " "), err)
	}
	return r
}

// testStore is one store directory and a scratch area for exports.
type testStore struct {
	t       *testing.T
	dir     string
	scratch string
	exports int
}

// newStore names a store at root/store (the CLI creates it) and a scratch
// directory beside it.
func newStore(t *testing.T, root string) *testStore {
	t.Helper()
	s := &testStore{t: t, dir: filepath.Join(root, "store"), scratch: filepath.Join(root, "scratch")}
	if err := os.MkdirAll(s.scratch, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stopForgeProcesses(s.dir, t.Logf) })
	return s
}

// run runs `forge store SUB --store DIR ARGS...`.
func (s *testStore) run(sub string, args ...string) result {
	s.t.Helper()
	return runForge(s.t, append([]string{"store", sub, "--store", s.dir}, args...)...)
}

// ok is run, failing the test unless the command exits 0.
func (s *testStore) ok(sub string, args ...string) result {
	s.t.Helper()
	r := s.run(sub, args...)
	if r.code != 0 {
		s.t.Fatalf("%s", r)
	}
	return r
}

// importArgs are the exact arguments of an import.
func importArgs(ref, path string) []string {
	if ref == "" {
		return []string{path}
	}
	return []string{"--ref", ref, path}
}

// importTree imports path (as ref, unless ref is empty) and returns the
// tree hash, the last line of stdout.
func (s *testStore) importTree(path, ref string) string {
	s.t.Helper()
	return treeHash(s.t, s.ok("import", importArgs(ref, path)...))
}

func treeHash(t testing.TB, r result) string {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	last := strings.TrimSpace(lines[len(lines)-1])
	if !hashLine.MatchString(last) {
		t.Fatalf("last line of stdout is %q, want a tree hash of 64 hex digits\n%s", last, r)
	}
	return last
}

// export exports ref (a ref name or tree hash) to path.
func (s *testStore) export(ref, path string) {
	s.t.Helper()
	s.ok("export", ref, path)
}

// assertExportEquals exports ref to a new scratch directory and compares it
// with src in every property (root metadata and holes included), then
// removes the export.
func (s *testStore) assertExportEquals(ref, src string) {
	s.t.Helper()
	s.exports++
	out := filepath.Join(s.scratch, fmt.Sprintf("export-%d", s.exports))
	s.export(ref, out)
	defer os.RemoveAll(out)
	fstree.AssertSame(s.t, src, out, exportOptions)
}

// exportOptions compare an export with its source. The slack allows for
// chunks that straddle the edge of a data region: a chunk holding data is
// written whole, zeros included, and a file has at most a few such edges
// (the fixture's 1 GiB file has eight).
var exportOptions = fstree.Options{CompareRootMeta: true, CheckSparse: true, SparseSlack: 8 * maxChunk}

// lsEntry is one element of `forge store ls --json`.
type lsEntry struct {
	Name         string          `json:"name"`
	Tree         string          `json:"tree"`
	LogicalBytes int64           `json:"logical_bytes"`
	UniqueBytes  int64           `json:"unique_bytes"`
	LastUsed     json.RawMessage `json:"last_used"`
}

var lsKeys = []string{"name", "tree", "logical_bytes", "unique_bytes", "last_used"}

// ls returns the refs, keyed by name.
func (s *testStore) ls() map[string]lsEntry {
	s.t.Helper()
	r := s.ok("ls", "--json")
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		s.t.Fatalf("ls --json is not a JSON array of objects: %v\n%s", err, r)
	}
	var entries []lsEntry
	if err := json.Unmarshal([]byte(r.stdout), &entries); err != nil {
		s.t.Fatalf("ls --json: %v\n%s", err, r)
	}
	refs := map[string]lsEntry{}
	for i, e := range entries {
		for _, k := range lsKeys {
			if _, ok := raw[i][k]; !ok {
				s.t.Fatalf("ls --json: entry %d has no %q\n%s", i, k, r)
			}
		}
		if !hashLine.MatchString(e.Tree) {
			s.t.Fatalf("ls --json: ref %q has tree %q, not a hash\n%s", e.Name, e.Tree, r)
		}
		refs[e.Name] = e
	}
	return refs
}

// duStats is `forge store du --json`.
type duStats struct {
	LogicalBytes int64   `json:"logical_bytes"`
	StoredBytes  int64   `json:"stored_bytes"`
	PackBytes    int64   `json:"pack_bytes"`
	Chunks       int64   `json:"chunks"`
	Nodes        int64   `json:"nodes"`
	Packs        int64   `json:"packs"`
	Refs         int64   `json:"refs"`
	DedupRatio   float64 `json:"dedup_ratio"`
}

var duKeys = []string{"logical_bytes", "stored_bytes", "pack_bytes", "chunks", "nodes", "packs", "refs", "dedup_ratio"}

func (s *testStore) du() duStats {
	s.t.Helper()
	r := s.ok("du", "--json")
	var raw map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
		s.t.Fatalf("du --json is not a JSON object: %v\n%s", err, r)
	}
	for _, k := range duKeys {
		if _, ok := raw[k]; !ok {
			s.t.Fatalf("du --json has no %q\n%s", k, r)
		}
	}
	var d duStats
	if err := json.Unmarshal([]byte(r.stdout), &d); err != nil {
		s.t.Fatalf("du --json: %v\n%s", err, r)
	}
	return d
}

// assertClean runs fsck and fails the test unless it exits 0.
func (s *testStore) assertClean() {
	s.t.Helper()
	if r := s.run("fsck"); r.code != 0 {
		s.t.Fatalf("fsck of a store that should be clean:\n%s", r)
	}
}

// assertNoGarbage checks, after a gc, that the pack files hold nothing but
// indexed chunks plus pack headers and footers. A footer entry is well
// under 128 bytes per chunk (hash, offset, lengths, flags); a pack's fixed
// header and trailer well under 4 KiB.
func (s *testStore) assertNoGarbage() {
	s.t.Helper()
	d := s.du()
	overhead := d.PackBytes - d.StoredBytes
	if limit := d.Packs*4096 + d.Chunks*128; overhead < 0 || overhead > limit {
		s.t.Fatalf("after gc, pack_bytes %d - stored_bytes %d = %d bytes, want 0..%d (headers and footers of %d packs, %d chunks): unreclaimed garbage",
			d.PackBytes, d.StoredBytes, overhead, limit, d.Packs, d.Chunks)
	}
}

// packs lists the pack files of the store by ID with their sizes.
func (s *testStore) packs() map[string]int64 {
	s.t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.dir, "packs"))
	if err != nil {
		s.t.Fatalf("packs: %v", err)
	}
	packName := regexp.MustCompile(`^([0-9a-f]{32})\.pack$`)
	out := map[string]int64{}
	for _, e := range entries {
		m := packName.FindStringSubmatch(e.Name())
		if m == nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			s.t.Fatal(err)
		}
		out[m[1]] = info.Size()
	}
	return out
}

// assertTmpEmpty checks that DIR/tmp holds nothing (or does not exist).
func (s *testStore) assertTmpEmpty() {
	s.t.Helper()
	entries, err := os.ReadDir(filepath.Join(s.dir, "tmp"))
	if err != nil && !os.IsNotExist(err) {
		s.t.Fatal(err)
	}
	if len(entries) > 0 {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		s.t.Fatalf("%s/tmp is not empty: %s", s.dir, strings.Join(names, ", "))
	}
}

// writeTree creates files (path → content) below root with mode 0644 and
// a fixed mtime, so that two trees written alike are alike.
func writeTree(t *testing.T, root string, files map[string][]byte) {
	t.Helper()
	names := make([]string, 0, len(files))
	for name := range files {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, files[name], 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fixTimes(t, root)
}

// fixTimes sets every mtime below and of root to one fixed instant, so
// that content and chosen metadata are all that tell two trees apart.
func fixTimes(t *testing.T, root string) {
	t.Helper()
	fixed := time.Unix(1600000000, 123456789)
	var dirs []string
	err := filepath.WalkDir(root, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			dirs = append(dirs, p)
			return nil
		}
		if d.Type()&os.ModeSymlink != 0 {
			return nil
		}
		return os.Chtimes(p, fixed, fixed)
	})
	if err != nil {
		t.Fatal(err)
	}
	// Children first: setting a directory's time is undone by nothing
	// after it.
	for i := len(dirs) - 1; i >= 0; i-- {
		if err := os.Chtimes(dirs[i], fixed, fixed); err != nil {
			t.Fatal(err)
		}
	}
}

// mustRun runs a system command (mount, losetup, ...) or fails t.
func mustRun(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// unmountAtCleanup unmounts target when t ends if it is still a mount
// point (lazily if busy), so the temp dir's removal never reaches into a
// mounted filesystem.
func unmountAtCleanup(t *testing.T, target string) {
	t.Cleanup(func() {
		if !isMountPoint(t, target) {
			return
		}
		stopForgeProcesses(target, t.Logf)
		if out, err := exec.Command("umount", target).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", target, err, out)
			if out, err := exec.Command("umount", "-l", target).CombinedOutput(); err != nil {
				t.Errorf("umount -l %s: %v: %s", target, err, out)
			}
		}
	})
}

// isMountPoint reports whether something is mounted at path.
func isMountPoint(t testing.TB, path string) bool {
	t.Helper()
	ms, err := mountinfo.Read()
	if err != nil {
		t.Fatal(err)
	}
	path = filepath.Clean(path)
	for _, m := range ms {
		if m.Point == path {
			return true
		}
	}
	return false
}

// loopExt4 creates an ext4 image of size bytes in dir, attaches it to a
// loop device and mounts it at dir/mnt; t's cleanup unmounts it and
// detaches exactly the device it attached.
func loopExt4(t *testing.T, dir string, size int64) string {
	t.Helper()
	for _, tool := range []string{"losetup", "mkfs.ext4", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not found (Debian packages mount, e2fsprogs): %v", tool, err)
		}
	}
	img := filepath.Join(dir, "fs.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	f.Close()
	// 256-byte inodes keep nanosecond timestamps on a small filesystem;
	// no reserved blocks, so "full" means full for root too.
	mustRun(t, "mkfs.ext4", "-q", "-F", "-I", "256", "-m", "0", img)
	dev := mustRun(t, "losetup", "--find", "--show", img)
	if !strings.HasPrefix(dev, "/dev/loop") {
		t.Fatalf("losetup --find --show printed %q", dev)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v: %s", dev, err, out)
		}
	})
	mnt := filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o755); err != nil {
		t.Fatal(err)
	}
	mustRun(t, "mount", "-t", "ext4", dev, mnt)
	unmountAtCleanup(t, mnt)
	return mnt
}

// parseLastUsed reads last_used as RFC 3339 text or a Unix time number in
// seconds, milliseconds, microseconds or nanoseconds (told by magnitude).
func parseLastUsed(raw json.RawMessage) (time.Time, error) {
	var s string
	if err := json.Unmarshal(raw, &s); err == nil {
		return time.Parse(time.RFC3339Nano, s)
	}
	var n json.Number
	if err := json.Unmarshal(raw, &n); err != nil {
		return time.Time{}, fmt.Errorf("last_used %s: neither text nor number", raw)
	}
	f, err := strconv.ParseFloat(n.String(), 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("last_used %s: %w", raw, err)
	}
	switch {
	case f > 1e17:
		return time.Unix(0, int64(f)), nil
	case f > 1e14:
		return time.UnixMicro(int64(f)), nil
	case f > 1e11:
		return time.UnixMilli(int64(f)), nil
	}
	return time.Unix(0, int64(f*1e9)), nil
}
