package diskfs

import (
	"strings"
	"testing"
)

const uuid = "9c6ae55b-cf88-45b8-84e8-64990759f39d"

func TestSocketPath(t *testing.T) {
	t.Setenv(SocketEnv, "")
	if got := SocketPath(); got != DefaultSocket {
		t.Errorf("default %q", got)
	}
	t.Setenv(SocketEnv, "/tmp/x.sock")
	if got := SocketPath(); got != "/tmp/x.sock" {
		t.Errorf("override %q", got)
	}
}

func TestCheckLayout(t *testing.T) {
	fs := func(mp string, off, size int64) Filesystem {
		return Filesystem{Type: "ext4", UUID: uuid, Mountpoint: mp, Offset: off, Size: size}
	}
	tests := []struct {
		name    string
		fss     []Filesystem
		wantErr string
	}{
		{"root", []Filesystem{fs("/", 0, 1<<20)}, ""},
		{"boot and root", []Filesystem{fs("/boot", 1<<20, 1<<20), fs("/", 2<<20, 1<<20)}, ""},
		{"no root", []Filesystem{fs("/boot", 0, 1<<20)}, "want one filesystem mounted at \"/\", got 0"},
		{"none", nil, "got 0"},
		{"twice", []Filesystem{fs("/", 0, 1<<20), fs("/", 1<<20, 1<<20)}, "used twice"},
		{"overlap", []Filesystem{fs("/", 0, 2<<20), fs("/boot", 1<<20, 1<<20)}, "filesystems 0 and 1 overlap"},
		{"unaligned", []Filesystem{fs("/", 100, 1<<20)}, "whole 512-byte sectors"},
		{"empty", []Filesystem{fs("/", 0, 0)}, "positive size"},
		{"xfs", []Filesystem{{Type: "xfs", UUID: uuid, Mountpoint: "/", Size: 512}}, "type: \"xfs\" is not supported"},
		{"bad uuid", []Filesystem{{Type: "ext4", UUID: "x", Mountpoint: "/", Size: 512}}, "uuid:"},
		{"unclean mountpoint", []Filesystem{fs("/", 0, 512), fs("/boot/../etc", 512, 512)}, "mountpoint:"},
		{"long label", []Filesystem{{Type: "ext4", UUID: uuid, Label: "seventeen-bytes!!", Mountpoint: "/", Size: 512}}, "label:"},
	}
	for _, test := range tests {
		err := checkLayout(test.fss)
		if test.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", test.name, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), test.wantErr) {
			t.Errorf("%s: %v, want an error with %q", test.name, err, test.wantErr)
		}
	}
}

func TestCheckUUID(t *testing.T) {
	for _, s := range []string{uuid, strings.ToUpper(uuid)} {
		if err := CheckUUID(s); err != nil {
			t.Errorf("%s: %v", s, err)
		}
	}
	for _, s := range []string{"", "9c6ae55bcf8845b884e864990759f39d", uuid + "0", "9c6ae55b-cf88-45b8-84e8-64990759f39g", "-U" + uuid[2:]} {
		if err := CheckUUID(s); err == nil {
			t.Errorf("%q accepted", s)
		}
	}
}
