package store_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/forge-build/forge/internal/fstree"
)

// SeedEnv names the environment variable that replays a crash test run
// with the seed it logged.
const SeedEnv = "FORGE_TEST_SEED"

const (
	wantKills     = 20 // imports killed mid-run
	maxIterations = 3 * wantKills
	freshBytes    = 160 << 20 // new data each killed import writes
	stableParts   = 4
	partBytes     = 4 << 20
	maxKillDelay  = 2 * time.Second
)

// recordedRef is a ref that a completed import reported.
type recordedRef struct {
	hash string
	src  string // the tree it was imported from
}

// TestCrashSafety kills `forge store import` with SIGKILL at random moments
// (What must hold, 3). After every kill fsck must pass, every ref an import
// reported must still resolve to its hash and export equal to its source,
// and gc must leave nothing but live chunks and pack framing; at the end
// DIR/tmp is empty.
//
// Each killed import brings new data (the tree's "fresh" part is
// regenerated with a new seed every round): re-importing stored data only
// hashes, and the kills would never land while packs are written.
func TestCrashSafety(t *testing.T) {
	forgeBin(t)
	seed := uint64(time.Now().UnixNano())
	if v := os.Getenv(SeedEnv); v != "" {
		var err error
		if seed, err = strconv.ParseUint(v, 10, 64); err != nil {
			t.Fatalf("%s=%q: %v", SeedEnv, v, err)
		}
	}
	t.Logf("seed %d (rerun with %s=%d)", seed, SeedEnv, seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	tmp := fstree.DiskTempDir(t)
	s := newStore(t, tmp)
	src := filepath.Join(tmp, "src")
	parts := make([]string, stableParts)
	for i := range parts {
		parts[i] = filepath.Join(src, "stable", fmt.Sprintf("part%d", i))
		fstree.MustRandomTree(t, parts[i], uint64(100+i), partBytes)
	}
	fresh := filepath.Join(src, "fresh")
	regenerate := func(round int) {
		t.Helper()
		if err := os.RemoveAll(fresh); err != nil {
			t.Fatal(err)
		}
		fstree.MustRandomTree(t, fresh, seed+uint64(round)+1000, freshBytes)
	}

	// How long one import of a tree with new data takes bounds the kill
	// delays, so that the kills land inside imports rather than after.
	regenerate(-1)
	began := time.Now()
	s.importTree(src, "")
	window := min(maxKillDelay, time.Since(began))
	t.Logf("an uninterrupted import took %v; kill delays are drawn from [0, %v)", time.Since(began), window)
	s.ok("gc")

	refs := map[string]recordedRef{}
	partHash := map[int]string{}
	kills := 0
	for round := 0; kills < wantKills; round++ {
		if round == maxIterations {
			t.Fatalf("only %d of %d imports were killed before finishing in %d rounds", kills, round, round)
		}
		// Between kills, complete imports of unchanging trees with refs.
		if round%2 == 0 {
			p := (round / 2) % stableParts
			name := fmt.Sprintf("done-%d", round)
			h := s.importTree(parts[p], name)
			if prev, ok := partHash[p]; ok && prev != h {
				t.Fatalf("part %d imported as %s, earlier as %s", p, h, prev)
			}
			partHash[p] = h
			refs[name] = recordedRef{hash: h, src: parts[p]}
		}

		regenerate(round)
		killedRef := ""
		if round%2 == 1 {
			killedRef = fmt.Sprintf("killed-%d", round) // the kill may land while the ref is written
		}
		delay := time.Duration(rng.Int64N(int64(window)))
		killed, r := importAndKill(t, s, src, killedRef, delay)
		if killed {
			kills++
			t.Logf("round %d: killed after %v (%d/%d)", round, delay, kills, wantKills)
		} else {
			t.Logf("round %d: the import finished before the kill at %v", round, delay)
			if killedRef != "" {
				refs[killedRef] = recordedRef{hash: treeHash(t, r)} // source regenerated below: hash only
			}
		}

		if r := s.run("fsck"); r.code != 0 {
			t.Fatalf("round %d: fsck after a kill %v into an import:\n%s", round, delay, r)
		}
		listed := s.ls()
		for name, ref := range refs {
			got, ok := listed[name]
			switch {
			case !ok:
				t.Fatalf("round %d: ref %s, reported written, is gone", round, name)
			case got.Tree != ref.hash:
				t.Fatalf("round %d: ref %s points at %s, was reported as %s", round, name, got.Tree, ref.hash)
			}
			if ref.src != "" {
				s.assertExportEquals(name, ref.src)
			}
		}
		if t.Failed() {
			t.FailNow()
		}
		// A ref written by a killed import must hold a whole tree; fsck
		// checked it. Drop it so that the store stays small.
		if _, ok := listed[killedRef]; ok && killedRef != "" {
			s.ok("rm", killedRef)
			delete(refs, killedRef)
		}
		s.ok("gc")
		s.assertNoGarbage()
	}

	s.ok("gc")
	s.assertClean()
	s.assertNoGarbage()
	s.assertTmpEmpty()
	for name, ref := range refs {
		if ref.src != "" {
			s.assertExportEquals(name, ref.src)
		}
	}
}

// importAndKill starts an import and sends it SIGKILL after delay. It
// reports whether the signal ended the import; an import that finished
// first must have succeeded, and its result is returned.
func importAndKill(t *testing.T, s *testStore, src, ref string, delay time.Duration) (bool, result) {
	t.Helper()
	args := append([]string{"store", "import", "--store", s.dir}, importArgs(ref, src)...)
	ctx, cancel := context.WithTimeout(context.Background(), commandTimeout)
	defer cancel()
	cmd := forgeCommand(ctx, t, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start import: %v", err)
	}
	time.Sleep(delay)
	// The process has not been waited for, so its PID is still its own
	// even if it has exited: the signal cannot reach another process.
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil && !errors.Is(err, os.ErrProcessDone) {
		t.Fatalf("kill import: %v", err)
	}
	err := cmd.Wait()
	r := result{args: args, stdout: stdout.String(), stderr: stderr.String()}
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL {
		return true, r
	}
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		r.code = exit.ExitCode()
	}
	if err != nil {
		t.Fatalf("import failed on its own before the kill: %v\n%s", err, r)
	}
	return false, r
}
