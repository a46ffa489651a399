package fstab

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

func TestRun(t *testing.T) {
	tests := []struct {
		name    string
		options string
		want    string // /etc/fstab, when wantErr is ""
		wantErr string
	}{
		{"osbuild's sample",
			`{"filesystems": [{"uuid": "76a22bf4-f153-4541-b6c7-0332c0dfaeac", "vfs_type": "ext4", "path": "/", "options": "errors=remount-ro", "freq": 1, "passno": 1}]}`,
			"UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac\t/\text4\terrors=remount-ro\t1\t1\n", ""},
		{"defaults", `{"filesystems": [{"label": "root", "path": "/"}]}`,
			"LABEL=root\t/\tnone\tdefaults\t0\t0\n", ""},
		{"each spec, in order",
			`{"filesystems": [
			  {"uuid": "76a22bf4-f153-4541-b6c7-0332c0dfaeac", "path": "/", "vfs_type": "ext4"},
			  {"partlabel": "ESP", "path": "/boot/efi", "vfs_type": "vfat", "options": "umask=0077", "passno": 2},
			  {"device": "/dev/vdb1", "path": "none", "vfs_type": "swap", "options": "sw"},
			  {"uuid": "6699-AFB5", "path": "/srv", "vfs_type": "vfat"}]}`,
			"UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac\t/\text4\tdefaults\t0\t0\n" +
				"PARTLABEL=ESP\t/boot/efi\tvfat\tumask=0077\t0\t2\n" +
				"/dev/vdb1\tnone\tswap\tsw\t0\t0\n" +
				"UUID=6699-AFB5\t/srv\tvfat\tdefaults\t0\t0\n", ""},
		{"escaped", `{"filesystems": [{"label": "my disk", "path": "/mnt/a\\b c"}]}`,
			"LABEL=my\\040disk\t/mnt/a\\134b\\040c\tnone\tdefaults\t0\t0\n", ""},
		{"empty list", `{"filesystems": []}`, "", ""},
		{"missing", `{}`, "", `option "filesystems": is required`},
		{"no spec", `{"filesystems": [{"path": "/"}]}`, "", `option "filesystems[0]": give exactly one of`},
		{"two specs", `{"filesystems": [{"label": "a", "path": "/"}, {"uuid": "76a22bf4-f153-4541-b6c7-0332c0dfaeac", "label": "root", "path": "/"}]}`, "", `option "filesystems[1]": give exactly one of "uuid", "label", "partlabel" and "device" (got 2)`},
		{"no path", `{"filesystems": [{"label": "root"}]}`, "", `"path" (the mount point) is required`},
		{"relative path", `{"filesystems": [{"label": "root", "path": "mnt"}]}`, "", `"path" "mnt" is neither`},
		{"bad uuid", `{"filesystems": [{"uuid": "x y", "path": "/"}]}`, "", `"uuid" "x y" contains 'x'`},
		{"space in type", `{"filesystems": [{"label": "r", "path": "/", "vfs_type": "ext4 x"}]}`, "", `"vfs_type" "ext4 x" contains white space`},
		{"newline in options", `{"filesystems": [{"label": "r", "path": "/", "options": "ro\nx"}]}`, "", `"options" "ro\nx" contains white space`},
		{"negative passno", `{"filesystems": [{"label": "r", "path": "/", "passno": -1}]}`, "", `"passno" -1 is negative`},
		{"fractional freq", `{"filesystems": [{"label": "r", "path": "/", "freq": 0.5}]}`, "", `want integer`},
		{"unknown key", `{"filesystems": [{"label": "r", "path": "/", "dump": 1}]}`, "", `unknown option "dump"`},
		{"ostree", `{"filesystems": [], "ostree": {"deployment": {"default": true}}}`, "", `option "ostree": ostree deployments are not supported`},
		{"unknown option", `{"filesystems": [], "swap": []}`, "", `unknown option "swap"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := t.TempDir()
			err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(tt.options)})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("Run: error %v, want one containing %q", err, tt.wantErr)
				}
				if _, err := os.Stat(filepath.Join(tree, "etc")); !os.IsNotExist(err) {
					t.Errorf("a failed run wrote to the tree (stat /etc: %v)", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			path := filepath.Join(tree, "etc/fstab")
			b, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("/etc/fstab =\n%s\nwant\n%s", b, tt.want)
			}
			if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o644 {
				t.Errorf("/etc/fstab mode %v, want 0644", fi.Mode())
			}
		})
	}
}

// The stage replaces Debian's placeholder fstab ("# UNCONFIGURED FSTAB").
func TestReplaces(t *testing.T) {
	tree := t.TempDir()
	if err := os.Mkdir(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "etc/fstab"), []byte("# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(`{"filesystems": [{"label": "root", "path": "/", "vfs_type": "ext4"}]}`)}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(filepath.Join(tree, "etc/fstab"))
	if want := "LABEL=root\t/\text4\tdefaults\t0\t0\n"; string(b) != want {
		t.Errorf("/etc/fstab = %q, want %q", b, want)
	}
}
