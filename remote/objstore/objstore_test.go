package objstore

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestErrorsFromAFakeServer covers what a real server cannot be made to
// do on demand: fail with a 500, or answer a GET without end. Everything
// else is tested against SeaweedFS (integration/remote).
func TestErrorsFromAFakeServer(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    string
		is      error
	}{
		{"server error", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusInternalServerError)
		}, "HTTP 500", nil},
		{"no such key", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`<Error><Code>NoSuchKey</Code><Message>no</Message></Error>`))
		}, "not found", ErrNotFound},
		{"no such bucket", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`<Error><Code>NoSuchBucket</Code><Message>no</Message></Error>`))
		}, "the bucket does not exist", ErrNoBucket},
		{"access denied", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			w.Write([]byte(`<Error><Code>AccessDenied</Code><Message>no</Message></Error>`))
		}, "access denied", nil},
		{"a body longer than the limit, of no stated length", func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusOK)
			chunk := make([]byte, 64<<10)
			for range 32 {
				if _, err := w.Write(chunk); err != nil {
					return
				}
				w.(http.Flusher).Flush()
			}
		}, "more than the", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			b, err := Open(context.Background(), Location{Endpoint: srv.URL, Bucket: "bucket"}, Credentials{AccessKeyID: "k", SecretAccessKey: "s"})
			if err != nil {
				t.Fatal(err)
			}
			b.maxGet = 1 << 20
			_, _, err = b.Get(context.Background(), "key")
			if err == nil || !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("err %v, want one line saying %q", err, tt.want)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("err %v is not %v", err, tt.is)
			}
			if strings.Contains(err.Error(), "s3://bucket") == false {
				t.Errorf("err %v does not name the bucket", err)
			}
		})
	}
}

func TestCredentialsNeverPrinted(t *testing.T) {
	c := Credentials{AccessKeyID: "AKID", SecretAccessKey: "very-secret", SessionToken: "tok"}
	if s := c.String(); strings.Contains(s, "very-secret") || strings.Contains(s, "tok") {
		t.Errorf("Credentials.String() = %q", s)
	}
}
