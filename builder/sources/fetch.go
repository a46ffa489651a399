package sources

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/daemon/client"
)

// Options tune Fetch. The zero value is usable.
type Options struct {
	// Parallel is how many items are fetched at once. Default 8.
	Parallel int
	// Attempts is how many times a download is tried before its item
	// fails, as osbuild's curl source tries 10 times. Default 10.
	Attempts int
	// Backoff is the wait after the first failed try; it doubles after
	// each further one, up to 8 s. Default 500 ms.
	Backoff time.Duration
	// TempDir is where items are written until the daemon has stored
	// them, in a directory sources-* of each Fetch's own; the daemon must
	// be able to read there. Default: the store's tmp/ (on the store's
	// disk). A Fetch holds an flock on its directory for its whole life,
	// and every Fetch starts by removing the sources-* directories that
	// no one holds: what fetches killed before they could clean up left.
	TempDir string
	// AllowFileURLs lets curl items name file URLs (file:///path, read
	// from this host). Off by default: forge runs as root, and a file
	// URL of a manifest would read any file of the host into a build
	// (and its hash into a mismatch error). Set it only for manifests
	// you trust as you would a script run as root. Without it, an item
	// with a URL that is not http or https fails Fetch before anything
	// is fetched.
	AllowFileURLs bool
	// MaxItemSize is the most bytes a download may give. A response
	// whose Content-Length is larger is refused at once; a body that
	// passes it is cut and fails. Neither is tried again. Default
	// 16 GiB; negative: no limit.
	MaxItemSize int64
	// MaxInlineSize is the most bytes an inline item may decode to
	// (lzma+base64 data can decompress to a thousand times its size):
	// decoding stops and fails as soon as it passes. Default 256 MiB;
	// negative: no limit.
	MaxInlineSize int64
	// ItemTimeout bounds each try of a download as a whole: a server that
	// sends just fast enough to pass the low-speed check (1000 bytes/s
	// for 30 s, as osbuild's curl source) still ends. A try that takes
	// longer fails and is tried again. Default 1 h; negative: no limit.
	ItemTimeout time.Duration
	// Refs are the store's refs, when the caller has just listed them:
	// Fetch then does not list them again. Nil: Fetch lists them.
	Refs []client.RefInfo
	// UserAgent is sent with every request. Default "forge (Linux.MACHINE)".
	UserAgent string
	// Progress, if set, is called when an item is done and about every
	// 250 ms while data arrives; never by two goroutines at once.
	Progress func(Progress)
	// Logf, if set, gets a line for each item fetched, each failed try and
	// each directory of a killed fetch removed.
	Logf func(format string, args ...any)
}

// The defaults of Options' limits.
const (
	DefaultMaxItemSize   int64 = 16 << 30
	DefaultMaxInlineSize int64 = 256 << 20
	DefaultItemTimeout         = time.Hour
)

// Progress counts a Fetch's work so far.
type Progress struct {
	Items  int   // items to fetch: those wanted and not stored
	Done   int   // of those, stored now
	Failed int   // of those, given up
	Bytes  int64 // content received or decoded (a failed try's no longer counts)
}

// Summary says what a Fetch did.
type Summary struct {
	Wanted  int   // distinct checksums wanted
	Stored  int   // of those, in the store already
	Fetched int   // downloaded or decoded, verified and stored now
	Failed  int   // given up
	Bytes   int64 // content of the items fetched
	Retries int   // tries that failed and were tried again
	Elapsed time.Duration
}

// String is a line to print: "sources: 3 wanted, 1 stored already, 2
// fetched (1.2 MiB in 0.4s)".
func (s Summary) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "sources: %d wanted, %d stored already, %d fetched", s.Wanted, s.Stored, s.Fetched)
	if s.Fetched > 0 || s.Failed > 0 {
		fmt.Fprintf(&b, " (%s in %s", humanBytes(s.Bytes), s.Elapsed.Round(time.Millisecond))
		switch s.Retries {
		case 0:
		case 1:
			b.WriteString(", 1 retry")
		default:
			fmt.Fprintf(&b, ", %d retries", s.Retries)
		}
		b.WriteString(")")
	}
	if s.Failed > 0 {
		fmt.Fprintf(&b, ", %d failed", s.Failed)
	}
	return b.String()
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// ItemError is why one item could not be fetched.
type ItemError struct {
	Checksum string
	Type     string // Curl or Inline
	URL      string // Curl: where from
	Tries    int    // downloads tried
	Err      error
}

func (e *ItemError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: fetch %s", e.Type, e.Checksum)
	if e.URL != "" {
		fmt.Fprintf(&b, " from %s", e.URL)
	}
	fmt.Fprintf(&b, ": %v", e.Err)
	if e.Tries > 1 {
		fmt.Fprintf(&b, " (tried %d times)", e.Tries)
	}
	return b.String()
}

func (e *ItemError) Unwrap() error { return e.Err }

// MismatchError is content whose checksum is not the item's.
type MismatchError struct {
	Want, Got string // checksums: the item's, and the content's
}

func (e *MismatchError) Error() string {
	return fmt.Sprintf("checksum mismatch: want %s, got %s", e.Want, e.Got)
}

// FetchError lists the items a Fetch could not fetch, by checksum.
type FetchError struct {
	Items []*ItemError
}

// maxListed is the most items a FetchError's message lists.
const maxListed = 20

func (e *FetchError) Error() string {
	lines := make([]string, 0, min(len(e.Items), maxListed)+1)
	for i, it := range e.Items {
		if i == maxListed {
			lines = append(lines, fmt.Sprintf("and %d more items", len(e.Items)-maxListed))
			break
		}
		lines = append(lines, it.Error())
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives errors.Is and errors.As every item's error.
func (e *FetchError) Unwrap() []error {
	out := make([]error, len(e.Items))
	for i, it := range e.Items {
		out[i] = it
	}
	return out
}

// ErrNoSource is what a wanted checksum no source provides fails with.
var ErrNoSource = errors.New("no source provides it")

// Fetch makes sure that the store st serves holds every wanted checksum
// (nil: every item of srcs) under its ref, RefName(checksum). An item
// stored already costs nothing; the others are downloaded (curl: HTTP or
// HTTPS URLs, and file URLs when opts.AllowFileURLs; opts.Parallel at
// once, each tried up to opts.Attempts times, within opts.MaxItemSize and
// opts.ItemTimeout) or decoded (inline, within opts.MaxInlineSize),
// written to a new file whose checksum is computed as it is written, and
// imported when it matches. Nothing of an item whose checksum does not
// match is kept. Items that are ready together are imported together
// (ImportRequest.SubRefs: one pack, one commit), each still a tree of its
// own under its own ref.
//
// Fetch first removes what fetches killed before they could clean up
// left in the temporary directory (see Options.TempDir). A wanted
// checksum that is malformed or that no source provides fails Fetch
// before anything is fetched, as does an item Fetch cannot or may not
// fetch at all (a URL scheme, a secrets provider it does not support).
// Items that fail after that do not stop the others: the error is then a
// *FetchError listing them, and what was fetched stays stored.
func Fetch(ctx context.Context, st Store, srcs *Sources, want []string, opts Options) (Summary, error) {
	start := time.Now()
	if srcs == nil {
		srcs = &Sources{}
	}
	if want == nil {
		want = srcs.Checksums()
	}
	want = dedup(want)
	sum := Summary{Wanted: len(want)}
	var bad []error
	for _, c := range want {
		if err := ValidChecksum(c); err != nil {
			bad = append(bad, err)
		} else if srcs.Items[c] == nil {
			bad = append(bad, fmt.Errorf("%s: %w", c, ErrNoSource))
		}
	}
	if len(bad) > 0 {
		if len(bad) > maxListed {
			bad = append(bad[:maxListed], fmt.Errorf("and %d more", len(bad)-maxListed))
		}
		return sum, fmt.Errorf("sources: wanted: %w", errors.Join(bad...))
	}

	// Where this fetch writes, and what dead ones left there. A Fetch with
	// nothing to fetch needs no directory: it only sweeps when it can.
	tmp := opts.TempDir
	var tmpErr error
	if tmp == "" {
		if ping, err := st.Ping(ctx); err != nil {
			tmpErr = fmt.Errorf("sources: %w", err)
		} else {
			tmp = filepath.Join(ping.Store, "tmp")
		}
	}
	if tmpErr == nil {
		sweep(tmp, opts.Logf)
	}

	refs := opts.Refs
	if refs == nil {
		var err error
		if refs, err = st.RefNames(ctx); err != nil {
			return sum, fmt.Errorf("sources: list the store's refs: %w", err)
		}
	}
	stored := map[string]bool{}
	for _, r := range refs {
		if strings.HasPrefix(r.Name, RefPrefix) {
			stored[r.Name] = true
		}
	}
	var todo []*Item
	for _, c := range want {
		if stored[RefName(c)] {
			sum.Stored++
		} else {
			todo = append(todo, srcs.Items[c])
		}
	}
	if len(todo) == 0 {
		sum.Elapsed = time.Since(start)
		return sum, nil
	}
	if tmpErr != nil {
		return sum, tmpErr
	}

	f, err := newFetcher(st, opts, todo)
	if err != nil {
		return sum, err
	}
	defer func() {
		for _, c := range f.clients {
			c.CloseIdleConnections()
		}
	}()
	work, lock, err := newWorkDir(tmp)
	if err != nil {
		if errors.Is(err, os.ErrPermission) && opts.TempDir == "" {
			err = fmt.Errorf("%w (Options.TempDir chooses another directory the daemon can read)", err)
		}
		return sum, fmt.Errorf("sources: %w", err)
	}
	f.work = work
	defer func() {
		// Removed before it is unlocked: a sweep never sees it half gone.
		if err := os.RemoveAll(work); err != nil {
			f.opts.Logf("remove %s: %v", work, err)
		}
		lock.Close()
	}()

	errs := f.run(ctx, todo)
	f.report(true)
	sum.Fetched, sum.Failed = int(f.done.Load()), len(errs)
	sum.Bytes, sum.Retries = f.fetchedBytes.Load(), int(f.retries.Load())
	sum.Elapsed = time.Since(start)
	if err := ctx.Err(); err != nil {
		return sum, err
	}
	if len(errs) > 0 {
		sort.Slice(errs, func(i, j int) bool { return errs[i].Checksum < errs[j].Checksum })
		return sum, &FetchError{Items: errs}
	}
	return sum, nil
}

func dedup(in []string) []string {
	seen := make(map[string]bool, len(in))
	out := make([]string, 0, len(in))
	for _, c := range in {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	return out
}

// fetcher is one Fetch's downloads.
type fetcher struct {
	st      Store
	opts    Options
	work    string                     // this fetch's directory under the temporary directory, locked
	clients map[transport]*http.Client // by the TLS settings items ask for

	items        int
	done, failed atomic.Int32
	bytes        atomic.Int64 // received or decoded, counted back on a failed try
	fetchedBytes atomic.Int64 // of the items stored
	retries      atomic.Int32

	reportMu   sync.Mutex
	lastReport time.Time
}

func newFetcher(st Store, opts Options, todo []*Item) (*fetcher, error) {
	if opts.Parallel <= 0 {
		opts.Parallel = 8
	}
	if opts.Attempts <= 0 {
		opts.Attempts = 10
	}
	if opts.Backoff <= 0 {
		opts.Backoff = 500 * time.Millisecond
	}
	if opts.UserAgent == "" {
		opts.UserAgent = defaultUserAgent()
	}
	if opts.Logf == nil {
		opts.Logf = func(string, ...any) {}
	}
	opts.MaxItemSize = limitOr(opts.MaxItemSize, DefaultMaxItemSize)
	opts.MaxInlineSize = limitOr(opts.MaxInlineSize, DefaultMaxInlineSize)
	opts.ItemTimeout = time.Duration(limitOr(int64(opts.ItemTimeout), int64(DefaultItemTimeout)))
	f := &fetcher{st: st, opts: opts, clients: map[transport]*http.Client{}, items: len(todo)}
	// Everything that can fail before a download does, for every item:
	// a fetch that cannot succeed should not start.
	var bad []string
	for _, it := range todo {
		if it.Type != Curl {
			continue
		}
		tr, err := transportFor(it, opts.AllowFileURLs)
		if err == nil {
			if _, ok := f.clients[tr]; !ok {
				var c *http.Client
				if c, err = tr.client(opts.Parallel); err == nil {
					f.clients[tr] = c
				}
			}
		}
		if err != nil {
			bad = append(bad, (&ItemError{Checksum: it.Checksum, Type: it.Type, URL: it.URL, Err: err}).Error())
		}
	}
	if len(bad) > 0 {
		if len(bad) > maxListed {
			bad = append(bad[:maxListed], fmt.Sprintf("and %d more items", len(bad)-maxListed))
		}
		return nil, fmt.Errorf("sources: cannot fetch:\n%s", strings.Join(bad, "\n"))
	}
	return f, nil
}

// limitOr is a limit of Options: def for 0, none (the largest int64)
// for a negative one.
func limitOr(v, def int64) int64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return math.MaxInt64
	}
	return v
}

// maxBatch is the most items one import stores.
const maxBatch = 512

// fetched is an item written and verified, waiting to be imported: its
// file is dir/<checksum>.
type fetched struct {
	it    *Item
	dir   string
	size  int64
	tries int
}

// run fetches the items, opts.Parallel at once, and returns the failures.
// Workers download (or decode) and verify; one importer stores what they
// have finished, as many items as are ready in one import (one pack, one
// commit: a commit's syncs cost more than a small file's download).
func (f *fetcher) run(ctx context.Context, todo []*Item) []*ItemError {
	jobs := make(chan *Item)
	ready := make(chan fetched, len(todo))
	var mu sync.Mutex
	var errs []*ItemError
	fail := func(e *ItemError) {
		f.failed.Add(1)
		if ctx.Err() == nil {
			mu.Lock()
			errs = append(errs, e)
			mu.Unlock()
		}
		f.report(true)
	}
	var imported sync.WaitGroup
	imported.Go(func() {
		for first := range ready {
			batch := []fetched{first}
		more:
			for len(batch) < maxBatch {
				select {
				case r, ok := <-ready:
					if !ok {
						break more
					}
					batch = append(batch, r)
				default:
					break more
				}
			}
			f.store(ctx, batch, fail)
		}
	})
	var workers sync.WaitGroup
	for range min(f.opts.Parallel, len(todo)) {
		workers.Go(func() {
			for it := range jobs {
				r, err := f.fetch(ctx, it)
				if err != nil {
					fail(err)
					continue
				}
				ready <- r
			}
		})
	}
feed:
	for _, it := range todo {
		select {
		case jobs <- it:
		case <-ctx.Done():
			break feed
		}
	}
	close(jobs)
	workers.Wait()
	close(ready)
	imported.Wait()
	return errs
}

// fetch downloads or decodes one item into a directory of its own, and
// verifies it.
func (f *fetcher) fetch(ctx context.Context, it *Item) (fetched, *ItemError) {
	fail := func(tries int, err error) (fetched, *ItemError) {
		return fetched{}, &ItemError{Checksum: it.Checksum, Type: it.Type, URL: it.URL, Tries: tries, Err: err}
	}
	dir, err := os.MkdirTemp(f.work, "item-")
	if err != nil {
		return fail(0, err)
	}
	path := filepath.Join(dir, it.Checksum)
	var size int64
	tries := 1
	if it.Type == Curl {
		size, tries, err = f.download(ctx, it, path)
	} else {
		if size, err = f.decode(ctx, it, path); err != nil {
			f.bytes.Add(-size)
		}
	}
	if err != nil {
		os.RemoveAll(dir) // nothing of it stays
		return fail(tries, err)
	}
	return fetched{it: it, dir: dir, size: size, tries: tries}, nil
}

// store imports a batch of fetched items in one import: each item's
// directory, moved into a new directory under its checksum, becomes a
// tree of its own with its ref (ImportRequest.SubRefs).
func (f *fetcher) store(ctx context.Context, batch []fetched, fail func(*ItemError)) {
	failAll := func(items []fetched, err error) {
		for _, r := range items {
			f.bytes.Add(-r.size)
			fail(&ItemError{Checksum: r.it.Checksum, Type: r.it.Type, URL: r.it.URL, Tries: r.tries, Err: err})
		}
	}
	dir, err := os.MkdirTemp(f.work, "batch-")
	if err != nil {
		failAll(batch, err)
		return
	}
	defer os.RemoveAll(dir)
	subRefs := make(map[string]client.Path, len(batch))
	var ok []fetched
	for _, r := range batch {
		sub := filepath.Join(dir, r.it.Checksum)
		err := os.Rename(r.dir, sub)
		if err == nil {
			err = normalize(sub, filepath.Join(sub, r.it.Checksum))
		}
		if err != nil {
			os.RemoveAll(r.dir)
			failAll([]fetched{r}, err)
			continue
		}
		subRefs[RefName(r.it.Checksum)] = client.Path(r.it.Checksum)
		ok = append(ok, r)
	}
	if len(ok) == 0 {
		return
	}
	if _, err := f.st.Import(ctx, client.ImportRequest{Path: client.Path(dir), SubRefs: subRefs}, nil); err != nil {
		failAll(ok, fmt.Errorf("store: %w", err))
		return
	}
	for _, r := range ok {
		f.done.Add(1)
		f.fetchedBytes.Add(r.size)
		if r.it.Type == Curl {
			f.opts.Logf("downloaded %s (%s)", r.it.URL, humanBytes(r.size))
		} else {
			f.opts.Logf("decoded %s (%s)", r.it.Checksum, humanBytes(r.size))
		}
	}
	f.report(true)
}

// epoch is the mtime of stored items and of their directories: the same
// file makes the same tree in every store.
var epoch = time.Unix(0, 0)

// normalize gives an item's file and directory the metadata every stored
// item has: 0644 and 0755, root:root (when we are root), mtime 0.
func normalize(dir, file string) error {
	for _, p := range []struct {
		path string
		mode os.FileMode
	}{{file, 0o644}, {dir, 0o755}} {
		if err := os.Chmod(p.path, p.mode); err != nil {
			return err
		}
		if err := os.Lchown(p.path, 0, 0); err != nil && !(errors.Is(err, os.ErrPermission) && os.Geteuid() != 0) {
			return err
		}
		if err := os.Chtimes(p.path, epoch, epoch); err != nil {
			return err
		}
	}
	return nil
}

// report calls the Progress callback: always when forced (an item is
// done), else at most every 250 ms.
func (f *fetcher) report(force bool) {
	if f.opts.Progress == nil {
		return
	}
	f.reportMu.Lock()
	defer f.reportMu.Unlock()
	now := time.Now()
	if !force && now.Sub(f.lastReport) < 250*time.Millisecond {
		return
	}
	f.lastReport = now
	f.opts.Progress(Progress{Items: f.items, Done: int(f.done.Load()), Failed: int(f.failed.Load()), Bytes: f.bytes.Load()})
}

func defaultUserAgent() string {
	var u unix.Utsname
	machine := "unknown"
	if unix.Uname(&u) == nil {
		machine = unix.ByteSliceToString(u.Machine[:])
	}
	return "forge (Linux." + machine + ")"
}
