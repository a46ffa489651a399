package overlay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/fusefs"
)

// TestLowerOf: where in the base tree the lower side of an upper entry
// is, from what overlayfs recorded (Documentation/filesystems/overlayfs.rst:
// redirects are absolute from the layer's root, or a name in the parent's
// lower directory; an opaque directory has no lower side).
func TestLowerOf(t *testing.T) {
	for _, tc := range []struct {
		name       string
		e          upperEntry
		parentPath string
		entry      string
		want       string
		wantOK     bool
	}{
		{"same name below the root", upperEntry{}, "", "etc", "etc", true},
		{"same name below a directory", upperEntry{}, "usr/lib", "x", "usr/lib/x", true},
		{"opaque", upperEntry{opaque: true}, "usr", "x", "", false},
		{"opaque wins over a redirect", upperEntry{opaque: true, redirect: "/a"}, "usr", "x", "", false},
		{"absolute redirect", upperEntry{redirect: "/a/b"}, "usr", "x", "a/b", true},
		{"relative redirect: renamed in its directory", upperEntry{redirect: "old"}, "usr", "new", "usr/old", true},
		{"relative redirect below the root", upperEntry{redirect: "old"}, "", "new", "old", true},
		{"parent without a lower side", upperEntry{}, noLower, "x", "", false},
		{"relative redirect, parent without a lower side", upperEntry{redirect: "old"}, noLower, "x", "", false},
		{"absolute redirect, parent without a lower side", upperEntry{redirect: "/a"}, noLower, "x", "a", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := lowerOf(&tc.e, tc.parentPath, tc.entry)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("lowerOf(%+v, %q, %q) = %q, %v; want %q, %v", tc.e, tc.parentPath, tc.entry, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}

// memSource is a fusefs.Source that holds a base tree's nodes in memory.
type memSource map[digest.Hash]*node.Node

func (s memSource) Node(h digest.Hash) (*node.Node, error) {
	if n, ok := s[h]; ok {
		return n, nil
	}
	return nil, fmt.Errorf("node %s: not held", h.Short())
}

func (s memSource) ReadChunk(h digest.Hash, buf []byte) ([]byte, error) {
	return buf, fmt.Errorf("chunk %s: not held", h.Short())
}

func (s memSource) put(t *testing.T, n *node.Node) digest.Hash {
	t.Helper()
	h, _, err := n.Hash()
	if err != nil {
		t.Fatal(err)
	}
	s[h] = n
	return h
}

// testBase stores the base tree of TestCommitPlan in src:
//
//	etc/hosts, etc/passwd            files
//	usr/bin/a, usr/bin/b, usr/lib/c  the three names of one inode
//	usr/lib/d                        a file
//	var/                             an empty directory
func testBase(t *testing.T, src memSource) digest.Hash {
	file := func(mtime int64, nlink uint32) digest.Hash {
		return src.put(t, &node.Node{Type: node.TypeRegular, Perm: 0o644, MtimeSec: mtime, Nlink: nlink})
	}
	dir := func(entries ...node.Entry) node.Entry { // entries sorted
		return node.Entry{Hash: src.put(t, &node.Node{Type: node.TypeDir, Perm: 0o755, Entries: entries})}
	}
	named := func(name string, e node.Entry) node.Entry { e.Name = name; return e }
	linked := file(3, 3)
	etc := dir(node.Entry{Name: "hosts", Hash: file(1, 1)}, node.Entry{Name: "passwd", Hash: file(2, 1)})
	bin := dir(node.Entry{Name: "a", Hash: linked, Link: 1}, node.Entry{Name: "b", Hash: linked, Link: 1})
	lib := dir(node.Entry{Name: "c", Hash: linked, Link: 1}, node.Entry{Name: "d", Hash: file(4, 1)})
	usr := dir(named("bin", bin), named("lib", lib))
	return dir(named("etc", etc), named("usr", usr), named("var", dir())).Hash
}

// Building an upper layer as overlayfs writes it.

func upperFile(t *testing.T, dir, p, content string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
	must(t, os.WriteFile(filepath.Join(dir, p), []byte(content), 0o644))
}

func upperMkdir(t *testing.T, dir, p string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Join(dir, p), 0o755))
}

// upperWhiteout makes the 0/0 character device that hides p (root).
func upperWhiteout(t *testing.T, dir, p string) {
	t.Helper()
	must(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, p)), 0o755))
	must(t, unix.Mknod(filepath.Join(dir, p), unix.S_IFCHR, 0))
}

func upperXattr(t *testing.T, dir, p, name, value string) {
	t.Helper()
	must(t, unix.Lsetxattr(filepath.Join(dir, p), name, []byte(value), 0))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

var changeNames = map[change]string{
	keepBase:      "keep",
	readLink:      "read link",
	walkBase:      "walk base",
	walkUpper:     "walk",
	keepCommitted: "keep committed",
	readUpper:     "read",
}

// describe says what the commit does with s: its change; for an upper
// directory, the base directory below it ("new": none); whether it
// remembers the node for the next commit, and whether the upper file is a
// metadata-only copy.
func describe(s step) string {
	d := changeNames[s.change]
	if s.change == walkUpper {
		if s.upper.dir.lowerPath == noLower {
			d += " new"
		} else {
			d += " over /" + s.upper.dir.lowerPath
		}
	}
	if s.remember {
		d += ", remember"
	}
	if s.upper != nil && s.upper.metacopy {
		d += ", metacopy"
	}
	return d
}

// planUpper surveys the upper layer at dir over m's base as a commit does,
// and describes, by path, what the commit does with every name it visits.
// remembered are the upper inodes whose nodes it keeps for the next commit.
func planUpper(t *testing.T, m *Mount, dir string) (c *committer, got map[string]string, remembered []*upperEntry) {
	t.Helper()
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	must(t, err)
	c, up, err := m.survey(context.Background(), fd)
	unix.Close(fd)
	must(t, err)
	got = map[string]string{}
	var walk func(p string, u *upperDir, lower *node.Node, lowerPath string)
	walk = func(p string, u *upperDir, lower *node.Node, lowerPath string) {
		for _, s := range c.plan(lower, lowerPath, u) {
			cp := join(p, s.name)
			got[cp] = describe(s)
			switch s.change {
			case walkUpper:
				walk(cp, s.upper.dir, s.upper.dir.lower, s.upper.dir.lowerPath)
			case walkBase:
				n, err := m.cache.Node(s.base.Hash)
				must(t, err)
				walk(cp, nil, n, join(lowerPath, s.name))
			}
			if s.remember {
				remembered = append(remembered, s.upper)
			}
		}
	}
	walk("", up, up.lower, up.lowerPath)
	return c, got, remembered
}

// TestCommitPlan: what a commit decides from an upper layer (built here as
// overlayfs writes one) over a base tree, before it reads the merged view:
// which names are new or changed and read back, which a whiteout deletes,
// which directories are opaque or renamed, which base names it keeps, which
// names of a hard-linked base inode it reads again because another name of
// it changed, and, when since is set, which files are unchanged since the
// previous commit (after since changes the upper layer). Whiteouts and
// trusted.overlay.* xattrs need root.
func TestCommitPlan(t *testing.T) {
	keepAll := map[string]string{"etc": "keep", "usr": "keep", "var": "keep"}
	with := func(m map[string]string, kv ...string) map[string]string {
		r := map[string]string{}
		for k, v := range keepAll {
			r[k] = v
		}
		for k, v := range m {
			r[k] = v
		}
		for i := 0; i < len(kv); i += 2 {
			r[kv[i]] = kv[i+1]
		}
		return r
	}
	etcWalked := map[string]string{"etc": "walk over /etc", "etc/hosts": "keep", "etc/passwd": "keep"}
	for _, tc := range []struct {
		name   string
		root   bool
		noBase bool
		upper  func(t *testing.T, dir string)
		since  func(t *testing.T, dir string) // after a commit; nil: one commit
		want   map[string]string
	}{
		{
			name:  "empty upper layer: the base is kept",
			upper: func(*testing.T, string) {},
			want:  keepAll,
		},
		{
			name: "new file, symlink, FIFO and directory",
			upper: func(t *testing.T, dir string) {
				upperFile(t, dir, "new", "x")
				must(t, os.Symlink("new", filepath.Join(dir, "sym")))
				must(t, unix.Mkfifo(filepath.Join(dir, "fifo"), 0o644))
				upperFile(t, dir, "newdir/x", "x")
			},
			want: with(nil, "new", "read, remember", "sym", "read, remember", "fifo", "read, remember",
				"newdir", "walk new", "newdir/x", "read, remember"),
		},
		{
			name:   "over an empty tree, every directory is new",
			noBase: true,
			upper: func(t *testing.T, dir string) {
				upperFile(t, dir, "etc/passwd", "x")
			},
			want: map[string]string{"etc": "walk new", "etc/passwd": "read, remember"},
		},
		{
			name:  "changed file in a base directory",
			upper: func(t *testing.T, dir string) { upperFile(t, dir, "etc/passwd", "x") },
			want:  with(etcWalked, "etc/passwd", "read, remember"),
		},
		{
			name:  "copied-up directory: only its metadata changed",
			upper: func(t *testing.T, dir string) { upperMkdir(t, dir, "var") },
			want:  with(nil, "var", "walk over /var"),
		},
		{
			name: "hard link made in the mount",
			upper: func(t *testing.T, dir string) {
				upperFile(t, dir, "newdir/x", "x")
				must(t, os.Link(filepath.Join(dir, "newdir/x"), filepath.Join(dir, "newdir/y")))
			},
			want: with(nil, "newdir", "walk new", "newdir/x", "read", "newdir/y", "read"),
		},
		{
			name:  "one name of a base hard link changed: all its names are read again",
			upper: func(t *testing.T, dir string) { upperFile(t, dir, "usr/bin/a", "x") },
			want: with(nil, "usr", "walk over /usr", "usr/bin", "walk over /usr/bin", "usr/bin/a", "read",
				"usr/bin/b", "read link", "usr/lib", "walk base", "usr/lib/c", "read link", "usr/lib/d", "keep"),
		},
		{
			name: "user.overlay.opaque is not overlayfs's here (no userxattr)",
			upper: func(t *testing.T, dir string) {
				upperFile(t, dir, "etc/new", "x")
				if err := unix.Lsetxattr(filepath.Join(dir, "etc"), "user.overlay.opaque", []byte("y"), 0); errors.Is(err, unix.ENOTSUP) {
					t.Skip("no user xattrs on the temporary directory's filesystem")
				} else {
					must(t, err)
				}
			},
			want: with(etcWalked, "etc/new", "read, remember"),
		},
		{
			name:  "unchanged since the last commit",
			upper: func(t *testing.T, dir string) { upperFile(t, dir, "etc/passwd", "abcd") },
			since: func(t *testing.T, dir string) {},
			want:  with(etcWalked, "etc/passwd", "keep committed"),
		},
		{
			name:  "written since the last commit, same size",
			upper: func(t *testing.T, dir string) { upperFile(t, dir, "etc/passwd", "abcd") },
			since: func(t *testing.T, dir string) { upperFile(t, dir, "etc/passwd", "ABCD") },
			want:  with(etcWalked, "etc/passwd", "read, remember"),
		},
		{
			name:  "chmod since the last commit",
			upper: func(t *testing.T, dir string) { upperFile(t, dir, "etc/passwd", "abcd") },
			since: func(t *testing.T, dir string) { must(t, os.Chmod(filepath.Join(dir, "etc/passwd"), 0o600)) },
			want:  with(etcWalked, "etc/passwd", "read, remember"),
		},
		{
			name:  "written since the last commit, mtime put back",
			upper: func(t *testing.T, dir string) { upperFile(t, dir, "etc/passwd", "abcd") },
			since: func(t *testing.T, dir string) {
				p := filepath.Join(dir, "etc/passwd")
				st, err := os.Stat(p)
				must(t, err)
				upperFile(t, dir, "etc/passwd", "ABCD")
				must(t, os.Chtimes(p, st.ModTime(), st.ModTime()))
			},
			want: with(etcWalked, "etc/passwd", "read, remember"),
		},
		{
			name:  "a second name since the last commit",
			upper: func(t *testing.T, dir string) { upperFile(t, dir, "etc/passwd", "abcd") },
			since: func(t *testing.T, dir string) {
				must(t, os.Link(filepath.Join(dir, "etc/passwd"), filepath.Join(dir, "etc/passwd2")))
			},
			want: with(etcWalked, "etc/passwd", "read", "etc/passwd2", "read"),
		},
		{
			name:  "a copied-up name of a base hard link is read at every commit",
			upper: func(t *testing.T, dir string) { upperFile(t, dir, "usr/bin/a", "x") },
			since: func(t *testing.T, dir string) {},
			want: with(nil, "usr", "walk over /usr", "usr/bin", "walk over /usr/bin", "usr/bin/a", "read",
				"usr/bin/b", "read link", "usr/lib", "walk base", "usr/lib/c", "read link", "usr/lib/d", "keep"),
		},
		{
			name: "a hard link made in the mount is read at every commit",
			upper: func(t *testing.T, dir string) {
				upperFile(t, dir, "x", "x")
				must(t, os.Link(filepath.Join(dir, "x"), filepath.Join(dir, "y")))
			},
			since: func(t *testing.T, dir string) {},
			want:  with(nil, "x", "read", "y", "read"),
		},
		{
			name: "whiteout deletes a base file",
			root: true,
			upper: func(t *testing.T, dir string) {
				upperWhiteout(t, dir, "etc/hosts")
				upperWhiteout(t, dir, "var")
			},
			want: map[string]string{"etc": "walk over /etc", "etc/passwd": "keep", "usr": "keep"},
		},
		{
			name: "whiteout of a name the base lacks",
			root: true,
			upper: func(t *testing.T, dir string) {
				upperWhiteout(t, dir, "gone")
				upperWhiteout(t, dir, "newdir/gone")
			},
			want: with(nil, "newdir", "walk new"),
		},
		{
			name: "a device that is not 0/0 is no whiteout",
			root: true,
			upper: func(t *testing.T, dir string) {
				must(t, unix.Mknod(filepath.Join(dir, "null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
			},
			want: with(nil, "null", "read, remember"),
		},
		{
			name: "whiteout by xattr: an empty file, not a directory",
			root: true,
			upper: func(t *testing.T, dir string) {
				upperFile(t, dir, "etc/hosts", "")
				upperXattr(t, dir, "etc/hosts", xattrWhiteout, "")
				upperMkdir(t, dir, "var")
				upperXattr(t, dir, "var", xattrWhiteout, "")
			},
			want: with(nil, "etc", "walk over /etc", "etc/passwd", "keep", "var", "walk over /var"),
		},
		{
			name:  "whiteout of one name of a base hard link",
			root:  true,
			upper: func(t *testing.T, dir string) { upperWhiteout(t, dir, "usr/bin/a") },
			want: with(nil, "usr", "walk over /usr", "usr/bin", "walk over /usr/bin",
				"usr/bin/b", "read link", "usr/lib", "walk base", "usr/lib/c", "read link", "usr/lib/d", "keep"),
		},
		{
			name: "opaque directory hides the base's",
			root: true,
			upper: func(t *testing.T, dir string) {
				upperFile(t, dir, "etc/new", "x")
				upperXattr(t, dir, "etc", xattrOpaque, "y")
			},
			want: with(nil, "etc", "walk new", "etc/new", "read, remember"),
		},
		{
			name: `opaque "x" (holds whiteouts by xattr) is not opaque`,
			root: true,
			upper: func(t *testing.T, dir string) {
				upperFile(t, dir, "etc/new", "x")
				upperXattr(t, dir, "etc", xattrOpaque, "x")
			},
			want: with(etcWalked, "etc/new", "read, remember"),
		},
		{
			name: "renamed directories: absolute and relative redirects",
			root: true,
			upper: func(t *testing.T, dir string) {
				upperMkdir(t, dir, "etc2")
				upperXattr(t, dir, "etc2", xattrRedirect, "/etc")
				upperWhiteout(t, dir, "etc")
				upperMkdir(t, dir, "usr/lib2")
				upperXattr(t, dir, "usr/lib2", xattrRedirect, "lib")
				upperWhiteout(t, dir, "usr/lib")
			},
			want: map[string]string{
				"etc2": "walk over /etc", "etc2/hosts": "keep", "etc2/passwd": "keep",
				"usr": "walk over /usr", "usr/bin": "keep", "usr/lib2": "walk over /usr/lib",
				"usr/lib2/c": "keep", "usr/lib2/d": "keep", "var": "keep",
			},
		},
		{
			name: "metadata-only copy",
			root: true,
			upper: func(t *testing.T, dir string) {
				upperFile(t, dir, "etc/passwd", "")
				upperXattr(t, dir, "etc/passwd", xattrMetacopy, "")
			},
			want: with(etcWalked, "etc/passwd", "read, remember, metacopy"),
		},
		{
			name: "metadata-only copy renamed from a name of a base hard link",
			root: true,
			upper: func(t *testing.T, dir string) {
				upperFile(t, dir, "usr/lib/z", "")
				upperXattr(t, dir, "usr/lib/z", xattrMetacopy, "")
				upperXattr(t, dir, "usr/lib/z", xattrRedirect, "/usr/bin/a")
			},
			want: with(nil, "usr", "walk over /usr", "usr/bin", "walk base", "usr/bin/a", "read link",
				"usr/bin/b", "read link", "usr/lib", "walk over /usr/lib", "usr/lib/c", "read link",
				"usr/lib/d", "keep", "usr/lib/z", "read, remember, metacopy"),
		},
		{
			name: "metadata-only copy unchanged since the last commit",
			root: true,
			upper: func(t *testing.T, dir string) {
				upperFile(t, dir, "etc/passwd", "")
				upperXattr(t, dir, "etc/passwd", xattrMetacopy, "")
			},
			since: func(t *testing.T, dir string) {},
			want:  with(etcWalked, "etc/passwd", "keep committed, metacopy"),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.root && os.Geteuid() != 0 {
				t.Skip("whiteouts and trusted.overlay.* xattrs need root")
			}
			src := memSource{}
			m := &Mount{cache: fusefs.NewCache(src, 0), dirs: map[string]*node.Node{}}
			if !tc.noBase {
				m.base = testBase(t, src)
			}
			dir := t.TempDir()
			tc.upper(t, dir)
			c, got, remembered := planUpper(t, m, dir)
			if tc.since != nil {
				// The commit stores the nodes and remembers them.
				for i, e := range remembered {
					c.remember(e, digest.Sum([]byte{byte(i)}))
				}
				m.committed = c.committed
				time.Sleep(50 * time.Millisecond) // past the clock's tick: a change moves ctime
				tc.since(t, dir)
				_, got, _ = planUpper(t, m, dir)
			}
			if !maps.Equal(got, tc.want) {
				t.Errorf("got %s\nwant %s", showPlan(got), showPlan(tc.want))
			}
		})
	}
}

func showPlan(m map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(m)) {
		fmt.Fprintf(&b, "\n\t%s: %s", k, m[k])
	}
	return b.String()
}

// TestStoredFileMatches: a file's content an earlier commit stored is
// taken again while the merged view's inode keeps its size, mtime and
// ctime; any write, chmod or utimes moves ctime.
func TestStoredFileMatches(t *testing.T) {
	cases := []struct {
		name   string
		change func(t *testing.T, p string)
		want   bool
	}{
		{"unchanged", func(*testing.T, string) {}, true},
		{"read", func(t *testing.T, p string) { _, err := os.ReadFile(p); must(t, err) }, true},
		{"rewritten, same size", func(t *testing.T, p string) { must(t, os.WriteFile(p, []byte("ABCD"), 0o644)) }, false},
		{"truncated", func(t *testing.T, p string) { must(t, os.Truncate(p, 2)) }, false},
		{"chmod", func(t *testing.T, p string) { must(t, os.Chmod(p, 0o600)) }, false},
		{"rewritten, mtime put back", func(t *testing.T, p string) {
			st, err := os.Stat(p)
			must(t, err)
			must(t, os.WriteFile(p, []byte("ABCD"), 0o644))
			must(t, os.Chtimes(p, st.ModTime(), st.ModTime()))
		}, false},
	}
	dir := t.TempDir()
	stored := make([]storedFile, len(cases))
	for i := range cases {
		p := filepath.Join(dir, strconv.Itoa(i))
		must(t, os.WriteFile(p, []byte("abcd"), 0o644))
		var st unix.Stat_t
		must(t, unix.Lstat(p, &st))
		stored[i] = storedFile{size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
	}
	time.Sleep(50 * time.Millisecond) // past the clock's tick: a change moves ctime
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p := filepath.Join(dir, strconv.Itoa(i))
			tc.change(t, p)
			var st unix.Stat_t
			must(t, unix.Lstat(p, &st))
			if got := stored[i].matches(&st); got != tc.want {
				t.Errorf("matches = %v, want %v (stored %+v, now size %d mtime %v ctime %v)", got, tc.want, stored[i], st.Size, st.Mtim, st.Ctim)
			}
		})
	}
}
