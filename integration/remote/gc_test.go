package remote_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/remote"
)

// TestRemoteGC: a stage past the retention is condemned by one run and
// deleted, with its tree and the packs only it needed, by a later one;
// a ref's tree and a tree a host holds a lease on stay; two collections
// never run at once.
func TestRemoteGC(t *testing.T) {
	s3 := itest.StartS3(t, itest.S3Options{})
	s3.CreateBucket(t, "forge-gc")
	a, b := newHost(t, s3, "forge-gc"), newHost(t, s3, "forge-gc")
	bk := bucket(t, s3, "forge-gc")
	ctx := context.Background()

	keepSrc, stageSrc := filepath.Join(t.TempDir(), "keep"), filepath.Join(t.TempDir(), "stage")
	writeTree(t, keepSrc, 3)
	writeTree(t, stageSrc, 3) // other random content: packs of its own
	keepTree := a.importTree(keepSrc, "keep")
	stageID := strings.Repeat("ab", 32)
	stageTree := a.importTree(stageSrc, stageID)
	a.must("store", "push", "--store", a.store, "keep", stageID)
	if _, ok := keys(t, bk, "stages/")["stages/"+stageID]; !ok {
		t.Fatalf("the stage was not pushed as stages/%s", stageID)
	}
	before := keys(t, bk, "packs/")

	gc := func(args ...string) result {
		t.Helper()
		return a.run(append([]string{"store", "gc", "--store", a.store, "--remote", "shared"}, args...)...)
	}
	// Within the retention, nothing is garbage.
	if r := gc(); r.code != 0 || !strings.Contains(r.stdout, "deleted 0 objects") || !strings.Contains(r.stdout, "0 objects condemned") {
		t.Fatalf("gc: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	// A stage a host took lately stays past the retention counted from
	// its push: the pull marks it used (used/ID).
	time.Sleep(3 * time.Second)
	if r := gc("--retention", "2s", "--dry-run"); r.code != 0 || strings.Contains(r.stdout, " 0 objects condemned") {
		t.Fatalf("a stage pushed 3 s ago, retention 2 s: want it condemned\n%s%s", r.stdout, r.stderr)
	}
	if got := lastLine(b.must("store", "pull", "--store", b.store, stageID)); got != stageTree {
		t.Fatalf("pull of the stage: %s", got)
	}
	if _, ok := keys(t, bk, "used/")["used/"+stageID]; !ok {
		t.Fatalf("the pull of stage %s left no used/ marker", stageID)
	}
	if r := gc("--retention", "2s"); r.code != 0 || !strings.Contains(r.stdout, " 0 objects condemned") {
		t.Fatalf("a stage used just now, retention 2 s: want nothing condemned\n%s%s", r.stdout, r.stderr)
	}

	// Past it: condemned, not deleted.
	r := gc("--retention", "1ns", "--grace", "1ns")
	if r.code != 0 || !strings.Contains(r.stdout, "deleted 0 objects") || strings.Contains(r.stdout, "0 objects condemned") {
		t.Fatalf("first gc past the retention: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if got := lastLine(b.must("store", "pull", "--store", b.store, stageID)); got != stageTree {
		t.Fatalf("a condemned stage cannot be pulled: %s", got)
	}

	// A host reading the stage's tree holds a lease on it: kept.
	lease, _ := json.Marshal(map[string]any{"tree": stageTree, "host": "reader", "expires": time.Now().Add(time.Hour)})
	if _, err := bk.Put(ctx, "leases/reader-1", lease); err != nil {
		t.Fatal(err)
	}
	r = gc("--retention", "1ns", "--grace", "1ns")
	if r.code != 0 || !strings.Contains(r.stdout, `deleted "stages/`+stageID) {
		t.Fatalf("gc with a lease: want the stage pointer deleted, its tree kept\n%s%s", r.stdout, r.stderr)
	}
	if strings.Contains(r.stdout, "trees/") || strings.Contains(r.stdout, "packs/") {
		t.Errorf("a leased tree's objects were deleted:\n%s", r.stdout)
	}

	// The lease dropped: the tree and its own packs go (after being
	// condemned once more), the ref's stay.
	if err := bk.Delete(ctx, "leases/reader-1"); err != nil {
		t.Fatal(err)
	}
	gc("--retention", "1ns", "--grace", "1ns")
	r = gc("--retention", "1ns", "--grace", "1ns")
	if r.code != 0 || !strings.Contains(r.stdout, `deleted "trees/`+stageTree) || !strings.Contains(r.stdout, `deleted "packs/`) {
		t.Fatalf("gc after the lease: want the tree and its packs deleted\n%s%s", r.stdout, r.stderr)
	}
	after := keys(t, bk, "packs/")
	if len(after) == 0 || len(after) >= len(before) {
		t.Errorf("packs before %d, after %d: want fewer, not none", len(before), len(after))
	}
	c := newHost(t, s3, "forge-gc")
	if got := lastLine(c.must("store", "pull", "--store", c.store, "keep")); got != keepTree {
		t.Fatalf("the ref's tree after gc: %s, want %s", got, keepTree)
	}
	c.must("store", "fsck", "--store", c.store)
	if r := c.run("store", "pull", "--store", c.store, stageID); r.code == 0 {
		t.Errorf("the collected stage can still be pulled")
	}

	// A lock held by another run: refused; an expired one: taken over.
	lock, _ := json.Marshal(map[string]any{"host": "other", "token": "x", "expires": time.Now().Add(time.Hour)})
	if _, err := bk.Put(ctx, "gc/lock", lock); err != nil {
		t.Fatal(err)
	}
	if r := gc(); r.code != 1 || !strings.Contains(r.stderr, "another garbage collection holds the bucket") || !strings.Contains(r.stderr, "other") {
		t.Errorf("gc under another's lock: exit %d\n%s", r.code, r.stderr)
	}
	if r := gc("--dry-run"); r.code != 0 {
		t.Errorf("a dry run needs no lock: exit %d\n%s", r.code, r.stderr)
	}
	lock, _ = json.Marshal(map[string]any{"host": "dead", "token": "y", "expires": time.Now().Add(-time.Minute)})
	if _, err := bk.Put(ctx, "gc/lock", lock); err != nil {
		t.Fatal(err)
	}
	if r := gc(); r.code != 0 {
		t.Errorf("gc over an expired lock: exit %d\n%s", r.code, r.stderr)
	}
	if _, ok := keys(t, bk, "gc/")["gc/lock"]; ok {
		t.Errorf("gc left its lock")
	}
}

// TestRemoteGCLosesItsLock: a collection whose lock another run took over
// (it expired while the first was slow) deletes nothing. The takeover is
// staged at the moment the run asks the time before deleting.
func TestRemoteGCLosesItsLock(t *testing.T) {
	s3 := itest.StartS3(t, itest.S3Options{})
	s3.CreateBucket(t, "forge-gclock")
	a := newHost(t, s3, "forge-gclock")
	bk := bucket(t, s3, "forge-gclock")
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "stage")
	writeTree(t, src, 1)
	stageID := strings.Repeat("cd", 32)
	a.importTree(src, stageID)
	a.must("store", "push", "--store", a.store, stageID)

	r := &remote.Remote{Bucket: bk, Host: "slow"}
	opts := remote.GCOptions{Retention: time.Nanosecond, Grace: time.Nanosecond}
	// A first run condemns the stage's objects.
	if _, err := r.GC(ctx, opts); err != nil {
		t.Fatal(err)
	}
	before := keys(t, bk, "")
	calls := 0
	opts.Now = func() time.Time {
		calls++
		if calls == 2 {
			// The run listed and judged; now, before it deletes,
			// another host takes its (as if expired) lock.
			lock, _ := json.Marshal(map[string]any{"host": "other", "token": "theirs", "expires": time.Now().Add(time.Hour)})
			if _, err := bk.Put(ctx, "gc/lock", lock); err != nil {
				t.Fatal(err)
			}
		}
		return time.Now()
	}
	res, err := r.GC(ctx, opts)
	if !errors.Is(err, remote.ErrLocked) || !strings.Contains(err.Error(), "other") {
		t.Fatalf("gc whose lock was taken over: %v (deleted %d); want ErrLocked naming the other host", err, len(res.Deleted))
	}
	after := keys(t, bk, "")
	for k := range before {
		if _, ok := after[k]; !ok && k != "gc/condemned" {
			t.Errorf("%s was deleted by a run that had lost its lock", k)
		}
	}
	if calls < 2 {
		t.Fatalf("the run asked the time %d times: the takeover was not staged", calls)
	}
	// Its lock is not ours to delete: the other run's stays.
	if _, ok := keys(t, bk, "gc/")["gc/lock"]; !ok {
		t.Errorf("the run deleted the lock another run holds")
	}
}
