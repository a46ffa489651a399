package chroot

import (
	"sort"
	"strings"

	"github.com/forge-build/forge/internal/mountinfo"
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
	ms, err := mountinfo.Read()
	if err != nil {
		return nil, err
	}
	return reduce(ms), nil
}

// reduce keeps of each mount what teardown needs.
func reduce(ms []mountinfo.Mount) []mount {
	out := make([]mount, len(ms))
	for i, m := range ms {
		out[i] = mount{ID: m.ID, Point: m.Point, FSType: m.FSType}
	}
	return out
}

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
