package sources

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// A manifest's file URLs would read any file of the host (forge runs as
// root): a wrong checksum would show the file's hash, the right one would
// put the file into an image. They are refused before anything is read
// or requested, unless the caller trusts the manifest.
func TestFetchRefusesFileURLs(t *testing.T) {
	secret := []byte("root:$6$not-for-images\n")
	path := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(path, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	srv := newServer(t, false)
	web := srv.add("/a", []byte("a"))
	tests := []struct {
		name string
		it   *Item
	}{
		{"wrong checksum", &Item{Type: Curl, Checksum: sumA, URL: "file://" + path}},          // would show the hash
		{"right checksum", &Item{Type: Curl, Checksum: sumOf(secret), URL: "file://" + path}}, // would store the file
		{"upper case", &Item{Type: Curl, Checksum: sumOf(secret), URL: "FILE://" + path}},
		{"localhost", &Item{Type: Curl, Checksum: sumOf(secret), URL: "file://localhost" + path}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			it := tt.it
			st := newStore(t)
			_, err := Fetch(context.Background(), st, sourcesOf(web, it), nil, quick(Options{}))
			if err == nil {
				t.Fatal("Fetch: no error")
			}
			var fe *FetchError
			if errors.As(err, &fe) {
				t.Fatalf("Fetch: %v; want it refused before fetching, not a FetchError", err)
			}
			for _, s := range []string{it.Checksum, it.URL, "file URLs are not allowed", "Options.AllowFileURLs"} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if it.Checksum != sumOf(secret) && strings.Contains(err.Error(), sumOf(secret)) {
				t.Errorf("error %q gives the file's hash", err)
			}
			if srv.total() != 0 || st.imports.Load() != 0 {
				t.Errorf("%d requests and %d imports before the error", srv.total(), st.imports.Load())
			}
			if _, err := st.s.Ref(RefName(sumOf(secret))); err == nil {
				t.Error("the file is stored")
			}
			tmpEmpty(t, st)
		})
	}
	// Allowed: the caller trusts the manifest.
	st := newStore(t)
	if _, err := Fetch(context.Background(), st, sourcesOf(tests[1].it), nil, quick(Options{AllowFileURLs: true})); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readStored(t, st, sumOf(secret)), secret) {
		t.Error("stored content differs")
	}
}

// A redirect to another scheme than http or https fails at once, file
// URLs allowed or not: the server would say the same again.
func TestFetchRedirectToOtherSchemeFailsAtOnce(t *testing.T) {
	srv := newServer(t, false)
	targets := map[string]string{"/to-file": "file:///etc/passwd", "/to-ftp": "ftp://example.com/pub/a"}
	srv.before = func(w http.ResponseWriter, r *http.Request, n int) bool {
		http.Redirect(w, r, targets[r.URL.Path], http.StatusFound)
		return true
	}
	for _, allow := range []bool{false, true} {
		t.Run(fmt.Sprintf("AllowFileURLs=%v", allow), func(t *testing.T) {
			var items []*Item
			for i, p := range []string{"/to-file", "/to-ftp"} {
				items = append(items, &Item{Type: Curl, Checksum: []string{sumA, sumB}[i], URL: srv.URL + p})
			}
			before := srv.total()
			st := newStore(t)
			start := time.Now()
			_, err := Fetch(context.Background(), st, sourcesOf(items...), nil, quick(Options{AllowFileURLs: allow}))
			var fe *FetchError
			if !errors.As(err, &fe) || len(fe.Items) != 2 {
				t.Fatalf("Fetch: %v; want both items to fail", err)
			}
			for i, ie := range fe.Items {
				target := targets[strings.TrimPrefix(items[i].URL, srv.URL)]
				if ie.Tries != 1 || !strings.Contains(ie.Error(), items[i].URL+": redirected to "+target+": forge follows redirects to http and https URLs only") {
					t.Errorf("item error %q after %d tries; want one try, naming the redirect", ie, ie.Tries)
				}
			}
			if n := srv.total() - before; n != 2 {
				t.Errorf("%d requests, want one per item", n)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %s", d)
			}
		})
	}
}

// endless serves a body that would fill the disk: 64 MiB (enough to be
// endless to a test's limits; a Fetch without one would store it, or
// find it mismatched), sent as it goes, without a Content-Length.
func endless(w http.ResponseWriter, r *http.Request) {
	chunk := bytes.Repeat([]byte("x"), 64<<10)
	for range 1024 {
		if _, err := w.Write(chunk); err != nil {
			return
		}
	}
}

// A download may give no more than Options.MaxItemSize: a Content-Length
// over it is refused before any data, a body passing it is cut. Neither
// is tried again, and nothing of it stays.
func TestFetchMaxItemSize(t *testing.T) {
	srv := newServer(t, false)
	const limit = 1 << 20
	exact := srv.add("/exact", bytes.Repeat([]byte("e"), limit)) // at the limit: fine
	srv.before = func(w http.ResponseWriter, r *http.Request, n int) bool {
		switch r.URL.Path {
		case "/endless":
			endless(w, r)
		case "/announced":
			w.Header().Set("Content-Length", strconv.FormatInt(limit+1, 10))
			w.Write([]byte("a start"))
		case "/huge":
			w.Header().Set("Content-Length", strconv.FormatInt(17<<30, 10))
			w.Write([]byte("a start"))
		default:
			return false
		}
		return true
	}
	endlessIt := &Item{Type: Curl, Checksum: sumA, URL: srv.URL + "/endless"}
	announced := &Item{Type: Curl, Checksum: sumB, URL: srv.URL + "/announced"}
	var progress []Progress
	st := newStore(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sum, err := Fetch(ctx, st, sourcesOf(exact, endlessIt, announced), nil,
		quick(Options{MaxItemSize: limit, Progress: func(p Progress) { progress = append(progress, p) }}))
	var fe *FetchError
	if !errors.As(err, &fe) || len(fe.Items) != 2 {
		t.Fatalf("Fetch: %v; want two items to fail", err)
	}
	wants := map[string]string{
		endlessIt.Checksum: endlessIt.URL + ": sends more than the limit of 1.0 MiB (Options.MaxItemSize)",
		announced.Checksum: announced.URL + ": announces 1048577 bytes (1.0 MiB), over the limit of 1.0 MiB (Options.MaxItemSize)",
	}
	for _, ie := range fe.Items {
		var se *SizeError
		if !errors.As(ie, &se) || se.Limit != limit || ie.Tries != 1 || !strings.Contains(ie.Error(), ie.Checksum+" from "+wants[ie.Checksum]) {
			t.Errorf("item error %q after %d tries; want a SizeError saying %q, not tried again", ie, ie.Tries, wants[ie.Checksum])
		}
	}
	if srv.count("/endless") != 1 || srv.count("/announced") != 1 {
		t.Errorf("%d and %d requests, want one each", srv.count("/endless"), srv.count("/announced"))
	}
	if sum.Fetched != 1 || !bytes.Equal(readStored(t, st, exact.Checksum), bytes.Repeat([]byte("e"), limit)) {
		t.Errorf("summary %+v; want the item of just the limit's size stored", sum)
	}
	if last := progress[len(progress)-1]; last.Bytes != limit {
		t.Errorf("progress counts %d bytes, want only the stored item's %d", last.Bytes, limit)
	}
	tmpEmpty(t, st)

	// The default limit, 16 GiB.
	huge := &Item{Type: Curl, Checksum: sumA, URL: srv.URL + "/huge"}
	_, err = Fetch(ctx, st, sourcesOf(huge), nil, quick(Options{}))
	if want := huge.URL + ": announces 18253611008 bytes (17.0 GiB), over the limit of 16.0 GiB (Options.MaxItemSize)"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Fetch: %v; want an error saying %q", err, want)
	}
	if srv.count("/huge") != 1 {
		t.Errorf("%d requests of /huge, want 1", srv.count("/huge"))
	}

	// A local file, when allowed, is held to it too.
	path := filepath.Join(t.TempDir(), "big")
	if err := os.WriteFile(path, make([]byte, limit+1), 0o600); err != nil {
		t.Fatal(err)
	}
	local := &Item{Type: Curl, Checksum: sumA, URL: "file://" + path}
	_, err = Fetch(ctx, st, sourcesOf(local), nil, quick(Options{AllowFileURLs: true, MaxItemSize: limit}))
	if want := "announces 1048577 bytes (1.0 MiB), over the limit of 1.0 MiB"; err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Fetch of a large file: %v; want an error saying %q", err, want)
	}
	tmpEmpty(t, st)
}

// xzChildren lists the xz processes whose parent is this one, alive or
// not yet reaped.
func xzChildren(t *testing.T) []string {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []string
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "(xz") {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(os.Getpid()) {
			out = append(out, strings.TrimSpace(s[:i+1])+" "+fields[0])
		}
	}
	return out
}

// Inline data may decode to no more than Options.MaxInlineSize: a few
// hundred KiB of lzma+base64 can decompress to gigabytes. Decoding stops
// as soon as it passes, xz killed and reaped.
func TestFetchMaxInlineSize(t *testing.T) {
	const limit = 1 << 20
	plain := bytes.Repeat([]byte("p"), limit+1)
	items := []*Item{
		{Type: Inline, Checksum: sumOf(plain), Encoding: EncodingBase64, Data: plain},
		{Type: Inline, Checksum: sumOf(plain[:limit]), Encoding: EncodingBase64, Data: plain[:limit]}, // at the limit: fine
	}
	var bomb *Item
	if xz, err := exec.LookPath("xz"); err == nil {
		// 1 MiB of zeros packs into a stream of about a hundred bytes; xz
		// reads streams one after another: 2048 of them are 2 GiB.
		cmd := exec.Command(xz, "--compress", "--stdout", "--format=xz")
		cmd.Stdin = bytes.NewReader(make([]byte, 1<<20))
		stream, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		bomb = &Item{Type: Inline, Checksum: sumA, Encoding: EncodingLZMABase64, Data: bytes.Repeat(stream, 2048)}
		items = append(items, bomb)
		t.Logf("%d bytes of lzma data decode to 2 GiB", len(bomb.Data))
	} else {
		t.Log("no xz: lzma+base64 not tested")
	}
	st := newStore(t)
	start := time.Now()
	sum, err := Fetch(context.Background(), st, sourcesOf(items...), nil, Options{MaxInlineSize: limit})
	d := time.Since(start)
	var fe *FetchError
	if !errors.As(err, &fe) || len(fe.Items) != len(items)-1 {
		t.Fatalf("Fetch: %v; want all but the item at the limit to fail", err)
	}
	for _, ie := range fe.Items {
		var se *SizeError
		want := "org.osbuild.inline: fetch " + ie.Checksum + ": decodes to more than the limit of 1.0 MiB (Options.MaxInlineSize)"
		if !errors.As(ie, &se) || ie.Error() != want {
			t.Errorf("item error %q; want %q", ie, want)
		}
	}
	if sum.Fetched != 1 || !bytes.Equal(readStored(t, st, items[1].Checksum), plain[:limit]) {
		t.Errorf("summary %+v; want the item at the limit stored", sum)
	}
	if left := xzChildren(t); len(left) != 0 {
		t.Errorf("xz processes left: %v", left)
	}
	if d > 10*time.Second {
		t.Errorf("took %s", d)
	}
	tmpEmpty(t, st)
}

// A server that sends just fast enough for the low-speed check still
// ends: each try has Options.ItemTimeout, and is tried again after it.
func TestFetchItemTimeout(t *testing.T) {
	srv := newServer(t, false)
	srv.before = func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.Header().Set("Content-Length", strconv.Itoa(1<<20))
		for r.Context().Err() == nil {
			if _, err := w.Write(bytes.Repeat([]byte("t"), 100)); err != nil {
				return true
			}
			w.(http.Flusher).Flush()
			time.Sleep(10 * time.Millisecond) // 10 kB/s: well above 1000 bytes/s
		}
		return true
	}
	it := &Item{Type: Curl, Checksum: sumA, URL: srv.URL + "/trickle"}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	start := time.Now()
	_, err := Fetch(ctx, newStore(t), sourcesOf(it), nil, quick(Options{ItemTimeout: 300 * time.Millisecond, Attempts: 2}))
	want := it.URL + ": not done after 300ms (Options.ItemTimeout) (tried 2 times)"
	if err == nil || !strings.HasSuffix(err.Error(), want) {
		t.Fatalf("Fetch: %v; want an error ending %q", err, want)
	}
	if srv.count("/trickle") != 2 {
		t.Errorf("%d requests, want 2", srv.count("/trickle"))
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

// The limits' defaults, and negative for none.
func TestOptionsLimits(t *testing.T) {
	f, err := newFetcher(nil, Options{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.opts.MaxItemSize != 16<<30 || f.opts.MaxInlineSize != 256<<20 || f.opts.ItemTimeout != time.Hour || f.opts.AllowFileURLs {
		t.Errorf("defaults: MaxItemSize %d, MaxInlineSize %d, ItemTimeout %s, AllowFileURLs %v", f.opts.MaxItemSize, f.opts.MaxInlineSize, f.opts.ItemTimeout, f.opts.AllowFileURLs)
	}
	f, err = newFetcher(nil, Options{MaxItemSize: -1, MaxInlineSize: -1, ItemTimeout: -1}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if f.opts.MaxItemSize != math.MaxInt64 || f.opts.MaxInlineSize != math.MaxInt64 || f.opts.ItemTimeout != math.MaxInt64 {
		t.Errorf("negative: MaxItemSize %d, MaxInlineSize %d, ItemTimeout %s; want no limits", f.opts.MaxItemSize, f.opts.MaxInlineSize, f.opts.ItemTimeout)
	}
}
