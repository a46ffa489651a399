// Package mountinfo reads a mount table in proc(5)'s mountinfo format
// (/proc/self/mountinfo, /proc/PID/mountinfo): one Mount a line, its
// paths unescaped. It is the one parser forge's teardown, its daemon's
// crash recovery and its tests share.
package mountinfo

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Self is the calling process's mount table.
const Self = "/proc/self/mountinfo"

// Mount is one line of a mountinfo file:
//
//	36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue
//
// (mount ID, parent ID, device, root, mount point, options, optional
// fields up to "-", fstype, source, super options).
type Mount struct {
	ID     int
	Parent int
	// Root is the directory of the filesystem mounted here (unescaped):
	// "/" unless a bind mount took a subtree.
	Root string
	// Point is where it is mounted (unescaped).
	Point string
	// Options are the per-mount options: "rw,nosuid,relatime".
	Options string
	// Optional are the tagged fields before "-": "shared:1", "master:7".
	Optional []string
	FSType   string
	// Source is the device or other name the filesystem was mounted from
	// (unescaped).
	Source       string
	SuperOptions string
}

// Read reads the calling process's mount table.
func Read() ([]Mount, error) { return ReadFile(Self) }

// ReadFile reads the mount table at path, a mountinfo file.
func ReadFile(path string) ([]Mount, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	ms, err := Parse(string(b))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ms, nil
}

// Parse parses mountinfo text; blank lines are skipped, a line short of
// the format is an error naming it.
func Parse(text string) ([]Mount, error) {
	var out []Mount
	for n, line := range strings.Split(text, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		m, err := parseLine(line)
		if err != nil {
			return nil, fmt.Errorf("mountinfo line %d: %w: %q", n+1, err, line)
		}
		out = append(out, m)
	}
	return out, nil
}

// parseLine splits on single spaces: the kernel separates fields by one
// space and escapes those inside a field, so an empty field (a mount
// whose source is "") stays in its place.
func parseLine(line string) (Mount, error) {
	pre, post, ok := strings.Cut(line, " - ")
	if !ok {
		return Mount{}, errors.New(`no " - " separator`)
	}
	f, g := strings.Split(pre, " "), strings.Split(post, " ")
	if len(f) < 6 || len(g) < 3 {
		return Mount{}, fmt.Errorf("%d+%d fields, want at least 6+3", len(f), len(g))
	}
	id, err := strconv.Atoi(f[0])
	if err != nil {
		return Mount{}, fmt.Errorf("mount ID %q: %w", f[0], err)
	}
	parent, err := strconv.Atoi(f[1])
	if err != nil {
		return Mount{}, fmt.Errorf("parent ID %q: %w", f[1], err)
	}
	m := Mount{
		ID:           id,
		Parent:       parent,
		Root:         Unescape(f[3]),
		Point:        Unescape(f[4]),
		Options:      f[5],
		FSType:       g[0],
		Source:       Unescape(g[1]),
		SuperOptions: strings.Join(g[2:], " "),
	}
	if len(f) > 6 {
		m.Optional = f[6:]
	}
	return m, nil
}

// Under lists the mount points of ms at or below dir, in table order (a
// point mounted on twice is listed twice).
func Under(ms []Mount, dir string) []string {
	dir = filepath.Clean(dir)
	var out []string
	for _, m := range ms {
		if m.Point == dir || strings.HasPrefix(m.Point, dir+"/") || dir == "/" {
			out = append(out, m.Point)
		}
	}
	return out
}

// Unescape undoes the kernel's octal escapes of space, tab, newline and
// backslash in mountinfo paths (\040, \011, \012, \134); a backslash not
// followed by three octal digits stays as it is.
func Unescape(s string) string {
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
