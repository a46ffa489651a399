package sources

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/daemon/client"
)

// casStore serves Fetch from a store opened in the test: the daemon's
// calls, without the daemon.
type casStore struct {
	s       *cas.Store
	imports atomic.Int32
}

func (c *casStore) Ping(context.Context) (client.PingResult, error) {
	return client.PingResult{PID: os.Getpid(), Store: c.s.Dir()}, nil
}

func (c *casStore) RefNames(context.Context) ([]client.RefInfo, error) {
	refs, err := c.s.Refs()
	out := make([]client.RefInfo, len(refs))
	for i, r := range refs {
		out[i] = client.RefInfo{Name: r.Name, Tree: r.Tree.String(), LastUsed: r.LastUsed}
	}
	return out, err
}

func (c *casStore) Import(ctx context.Context, req client.ImportRequest, _ func(client.Progress)) (client.ImportResult, error) {
	c.imports.Add(1)
	subRefs := map[string]string{}
	for r, p := range req.SubRefs {
		subRefs[r] = string(p)
	}
	res, err := c.s.Import(ctx, string(req.Path), cas.ImportOptions{Refs: req.Refs, SubRefs: subRefs})
	return client.ImportResult{Tree: res.Tree.String(), Bytes: res.Bytes}, err
}

func newStore(t *testing.T) *casStore {
	t.Helper()
	s, err := cas.Open(filepath.Join(t.TempDir(), "store"), cas.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &casStore{s: s}
}

func sumOf(data []byte) string {
	h := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(h[:])
}

func content(i int) []byte {
	return bytes.Repeat([]byte(fmt.Sprintf("file %d\n", i)), 1000*(i+1))
}

// server serves files by path, counting requests; a handler may be put
// before it for some paths.
type server struct {
	*httptest.Server
	mu       sync.Mutex
	files    map[string][]byte
	requests map[string]int
	inFlight int
	maxIn    int
	delay    time.Duration
	// before, if set, may answer a request itself (it returns true).
	before func(w http.ResponseWriter, r *http.Request, n int) bool
}

func newServer(t *testing.T, tlsServer bool) *server {
	s := &server{files: map[string][]byte{}, requests: map[string]int{}}
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests[r.URL.Path]++
		n := s.requests[r.URL.Path]
		s.inFlight++
		s.maxIn = max(s.maxIn, s.inFlight)
		data, ok := s.files[r.URL.Path]
		before, delay := s.before, s.delay
		s.mu.Unlock()
		defer func() {
			s.mu.Lock()
			s.inFlight--
			s.mu.Unlock()
		}()
		time.Sleep(delay)
		if before != nil && before(w, r, n) {
			return
		}
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Write(data)
	})
	if tlsServer {
		s.Server = httptest.NewTLSServer(h)
	} else {
		s.Server = httptest.NewServer(h)
	}
	t.Cleanup(s.Close)
	return s
}

// add serves data at path and returns a curl item for it.
func (s *server) add(path string, data []byte) *Item {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.files[path] = data
	return &Item{Type: Curl, Checksum: sumOf(data), URL: s.URL + path}
}

// count is how many requests path had.
func (s *server) count(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[path]
}

func (s *server) total() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, c := range s.requests {
		n += c
	}
	return n
}

func sourcesOf(items ...*Item) *Sources {
	s := &Sources{Items: map[string]*Item{}}
	for _, it := range items {
		s.Items[it.Checksum] = it
	}
	return s
}

// readStored reads the file of a stored item back, and checks its
// metadata and its tree's.
func readStored(t *testing.T, st *casStore, checksum string) []byte {
	t.Helper()
	h, err := st.s.Ref(RefName(checksum))
	if err != nil {
		t.Fatalf("ref of %s: %v", checksum, err)
	}
	root, err := st.s.Node(h)
	if err != nil {
		t.Fatal(err)
	}
	if root.Perm != 0o755 || root.MtimeSec != 0 || len(root.Entries) != 1 || root.Entries[0].Name != checksum {
		t.Errorf("tree of %s: perm %o mtime %d entries %v; want 0755, mtime 0, one entry named by the checksum", checksum, root.Perm, root.MtimeSec, root.Entries)
	}
	if os.Geteuid() == 0 && (root.UID != 0 || root.GID != 0) {
		t.Errorf("tree of %s owned by %d:%d", checksum, root.UID, root.GID)
	}
	out := filepath.Join(t.TempDir(), "out")
	if _, err := st.s.Export(context.Background(), h, out, cas.ExportOptions{}); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(out, checksum)
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != 0o644 || fi.ModTime().Unix() != 0 {
		t.Errorf("%s: mode %v mtime %v; want 0644, mtime 0", checksum, fi.Mode(), fi.ModTime())
	}
	data, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// tmpEmpty checks that nothing of a fetch stays in the store's tmp/.
func tmpEmpty(t *testing.T, st *casStore) {
	t.Helper()
	left, _ := os.ReadDir(filepath.Join(st.s.Dir(), "tmp"))
	for _, e := range left {
		if strings.HasPrefix(e.Name(), "sources-") {
			t.Errorf("left in the store's tmp/: %s", e.Name())
		}
	}
}

func quick(o Options) Options {
	o.Backoff = time.Millisecond
	return o
}

func TestFetchDownloadsInParallelOnce(t *testing.T) {
	srv := newServer(t, false)
	srv.delay = 50 * time.Millisecond
	var items []*Item
	for i := range 8 {
		items = append(items, srv.add(fmt.Sprintf("/pkgs/%d.rpm", i), content(i)))
	}
	srcs := sourcesOf(items...)
	st := newStore(t)
	var progress []Progress
	var logged atomic.Int32
	opts := quick(Options{Parallel: 3, Progress: func(p Progress) { progress = append(progress, p) }, Logf: func(string, ...any) { logged.Add(1) }})
	sum, err := Fetch(context.Background(), st, srcs, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	for i, it := range items {
		if got := readStored(t, st, it.Checksum); !bytes.Equal(got, content(i)) {
			t.Errorf("%s: stored content differs", it.URL)
		}
		total += int64(len(content(i)))
	}
	if sum.Wanted != 8 || sum.Fetched != 8 || sum.Stored != 0 || sum.Failed != 0 || sum.Bytes != total || sum.Retries != 0 {
		t.Errorf("summary %+v", sum)
	}
	srv.mu.Lock()
	if srv.maxIn != 3 {
		t.Errorf("%d downloads at once, want 3", srv.maxIn)
	}
	srv.mu.Unlock()
	if last := progress[len(progress)-1]; last.Items != 8 || last.Done != 8 || last.Bytes != total {
		t.Errorf("last progress %+v, want 8 of 8 items, %d bytes", last, total)
	}
	if logged.Load() != 8 {
		t.Errorf("%d lines logged, want one per download", logged.Load())
	}
	if !strings.HasPrefix(sum.String(), "sources: 8 wanted, 0 stored already, 8 fetched (") {
		t.Errorf("summary line %q", sum)
	}
	tmpEmpty(t, st)

	// Again: everything is stored, nothing is asked of the server.
	before, imports := srv.total(), st.imports.Load()
	sum, err = Fetch(context.Background(), st, srcs, nil, opts)
	if err != nil {
		t.Fatal(err)
	}
	if srv.total() != before || st.imports.Load() != imports {
		t.Errorf("second fetch made %d requests and %d imports, want none", srv.total()-before, st.imports.Load()-imports)
	}
	if sum.Stored != 8 || sum.Fetched != 0 || sum.String() != "sources: 8 wanted, 8 stored already, 0 fetched" {
		t.Errorf("second summary %+v: %s", sum, sum)
	}

	// Only what is wanted, once however often it is named; refs the
	// caller listed spare Fetch listing them.
	extra := srv.add("/extra", []byte("extra"))
	srcs.Items[extra.Checksum] = extra
	refs, err := st.RefNames(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	opts.Refs = refs
	sum, err = Fetch(context.Background(), st, srcs, []string{items[0].Checksum, extra.Checksum, extra.Checksum}, opts)
	if err != nil || sum.Wanted != 2 || sum.Stored != 1 || sum.Fetched != 1 {
		t.Fatalf("fetch of one stored and one new item: %+v, %v", sum, err)
	}
	if srv.count("/extra") != 1 {
		t.Errorf("/extra requested %d times", srv.count("/extra"))
	}
}

func TestFetchRetriesAfterServerErrors(t *testing.T) {
	srv := newServer(t, false)
	it := srv.add("/flaky", []byte("worth the wait"))
	srv.before = func(w http.ResponseWriter, r *http.Request, n int) bool {
		switch n {
		case 1:
			http.Error(w, "down", http.StatusInternalServerError)
		case 2:
			// A body cut short: the client sees an unexpected EOF.
			w.Header().Set("Content-Length", "100")
			w.Write([]byte("worth"))
		default:
			return false
		}
		return true
	}
	st := newStore(t)
	var lines []string
	sum, err := Fetch(context.Background(), st, sourcesOf(it), nil, quick(Options{Logf: func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) }}))
	if err != nil {
		t.Fatal(err)
	}
	if sum.Retries != 2 || srv.count("/flaky") != 3 || sum.Bytes != int64(len("worth the wait")) {
		t.Errorf("summary %+v after %d requests, want 2 retries of 3 requests", sum, srv.count("/flaky"))
	}
	if string(readStored(t, st, it.Checksum)) != "worth the wait" {
		t.Error("stored content differs")
	}
	if len(lines) != 3 || !strings.Contains(lines[0], "HTTP 500 Internal Server Error; trying again in") || !strings.Contains(lines[1], "unexpected EOF") {
		t.Errorf("log:\n%s", strings.Join(lines, "\n"))
	}
	if !strings.Contains(sum.String(), "2 retries") {
		t.Errorf("summary line %q", sum)
	}
}

func TestFetchGivesUp(t *testing.T) {
	srv := newServer(t, false)
	missing := &Item{Type: Curl, Checksum: sumA, URL: srv.URL + "/missing"}
	good := srv.add("/good", []byte("good"))
	st := newStore(t)
	sum, err := Fetch(context.Background(), st, sourcesOf(missing, good), nil, quick(Options{Attempts: 3}))
	var fe *FetchError
	if !errors.As(err, &fe) || len(fe.Items) != 1 {
		t.Fatalf("Fetch: %v, want a FetchError of one item", err)
	}
	ie := fe.Items[0]
	if ie.Checksum != sumA || ie.Tries != 3 || srv.count("/missing") != 3 {
		t.Errorf("item error %+v after %d requests, want 3 tries", ie, srv.count("/missing"))
	}
	want := "org.osbuild.curl: fetch " + sumA + " from " + srv.URL + "/missing: HTTP 404 Not Found (tried 3 times)"
	if err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	// The other item is fetched all the same.
	if sum.Fetched != 1 || sum.Failed != 1 || string(readStored(t, st, good.Checksum)) != "good" {
		t.Errorf("summary %+v", sum)
	}
	if _, err := st.s.Ref(RefName(sumA)); err == nil {
		t.Error("a ref for the item that failed")
	}
	if !strings.HasSuffix(sum.String(), ", 1 failed") {
		t.Errorf("summary line %q", sum)
	}
	tmpEmpty(t, st)
}

func TestFetchChecksumMismatchKeepsNothing(t *testing.T) {
	srv := newServer(t, false)
	it := srv.add("/changed", []byte("what the manifest pinned"))
	srv.add("/changed", []byte("what the server has now"))
	var sizes []int64
	st := newStore(t)
	_, err := Fetch(context.Background(), st, sourcesOf(it), nil, quick(Options{Progress: func(p Progress) { sizes = append(sizes, p.Bytes) }}))
	var mm *MismatchError
	if !errors.As(err, &mm) {
		t.Fatalf("Fetch: %v, want a MismatchError", err)
	}
	got := sumOf([]byte("what the server has now"))
	if mm.Want != it.Checksum || mm.Got != got {
		t.Errorf("mismatch %+v", mm)
	}
	for _, s := range []string{it.URL, it.Checksum, got} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not name %s", err, s)
		}
	}
	// Not tried again: the server gives what it has.
	if srv.count("/changed") != 1 {
		t.Errorf("%d requests, want 1", srv.count("/changed"))
	}
	if _, err := st.s.Ref(RefName(it.Checksum)); err == nil {
		t.Error("the mismatched item has a ref")
	}
	if st.imports.Load() != 0 {
		t.Error("the mismatched item was imported")
	}
	if sizes[len(sizes)-1] != 0 {
		t.Errorf("progress counts %d bytes of a failed item", sizes[len(sizes)-1])
	}
	tmpEmpty(t, st)
}

func TestFetchInline(t *testing.T) {
	plain := []byte("hello, inline\n")
	items := []*Item{
		{Type: Inline, Checksum: sumOf(plain), Encoding: EncodingBase64, Data: plain},
		{Type: Inline, Checksum: "md5:" + strings.Repeat("0", 32), Encoding: EncodingBase64, Data: []byte("not that")},
	}
	wantContent := map[string][]byte{items[0].Checksum: plain}
	if xz, err := exec.LookPath("xz"); err == nil {
		for _, format := range []string{"xz", "lzma"} {
			data := append(bytes.Repeat([]byte("compressible "), 10000), format...)
			cmd := exec.Command(xz, "--compress", "--stdout", "--format="+format)
			cmd.Stdin = bytes.NewReader(data)
			packed, err := cmd.Output()
			if err != nil {
				t.Fatal(err)
			}
			it := &Item{Type: Inline, Checksum: sumOf(data), Encoding: EncodingLZMABase64, Data: packed}
			items = append(items, it)
			wantContent[it.Checksum] = data
		}
	} else {
		t.Log("no xz: lzma+base64 not tested")
	}
	// Through Parse, as a manifest has it.
	var raw []string
	for _, it := range items {
		raw = append(raw, fmt.Sprintf(`%q: {"encoding": %q, "data": %q}`, it.Checksum, it.Encoding, base64.StdEncoding.EncodeToString(it.Data)))
	}
	srcs, err := Parse([]byte(`{"org.osbuild.inline": {"items": {` + strings.Join(raw, ",") + `}}}`))
	if err != nil {
		t.Fatal(err)
	}
	st := newStore(t)
	sum, err := Fetch(context.Background(), st, srcs, nil, Options{})
	var fe *FetchError
	if !errors.As(err, &fe) || len(fe.Items) != 1 || fe.Items[0].Checksum != items[1].Checksum {
		t.Fatalf("Fetch: %v, want the md5 item to fail", err)
	}
	if !strings.Contains(err.Error(), "org.osbuild.inline: fetch md5:000") || !strings.Contains(err.Error(), "checksum mismatch: want md5:000") {
		t.Errorf("error %q", err)
	}
	if sum.Fetched != len(wantContent) {
		t.Errorf("summary %+v, want %d fetched", sum, len(wantContent))
	}
	for c, want := range wantContent {
		if got := readStored(t, st, c); !bytes.Equal(got, want) {
			t.Errorf("%s: stored content differs", c)
		}
	}
}

func TestFetchRefusesBeforeFetching(t *testing.T) {
	srv := newServer(t, false)
	it := srv.add("/a", []byte("a"))
	st := newStore(t)
	mtls := &Item{Type: Curl, Checksum: sumB, URL: srv.URL + "/b", Secrets: "org.osbuild.mtls"}
	t.Setenv(envClientKey, "")
	tests := []struct {
		name string
		want []string
		more *Item
		says string
	}{
		{"malformed want", []string{it.Checksum, "sha256:xyz"}, nil, `bad checksum "sha256:xyz"`},
		{"no source", []string{it.Checksum, sumA}, nil, sumA + ": no source provides it"},
		{"ftp", nil, &Item{Type: Curl, Checksum: sumA, URL: "ftp://example.com/a"}, `URL scheme "ftp" is not supported`},
		{"bad URL", nil, &Item{Type: Curl, Checksum: sumA, URL: "http://example.com/%zz"}, "invalid URL"},
		{"rhsm", nil, &Item{Type: Curl, Checksum: sumA, URL: srv.URL + "/x", Secrets: "org.osbuild.rhsm"}, "org.osbuild.rhsm (Red Hat subscription entitlements) are not supported"},
		{"unknown secrets", nil, &Item{Type: Curl, Checksum: sumA, URL: srv.URL + "/x", Secrets: "vault"}, `secrets provider "vault" is not supported`},
		{"mtls without its environment", nil, mtls, "set " + envClientKey},
		{"relative URL", nil, &Item{Type: Curl, Checksum: sumA, URL: "pkgs/a.rpm"}, "not an absolute URL"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srcs := sourcesOf(it)
			if tt.more != nil {
				srcs.Items[tt.more.Checksum] = tt.more
			}
			_, err := Fetch(context.Background(), st, srcs, tt.want, Options{})
			if err == nil || !strings.Contains(err.Error(), tt.says) {
				t.Fatalf("Fetch: %v; want an error saying %q", err, tt.says)
			}
			if n := srv.total(); n != 0 {
				t.Fatalf("%d requests made before the error", n)
			}
		})
	}
	// File URLs, when allowed, are of this host only.
	remote := &Item{Type: Curl, Checksum: sumA, URL: "file://elsewhere/x"}
	_, err := Fetch(context.Background(), st, sourcesOf(it, remote), nil, Options{AllowFileURLs: true})
	if err == nil || !strings.Contains(err.Error(), `file URL of host "elsewhere"`) || srv.total() != 0 {
		t.Errorf("Fetch of a remote file URL: %v (%d requests); want it refused first", err, srv.total())
	}
	_, err = Fetch(context.Background(), st, sourcesOf(it), []string{sumA}, Options{})
	if !errors.Is(err, ErrNoSource) {
		t.Errorf("want of an unknown checksum: %v, want ErrNoSource", err)
	}
	_, err = Fetch(context.Background(), st, sourcesOf(it), []string{"sha1:x"}, Options{})
	if !errors.Is(err, ErrChecksum) {
		t.Errorf("want of a malformed checksum: %v, want ErrChecksum", err)
	}
}

func TestFetchInsecureIsPerItem(t *testing.T) {
	srv := newServer(t, true) // a certificate no one signed
	strict := srv.add("/strict", []byte("strict"))
	lax := srv.add("/lax", []byte("lax"))
	lax.Insecure = true
	st := newStore(t)
	_, err := Fetch(context.Background(), st, sourcesOf(strict, lax), nil, quick(Options{Attempts: 2}))
	var fe *FetchError
	if !errors.As(err, &fe) || len(fe.Items) != 1 || fe.Items[0].URL != strict.URL || !strings.Contains(err.Error(), "certificate") {
		t.Fatalf("Fetch: %v; want the verified item to fail on its certificate", err)
	}
	if string(readStored(t, st, lax.Checksum)) != "lax" {
		t.Error("insecure item not stored")
	}
}

// File URLs, when the caller trusts the manifest.
func TestFetchFileURL(t *testing.T) {
	dir := t.TempDir()
	data := []byte("a local mirror's file")
	if err := os.WriteFile(filepath.Join(dir, "f"), data, 0o600); err != nil {
		t.Fatal(err)
	}
	it := &Item{Type: Curl, Checksum: sumOf(data), URL: "file://" + dir + "/f"}
	gone := &Item{Type: Curl, Checksum: sumA, URL: "file://" + dir + "/gone"}
	st := newStore(t)
	_, err := Fetch(context.Background(), st, sourcesOf(it, gone), nil, quick(Options{AllowFileURLs: true}))
	var fe *FetchError
	if !errors.As(err, &fe) || len(fe.Items) != 1 || fe.Items[0].Tries != 1 || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Fetch: %v; want the missing file to fail at once", err)
	}
	if !bytes.Equal(readStored(t, st, it.Checksum), data) {
		t.Error("stored content differs")
	}
}

func TestFetchGivesUpOnStalledTransfers(t *testing.T) {
	old := lowSpeedTime
	lowSpeedTime = 200 * time.Millisecond
	t.Cleanup(func() { lowSpeedTime = old })
	srv := newServer(t, false)
	it := srv.add("/stalls", []byte("never all of it"))
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv.before = func(w http.ResponseWriter, r *http.Request, n int) bool {
		w.Header().Set("Content-Length", "15")
		w.Write([]byte("never"))
		w.(http.Flusher).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return true
	}
	start := time.Now()
	_, err := Fetch(context.Background(), newStore(t), sourcesOf(it), nil, quick(Options{Attempts: 2}))
	if err == nil || !strings.Contains(err.Error(), "transfer slower than 1000 bytes/s for 200ms (tried 2 times)") {
		t.Fatalf("Fetch: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %s", d)
	}
}

func TestFetchCancelled(t *testing.T) {
	srv := newServer(t, false)
	it := srv.add("/slow", []byte("slow"))
	ctx, cancel := context.WithCancel(context.Background())
	srv.before = func(w http.ResponseWriter, r *http.Request, n int) bool {
		cancel()
		<-r.Context().Done()
		return true
	}
	st := newStore(t)
	_, err := Fetch(ctx, st, sourcesOf(it), nil, quick(Options{}))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Fetch: %v, want context.Canceled", err)
	}
	if srv.count("/slow") != 1 {
		t.Errorf("%d requests after the cancel", srv.count("/slow"))
	}
	tmpEmpty(t, st)
}

// org.osbuild.mtls: the client certificate and the authority of the
// server's, from osbuild's environment variables.
func TestFetchMTLS(t *testing.T) {
	dir := t.TempDir()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "forge client"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, b []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: b}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	srv := &server{files: map[string][]byte{}, requests: map[string]int{}}
	srv.Server = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if len(r.TLS.PeerCertificates) == 0 || r.TLS.PeerCertificates[0].Subject.CommonName != "forge client" {
			http.Error(w, "who are you", http.StatusForbidden)
			return
		}
		io.WriteString(w, "for your eyes")
	}))
	srv.TLS = &tls.Config{ClientAuth: tls.RequireAnyClientCert}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	t.Setenv(envClientCert, write("client.crt", "CERTIFICATE", der))
	t.Setenv(envClientKey, write("client.key", "EC PRIVATE KEY", keyDER))
	t.Setenv(envCACert, write("ca.crt", "CERTIFICATE", srv.Certificate().Raw))
	data := []byte("for your eyes")
	it := &Item{Type: Curl, Checksum: sumOf(data), URL: srv.URL + "/secret", Secrets: "org.osbuild.mtls"}
	st := newStore(t)
	if _, err := Fetch(context.Background(), st, sourcesOf(it), nil, quick(Options{Attempts: 1})); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(readStored(t, st, it.Checksum), data) {
		t.Error("stored content differs")
	}
}

// Stored items are refs like any other: listed with their size, dropped
// by gc --max-size when least recently used, fetched again after.
func TestStoredItemsAreRefs(t *testing.T) {
	srv := newServer(t, false)
	a := srv.add("/a", content(50))
	b := srv.add("/b", content(60))
	st := newStore(t)
	ctx := context.Background()
	if _, err := Fetch(ctx, st, sourcesOf(a), nil, Options{}); err != nil {
		t.Fatal(err)
	}
	if _, err := Fetch(ctx, st, sourcesOf(b), nil, Options{}); err != nil {
		t.Fatal(err)
	}
	usage, err := st.s.RefUsage(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sizes := map[string]int64{}
	for _, u := range usage {
		sizes[u.Name] = u.LogicalBytes
	}
	if sizes[RefName(a.Checksum)] != int64(len(content(50))) || sizes[RefName(b.Checksum)] != int64(len(content(60))) {
		t.Fatalf("ref sizes %v", sizes)
	}
	// Room for one: the older one goes.
	r, err := st.s.GC(ctx, cas.GCOptions{MaxSize: int64(len(content(60))) + 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.DroppedRefs) != 1 || r.DroppedRefs[0] != RefName(a.Checksum) {
		t.Fatalf("gc dropped %v, want %s", r.DroppedRefs, RefName(a.Checksum))
	}
	sum, err := Fetch(ctx, st, sourcesOf(a, b), nil, Options{})
	if err != nil || sum.Fetched != 1 || sum.Stored != 1 || srv.count("/a") != 2 {
		t.Fatalf("fetch after gc: %+v, %v (%d requests of /a)", sum, err, srv.count("/a"))
	}
}

// Items ready together are stored in one import, each as the tree it
// would be alone: the same file makes the same tree in every store.
func TestFetchStoresInBatches(t *testing.T) {
	srcs := &Sources{Items: map[string]*Item{}}
	for i := range 50 {
		data := []byte(fmt.Sprintf("item %d\n", i))
		srcs.Items[sumOf(data)] = &Item{Type: Inline, Encoding: EncodingBase64, Data: data, Checksum: sumOf(data)}
	}
	many, alone := newStore(t), newStore(t)
	sum, err := Fetch(context.Background(), many, srcs, nil, Options{})
	if err != nil || sum.Fetched != 50 {
		t.Fatalf("Fetch: %+v, %v", sum, err)
	}
	if n := many.imports.Load(); n > 5 {
		t.Errorf("50 items stored in %d imports", n)
	}
	first := srcs.Checksums()[0]
	if _, err := Fetch(context.Background(), alone, srcs, []string{first}, Options{}); err != nil {
		t.Fatal(err)
	}
	a, err := many.s.Ref(RefName(first))
	if err != nil {
		t.Fatal(err)
	}
	b, err := alone.s.Ref(RefName(first))
	if err != nil {
		t.Fatal(err)
	}
	if a != b {
		t.Errorf("the item's tree is %s stored with others, %s alone", a.Short(), b.Short())
	}
	for _, c := range srcs.Checksums() {
		if got := readStored(t, many, c); !bytes.Equal(got, srcs.Items[c].Data) {
			t.Errorf("%s: stored content differs", c)
		}
	}
	tmpEmpty(t, many)
}
