// Package objstore is forge's access to a bucket of an S3-compatible
// object store (AWS S3, Ceph RGW, SeaweedFS, MinIO, Garage): whole-object
// and ranged reads, create-only and compare-and-swap writes, listing and
// deletion, with errors a user can act on. It knows nothing of what forge
// keeps in the bucket (package remote does).
//
// Only the plain S3 API is used, with path-style requests to an endpoint
// URL, so that any engine that speaks it works. The client is
// aws-sdk-go-v2's: it is the reference implementation of request signing
// and of the credential chain users expect (environment, shared
// credentials and config files, profiles, instance roles), and brings no
// module from outside AWS. Its checksums are asked for only where the API
// requires them: the newer default (a CRC on every request) breaks
// S3-compatible servers that do not implement it.
package objstore

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
)

// Errors callers test for with errors.Is.
var (
	// ErrNotFound: the object does not exist.
	ErrNotFound = errors.New("not found")
	// ErrNoBucket: the bucket does not exist. It is not ErrNotFound: a
	// missing bucket is a mistake to report, not an object to go without.
	ErrNoBucket = errors.New("the bucket does not exist")
	// ErrPrecondition: a conditional write found the object in another
	// state than the condition asked for (it exists already, or changed).
	ErrPrecondition = errors.New("precondition failed")
)

// MaxGet bounds what one GET reads into memory: forge's objects are
// packs (64 MiB), tree objects and pointers, and a bucket is not trusted
// to stop sending.
const MaxGet = 1 << 30

// Location names a bucket and where in it forge keeps its objects.
type Location struct {
	// Endpoint is the server's URL (https://host:port or http://…);
	// empty for AWS S3 itself.
	Endpoint string
	// Region signs the requests; most other engines accept any.
	Region string
	Bucket string
	// Prefix is prepended to every key ("" or "dir/sub").
	Prefix string
	// CACert is a PEM file of certificates to trust besides the
	// system's, for an endpoint with its own certificate authority.
	CACert string
}

// String is the location as s3://BUCKET[/PREFIX] at the endpoint.
func (l Location) String() string {
	s := "s3://" + l.Bucket
	if l.Prefix != "" {
		s += "/" + l.Prefix
	}
	if l.Endpoint != "" {
		s += " at " + l.Endpoint
	}
	return s
}

// Credentials are a static access key. The zero value means "resolve
// them the usual way" (Resolve).
type Credentials struct {
	AccessKeyID     string `json:"access_key_id"`
	SecretAccessKey string `json:"secret_access_key"`
	SessionToken    string `json:"session_token,omitempty"`
}

// String never shows the secret.
func (c Credentials) String() string {
	if c.AccessKeyID == "" {
		return "(none)"
	}
	return "access key " + c.AccessKeyID
}

// Resolve finds credentials as the AWS tools do: AWS_ACCESS_KEY_ID and
// AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN), else AWS_PROFILE's (or
// the default profile's) entry of the shared credentials and config
// files, else the other sources of the SDK's default chain. It is for a
// client that hands them to the store's daemon, which never reads the
// caller's environment or files.
func Resolve(ctx context.Context, region string) (Credentials, error) {
	cfg, err := config.LoadDefaultConfig(ctx, config.WithRegion(regionOrDefault(region)))
	if err != nil {
		return Credentials{}, fmt.Errorf("S3 credentials: %w", err)
	}
	if cfg.Credentials == nil {
		return Credentials{}, errors.New("S3 credentials: none found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a shared credentials file)")
	}
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	c, err := cfg.Credentials.Retrieve(ctx)
	if err != nil {
		return Credentials{}, fmt.Errorf("S3 credentials: none found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or AWS_PROFILE with a shared credentials file): %v", firstLine(err))
	}
	return Credentials{AccessKeyID: c.AccessKeyID, SecretAccessKey: c.SecretAccessKey, SessionToken: c.SessionToken}, nil
}

func regionOrDefault(r string) string {
	if r == "" {
		return "us-east-1"
	}
	return r
}

// Stats count a Bucket's requests and the bytes they moved.
type Stats struct {
	Requests  int64 // every request sent, retries included
	Gets      int64 // GET requests (whole and ranged)
	Puts      int64 // PUT requests
	BytesDown int64 // bytes of object content received
	BytesUp   int64 // bytes of object content sent
}

// Bucket is an open bucket. It is safe for concurrent use.
type Bucket struct {
	loc    Location
	c      *s3.Client
	maxGet int64 // MaxGet, but for tests

	requests, gets, puts, down, up atomic.Int64
}

// Open prepares requests to loc with creds (the SDK's default chain when
// creds is the zero value). It sends nothing: the first request finds out
// whether the endpoint, the bucket and the credentials are right.
func Open(ctx context.Context, loc Location, creds Credentials) (*Bucket, error) {
	if loc.Bucket == "" {
		return nil, errors.New("S3: no bucket")
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRegion(regionOrDefault(loc.Region)),
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		// A few quick retries: a flaky request is retried, a server that
		// is gone fails the operation in seconds, not minutes.
		config.WithRetryMaxAttempts(4),
	}
	if creds.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(credentials.NewStaticCredentialsProvider(creds.AccessKeyID, creds.SecretAccessKey, creds.SessionToken)))
	}
	if loc.CACert != "" {
		pem, err := os.ReadFile(loc.CACert)
		if err != nil {
			return nil, fmt.Errorf("S3 CA certificate: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("S3 CA certificate %s: no PEM certificate in it", loc.CACert)
		}
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		opts = append(opts, config.WithHTTPClient(&http.Client{Transport: tr}))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("S3 %s: %w", loc, err)
	}
	b := &Bucket{loc: loc, maxGet: MaxGet}
	b.c = s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = true
		if loc.Endpoint != "" {
			o.BaseEndpoint = aws.String(loc.Endpoint)
		}
		o.APIOptions = append(o.APIOptions, b.countRequests)
	})
	return b, nil
}

// Location is where the bucket is.
func (b *Bucket) Location() Location { return b.loc }

// Stats returns the counts so far.
func (b *Bucket) Stats() Stats {
	return Stats{Requests: b.requests.Load(), Gets: b.gets.Load(), Puts: b.puts.Load(), BytesDown: b.down.Load(), BytesUp: b.up.Load()}
}

func (b *Bucket) key(k string) string {
	if b.loc.Prefix == "" {
		return k
	}
	return strings.TrimSuffix(b.loc.Prefix, "/") + "/" + k
}

// Put writes body under key, replacing what is there.
func (b *Bucket) Put(ctx context.Context, key string, body []byte) (etag string, err error) {
	return b.put(ctx, key, body, nil, nil)
}

// PutIfAbsent writes body under key only if no object is there
// (If-None-Match: *); ErrPrecondition if one is.
func (b *Bucket) PutIfAbsent(ctx context.Context, key string, body []byte) (etag string, err error) {
	return b.put(ctx, key, body, nil, aws.String("*"))
}

// PutIfMatch replaces the object under key only if its ETag is still
// etag (If-Match), or, with etag "", writes it only if there is none:
// compare-and-swap. ErrPrecondition if the object changed meanwhile.
func (b *Bucket) PutIfMatch(ctx context.Context, key string, body []byte, etag string) (string, error) {
	if etag == "" {
		return b.PutIfAbsent(ctx, key, body)
	}
	return b.put(ctx, key, body, aws.String(etag), nil)
}

func (b *Bucket) put(ctx context.Context, key string, body []byte, ifMatch, ifNoneMatch *string) (string, error) {
	b.puts.Add(1)
	out, err := b.c.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        aws.String(b.loc.Bucket),
		Key:           aws.String(b.key(key)),
		Body:          bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))),
		IfMatch:       ifMatch,
		IfNoneMatch:   ifNoneMatch,
	})
	if err != nil {
		return "", b.wrap("put", key, err)
	}
	b.up.Add(int64(len(body)))
	return aws.ToString(out.ETag), nil
}

// Get reads the whole object under key, with its ETag.
func (b *Bucket) Get(ctx context.Context, key string) (body []byte, etag string, err error) {
	body, etag, _, err = b.get(ctx, key, "", b.maxGet)
	return body, etag, err
}

// GetRange reads n bytes of the object under key from off (a ranged GET);
// fewer only where the object ends first.
func (b *Bucket) GetRange(ctx context.Context, key string, off, n int64) ([]byte, error) {
	if n <= 0 {
		return nil, nil
	}
	body, _, _, err := b.get(ctx, key, fmt.Sprintf("bytes=%d-%d", off, off+n-1), n)
	return body, err
}

// GetTail reads the last n bytes of the object under key (all of it if it
// is shorter) and returns them with the object's whole size.
func (b *Bucket) GetTail(ctx context.Context, key string, n int64) ([]byte, int64, error) {
	body, _, size, err := b.get(ctx, key, fmt.Sprintf("bytes=-%d", n), n)
	return body, size, err
}

// get reads key (or the range rng of it), at most limit bytes: a server
// that says or sends more fails the read before it takes more memory.
func (b *Bucket) get(ctx context.Context, key, rng string, limit int64) ([]byte, string, int64, error) {
	limit = min(limit, b.maxGet)
	b.gets.Add(1)
	in := &s3.GetObjectInput{Bucket: aws.String(b.loc.Bucket), Key: aws.String(b.key(key))}
	if rng != "" {
		in.Range = aws.String(rng)
	}
	out, err := b.c.GetObject(ctx, in)
	if err != nil {
		return nil, "", 0, b.wrap("get", key, err)
	}
	defer out.Body.Close()
	where := "S3 get " + key + " (" + b.loc.String() + ")"
	if out.ContentLength != nil && *out.ContentLength > limit {
		return nil, "", 0, fmt.Errorf("%s: %d bytes, more than the %d asked for", where, *out.ContentLength, limit)
	}
	var buf bytes.Buffer
	if out.ContentLength != nil && *out.ContentLength > 0 {
		buf.Grow(int(*out.ContentLength))
	}
	// A server that sends more than it said (or never ends) is cut off.
	n, err := io.Copy(&buf, io.LimitReader(out.Body, limit+1))
	b.down.Add(n)
	if err != nil {
		return nil, "", 0, fmt.Errorf("%s: reading the body: %w", where, err)
	}
	if n > limit {
		return nil, "", 0, fmt.Errorf("%s: more than the %d bytes asked for", where, limit)
	}
	if out.ContentLength != nil && n != *out.ContentLength {
		return nil, "", 0, fmt.Errorf("%s: got %d bytes of %d", where, n, *out.ContentLength)
	}
	size := n
	if cr := aws.ToString(out.ContentRange); cr != "" {
		// "bytes FIRST-LAST/SIZE"
		if i := strings.LastIndexByte(cr, '/'); i >= 0 {
			fmt.Sscan(cr[i+1:], &size)
		}
	}
	return buf.Bytes(), aws.ToString(out.ETag), size, nil
}

// Object is one listed object.
type Object struct {
	Key          string // without the Location's prefix
	Size         int64
	LastModified time.Time
}

// List calls fn for every object whose key starts with prefix, in key
// order.
func (b *Bucket) List(ctx context.Context, prefix string, fn func(Object) error) error {
	full := b.key(prefix)
	strip := len(full) - len(prefix)
	// A server that hands out the same continuation token again would
	// make the listing endless.
	p := s3.NewListObjectsV2Paginator(b.c, &s3.ListObjectsV2Input{Bucket: aws.String(b.loc.Bucket), Prefix: aws.String(full)},
		func(o *s3.ListObjectsV2PaginatorOptions) { o.StopOnDuplicateToken = true })
	for p.HasMorePages() {
		b.gets.Add(1)
		page, err := p.NextPage(ctx)
		if err != nil {
			return b.wrap("list", prefix, err)
		}
		for _, o := range page.Contents {
			k := aws.ToString(o.Key)
			if len(k) < strip {
				continue
			}
			if err := fn(Object{Key: k[strip:], Size: aws.ToInt64(o.Size), LastModified: aws.ToTime(o.LastModified)}); err != nil {
				return err
			}
		}
	}
	return nil
}

// Delete removes the object under key; a missing one is not an error.
func (b *Bucket) Delete(ctx context.Context, key string) error {
	_, err := b.c.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(b.loc.Bucket), Key: aws.String(b.key(key))})
	if err == nil {
		return nil
	}
	if err = b.wrap("delete", key, err); errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// CreateBucket makes the bucket; one that exists and is the caller's is
// not an error.
func (b *Bucket) CreateBucket(ctx context.Context) error {
	_, err := b.c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(b.loc.Bucket)})
	var api smithy.APIError
	if errors.As(err, &api) && (api.ErrorCode() == "BucketAlreadyOwnedByYou" || api.ErrorCode() == "BucketAlreadyExists") {
		return nil
	}
	if err != nil {
		return b.wrap("create bucket", "", err)
	}
	return nil
}

// Check makes one cheap request (a listing of at most one key) so that a
// wrong endpoint, bucket or credentials fail at once with a clear error.
func (b *Bucket) Check(ctx context.Context) error {
	b.gets.Add(1)
	_, err := b.c.ListObjectsV2(ctx, &s3.ListObjectsV2Input{Bucket: aws.String(b.loc.Bucket), Prefix: aws.String(b.key("")), MaxKeys: aws.Int32(1)})
	if err != nil {
		return b.wrap("check", "", err)
	}
	return nil
}
