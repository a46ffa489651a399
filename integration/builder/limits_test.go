package builder_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge-build/forge/builder"
)

// forgeRun is one run of forge: its status, its output and its peak
// resident memory.
type forgeRun struct {
	code           int
	stdout, stderr string
	maxRSS         int64 // bytes
}

// runForge runs forge with args and stdin (nil for none). A guard of a
// minute ends a forge that does not stop on its own (as forge inspect
// /dev/zero did not, until the OOM killer came); it is no timing
// assertion.
func runForge(t *testing.T, stdin io.Reader, args ...string) *forgeRun {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, forgeBin, args...)
	cmd.Stdin = stdin
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("forge %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("forge %s: still running after a minute, killed", strings.Join(args, " "))
	}
	r := &forgeRun{code: cmd.ProcessState.ExitCode(), stdout: out.String(), stderr: errOut.String()}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		r.maxRSS = ru.Maxrss << 10 // Linux gives KiB
	}
	return r
}

// Manifests past --max-manifest-size, from a file, a device or stdin, are
// refused with exit 2 and a message that names them, the limit and the
// flag; forge stops reading at the limit (forge inspect /dev/zero used to
// read until the OOM killer ended it).
func TestManifestSizeLimit(t *testing.T) {
	store := storeDir(t)
	dir := t.TempDir()
	big := filepath.Join(dir, "big.json")
	// A valid manifest of 1 MiB and a bit: one long option.
	m := `{"stages": [{"name": "test.write", "options": {"path": "a", "content": "` + strings.Repeat("x", 1<<20) + `"}}]}`
	if err := os.WriteFile(big, []byte(m), 0o644); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.json")
	if err := os.WriteFile(small, []byte(`{"stages": []}`), 0o644); err != nil {
		t.Fatal(err)
	}
	const flag = "; --max-manifest-size raises the limit"
	cases := []struct {
		name  string
		stdin io.Reader
		args  []string
		want  string // in stderr
	}{
		{"inspect /dev/zero", nil, []string{"inspect", "/dev/zero"},
			"forge inspect: manifest /dev/zero is larger than the limit of 67108864 bytes (64 MiB)" + flag},
		{"build /dev/zero", nil, []string{"build", "--libdir", libdir, "/dev/zero"},
			"forge build: manifest /dev/zero is larger than the limit of 67108864 bytes (64 MiB)" + flag},
		{"inspect a file past the limit", nil, []string{"inspect", "--max-manifest-size", "1M", big},
			"manifest " + big + " is larger than the limit of 1048576 bytes (1 MiB)" + flag},
		{"build a file past the limit", nil, []string{"build", "--libdir", libdir, "--max-manifest-size", "1M", big},
			"manifest " + big + " is larger than the limit of 1048576 bytes (1 MiB)" + flag},
		{"build pipeline past the limit", nil, []string{"build", "--libdir", libdir, "--max-manifest-size", "1M", "--build-pipeline", big, small},
			"build pipeline " + big + " is larger than the limit of 1048576 bytes (1 MiB)" + flag},
		{"stdin past the limit", strings.NewReader(m), []string{"inspect", "--max-manifest-size", "1M", "-"},
			"manifest stdin is larger than the limit of 1048576 bytes (1 MiB)" + flag},
		{"stdin of /dev/zero", nil, []string{"inspect", "-"}, "manifest stdin is larger than the limit of 67108864 bytes"},
		{"a million levels deep", strings.NewReader(strings.Repeat("[", 1e6) + strings.Repeat("]", 1e6)), []string{"inspect", "-"},
			"nesting deeper than 512 levels"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			stdin := tc.stdin
			if tc.name == "stdin of /dev/zero" {
				f, err := os.Open("/dev/zero")
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				stdin = f
			}
			start := time.Now()
			r := runForge(t, stdin, append([]string{tc.args[0], "--store", store}, tc.args[1:]...)...)
			t.Logf("exit %d after %s, peak RSS %d MiB", r.code, time.Since(start).Round(time.Millisecond), r.maxRSS>>20)
			if r.code != 2 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit 2 and %q", r.code, r.stderr, tc.want)
			}
			// Reading stops at the limit: a few times 64 MiB at most.
			if r.maxRSS > 512<<20 {
				t.Errorf("peak RSS %d MiB, want at most 512 MiB", r.maxRSS>>20)
			}
		})
	}

	// At the limit, and under a raised one, the same manifest is fine.
	r := runForge(t, nil, "inspect", "--store", store, "--max-manifest-size", "2M", big)
	if r.code != 0 {
		t.Fatalf("inspect under --max-manifest-size 2M: exit %d\n%s", r.code, r.stderr)
	}
	r = runForge(t, nil, "inspect", "--store", store, "--max-manifest-size", strconv.Itoa(len(m)), big)
	if r.code != 0 {
		t.Fatalf("inspect of a manifest exactly --max-manifest-size long: exit %d\n%s", r.code, r.stderr)
	}
}

// forge inspect of a manifest with a 100 MB string (under a raised limit)
// takes a small multiple of the manifest's size: it took 1.7 GB, 17 times,
// when the string was non-ASCII (its json.dumps, hashed for the stage's
// ID, is three times as long) and 0.76 GB for ASCII. The bound is five
// times the manifest; it measures copies, not time.
func TestInspectLongStringMemory(t *testing.T) {
	store := storeDir(t)
	for _, tc := range []struct{ name, unit string }{{"ASCII", "a"}, {"non-ASCII", "é"}} {
		t.Run(tc.name, func(t *testing.T) {
			mf := filepath.Join(t.TempDir(), "manifest.json")
			size := writeLongManifest(t, mf, tc.unit, 100e6)
			start := time.Now()
			r := runForge(t, nil, "inspect", "--store", store, "--max-manifest-size", "200M", mf)
			t.Logf("%d-byte manifest: peak RSS %d MiB (%.1f times), %s", size, r.maxRSS>>20, float64(r.maxRSS)/float64(size), time.Since(start).Round(time.Millisecond))
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			var out struct{ Pipeline *builder.PipelineInfo }
			if err := json.Unmarshal([]byte(r.stdout), &out); err != nil || out.Pipeline == nil || len(out.Pipeline.Stages) != 1 || len(out.Pipeline.Stages[0].ID) != 64 {
				t.Fatalf("forge inspect printed %q: %v", r.stdout, err)
			}
			if limit := 5 * size; r.maxRSS > limit {
				t.Errorf("peak RSS %d MiB, want at most %d MiB (five times the manifest)", r.maxRSS>>20, limit>>20)
			}
		})
	}
}

// writeLongManifest writes a manifest whose stage has an option of n bytes
// of unit repeated, and returns the manifest's size. It writes a MiB at a
// time: forge's peak RSS as rusage reports it is at least this process's
// own peak, since forge was cloned from it (sharing its memory, as
// os/exec does) before it ran exec, and exec keeps the larger of the two.
func writeLongManifest(t *testing.T, name, unit string, n int) int64 {
	t.Helper()
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := bufio.NewWriter(f)
	w.WriteString(`{"stages": [{"name": "test.write", "options": {"path": "a", "content": "`)
	chunk := strings.Repeat(unit, (1<<20)/len(unit))
	for left := n / len(unit) * len(unit); left > 0; left -= len(chunk) {
		w.WriteString(chunk[:min(left, len(chunk))])
	}
	w.WriteString(`"}}]}`)
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}
