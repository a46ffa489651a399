package grub2

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

var versionPairs = [][2]string{
	{"6.1.0-13-amd64", "6.1.0-9-amd64"},
	{"6.1.0-9-amd64", "6.1.0-13-amd64"},
	{"6.1.0-13-amd64", "6.1.0-13-amd64"},
	{"6.1.0-13-amd64", "6.1.0-13-cloud-amd64"},
	{"6.10.0-1-amd64", "6.9.0-1-amd64"},
	{"6.1.0-rc7-amd64", "6.1.0-amd64"},
	{"5.10.0-26-amd64", "6.1.0-9-amd64"},
	{"1.0~rc1", "1.0"},
	{"1.0", "1.0+b1"},
	{"1:1.0", "2.0"},
	{"1.0-1", "1.0-1~bpo12+1"},
	{"1.0a", "1.0"},
	{"1.0.", "1.0"},
	{"001", "1"},
	{"a", "b"},
	{"1.0-1", "1.0-1.1"},
	{"0", "00"},
}

func sign(n int) int {
	switch {
	case n < 0:
		return -1
	case n > 0:
		return 1
	}
	return 0
}

// compareDebianVersions agrees with dpkg itself.
func TestCompareDebianVersionsWithDpkg(t *testing.T) {
	dpkg, err := exec.LookPath("dpkg")
	if err != nil {
		t.Skip("needs dpkg to compare against: ", err)
	}
	for _, p := range versionPairs {
		want := 0
		for _, rel := range []struct {
			op string
			s  int
		}{{"lt", -1}, {"gt", 1}} {
			if exec.Command(dpkg, "--compare-versions", p[0], rel.op, p[1]).Run() == nil {
				want = rel.s
			}
		}
		if got := sign(compareDebianVersions(p[0], p[1])); got != want {
			t.Errorf("compare(%q, %q) = %d, dpkg says %d", p[0], p[1], got, want)
		}
	}
}

func TestCompareKernelVersions(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"6.1.0-13-amd64", "6.1.0-9-amd64", 1},
		{"6.1.0-rc7-amd64", "6.1.0-amd64", -1}, // -rc sorts first, as in grub-mkconfig
		{"6.1.0-13-amd64", "6.1.0-13-amd64", 0},
		{"6.12.9", "6.2.16", 1},
		{"", "0", 0}, // dpkg skips leading zeros: both are empty
	}
	for _, tt := range tests {
		if got := sign(compareKernelVersions(tt.a, tt.b)); got != tt.want {
			t.Errorf("compareKernelVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
		if got := sign(compareKernelVersions(tt.b, tt.a)); got != -tt.want {
			t.Errorf("compareKernelVersions(%q, %q) = %d, want %d", tt.b, tt.a, got, -tt.want)
		}
	}
}

func TestFindKernels(t *testing.T) {
	tests := []struct {
		name    string
		files   []string // in /boot; a name ending in "@" is a directory
		want    []string // versions, newest first
		wantErr string
	}{
		{"two", []string{"vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-13-amd64", "initrd.img-6.1.0-13-amd64",
			"config-6.1.0-13-amd64", "System.map-6.1.0-13-amd64", "grub@"}, []string{"6.1.0-13-amd64", "6.1.0-9-amd64"}, ""},
		{"three with rc", []string{"vmlinuz-6.2.0-rc1", "initrd.img-6.2.0-rc1", "vmlinuz-6.1.0", "initrd.img-6.1.0", "vmlinuz-6.2.0", "initrd.img-6.2.0"},
			[]string{"6.2.0", "6.2.0-rc1", "6.1.0"}, ""},
		{"garbage skipped", []string{"vmlinuz-6.1.0-9-amd64", "initrd.img-6.1.0-9-amd64", "vmlinuz-6.1.0-13-amd64.dpkg-tmp", "vmlinuz-6.1.0-13-amd64.sig", "vmlinuz-7@"},
			[]string{"6.1.0-9-amd64"}, ""},
		{"no boot", nil, nil, "the tree has no /boot"},
		{"no kernel", []string{"grub@", "initrd.img-6.1.0-9-amd64"}, nil, "/boot holds no vmlinuz-VERSION"},
		{"no initrd", []string{"vmlinuz-6.1.0-9-amd64"}, nil, "kernel /boot/vmlinuz-6.1.0-9-amd64 has no initramfs /boot/initrd.img-6.1.0-9-amd64"},
		{"odd version", []string{"vmlinuz-6.1 x", "initrd.img-6.1 x"}, nil, `version "6.1 x" has characters`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree := t.TempDir()
			for _, f := range tt.files {
				p := filepath.Join(tree, "boot", strings.TrimSuffix(f, "@"))
				if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
					t.Fatal(err)
				}
				var err error
				if strings.HasSuffix(f, "@") {
					err = os.Mkdir(p, 0o755)
				} else {
					err = os.WriteFile(p, []byte(f), 0o644)
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			root, err := os.OpenRoot(tree)
			if err != nil {
				t.Fatal(err)
			}
			defer root.Close()
			kernels, err := findKernels(root)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("findKernels: %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, k := range kernels {
				got = append(got, k.version)
				if k.linux != "vmlinuz-"+k.version || k.initrd != "initrd.img-"+k.version {
					t.Errorf("kernel %+v: wrong file names", k)
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("kernels %q, want %q", got, tt.want)
			}
		})
	}
}
