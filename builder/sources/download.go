package sources

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"
)

// The environment osbuild's curl source reads: the proxy for every
// download, and the client certificate of the org.osbuild.mtls secrets.
const (
	envProxy      = "OSBUILD_SOURCES_CURL_PROXY"
	envClientKey  = "OSBUILD_SOURCES_CURL_SSL_CLIENT_KEY"
	envClientCert = "OSBUILD_SOURCES_CURL_SSL_CLIENT_CERT"
	envCACert     = "OSBUILD_SOURCES_CURL_SSL_CA_CERT"
)

// curl's settings in osbuild's source: 30 s to connect, a transfer slower
// than 1000 bytes/s for 30 s fails, redirects followed (curl's limit: 50).
const (
	connectTimeout = 30 * time.Second
	maxRedirects   = 50
	maxBackoff     = 8 * time.Second
)

// The low-speed limit; variables so that a test need not wait 30 s.
var (
	lowSpeedLimit int64 = 1000
	lowSpeedTime        = 30 * time.Second
)

// transport is the TLS setting an item asks for; items that ask alike
// share an HTTP client, and so its connections.
type transport struct {
	insecure bool
	mtls     bool
}

// transportFor checks that an item can be downloaded at all (its URL, its
// secrets) and says how. File URLs are refused unless allowFile.
func transportFor(it *Item, allowFile bool) (transport, error) {
	u, err := parseURL(it.URL)
	if err != nil {
		return transport{}, err
	}
	switch u.Scheme {
	case "http", "https":
	case "file":
		if !allowFile {
			return transport{}, errors.New("file URLs are not allowed: they read files of this host (forge downloads http and https URLs; Options.AllowFileURLs allows file URLs of a trusted manifest)")
		}
		if u.Host != "" && u.Host != "localhost" {
			return transport{}, fmt.Errorf("file URL of host %q: only local files", u.Host)
		}
	case "":
		return transport{}, errors.New("not an absolute URL: forge downloads http and https URLs")
	default:
		return transport{}, fmt.Errorf("URL scheme %q is not supported: forge downloads http and https URLs", u.Scheme)
	}
	t := transport{insecure: it.Insecure}
	switch it.Secrets {
	case "":
	case "org.osbuild.mtls":
		if os.Getenv(envClientKey) == "" || os.Getenv(envClientCert) == "" {
			return t, fmt.Errorf("secrets org.osbuild.mtls need a client key and certificate: set %s and %s", envClientKey, envClientCert)
		}
		t.mtls = true
	case "org.osbuild.rhsm":
		return t, fmt.Errorf("secrets org.osbuild.rhsm (Red Hat subscription entitlements) are not supported by forge")
	default:
		return t, fmt.Errorf("secrets provider %q is not supported: forge knows org.osbuild.mtls", short(it.Secrets))
	}
	return t, nil
}

// parseURL parses an item's URL. Spaces in its query are escaped (the
// path is escaped as it must be by url.URL.String).
func parseURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil {
		return nil, fmt.Errorf("invalid URL: %w", errors.Unwrap(err))
	}
	u.RawQuery = strings.ReplaceAll(u.RawQuery, " ", "%20")
	return u, nil
}

// client makes the HTTP client of a transport.
func (t transport) client(parallel int) (*http.Client, error) {
	cfg := &tls.Config{InsecureSkipVerify: t.insecure}
	if t.mtls {
		cert, err := tls.LoadX509KeyPair(os.Getenv(envClientCert), os.Getenv(envClientKey))
		if err != nil {
			return nil, fmt.Errorf("secrets org.osbuild.mtls: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
		if ca := os.Getenv(envCACert); ca != "" {
			// As curl's cacert: these authorities instead of the system's.
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("secrets org.osbuild.mtls: %w", err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("secrets org.osbuild.mtls: %s holds no PEM certificate", ca)
			}
			cfg.RootCAs = pool
		}
	}
	proxy := http.ProxyFromEnvironment
	if p := os.Getenv(envProxy); p != "" {
		if !strings.Contains(p, "://") {
			p = "http://" + p // as curl takes "host:port"
		}
		u, err := url.Parse(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", envProxy, err)
		}
		proxy = http.ProxyURL(u)
	}
	tr := &http.Transport{
		Proxy:               proxy,
		DialContext:         (&net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:     cfg,
		TLSHandshakeTimeout: connectTimeout,
		ForceAttemptHTTP2:   true,
		// The bytes as the server has them: curl (without --compressed)
		// asks for no encoding, and the checksum is of the file itself.
		DisableCompression:  true,
		MaxIdleConnsPerHost: parallel,
		IdleConnTimeout:     90 * time.Second,
	}
	return &http.Client{Transport: tr, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		// Go's client would fail on another scheme too, but as a network
		// error, tried again and again: the server will say the same.
		if s := req.URL.Scheme; s != "http" && s != "https" {
			return permanent(fmt.Errorf("redirected to %s: forge follows redirects to http and https URLs only", short(req.URL.Redacted())))
		}
		if len(via) >= maxRedirects {
			return fmt.Errorf("stopped after %d redirects", maxRedirects)
		}
		return nil
	}}, nil
}

// StatusError is an HTTP answer other than success.
type StatusError struct {
	Status string // "404 Not Found"
	URL    string // the URL that answered, when a redirect led there
}

func (e *StatusError) Error() string {
	if e.URL != "" {
		return "HTTP " + e.Status + " from " + e.URL
	}
	return "HTTP " + e.Status
}

// SizeError is an item larger than a limit of Options: a download's
// (MaxItemSize) or an inline item's decoded data's (MaxInlineSize).
type SizeError struct {
	Limit  int64
	Option string // "MaxItemSize" or "MaxInlineSize"
	// Announced is the size a response's Content-Length (or a local
	// file) gave before any data came; 0 when the data passed the limit
	// as it came.
	Announced int64
}

func (e *SizeError) Error() string {
	limit := fmt.Sprintf("the limit of %s (Options.%s)", humanBytes(e.Limit), e.Option)
	switch {
	case e.Announced > 0:
		return fmt.Sprintf("announces %d bytes (%s), over %s", e.Announced, humanBytes(e.Announced), limit)
	case e.Option == "MaxInlineSize":
		return "decodes to more than " + limit
	}
	return "sends more than " + limit
}

// errTooLarge is what copy stops with when the data passes its limit.
var errTooLarge = errors.New("too large")

// permanentError is a failure that trying again would not mend: a local
// file, a bad request.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func permanent(err error) error { return &permanentError{err} }

// slowError is a transfer below the low-speed limit.
type slowError struct {
	limit  int64
	window time.Duration
}

func (e slowError) Error() string {
	return fmt.Sprintf("transfer slower than %d bytes/s for %s", e.limit, e.window)
}

// timeoutError is a try that took longer than Options.ItemTimeout.
type timeoutError struct{ d time.Duration }

func (e timeoutError) Error() string {
	return fmt.Sprintf("not done after %s (Options.ItemTimeout)", e.d)
}

// download fetches a curl item into path, trying again after a failure
// (not after a checksum mismatch: the server gave what it has). It returns
// the size and how many tries it took.
func (f *fetcher) download(ctx context.Context, it *Item, path string) (int64, int, error) {
	u, err := parseURL(it.URL)
	if err != nil {
		return 0, 0, err
	}
	tr, _ := transportFor(it, f.opts.AllowFileURLs)
	c := f.clients[tr]
	wait := f.opts.Backoff
	for try := 1; ; try++ {
		n, err := f.try(ctx, c, u, it, path)
		if err == nil {
			return n, try, nil
		}
		f.bytes.Add(-n)
		if ctx.Err() != nil {
			return 0, try, ctx.Err()
		}
		var perm *permanentError
		var mismatch *MismatchError
		if errors.As(err, &perm) || errors.As(err, &mismatch) || try >= f.opts.Attempts {
			return 0, try, err
		}
		f.retries.Add(1)
		f.opts.Logf("%s: %v; trying again in %s (try %d of %d)", it.URL, err, wait, try+1, f.opts.Attempts)
		select {
		case <-time.After(wait):
		case <-ctx.Done():
			return 0, try, ctx.Err()
		}
		wait = min(2*wait, maxBackoff)
	}
}

// try downloads once into path (truncated first), within the size limit
// and the time limit, and verifies the checksum. It returns the bytes it
// received.
func (f *fetcher) try(ctx context.Context, c *http.Client, u *url.URL, it *Item, path string) (int64, error) {
	// The overall time limit, under which the low-speed watch may cancel
	// sooner: the cause of rctx says which ended the try.
	tctx, tcancel := context.WithTimeoutCause(ctx, f.opts.ItemTimeout, timeoutError{f.opts.ItemTimeout})
	defer tcancel()
	rctx, cancel := context.WithCancelCause(tctx)
	defer cancel(nil)
	limit := f.opts.MaxItemSize
	tooLarge := func(announced int64) error {
		return permanent(&SizeError{Limit: limit, Option: "MaxItemSize", Announced: announced})
	}
	var body io.Reader
	if u.Scheme == "file" {
		in, err := os.Open(u.Path)
		if err != nil {
			return 0, permanent(err)
		}
		defer in.Close()
		if fi, err := in.Stat(); err == nil && fi.Mode().IsRegular() && fi.Size() > limit {
			return 0, tooLarge(fi.Size())
		}
		body = &ctxReader{r: in, ctx: rctx}
	} else {
		req, err := http.NewRequestWithContext(rctx, http.MethodGet, u.String(), nil)
		if err != nil {
			return 0, permanent(err)
		}
		req.Header.Set("User-Agent", f.opts.UserAgent)
		var got atomic.Int64
		stop := watchSpeed(cancel, &got)
		defer stop()
		resp, err := c.Do(req)
		if err != nil {
			return 0, httpError(rctx, err)
		}
		defer resp.Body.Close()
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // the connection can serve again
			e := &StatusError{Status: resp.Status}
			if final := resp.Request.URL.String(); final != u.String() {
				e.URL = final
			}
			return 0, e
		}
		if resp.ContentLength > limit {
			return 0, tooLarge(resp.ContentLength)
		}
		body = &countingReader{r: resp.Body, n: &got, rctx: rctx}
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, permanent(err)
	}
	h := newHash(it.Checksum)
	n, err := f.copy(out, h, body, limit)
	if cerr := out.Close(); err == nil && cerr != nil {
		err = permanent(cerr)
	}
	if errors.Is(err, errTooLarge) {
		return n, tooLarge(0)
	}
	if err != nil {
		return n, err
	}
	if got := checksumOf(it.Checksum, h); got != it.Checksum {
		return n, &MismatchError{Want: it.Checksum, Got: got}
	}
	return n, nil
}

// copy writes what r gives to out and to h, counting it as progress. It
// stops with errTooLarge before it writes past limit bytes. Failing to
// write is permanent.
func (f *fetcher) copy(out io.Writer, h hash.Hash, r io.Reader, limit int64) (int64, error) {
	buf := make([]byte, 256<<10)
	var n int64
	for {
		k, rerr := r.Read(buf)
		if k > 0 {
			if int64(k) > limit-n {
				return n, errTooLarge
			}
			h.Write(buf[:k])
			if _, err := out.Write(buf[:k]); err != nil {
				return n, permanent(err)
			}
			n += int64(k)
			f.bytes.Add(int64(k))
			f.report(false)
		}
		if rerr == io.EOF {
			return n, nil
		}
		if rerr != nil {
			return n, rerr
		}
	}
}

// ctxReader reads a local file until its try's context ends.
type ctxReader struct {
	r   io.Reader
	ctx context.Context
}

func (c *ctxReader) Read(p []byte) (int, error) {
	if c.ctx.Err() != nil {
		return 0, context.Cause(c.ctx)
	}
	return c.r.Read(p)
}

// countingReader counts what a response body gives for the low-speed
// watch, and says why its request was cancelled.
type countingReader struct {
	r    io.Reader
	n    *atomic.Int64
	rctx context.Context
}

func (c *countingReader) Read(p []byte) (int, error) {
	k, err := c.r.Read(p)
	c.n.Add(int64(k))
	if err != nil && err != io.EOF {
		err = httpError(c.rctx, err)
	}
	return k, err
}

// httpError is err of a request, or why the request was cancelled (too
// slow, too long), without the URL that the item's error names already.
func httpError(rctx context.Context, err error) error {
	var slow slowError
	var timeout timeoutError
	if cause := context.Cause(rctx); errors.As(cause, &slow) || errors.As(cause, &timeout) {
		return cause
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// watchSpeed cancels a request whose transfer falls below the low-speed
// limit for the low-speed time.
func watchSpeed(cancel context.CancelCauseFunc, got *atomic.Int64) (stop func()) {
	done := make(chan struct{})
	limit, window := lowSpeedLimit, lowSpeedTime
	go func() {
		t := time.NewTicker(window)
		defer t.Stop()
		least := int64(float64(limit) * window.Seconds())
		var last int64
		for {
			select {
			case <-done:
				return
			case <-t.C:
				n := got.Load()
				if n-last < least {
					cancel(slowError{limit, window})
					return
				}
				last = n
			}
		}
	}()
	return func() { close(done) }
}

// checksumOf is the checksum h has computed, in the form of want's.
func checksumOf(want string, h hash.Hash) string {
	algo, _, _ := strings.Cut(want, ":")
	return algo + ":" + hex.EncodeToString(h.Sum(nil))
}

// decode writes an inline item's data into path, within
// Options.MaxInlineSize, and verifies the checksum. lzma+base64 data is
// decompressed by xz (xz-utils), which reads what Python's lzma module
// does: .xz and the older .lzma format. It returns the bytes it wrote.
func (f *fetcher) decode(ctx context.Context, it *Item, path string) (int64, error) {
	limit := f.opts.MaxInlineSize
	tooLarge := &SizeError{Limit: limit, Option: "MaxInlineSize"}
	if it.Encoding != EncodingLZMABase64 && int64(len(it.Data)) > limit {
		return 0, tooLarge
	}
	out, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, err
	}
	h := newHash(it.Checksum)
	var n int64
	if it.Encoding == EncodingLZMABase64 {
		n, err = f.unxz(ctx, it.Data, out, h, limit)
	} else {
		n, err = f.copy(out, h, bytes.NewReader(it.Data), limit)
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, errTooLarge) {
		return n, tooLarge
	}
	if err != nil {
		return n, err
	}
	if got := checksumOf(it.Checksum, h); got != it.Checksum {
		return n, &MismatchError{Want: it.Checksum, Got: got}
	}
	return n, nil
}

// unxz decompresses data with xz into out and h, up to limit bytes: past
// them it kills xz, waits for it, and returns errTooLarge.
func (f *fetcher) unxz(ctx context.Context, data []byte, out io.Writer, h hash.Hash, limit int64) (int64, error) {
	xz, err := exec.LookPath("xz")
	if err != nil {
		return 0, fmt.Errorf("lzma+base64 data needs xz (Debian's xz-utils) to decompress it: %w", err)
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, xz, "--decompress", "--stdout", "--format=auto")
	cmd.Stdin, cmd.Stderr = bytes.NewReader(data), &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return 0, err
	}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("decompress lzma data: %w", err)
	}
	n, err := f.copy(out, h, stdout, limit)
	if err != nil {
		// Not one byte more: xz would write until its pipe fills.
		cmd.Process.Kill()
	}
	werr := cmd.Wait()
	switch {
	case err != nil:
		return n, err
	case werr != nil:
		return n, fmt.Errorf("decompress lzma data: %v: %s", werr, bytes.TrimSpace(stderr.Bytes()))
	}
	return n, nil
}
