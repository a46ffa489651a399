package itest

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// requireS3Root skips t unless it runs as root: scripts/install-s3-server
// builds SeaweedFS into /var/cache/forge-tools.
// The tests run in parallel: each cluster has its own ports and
// directories, and spends most of its time waiting.
func requireS3Root(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: scripts/install-s3-server builds SeaweedFS into /var/cache/forge-tools")
	}
	t.Parallel()
}

func startS3Timed(t *testing.T, opts S3Options) *S3Server {
	t.Helper()
	begin := time.Now()
	s := StartS3(t, opts)
	t.Logf("StartS3(%+v): %v", opts, time.Since(begin).Round(time.Millisecond))
	return s
}

// s3Client is a client of s, signing with secret, that neither retries
// nor adds checksums, so that each call is one plain request.
func s3Client(s *S3Server, secret string) *s3.Client {
	return s3.New(s3.Options{
		BaseEndpoint:               aws.String(s.Endpoint),
		Region:                     s.Region,
		Credentials:                credentials.NewStaticCredentialsProvider(s.AccessKey, secret, ""),
		UsePathStyle:               true,
		RetryMaxAttempts:           1,
		RequestChecksumCalculation: aws.RequestChecksumCalculationWhenRequired,
		ResponseChecksumValidation: aws.ResponseChecksumValidationWhenRequired,
	})
}

// statusOf is the HTTP status of a call's error, or 200 without one.
func statusOf(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var re *awshttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

// codeOf is the S3 error code of err ("" without one).
func codeOf(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

func put(ctx context.Context, c *s3.Client, bucket, key string, data []byte, mod func(*s3.PutObjectInput)) (*s3.PutObjectOutput, error) {
	in := &s3.PutObjectInput{Bucket: &bucket, Key: &key, Body: bytes.NewReader(data)}
	if mod != nil {
		mod(in)
	}
	return c.PutObject(ctx, in)
}

func get(ctx context.Context, c *s3.Client, bucket, key, rng string) ([]byte, int, error) {
	in := &s3.GetObjectInput{Bucket: &bucket, Key: &key}
	if rng != "" {
		in.Range = &rng
	}
	out, err := c.GetObject(ctx, in)
	if err != nil {
		return nil, statusOf(err), err
	}
	defer out.Body.Close()
	b, err := io.ReadAll(out.Body)
	status := 0
	if raw, ok := awsmiddleware.GetRawResponse(out.ResultMetadata).(*smithyhttp.Response); ok {
		status = raw.StatusCode
	}
	return b, status, err
}

func TestS3SingleProcess(t *testing.T) {
	requireS3Root(t)
	s := startS3Timed(t, S3Options{})
	ctx := context.Background()
	c := s3Client(s, s.SecretKey)
	const bucket = "forge"
	begin := time.Now()
	s.CreateBucket(t, bucket)
	t.Logf("CreateBucket: %v", time.Since(begin).Round(time.Millisecond))

	t.Run("LoopbackOnly", func(t *testing.T) {
		for _, p := range s.procs {
			ls := socketsOf(t, p.cmd.Process.Pid)
			if len(ls) == 0 {
				t.Errorf("weed %s: no listening socket found", p.name)
			}
			for _, l := range ls {
				if !strings.HasPrefix(l, "127.0.0.1:") {
					t.Errorf("weed %s listens on %s", p.name, l)
				}
			}
			t.Logf("weed %s: %s", p.name, strings.Join(ls, " "))
		}
	})

	t.Run("ConditionalPut", func(t *testing.T) {
		data := []byte("0123456789")
		begin := time.Now()
		out, err := put(ctx, c, bucket, "cond", data, func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
		if err != nil {
			t.Fatalf("PUT If-None-Match: * on a new key: %v", err)
		}
		t.Logf("first PUT: %v", time.Since(begin).Round(time.Millisecond))
		etag := aws.ToString(out.ETag)

		_, err = put(ctx, c, bucket, "cond", []byte("other"), func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
		if statusOf(err) != http.StatusPreconditionFailed {
			t.Errorf("PUT If-None-Match: * on an existing key: %v, want 412", err)
		}
		t.Logf("If-None-Match: * on an existing key: status %d, code %q", statusOf(err), codeOf(err))

		_, err = put(ctx, c, bucket, "cond", []byte("other"), func(in *s3.PutObjectInput) { in.IfMatch = aws.String(`"0123456789abcdef0123456789abcdef"`) })
		if statusOf(err) != http.StatusPreconditionFailed {
			t.Errorf("PUT If-Match: <wrong ETag>: %v, want 412", err)
		}
		t.Logf("If-Match: <wrong ETag>: status %d, code %q", statusOf(err), codeOf(err))

		_, err = put(ctx, c, bucket, "missing", []byte("other"), func(in *s3.PutObjectInput) { in.IfMatch = aws.String(etag) })
		t.Logf("If-Match on a missing key: status %d, code %q", statusOf(err), codeOf(err))
		if err == nil {
			t.Errorf("PUT If-Match on a missing key succeeded")
		}

		got, _, err := get(ctx, c, bucket, "cond", "")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("GET after refused PUTs: %q, %v; want %q", got, err, data)
		}

		data2 := []byte("abcdefghij")
		out2, err := put(ctx, c, bucket, "cond", data2, func(in *s3.PutObjectInput) { in.IfMatch = aws.String(etag) })
		if err != nil {
			t.Fatalf("PUT If-Match: <right ETag> %s: %v", etag, err)
		}
		if aws.ToString(out2.ETag) == etag {
			t.Errorf("ETag %s unchanged by new content", etag)
		}
		got, _, err = get(ctx, c, bucket, "cond", "")
		if err != nil || !bytes.Equal(got, data2) {
			t.Fatalf("GET after If-Match PUT: %q, %v; want %q", got, err, data2)
		}
		// The old ETag no longer matches.
		_, err = put(ctx, c, bucket, "cond", data, func(in *s3.PutObjectInput) { in.IfMatch = aws.String(etag) })
		if statusOf(err) != http.StatusPreconditionFailed {
			t.Errorf("PUT If-Match: <stale ETag>: %v, want 412", err)
		}
	})

	t.Run("ConcurrentCreate", func(t *testing.T) {
		// Of racing PUTs with If-None-Match: * on one new key, one wins.
		const n = 8
		var wg sync.WaitGroup
		statuses := make([]int, n)
		for i := range n {
			wg.Go(func() {
				_, err := put(ctx, c, bucket, "race", []byte(fmt.Sprintf("writer %d", i)), func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
				statuses[i] = statusOf(err)
			})
		}
		wg.Wait()
		won := 0
		for _, st := range statuses {
			switch st {
			case http.StatusOK:
				won++
			case http.StatusPreconditionFailed, http.StatusConflict:
			default:
				t.Errorf("racing PUT: status %d", st)
			}
		}
		t.Logf("racing PUTs with If-None-Match: *: statuses %v", statuses)
		if won != 1 {
			t.Errorf("%d racing PUTs with If-None-Match: * succeeded, want 1", won)
		}
	})

	t.Run("Range", func(t *testing.T) {
		data := []byte("0123456789")
		if _, err := put(ctx, c, bucket, "range", data, nil); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ rng, want string }{
			{"bytes=2-5", "2345"},
			{"bytes=-4", "6789"},
			{"bytes=7-", "789"},
		} {
			got, status, err := get(ctx, c, bucket, "range", tc.rng)
			if err != nil || status != http.StatusPartialContent || string(got) != tc.want {
				t.Errorf("GET Range: %s: %d %q, %v; want 206 %q", tc.rng, status, got, err, tc.want)
			}
		}
		_, status, err := get(ctx, c, bucket, "range", "bytes=20-30")
		t.Logf("GET Range: bytes=20-30 of 10 bytes: status %d, code %q", status, codeOf(err))
		if status != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("GET Range: bytes=20-30 of 10 bytes: %d, %v; want 416", status, err)
		}
	})

	t.Run("MultipartIfNoneMatch", func(t *testing.T) {
		if _, err := put(ctx, c, bucket, "mp", []byte("exists"), nil); err != nil {
			t.Fatal(err)
		}
		complete := func(key string) error {
			up, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: &key})
			if err != nil {
				t.Fatalf("CreateMultipartUpload: %v", err)
			}
			part, err := c.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: aws.String(bucket), Key: &key, UploadId: up.UploadId,
				PartNumber: aws.Int32(1), Body: bytes.NewReader([]byte("one part")),
			})
			if err != nil {
				t.Fatalf("UploadPart: %v", err)
			}
			_, err = c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
				Bucket: aws.String(bucket), Key: &key, UploadId: up.UploadId,
				IfNoneMatch: aws.String("*"),
				MultipartUpload: &types.CompletedMultipartUpload{Parts: []types.CompletedPart{
					{ETag: part.ETag, PartNumber: aws.Int32(1)},
				}},
			})
			return err
		}
		err := complete("mp")
		t.Logf("CompleteMultipartUpload If-None-Match: * on an existing key: status %d, code %q", statusOf(err), codeOf(err))
		if statusOf(err) != http.StatusPreconditionFailed {
			t.Errorf("CompleteMultipartUpload If-None-Match: * on an existing key: %v, want 412", err)
		}
		if got, _, err := get(ctx, c, bucket, "mp", ""); err != nil || string(got) != "exists" {
			t.Errorf("GET after refused multipart upload: %q, %v", got, err)
		}
		if err := complete("mp-new"); err != nil {
			t.Errorf("CompleteMultipartUpload If-None-Match: * on a new key: %v", err)
		}
		if got, _, err := get(ctx, c, bucket, "mp-new", ""); err != nil || string(got) != "one part" {
			t.Errorf("GET multipart object: %q, %v", got, err)
		}
	})

	t.Run("Refused", func(t *testing.T) {
		_, err := put(ctx, s3Client(s, s.SecretKey+"x"), bucket, "auth", []byte("x"), nil)
		t.Logf("wrong secret: status %d, code %q", statusOf(err), codeOf(err))
		if statusOf(err) != http.StatusForbidden {
			t.Errorf("PUT signed with a wrong secret: %v, want 403", err)
		}
		other := *s
		other.AccessKey = "FTUNKNOWNUNKNOWNUNKN"
		_, err = put(ctx, s3Client(&other, s.SecretKey), bucket, "auth", []byte("x"), nil)
		t.Logf("unknown access key: status %d, code %q", statusOf(err), codeOf(err))
		if statusOf(err) != http.StatusForbidden {
			t.Errorf("PUT with an unknown access key: %v, want 403", err)
		}
		for _, method := range []string{http.MethodPut, http.MethodGet} {
			req, err := http.NewRequest(method, s.Endpoint+"/"+bucket+"/range", strings.NewReader("x"))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("unsigned %s: %s, want 403\n%s", method, resp.Status, body)
			}
		}
		_, err = put(ctx, c, "no-such-bucket", "k", []byte("x"), nil)
		t.Logf("PUT into a missing bucket: status %d, code %q", statusOf(err), codeOf(err))
		if statusOf(err) != http.StatusNotFound {
			t.Errorf("PUT into a missing bucket: %v, want 404", err)
		}
	})

	t.Run("CreateBucketAgain", func(t *testing.T) {
		// The bucket CreateBucket made belongs to the identity.
		_, err := c.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: aws.String(bucket)})
		t.Logf("S3 CreateBucket of the bucket CreateBucket made: status %d, code %q", statusOf(err), codeOf(err))
		if codeOf(err) != "BucketAlreadyOwnedByYou" {
			t.Errorf("S3 CreateBucket of an existing bucket: %v, want BucketAlreadyOwnedByYou", err)
		}
	})

	t.Run("SDKDefaults", func(t *testing.T) {
		// The SDK's default checksums (CRC32 in an aws-chunked trailer).
		d := s3.New(s3.Options{
			BaseEndpoint: aws.String(s.Endpoint),
			Region:       s.Region,
			Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
			UsePathStyle: true,
		})
		data := bytes.Repeat([]byte("checksummed "), 100000)
		if _, err := put(ctx, d, bucket, "defaults", data, func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }); err != nil {
			t.Fatalf("PUT with the SDK's default checksums: %v", err)
		}
		got, _, err := get(ctx, d, bucket, "defaults", "")
		if err != nil || !bytes.Equal(got, data) {
			t.Fatalf("GET with the SDK's default checksum validation: %d bytes, %v", len(got), err)
		}
	})

	t.Logf("data directory: %s", diskUsage(s.dir))
}

func TestS3VolumeServerKilled(t *testing.T) {
	requireS3Root(t)
	s := startS3Timed(t, S3Options{VolumeServers: 3, Replication: "001"})
	ctx := context.Background()
	c := s3Client(s, s.SecretKey)
	const bucket = "forge"
	s.CreateBucket(t, bucket)

	t.Run("LoopbackOnly", func(t *testing.T) {
		for _, p := range s.procs {
			for _, l := range socketsOf(t, p.cmd.Process.Pid) {
				if !strings.HasPrefix(l, "127.0.0.1:") {
					t.Errorf("weed %s listens on %s", p.name, l)
				}
			}
		}
	})

	data := bytes.Repeat([]byte("forge replicated chunk "), 10000)
	begin := time.Now()
	if _, err := put(ctx, c, bucket, "obj", data, nil); err != nil {
		t.Fatal(err)
	}
	t.Logf("first PUT: %v", time.Since(begin).Round(time.Millisecond))
	holders := s.VolumeServersHolding(t, bucket, "obj")
	t.Logf("volume servers holding the object: %v", holders)
	if len(holders) != 2 {
		t.Fatalf("object on volume servers %v, want 2 of them (replication 001)", holders)
	}
	s.KillVolumeServer(t, holders[0])

	got, _, err := get(ctx, c, bucket, "obj", "")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("GET with volume server %d killed: %d bytes, %v; want %d bytes", holders[0], len(got), err, len(data))
	}
	got, status, err := get(ctx, c, bucket, "obj", "bytes=-4")
	if err != nil || status != http.StatusPartialContent || !bytes.Equal(got, data[len(data)-4:]) {
		t.Errorf("GET Range: bytes=-4 with volume server %d killed: %d %q, %v", holders[0], status, got, err)
	}

	// Not a property the harness promises: how soon writes work again.
	begin = time.Now()
	var failed []string
	for i := range 20 {
		key := "after-" + strconv.Itoa(i)
		if _, err := put(ctx, c, bucket, key, []byte(key), nil); err != nil {
			failed = append(failed, fmt.Sprintf("%s: %d %s", key, statusOf(err), codeOf(err)))
		}
	}
	t.Logf("20 PUTs after the kill, %v: %d failed %v", time.Since(begin).Round(time.Millisecond), len(failed), failed)

	s.RestartVolumeServer(t, holders[0])
	if got, _, err := get(ctx, c, bucket, "obj", ""); err != nil || !bytes.Equal(got, data) {
		t.Errorf("GET after restarting volume server %d: %d bytes, %v", holders[0], len(got), err)
	}
}

func TestS3GatewayKilled(t *testing.T) {
	requireS3Root(t)
	for _, tc := range []struct {
		name string
		opts S3Options
	}{
		{"OneProcess", S3Options{}},
		{"SeparateProcesses", S3Options{VolumeServers: 2}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			s := startS3Timed(t, tc.opts)
			ctx := context.Background()
			c := s3Client(s, s.SecretKey)
			const bucket = "forge"
			s.CreateBucket(t, bucket)
			data := bytes.Repeat([]byte("before the crash "), 1000)
			if _, err := put(ctx, c, bucket, "before", data, nil); err != nil {
				t.Fatal(err)
			}
			pid := s.gateway.cmd.Process.Pid
			s.KillGateway(t)
			if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
				t.Errorf("gateway %d still there after KillGateway: %v", pid, err)
			}
			if _, err := put(ctx, c, bucket, "during", data, nil); err == nil {
				t.Errorf("PUT with the gateway killed succeeded")
			}
			begin := time.Now()
			s.RestartGateway(t)
			t.Logf("RestartGateway: %v", time.Since(begin).Round(time.Millisecond))
			begin = time.Now()
			got, _, err := get(ctx, c, bucket, "before", "")
			if err != nil || !bytes.Equal(got, data) {
				t.Fatalf("GET after restart: %d bytes, %v; want %d bytes", len(got), err, len(data))
			}
			t.Logf("GET after restart: %v", time.Since(begin).Round(time.Millisecond))
			begin = time.Now()
			if _, err := put(ctx, c, bucket, "after", data, func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") }); err != nil {
				t.Errorf("PUT If-None-Match: * after restart: %v", err)
			}
			t.Logf("PUT If-None-Match: * after restart: %v", time.Since(begin).Round(time.Millisecond))
			_, err = put(ctx, c, bucket, "before", data, func(in *s3.PutObjectInput) { in.IfNoneMatch = aws.String("*") })
			if statusOf(err) != http.StatusPreconditionFailed {
				t.Errorf("PUT If-None-Match: * on a key written before the crash: %v, want 412", err)
			}
		})
	}
}

// socketsOf lists the TCP sockets listening, and the UDP sockets bound,
// that process pid holds, as "ip:port" ("udp ip:port").
func socketsOf(t *testing.T, pid int) []string {
	t.Helper()
	inodes := map[string]bool{}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, fd := range fds {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/fd/%s", pid, fd.Name()))
		if err == nil && strings.HasPrefix(link, "socket:[") {
			inodes[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	var out []string
	for _, table := range []string{"tcp", "tcp6", "udp", "udp6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", pid, table))
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(f)
		sc.Scan() // header
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) < 10 || !inodes[fields[9]] {
				continue
			}
			tcp := strings.HasPrefix(table, "tcp")
			if tcp && fields[3] != "0A" { // LISTEN
				continue
			}
			addr := procAddr(t, fields[1])
			if !tcp {
				addr = "udp " + addr
			}
			out = append(out, addr)
		}
		f.Close()
	}
	return out
}

// procAddr decodes a /proc/net/tcp address, "0100007F:1F90": the IP as
// 32-bit words in host (little-endian) order, the port in hex.
func procAddr(t *testing.T, s string) string {
	t.Helper()
	h, p, _ := strings.Cut(s, ":")
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		t.Fatalf("address %q: %v", s, err)
	}
	var ip net.IP
	for i := 0; i+8 <= len(h); i += 8 {
		w, err := strconv.ParseUint(h[i:i+8], 16, 32)
		if err != nil {
			t.Fatalf("address %q: %v", s, err)
		}
		ip = append(ip, byte(w), byte(w>>8), byte(w>>16), byte(w>>24))
	}
	return net.JoinHostPort(ip.String(), strconv.FormatUint(port, 10))
}

// diskUsage sums the apparent and the allocated sizes of the files
// under dir.
func diskUsage(dir string) string {
	var size, alloc int64
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			size += fi.Size()
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				alloc += st.Blocks * 512
			}
		}
		return nil
	})
	return fmt.Sprintf("%d KiB apparent, %d KiB allocated", size>>10, alloc>>10)
}
