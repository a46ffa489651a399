package remote

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/remote/objstore"
)

// Objects of the bucket's garbage collection and of the hosts reading it.
const (
	gcLockKey      = "gc/lock"
	gcCondemnedKey = "gc/condemned"
	leasesPrefix   = "leases/"
	// usedPrefix holds a marker per stage a host took from the bucket
	// (pulled, mounted, or found there when pushing it): its time is the
	// stage's last use, which the retention counts from.
	usedPrefix = "used/"
)

// GCOptions tune a collection of the bucket.
type GCOptions struct {
	// Retention keeps stages pushed or taken by a host (used/ID) within
	// it (default 30 days); refs and fresh leases are kept whatever
	// their age.
	Retention time.Duration
	// Grace is how long an object stays condemned before a later run
	// may delete it (default 1 hour): longer than any push, so that a
	// pack pushed before its tree object, or found in the bucket and
	// used by a push, is never deleted under it.
	Grace time.Duration
	// LockTTL is how long the lock holds if this run dies (default 15
	// minutes).
	LockTTL time.Duration
	DryRun  bool
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// GCResult says what a collection found and did.
type GCResult struct {
	Objects      int // objects in the bucket
	Roots        int // refs, recent stages and fresh leases
	LiveTrees    int
	LivePacks    int
	Condemned    int      // objects condemned now (a later run may delete them)
	Deleted      []string // objects deleted now (DryRun: that would be)
	DeletedBytes int64
	// Missing are tree objects a root names that the bucket lacks.
	Missing []string
}

// lockBody is what gc/lock holds.
type lockBody struct {
	Host    string    `json:"host"`
	Token   string    `json:"token"`
	Expires time.Time `json:"expires"`
}

// ErrLocked says another collection holds the bucket.
var ErrLocked = errors.New("another garbage collection holds the bucket")

// lease is what leases/ID holds: a tree a host is reading.
type lease struct {
	Tree    string    `json:"tree"`
	Host    string    `json:"host"`
	Expires time.Time `json:"expires"`
}

// leaseTTL is how long a pull's lease protects its tree.
const leaseTTL = 2 * time.Hour

// takeLease writes a lease on tree and returns a func that drops it.
func (r *Remote) takeLease(ctx context.Context, tree digest.Hash) (func(), error) {
	key := leasesPrefix + r.Host + "-" + token()
	b, _ := json.Marshal(lease{Tree: tree.String(), Host: r.Host, Expires: time.Now().Add(leaseTTL)})
	if _, err := r.Bucket.PutIfAbsent(ctx, key, b); err != nil {
		return nil, fmt.Errorf("lease %s: %w", tree.Short(), err)
	}
	return func() {
		// A lease that cannot be dropped expires.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		r.Bucket.Delete(ctx, key)
	}, nil
}

// holdLease takes a lease on tree and renews it until the returned func
// is called, which drops it.
func (r *Remote) holdLease(ctx context.Context, tree digest.Hash) (func(), error) {
	drop, err := r.takeLease(ctx, tree)
	if err != nil {
		return nil, err
	}
	lctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(leaseTTL / 4)
		defer t.Stop()
		for {
			select {
			case <-lctx.Done():
				drop()
				return
			case <-t.C:
				// A new lease, then the old one dropped.
				if next, err := r.takeLease(lctx, tree); err == nil {
					drop()
					drop = next
				}
			}
		}
	}()
	return func() { stop(); <-done }, nil
}

func token() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// GC deletes what nothing in the bucket needs, in two phases: an object
// no root reaches is condemned (listed in gc/condemned with the time),
// and deleted by a later run once it has been condemned for opts.Grace
// and is still unreached. Roots are refs, stages pushed or taken by a host
// within opts.Retention and unexpired leases; a root's tree object names the
// packs it needs. One collection runs at a time (gc/lock, with an
// expiry); another one gets ErrLocked.
func (r *Remote) GC(ctx context.Context, opts GCOptions) (GCResult, error) {
	var res GCResult
	if opts.Retention <= 0 {
		opts.Retention = 30 * 24 * time.Hour
	}
	if opts.Grace <= 0 {
		opts.Grace = time.Hour
	}
	if opts.LockTTL <= 0 {
		opts.LockTTL = 15 * time.Minute
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	now := opts.Now()
	// holdLock checks that the lock is still this run's and extends it:
	// before anything is deleted, and every deleteBatch deletions, so
	// that a run slower than LockTTL never deletes after another run took
	// its expired lock over.
	holdLock := func() error { return nil }
	if !opts.DryRun {
		lk, err := r.lock(ctx, now, now.Add(opts.LockTTL))
		if err != nil {
			return res, err
		}
		defer lk.unlock()
		holdLock = func() error { return lk.extend(ctx, opts.Now().Add(opts.LockTTL)) }
	}

	all, err := r.listAll(ctx)
	if err != nil {
		return res, err
	}
	res.Objects = len(all)
	live, err := r.liveSet(ctx, all, now, opts, &res)
	if err != nil {
		return res, err
	}

	// Phase two: what was condemned long enough ago and is still
	// unreached goes; what is unreached now is condemned.
	condemned, err := r.loadCondemned(ctx)
	if err != nil {
		return res, err
	}
	next := map[string]time.Time{}
	var due []string
	for key, o := range all {
		if live[key] || !collectable(key) {
			continue
		}
		since, ok := condemned[key]
		if !ok {
			since = now
		}
		if ok && now.Sub(since) >= opts.Grace {
			due = append(due, key)
			res.DeletedBytes += o.Size
			continue
		}
		next[key] = since
	}
	res.Condemned = len(next)
	// Pointers first, then trees, then packs: a reader never finds a
	// pointer to a deleted tree, nor a tree whose packs are gone.
	sort.Slice(due, func(i, j int) bool {
		if ri, rj := deleteRank(due[i]), deleteRank(due[j]); ri != rj {
			return ri < rj
		}
		return due[i] < due[j]
	})
	if opts.DryRun {
		res.Deleted = due
		return res, nil
	}
	if err := r.saveCondemned(ctx, next); err != nil {
		return res, err
	}
	// Just before deleting, the roots again: a push or pull that began
	// during this run may have written a pointer, tree object or lease
	// that reaches what was unreached at the first listing.
	if len(due) > 0 {
		again, err := r.listAll(ctx)
		if err != nil {
			return res, err
		}
		var scratch GCResult
		liveNow, err := r.liveSet(ctx, again, opts.Now(), opts, &scratch)
		if err != nil {
			return res, err
		}
		kept := due[:0]
		for _, key := range due {
			if !liveNow[key] {
				kept = append(kept, key)
			}
		}
		due = kept
	}
	res.Deleted = due
	for i, key := range due {
		if i%deleteBatch == 0 {
			if err := holdLock(); err != nil {
				res.Deleted = due[:i]
				return res, err
			}
		}
		if err := r.Bucket.Delete(ctx, key); err != nil {
			res.Deleted = due[:i]
			return res, err
		}
	}
	return res, nil
}

// deleteBatch is how many deletions go between two checks of the lock.
const deleteBatch = 500

// listAll lists every object of the bucket under the remote's prefix.
func (r *Remote) listAll(ctx context.Context) (map[string]objstore.Object, error) {
	all := map[string]objstore.Object{}
	err := r.Bucket.List(ctx, "", func(o objstore.Object) error { all[o.Key] = o; return nil })
	return all, err
}

// liveSet is what the roots among all reach: the roots themselves, the
// tree objects they name and the packs those list.
func (r *Remote) liveSet(ctx context.Context, all map[string]objstore.Object, now time.Time, opts GCOptions, res *GCResult) (map[string]bool, error) {
	// The roots, and the trees they name.
	live := map[string]bool{}
	var trees []digest.Hash
	root := func(key string, tree digest.Hash) {
		live[key] = true
		res.Roots++
		trees = append(trees, tree)
	}
	for key, o := range all {
		switch {
		case strings.HasPrefix(key, refsPrefix):
			b, _, err := r.Bucket.Get(ctx, key)
			if errors.Is(err, objstore.ErrNotFound) {
				continue // removed since the listing
			}
			if err != nil {
				return nil, err
			}
			h, err := decodePointer(key, b)
			if err != nil {
				return nil, err
			}
			root(key, h)
		case strings.HasPrefix(key, stagesPrefix):
			// Its last use: when it was pushed, or later when a host
			// took it (used/ID). A server that gives no time keeps
			// the stage: a missing date must not read as "ages ago".
			id := strings.TrimPrefix(key, stagesPrefix)
			last := o.LastModified
			used, hasUsed := all[usedKey(id)]
			if hasUsed && used.LastModified.After(last) {
				last = used.LastModified
			}
			if !last.IsZero() && now.Sub(last) > opts.Retention {
				continue // its marker goes with it
			}
			b, _, err := r.Bucket.Get(ctx, key)
			if errors.Is(err, objstore.ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			h, err := decodePointer(key, b)
			if err != nil {
				return nil, err
			}
			root(key, h)
			if hasUsed {
				live[usedKey(id)] = true
			}
		case strings.HasPrefix(key, leasesPrefix):
			b, _, err := r.Bucket.Get(ctx, key)
			if errors.Is(err, objstore.ErrNotFound) {
				continue // dropped meanwhile
			}
			if err != nil {
				return nil, err
			}
			var l lease
			if json.Unmarshal(b, &l) != nil || !l.Expires.After(now) || !isHex64(l.Tree) {
				continue
			}
			h, _ := digest.Parse(l.Tree)
			root(key, h)
		}
	}
	seenTree := map[digest.Hash]bool{}
	for _, t := range trees {
		if seenTree[t] {
			continue
		}
		seenTree[t] = true
		key := treeKey(t)
		if _, ok := all[key]; !ok {
			res.Missing = append(res.Missing, key)
			continue
		}
		b, _, err := r.Bucket.Get(ctx, key)
		if err != nil {
			return nil, err
		}
		obj, _, err := decodeTreeObject(t, b)
		if err != nil {
			// Which packs a damaged tree object needs is unknown:
			// nothing may be deleted until it is dealt with.
			return nil, fmt.Errorf("garbage collection stopped, nothing deleted: %w", err)
		}
		live[key] = true
		res.LiveTrees++
		for _, p := range obj.Packs {
			if !live[packKey(p.Hash)] {
				live[packKey(p.Hash)] = true
				res.LivePacks++
			}
		}
	}

	return live, nil
}

// collectable: GC's own objects and refs are never garbage.
func collectable(key string) bool {
	for _, p := range []string{packsPrefix, treesPrefix, stagesPrefix, leasesPrefix, usedPrefix} {
		if strings.HasPrefix(key, p) {
			return true
		}
	}
	return false
}

func deleteRank(key string) int {
	switch {
	case strings.HasPrefix(key, stagesPrefix), strings.HasPrefix(key, leasesPrefix), strings.HasPrefix(key, usedPrefix):
		return 0
	case strings.HasPrefix(key, treesPrefix):
		return 1
	}
	return 2
}

// gcLock is gc/lock as this run holds it.
type gcLock struct {
	r    *Remote
	mine lockBody
}

// lock takes gc/lock until expires, taking over one that expired.
func (r *Remote) lock(ctx context.Context, now, expires time.Time) (*gcLock, error) {
	mine := lockBody{Host: r.Host, Token: token(), Expires: expires}
	body, _ := json.Marshal(mine)
	_, err := r.Bucket.PutIfAbsent(ctx, gcLockKey, body)
	if errors.Is(err, objstore.ErrPrecondition) {
		cur, etag, gerr := r.Bucket.Get(ctx, gcLockKey)
		if gerr != nil {
			return nil, gerr
		}
		var held lockBody
		if json.Unmarshal(cur, &held) == nil && held.Expires.After(now) {
			return nil, fmt.Errorf("%w: host %q until %s", ErrLocked, held.Host, held.Expires.Format(time.RFC3339))
		}
		// Expired (its runner died): take it over, unless another run
		// does first.
		if _, err = r.Bucket.PutIfMatch(ctx, gcLockKey, body, etag); errors.Is(err, objstore.ErrPrecondition) {
			return nil, fmt.Errorf("%w: another run took over its expired lock", ErrLocked)
		}
	}
	if err != nil {
		return nil, err
	}
	return &gcLock{r: r, mine: mine}, nil
}

// extend checks that gc/lock is still this run's and moves its expiry to
// expires, by compare-and-swap: a run whose lock another run took over
// (it expired while this one was slow) learns so here, before it
// deletes anything more.
func (l *gcLock) extend(ctx context.Context, expires time.Time) error {
	cur, etag, err := l.r.Bucket.Get(ctx, gcLockKey)
	if err != nil {
		return fmt.Errorf("garbage collection stopped: its lock: %w", err)
	}
	var held lockBody
	if json.Unmarshal(cur, &held) != nil || held.Token != l.mine.Token {
		return fmt.Errorf("garbage collection stopped: %w: host %q took over this run's lock (it expired)", ErrLocked, held.Host)
	}
	next := l.mine
	next.Expires = expires
	body, _ := json.Marshal(next)
	if _, err := l.r.Bucket.PutIfMatch(ctx, gcLockKey, body, etag); err != nil {
		if errors.Is(err, objstore.ErrPrecondition) {
			return fmt.Errorf("garbage collection stopped: %w: another run took over this run's lock", ErrLocked)
		}
		return fmt.Errorf("garbage collection stopped: extending its lock: %w", err)
	}
	l.mine = next
	return nil
}

// unlock deletes gc/lock if it is still this run's.
func (l *gcLock) unlock() {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	cur, _, err := l.r.Bucket.Get(ctx, gcLockKey)
	var held lockBody
	if err == nil && json.Unmarshal(cur, &held) == nil && held.Token == l.mine.Token {
		l.r.Bucket.Delete(ctx, gcLockKey)
	}
}

type condemnedBody struct {
	Objects map[string]time.Time `json:"objects"`
}

func (r *Remote) loadCondemned(ctx context.Context) (map[string]time.Time, error) {
	b, _, err := r.Bucket.Get(ctx, gcCondemnedKey)
	if errors.Is(err, objstore.ErrNotFound) {
		return map[string]time.Time{}, nil
	}
	if err != nil {
		return nil, err
	}
	var c condemnedBody
	if err := json.Unmarshal(b, &c); err != nil {
		// A damaged list condemns everything anew: a later run deletes.
		return map[string]time.Time{}, nil
	}
	if c.Objects == nil {
		c.Objects = map[string]time.Time{}
	}
	return c.Objects, nil
}

func (r *Remote) saveCondemned(ctx context.Context, objects map[string]time.Time) error {
	b, err := json.Marshal(condemnedBody{Objects: objects})
	if err != nil {
		return err
	}
	_, err = r.Bucket.Put(ctx, gcCondemnedKey, b)
	return err
}
