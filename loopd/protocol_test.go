package loopd_test

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/forge-build/forge/loopd"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		nfds    int
		want    loopd.Request
		wantErr string // substring of the error; "" means success
	}{
		{name: "osbuild minimal", data: `{"fd": 0, "dir_fd": 1}`, nfds: 2, want: loopd.Request{FD: 0, DirFD: 1}},
		{name: "indices swapped", data: `{"fd": 1, "dir_fd": 0}`, nfds: 2, want: loopd.Request{FD: 1, DirFD: 0}},
		{
			name: "every field",
			data: `{"fd": 0, "dir_fd": 1, "offset": 1048576, "sizelimit": 2097152, "partscan": true, "read_only": true, "sector_size": 4096}`,
			nfds: 2,
			want: loopd.Request{FD: 0, DirFD: 1, Offset: 1 << 20, SizeLimit: 2 << 20, Partscan: true, ReadOnly: true, SectorSize: 4096},
		},
		{
			name: "today's osbuild client (remoteloop.py sends every key)",
			data: `{"fd": 0, "dir_fd": 1, "lock": false, "partscan": false, "read_only": false, "sector_size": 512}`,
			nfds: 2,
			want: loopd.Request{FD: 0, DirFD: 1, SectorSize: 512},
		},
		{name: "lock", data: `{"fd": 0, "dir_fd": 1, "lock": true}`, nfds: 2, want: loopd.Request{DirFD: 1, Lock: true}},
		{name: "lock not a boolean", data: `{"fd": 0, "dir_fd": 1, "lock": "yes"}`, nfds: 2, wantErr: "lock"},
		{name: "optional keys null, as Python's None", data: `{"fd": 0, "dir_fd": 1, "offset": null, "sizelimit": null, "partscan": null}`, nfds: 2, want: loopd.Request{DirFD: 1}},
		{name: "whitespace around", data: " \n{\"fd\":0,\"dir_fd\":1}\n ", nfds: 2, want: loopd.Request{DirFD: 1}},
		{name: "empty", data: ``, nfds: 2, wantErr: "not a JSON object"},
		{name: "truncated JSON", data: `{"fd": 0, "dir_fd"`, nfds: 2, wantErr: "not a JSON object"},
		{name: "trailing garbage", data: `{"fd": 0, "dir_fd": 1} x`, nfds: 2, wantErr: "not a JSON object"},
		{name: "two objects", data: `{"fd": 0, "dir_fd": 1}{}`, nfds: 2, wantErr: "not a JSON object"},
		{name: "array", data: `[0, 1]`, nfds: 2, wantErr: "not a JSON object"},
		{name: "null", data: `null`, nfds: 2, wantErr: "not a JSON object"},
		{name: "not UTF-8", data: "{\"fd\": 0, \"dir_fd\": 1, \"x\xff\": 1}", nfds: 2, wantErr: "not UTF-8"},
		{name: "unknown key", data: `{"fd": 0, "dir_fd": 1, "flock": true}`, nfds: 2, wantErr: `unknown key "flock"`},
		{name: "key in wrong case", data: `{"FD": 0, "dir_fd": 1}`, nfds: 2, wantErr: `unknown key "FD"`},
		{name: "missing fd", data: `{"dir_fd": 1}`, nfds: 2, wantErr: `"fd" is required`},
		{name: "missing dir_fd", data: `{"fd": 0}`, nfds: 2, wantErr: `"dir_fd" is required`},
		{name: "null fd", data: `{"fd": null, "dir_fd": 1}`, nfds: 2, wantErr: `"fd" is required`},
		{name: "string fd", data: `{"fd": "0", "dir_fd": 1}`, nfds: 2, wantErr: `"fd" must be an integer`},
		{name: "float fd", data: `{"fd": 0.5, "dir_fd": 1}`, nfds: 2, wantErr: `"fd" must be an integer`},
		{name: "negative fd", data: `{"fd": -1, "dir_fd": 1}`, nfds: 2, wantErr: `"fd" is -1`},
		{name: "fd out of range", data: `{"fd": 0, "dir_fd": 2}`, nfds: 2, wantErr: `"dir_fd" is 2`},
		{name: "same index twice", data: `{"fd": 1, "dir_fd": 1}`, nfds: 2, wantErr: "both 1"},
		{name: "no fds", data: `{"fd": 0, "dir_fd": 1}`, nfds: 0, wantErr: "carries 0 file descriptors"},
		{name: "one fd", data: `{"fd": 0, "dir_fd": 1}`, nfds: 1, wantErr: "carries 1 file descriptors"},
		{name: "three fds", data: `{"fd": 0, "dir_fd": 1}`, nfds: 3, wantErr: "carries 3 file descriptors"},
		{name: "negative offset", data: `{"fd": 0, "dir_fd": 1, "offset": -512}`, nfds: 2, wantErr: `"offset" must be`},
		{name: "huge offset", data: `{"fd": 0, "dir_fd": 1, "offset": 18446744073709551615}`, nfds: 2, wantErr: "below 2^63"},
		{name: "string partscan", data: `{"fd": 0, "dir_fd": 1, "partscan": "yes"}`, nfds: 2, wantErr: `"partscan" must be a boolean`},
		{name: "odd sector size", data: `{"fd": 0, "dir_fd": 1, "sector_size": 1000}`, nfds: 2, wantErr: "sector_size"},
		{name: "too long", data: `{"fd": 0, "dir_fd": 1, "offset": 0` + strings.Repeat(" ", loopd.MaxMessageSize) + `}`, nfds: 2, wantErr: "more than 4096"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got, err := loopd.ParseRequest([]byte(test.data), test.nfds)
			if test.wantErr == "" {
				if err != nil {
					t.Fatalf("ParseRequest: %v", err)
				}
				if got != test.want {
					t.Fatalf("ParseRequest = %+v, want %+v", got, test.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("ParseRequest = %+v, want an error containing %q", got, test.wantErr)
			}
			if !errors.Is(err, loopd.ErrInvalidRequest) {
				t.Errorf("error %v does not wrap ErrInvalidRequest", err)
			}
			if !strings.Contains(err.Error(), test.wantErr) {
				t.Errorf("error %q does not contain %q", err, test.wantErr)
			}
		})
	}
}

// TestRequestWireFormat pins the JSON the Go client sends to what osbuild's
// remoteloop server reads: fd and dir_fd always present, options only when
// set.
func TestRequestWireFormat(t *testing.T) {
	tests := []struct {
		req  loopd.Request
		want string
	}{
		{loopd.Request{FD: 0, DirFD: 1}, `{"fd":0,"dir_fd":1}`},
		{loopd.Request{FD: 0, DirFD: 1, Offset: 512, SizeLimit: 1024, Partscan: true}, `{"fd":0,"dir_fd":1,"offset":512,"sizelimit":1024,"partscan":true}`},
		{loopd.Request{FD: 1, DirFD: 0, ReadOnly: true, SectorSize: 4096}, `{"fd":1,"dir_fd":0,"read_only":true,"sector_size":4096}`},
	}
	for _, test := range tests {
		b, err := json.Marshal(test.req)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != test.want {
			t.Errorf("Marshal(%+v) = %s, want %s", test.req, b, test.want)
		}
		back, err := loopd.ParseRequest(b, loopd.RequestFDs)
		if err != nil || back != test.req {
			t.Errorf("ParseRequest(%s) = %+v, %v; want %+v", b, back, err, test.req)
		}
	}
}

func TestResponseWireFormat(t *testing.T) {
	tests := []struct {
		resp loopd.Response
		want string
	}{
		{loopd.Response{Devname: "loop3"}, `{"devname":"loop3"}`},
		{loopd.Response{Devname: "loop3", Partitions: []string{"loop3p1"}}, `{"devname":"loop3","partitions":["loop3p1"]}`},
		{loopd.Response{Error: "permission denied"}, `{"error":"permission denied"}`},
	}
	for _, test := range tests {
		b, err := json.Marshal(test.resp)
		if err != nil {
			t.Fatal(err)
		}
		if string(b) != test.want {
			t.Errorf("Marshal(%+v) = %s, want %s", test.resp, b, test.want)
		}
	}
}

// FuzzParseRequest: whatever arrives, the parser must not panic, and what
// it accepts must be a request the server can act on safely.
func FuzzParseRequest(f *testing.F) {
	for _, seed := range []string{
		`{"fd": 0, "dir_fd": 1}`,
		`{"fd": 1, "dir_fd": 0, "offset": 512, "sizelimit": 4096, "partscan": true, "read_only": false, "sector_size": 512}`,
		`{"fd": 0, "dir_fd": 1, "offset": null}`,
		`{"fd": 0}`,
		`[]`,
		`null`,
		`{"fd": 1e1, "dir_fd": -0}`,
	} {
		f.Add([]byte(seed), 2)
	}
	f.Fuzz(func(t *testing.T, data []byte, nfds int) {
		req, err := loopd.ParseRequest(data, nfds)
		if err != nil {
			if !errors.Is(err, loopd.ErrInvalidRequest) {
				t.Fatalf("error %v does not wrap ErrInvalidRequest", err)
			}
			return
		}
		if nfds != loopd.RequestFDs {
			t.Fatalf("accepted %q with %d fds", data, nfds)
		}
		if req.FD < 0 || req.FD >= nfds || req.DirFD < 0 || req.DirFD >= nfds || req.FD == req.DirFD {
			t.Fatalf("accepted indices fd=%d dir_fd=%d for %d fds", req.FD, req.DirFD, nfds)
		}
		switch req.SectorSize {
		case 0, 512, 1024, 2048, 4096:
		default:
			t.Fatalf("accepted sector size %d", req.SectorSize)
		}
		// What was accepted survives a round trip through the client's
		// encoding unchanged.
		b, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		back, err := loopd.ParseRequest(b, nfds)
		if err != nil || back != req {
			t.Fatalf("round trip of %+v: %+v, %v", req, back, err)
		}
	})
}
