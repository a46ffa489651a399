package mountinfo

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		line string
		want Mount
	}{
		{"root", "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw",
			Mount{ID: 22, Parent: 1, Root: "/", Point: "/", Options: "rw,relatime", Optional: []string{"shared:1"},
				FSType: "ext4", Source: "/dev/vda", SuperOptions: "rw"}},
		{"no optional fields", "43 40 0:37 / /var/tmp/t/dev rw,nosuid,noexec - tmpfs tmpfs rw,size=1024k,mode=755",
			Mount{ID: 43, Parent: 40, Root: "/", Point: "/var/tmp/t/dev", Options: "rw,nosuid,noexec",
				FSType: "tmpfs", Source: "tmpfs", SuperOptions: "rw,size=1024k,mode=755"}},
		{"two optional fields", "46 40 0:39 / /var/tmp/t/run rw shared:5 master:7 - tmpfs tmpfs rw",
			Mount{ID: 46, Parent: 40, Root: "/", Point: "/var/tmp/t/run", Options: "rw", Optional: []string{"shared:5", "master:7"},
				FSType: "tmpfs", Source: "tmpfs", SuperOptions: "rw"}},
		{"bind mount of a file", "44 43 0:5 /null /var/tmp/t/dev/null rw,nosuid,noexec - devtmpfs udev rw",
			Mount{ID: 44, Parent: 43, Root: "/null", Point: "/var/tmp/t/dev/null", Options: "rw,nosuid,noexec",
				FSType: "devtmpfs", Source: "udev", SuperOptions: "rw"}},
		{"escaped paths", `49 22 0:42 /a\011b /var/tmp/with\040space/dir rw - fuse.forge forge\134x rw,user_id=0`,
			Mount{ID: 49, Parent: 22, Root: "/a\tb", Point: "/var/tmp/with space/dir", Options: "rw",
				FSType: "fuse.forge", Source: `forge\x`, SuperOptions: "rw,user_id=0"}},
		{"empty source", "50 22 0:43 / /mnt rw - tmpfs  rw",
			Mount{ID: 50, Parent: 22, Root: "/", Point: "/mnt", Options: "rw", FSType: "tmpfs", Source: "", SuperOptions: "rw"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ms, err := Parse(tt.line + "\n")
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != 1 || !reflect.DeepEqual(ms[0], tt.want) {
				t.Errorf("Parse(%q) = %+v, want [%+v]", tt.line, ms, tt.want)
			}
		})
	}
}

func TestParseSkipsBlankLines(t *testing.T) {
	ms, err := Parse("\n22 1 254:0 / / rw - ext4 /dev/vda rw\n\n23 22 0:21 / /proc rw - proc proc rw\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) != 2 || ms[0].ID != 22 || ms[1].Point != "/proc" {
		t.Errorf("Parse: %+v, want mounts 22 on / and 23 on /proc", ms)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ name, text, want string }{
		{"too few fields", "22 1 254:0 / /\n", "line 1"},
		{"no separator", "22 1 254:0 / / rw shared:1 ext4 /dev/vda rw\n", "separator"},
		{"nothing after the separator", "22 1 254:0 / / rw - ext4\n", "fields"},
		{"ID not a number", "x 1 254:0 / / rw - ext4 /dev/vda rw\n", `mount ID "x"`},
		{"parent not a number", "22 y 254:0 / / rw - ext4 /dev/vda rw\n", `parent ID "y"`},
		{"second line", "22 1 254:0 / / rw - ext4 /dev/vda rw\n23\n", "line 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.text)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Parse(%q): error %v, want one containing %q", tt.text, err, tt.want)
			}
		})
	}
}

func TestUnder(t *testing.T) {
	ms, err := Parse(`22 1 254:0 / / rw - ext4 /dev/vda rw
40 22 0:35 / /var/tmp/t rw - tmpfs tmpfs rw
41 40 0:36 / /var/tmp/t/proc rw - proc proc rw
42 22 0:37 / /var/tmp/t2 rw - tmpfs tmpfs rw
43 41 0:38 / /var/tmp/t/proc rw - proc proc rw
44 22 0:39 / /var/tmp/a\040b rw - tmpfs tmpfs rw
`)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		dir  string
		want []string
	}{
		{"/var/tmp/t", []string{"/var/tmp/t", "/var/tmp/t/proc", "/var/tmp/t/proc"}},
		{"/var/tmp/t/", []string{"/var/tmp/t", "/var/tmp/t/proc", "/var/tmp/t/proc"}},
		{"/var/tmp/t/proc", []string{"/var/tmp/t/proc", "/var/tmp/t/proc"}},
		{"/var/tmp/a b", []string{"/var/tmp/a b"}},
		{"/var/tmp/none", nil},
		{"/", []string{"/", "/var/tmp/t", "/var/tmp/t/proc", "/var/tmp/t2", "/var/tmp/t/proc", "/var/tmp/a b"}},
	}
	for _, tt := range tests {
		if got := Under(ms, tt.dir); !reflect.DeepEqual(got, tt.want) {
			t.Errorf("Under(%q) = %q, want %q", tt.dir, got, tt.want)
		}
	}
}

func TestUnescape(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/plain", "/plain"},
		{`/a\040b`, "/a b"},
		{`/tab\011nl\012bs\134`, "/tab\tnl\nbs\\"},
		{`\040`, " "},
		{`/short\04`, `/short\04`}, // not a full escape: kept as is
		{`/not\089`, `/not\089`},
		{`/odd\9`, `/odd\9`},
		{`/trailing\`, `/trailing\`},
	}
	for _, tt := range tests {
		if got := Unescape(tt.in); got != tt.want {
			t.Errorf("Unescape(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// The kernel's own table parses, and has a mount on /.
func TestRead(t *testing.T) {
	ms, err := Read()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range ms {
		if m.Point == "/" {
			return
		}
	}
	t.Errorf("no mount on / in this process's mount table (%d mounts)", len(ms))
}

func TestReadFileMissing(t *testing.T) {
	_, err := ReadFile(filepath.Join(t.TempDir(), "mountinfo"))
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("ReadFile of a missing file: %v, want one that is os.ErrNotExist", err)
	}
}
