package client

import (
	"encoding/json"
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/forge-build/forge/cas"
)

func TestPathSurvivesJSON(t *testing.T) {
	tests := []struct {
		name, path, wire string
	}{
		{"plain", "/var/tmp/a b", `"/var/tmp/a b"`},
		{"utf-8", "/tmp/ünï", `"/tmp/ünï"`},
		{"newline", "/tmp/a\nb", `"/tmp/a\nb"`},
		{"not utf-8", "/tmp/\xff\xfe", `{"base64":"L3RtcC///g=="}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(Path(tt.path))
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.wire {
				t.Fatalf("wire form %s, want %s", b, tt.wire)
			}
			var back Path
			if err := json.Unmarshal(b, &back); err != nil {
				t.Fatal(err)
			}
			if string(back) != tt.path {
				t.Fatalf("round trip gave %q, want %q", back, tt.path)
			}
		})
	}
	var p Path
	if err := json.Unmarshal([]byte(`42`), &p); err == nil {
		t.Fatal("a number decoded as a path")
	}
}

// An error keeps its kind across the socket: the client can still test it
// against the store's sentinels.
func TestErrorKindsSurviveTheWire(t *testing.T) {
	tests := []struct {
		err  error
		kind string
		is   error
	}{
		{fmt.Errorf("ref x: %w", cas.ErrNotFound), kindNotFound, cas.ErrNotFound},
		{fmt.Errorf("bad: %w", cas.ErrInvalidArgument), kindInvalid, cas.ErrInvalidArgument},
		{&cas.InUseError{Dir: "/s", Holder: "process 1"}, kindInUse, cas.ErrInUse},
		{fmt.Errorf("chunk: %w", cas.ErrCorrupt), kindCorrupt, cas.ErrCorrupt},
		{fmt.Errorf("umount: %w", syscall.EBUSY), kindBusy, syscall.EBUSY},
		{fmt.Errorf("%w: uid 5", ErrDenied), kindDenied, ErrDenied},
		{errors.New("anything else"), kindOther, nil},
	}
	for _, tt := range tests {
		t.Run(tt.kind, func(t *testing.T) {
			api := ToWire(tt.err)
			if api.Kind != tt.kind || api.Message != tt.err.Error() {
				t.Fatalf("ToWire = %+v, want kind %s", api, tt.kind)
			}
			remote := &RemoteError{Kind: api.Kind, Message: api.Message}
			if tt.is != nil && !errors.Is(remote, tt.is) {
				t.Fatalf("remote %s error is not %v", tt.kind, tt.is)
			}
			if tt.is == nil && (errors.Is(remote, cas.ErrNotFound) || errors.Is(remote, cas.ErrCorrupt)) {
				t.Fatal("an unknown kind matches a sentinel")
			}
		})
	}
}

// A composed mount of no entries (an empty tree) keeps its empty list on
// the wire; a mount without Compose has no "compose" key at all.
func TestMountRequestCompose(t *testing.T) {
	tests := []struct {
		req  MountRequest
		wire string
	}{
		{MountRequest{Tree: "t", Mountpoint: "/m"}, `{"tree":"t","mountpoint":"/m"}`},
		{MountRequest{Mountpoint: "/m", Compose: []ComposeEntry{}}, `{"mountpoint":"/m","compose":[]}`},
		{MountRequest{Mountpoint: "/m", Compose: []ComposeEntry{{Name: "a/b", Tree: "r"}, {Name: "c", Tree: "r", Path: "/x"}}},
			`{"mountpoint":"/m","compose":[{"name":"a/b","tree":"r"},{"name":"c","tree":"r","path":"/x"}]}`},
	}
	for _, tt := range tests {
		b, err := json.Marshal(tt.req)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != tt.wire {
			t.Errorf("wire form %s, want %s", b, tt.wire)
		}
		var back MountRequest
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatal(err)
		}
		if (back.Compose == nil) != (tt.req.Compose == nil) || len(back.Compose) != len(tt.req.Compose) {
			t.Errorf("%s decoded with compose %#v, want %#v", b, back.Compose, tt.req.Compose)
		}
	}
}
