package chroot

import (
	"bufio"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

// mount is one line of /proc/self/mountinfo, reduced to what teardown
// needs.
type mount struct {
	ID     int
	Point  string // where it is mounted, unescaped
	FSType string
}

// key identifies a mount across two reads of mountinfo: IDs are reused
// after an unmount, so the mountpoint goes with it.
type key struct {
	ID    int
	Point string
}

func (m mount) key() key { return key{m.ID, m.Point} }

// readMounts reads the calling process's mount table.
func readMounts() ([]mount, error) {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	return parseMountinfo(string(b))
}

// parseMountinfo parses proc(5)'s mountinfo format:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// (mount ID, parent ID, device, root, mount point, options, optional
// fields up to "-", fstype, source, super options).
func parseMountinfo(text string) ([]mount, error) {
	var out []mount
	sc := bufio.NewScanner(strings.NewReader(text))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 7 {
			return nil, fmt.Errorf("mountinfo line %d: %d fields, want at least 7: %q", n, len(f), line)
		}
		id, err := strconv.Atoi(f[0])
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: mount ID %q: %w", n, f[0], err)
		}
		m := mount{ID: id, Point: unescapeOctal(f[4])}
		for i := 6; i < len(f)-1; i++ {
			if f[i] == "-" {
				m.FSType = f[i+1]
				break
			}
		}
		out = append(out, m)
	}
	return out, sc.Err()
}

// unescapeOctal undoes the kernel's escaping of space, tab, newline and
// backslash in mountinfo paths (\040, \011, \012, \134).
func unescapeOctal(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) && isOctal(s[i+1]) && isOctal(s[i+2]) && isOctal(s[i+3]) {
			b.WriteByte((s[i+1]-'0')<<6 | (s[i+2]-'0')<<3 | (s[i+3] - '0'))
			i += 3
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isOctal(c byte) bool { return c >= '0' && c <= '7' }

// below says whether path is strictly below dir (both clean and absolute).
func below(path, dir string) bool {
	if dir == "/" {
		return path != "/"
	}
	return strings.HasPrefix(path, dir+"/")
}

// newMountsBelow returns the mounts strictly below root that are not in
// baseline, in the order they can be unmounted: deepest mountpoint first,
// and of mounts stacked on one mountpoint, the last mounted (the one on
// top) first.
func newMountsBelow(mounts []mount, root string, baseline map[key]bool) []mount {
	type ranked struct {
		m     mount
		index int
	}
	var rs []ranked
	for i, m := range mounts {
		if below(m.Point, root) && !baseline[m.key()] {
			rs = append(rs, ranked{m, i})
		}
	}
	sort.SliceStable(rs, func(i, j int) bool {
		di, dj := strings.Count(rs[i].m.Point, "/"), strings.Count(rs[j].m.Point, "/")
		if di != dj {
			return di > dj
		}
		return rs[i].index > rs[j].index
	})
	out := make([]mount, len(rs))
	for i, r := range rs {
		out[i] = r.m
	}
	return out
}

// mountsBelow lists the mounts strictly below root, in mountinfo order.
func mountsBelow(mounts []mount, root string) []mount {
	var out []mount
	for _, m := range mounts {
		if below(m.Point, root) {
			out = append(out, m)
		}
	}
	return out
}
