package chroot

import (
	"reflect"
	"testing"

	"github.com/forge-build/forge/internal/mountinfo"
)

const sampleMountinfo = `22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
23 22 0:21 / /proc rw,nosuid,nodev,noexec,relatime shared:12 - proc proc rw
40 22 0:35 / /var/tmp/t rw,relatime shared:20 - tmpfs tmpfs rw
41 40 0:36 / /var/tmp/t/proc rw,nosuid,nodev,noexec,relatime - proc proc rw
42 40 0:20 / /var/tmp/t/sys ro,nosuid,nodev,noexec,relatime - sysfs sysfs rw
43 40 0:37 / /var/tmp/t/dev rw,nosuid,noexec - tmpfs tmpfs rw,size=1024k,mode=755
44 43 0:5 /null /var/tmp/t/dev/null rw,nosuid,noexec - devtmpfs udev rw
45 43 0:38 / /var/tmp/t/dev/pts rw,nosuid,noexec - devpts devpts rw,gid=5,mode=620,ptmxmode=666
46 40 0:39 / /var/tmp/t/run rw master:7 - tmpfs tmpfs rw
47 46 0:40 / /var/tmp/t/run rw - tmpfs tmpfs rw
48 22 0:41 / /var/tmp/t2 rw - tmpfs tmpfs rw
49 22 0:42 / /var/tmp/with\040space/dir rw - tmpfs tmpfs rw
`

// parseMountinfo is the mount table of text, as readMounts gives it.
func parseMountinfo(t *testing.T, text string) []mount {
	t.Helper()
	ms, err := mountinfo.Parse(text)
	if err != nil {
		t.Fatal(err)
	}
	return reduce(ms)
}

func TestReduce(t *testing.T) {
	ms := parseMountinfo(t, sampleMountinfo)
	if len(ms) != 12 {
		t.Fatalf("parsed %d mounts, want 12", len(ms))
	}
	tests := []struct {
		i    int
		want mount
	}{
		{0, mount{ID: 22, Point: "/", FSType: "ext4"}},
		{5, mount{ID: 43, Point: "/var/tmp/t/dev", FSType: "tmpfs"}},
		{8, mount{ID: 46, Point: "/var/tmp/t/run", FSType: "tmpfs"}}, // an optional field before "-"
		{11, mount{ID: 49, Point: "/var/tmp/with space/dir", FSType: "tmpfs"}},
	}
	for _, tt := range tests {
		if ms[tt.i] != tt.want {
			t.Errorf("mount %d = %+v, want %+v", tt.i, ms[tt.i], tt.want)
		}
	}
}

func TestBelow(t *testing.T) {
	tests := []struct {
		path, dir string
		want      bool
	}{
		{"/a/b", "/a", true},
		{"/a", "/a", false},
		{"/ab", "/a", false},
		{"/a/b/c", "/a/b", true},
		{"/x", "/", true},
		{"/", "/", false},
	}
	for _, tt := range tests {
		if got := below(tt.path, tt.dir); got != tt.want {
			t.Errorf("below(%q, %q) = %v, want %v", tt.path, tt.dir, got, tt.want)
		}
	}
}

func TestNewMountsBelow(t *testing.T) {
	ms := parseMountinfo(t, sampleMountinfo)
	// The tree's own mount (40) is not below it; 41 was there before.
	baseline := map[key]bool{{41, "/var/tmp/t/proc"}: true}
	got := newMountsBelow(ms, "/var/tmp/t", baseline)
	var ids []int
	for _, m := range got {
		ids = append(ids, m.ID)
	}
	// Deepest first; of the two stacked on run, the later (on top) first;
	// /var/tmp/t2 shares a prefix but is not below /var/tmp/t.
	want := []int{45, 44, 47, 46, 43, 42}
	if !reflect.DeepEqual(ids, want) {
		t.Errorf("unmount order %v, want %v", ids, want)
	}

	// A mount ID reused on another mountpoint is a new mount.
	baseline = map[key]bool{{42, "/var/tmp/t/elsewhere"}: true}
	for _, m := range newMountsBelow(ms, "/var/tmp/t", baseline) {
		if m.ID == 42 {
			return
		}
	}
	t.Errorf("mount 42 on /var/tmp/t/sys counted as the baseline's mount 42 on another mountpoint")
}
