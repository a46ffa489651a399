package loopd

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"unicode/utf8"
)

// Limits of one request message.
const (
	// MaxMessageSize is the largest request accepted, in bytes. A real one
	// is under 150.
	MaxMessageSize = 4096
	// MaxFDs is how many file descriptors a message may carry before it is
	// refused as truncated; a valid request carries exactly RequestFDs.
	MaxFDs = 4
	// RequestFDs is the number of fds in a request: backing file, directory.
	RequestFDs = 2
)

// Sentinel errors, wrapped with what they concern. Their text ends up in the
// reply's "error" field.
var (
	// ErrInvalidRequest: the message is not a valid request.
	ErrInvalidRequest = errors.New("invalid request")
	// ErrPermission: the peer is neither root nor in an allowed group.
	ErrPermission = errors.New("permission denied")
	// ErrLimit: the client holds as many devices as it may.
	ErrLimit = errors.New("limit reached")
	// ErrClosed: loopd is shutting down, or the client went away.
	ErrClosed = errors.New("closed")
)

// Request is the JSON object of a request, osbuild's remoteloop format. FD
// and DirFD index the SCM_RIGHTS array sent with it.
type Request struct {
	FD         int    `json:"fd"`
	DirFD      int    `json:"dir_fd"`
	Offset     uint64 `json:"offset,omitempty"`
	SizeLimit  uint64 `json:"sizelimit,omitempty"`
	Partscan   bool   `json:"partscan,omitempty"`
	ReadOnly   bool   `json:"read_only,omitempty"`
	SectorSize uint32 `json:"sector_size,omitempty"`
	// Lock asks for an exclusive flock on the device while the client
	// holds it, as osbuild's loop.py takes one (so that udev leaves the
	// device alone). Today's osbuild client always sends the key.
	Lock bool `json:"lock,omitempty"`
}

// Response is the JSON object of a reply: Devname (and, with partscan,
// Partitions) on success, Error otherwise. osbuild's clients read only
// "devname"; an error reply makes them fail instead of wait.
type Response struct {
	Devname    string   `json:"devname,omitempty"`
	Partitions []string `json:"partitions,omitempty"`
	Error      string   `json:"error,omitempty"`
}

// requestKeys are the keys a request may have. Anything else is refused,
// rather than silently ignored, so a client asking for something loopd
// does not do learns it at once.
var requestKeys = []string{"fd", "dir_fd", "offset", "sizelimit", "partscan", "read_only", "sector_size", "lock"}

// ParseRequest decodes and validates a request that arrived with nfds file
// descriptors. Keys are matched exactly (unlike encoding/json's default);
// optional keys may be null, as Python's json writes None.
func ParseRequest(data []byte, nfds int) (Request, error) {
	var req Request
	bad := func(format string, args ...any) (Request, error) {
		return Request{}, fmt.Errorf("%w: %s", ErrInvalidRequest, fmt.Sprintf(format, args...))
	}
	if len(data) > MaxMessageSize {
		return bad("message of %d bytes, more than %d", len(data), MaxMessageSize)
	}
	if !utf8.Valid(data) {
		return bad("message is not UTF-8")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return bad("not a JSON object: %v", err)
	}
	if fields == nil {
		return bad("not a JSON object: null")
	}
	for k := range fields {
		if !slices.Contains(requestKeys, k) {
			return bad("unknown key %q", k)
		}
	}
	isNull := func(raw json.RawMessage) bool { return bytes.Equal(bytes.TrimSpace(raw), []byte("null")) }
	index := func(key string) (int, error) {
		raw, ok := fields[key]
		if !ok || isNull(raw) {
			return 0, fmt.Errorf("%w: %q is required", ErrInvalidRequest, key)
		}
		var v int
		if err := json.Unmarshal(raw, &v); err != nil {
			return 0, fmt.Errorf("%w: %q must be an integer, got %s", ErrInvalidRequest, key, raw)
		}
		if v < 0 || v >= nfds {
			return 0, fmt.Errorf("%w: %q is %d, but the message carries %d file descriptors", ErrInvalidRequest, key, v, nfds)
		}
		return v, nil
	}
	optional := func(key, kind string, dst any) error {
		raw, ok := fields[key]
		if !ok || isNull(raw) {
			return nil
		}
		if err := json.Unmarshal(raw, dst); err != nil {
			return fmt.Errorf("%w: %q must be %s, got %s", ErrInvalidRequest, key, kind, raw)
		}
		return nil
	}
	if nfds != RequestFDs {
		return bad("message carries %d file descriptors, want %d (backing file, directory)", nfds, RequestFDs)
	}
	var err error
	if req.FD, err = index("fd"); err != nil {
		return Request{}, err
	}
	if req.DirFD, err = index("dir_fd"); err != nil {
		return Request{}, err
	}
	if req.FD == req.DirFD {
		return bad("fd and dir_fd are both %d", req.FD)
	}
	for _, o := range []struct {
		key, kind string
		dst       any
	}{
		{"offset", "a byte count ≥ 0", &req.Offset},
		{"sizelimit", "a byte count ≥ 0", &req.SizeLimit},
		{"partscan", "a boolean", &req.Partscan},
		{"read_only", "a boolean", &req.ReadOnly},
		{"sector_size", "512, 1024, 2048 or 4096", &req.SectorSize},
		{"lock", "a boolean", &req.Lock},
	} {
		if err := optional(o.key, o.kind, o.dst); err != nil {
			return Request{}, err
		}
	}
	switch req.SectorSize {
	case 0, 512, 1024, 2048, 4096:
	default:
		return bad("\"sector_size\" must be 512, 1024, 2048 or 4096, got %d", req.SectorSize)
	}
	if req.Offset > 1<<63-1 || req.SizeLimit > 1<<63-1 {
		return bad("offset and sizelimit must be below 2^63")
	}
	return req, nil
}
