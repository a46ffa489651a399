package stage

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"
)

// Location is a path given as one of osbuild's location URLs
// (osbuild/util/parsing.py, parse_location), which org.osbuild.copy takes:
//
//	tree:///PATH         PATH in the stage's tree
//	mount://NAME/PATH    PATH in the stage's mount NAME
//	mount:///PATH        PATH below the mounts' directory (Paths.Mounts)
//	input://NAME/PATH    PATH in the stage's input NAME
//	/PATH                as tree:///PATH
//
// A PATH ending in "/" means the directory's content (PATH/. to cp), as
// in rsync. Unlike osbuild, a Location never leaves its root: ".." is
// refused, and Lstat and Stat resolve symbolic links within the root
// only (os.Root: no absolute links, none climbing out).
type Location struct {
	// URL is the location as given, for messages.
	URL string
	// Root is the directory the path is in: the tree, a mount's or an
	// input's path.
	Root string
	// Rel is the path relative to Root, clean, "." for Root itself.
	Rel string
	// Contents is set when the URL's path ends in "/".
	Contents bool
	// Input is the input's name, for an input:// location.
	Input string
}

// ParseLocation resolves url against the stage's arguments, without
// looking at the filesystem. Unknown inputs and mounts, other schemes,
// "..", and "?" or "#" (which osbuild's urlparse would cut off) are
// errors.
func (a Args) ParseLocation(url string) (Location, error) {
	l := Location{URL: url}
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		if !strings.HasPrefix(url, "/") {
			return l, fmt.Errorf("%q is neither an absolute path nor a tree://, mount:// or input:// URL", url)
		}
		scheme, rest = "tree", url
	}
	name, p := rest, ""
	if i := strings.IndexByte(rest, '/'); i >= 0 {
		name, p = rest[:i], rest[i:]
	}
	if p == "" {
		return l, fmt.Errorf("%q has no path: want %s://%s/PATH", url, scheme, name)
	}
	if strings.ContainsAny(url, "?#\x00") {
		return l, fmt.Errorf("%q contains \"?\", \"#\" or a NUL byte, which a location cannot hold", url)
	}
	switch scheme {
	case "tree":
		if name != "" {
			return l, fmt.Errorf("%q names %q: a tree URL has no name, tree:///PATH", url, name)
		}
		l.Root = a.Tree
	case "mount":
		if name == "" {
			l.Root = a.Paths.Mounts
			if l.Root == "" {
				return l, fmt.Errorf("%q: the stage has no mounts directory", url)
			}
			break
		}
		m, ok := a.Mounts[name]
		if !ok {
			return l, fmt.Errorf("%q: the stage has no mount %q%s", url, name, known(a.Mounts))
		}
		if m.Path == "" {
			return l, fmt.Errorf("%q: mount %q has no path", url, name)
		}
		l.Root = m.Path
	case "input":
		in, ok := a.Inputs[name]
		if !ok {
			return l, fmt.Errorf("%q: the stage has no input %q%s", url, name, known(a.Inputs))
		}
		l.Root = in.Path
		l.Input = name
	default:
		return l, fmt.Errorf("%q: unknown scheme %q: want tree, mount or input", url, scheme)
	}
	for _, c := range strings.Split(p, "/") {
		if c == ".." {
			return l, fmt.Errorf("%q contains \"..\": a location stays inside its %s", url, scheme)
		}
	}
	l.Rel = path.Clean(strings.TrimPrefix(p, "/"))
	if l.Rel == "" {
		l.Rel = "."
	}
	l.Contents = strings.HasSuffix(p, "/")
	return l, nil
}

func known[V any](m map[string]V) string {
	if len(m) == 0 {
		return " (it has none)"
	}
	return " (it has " + strings.Join(sortedKeys(m), ", ") + ")"
}

// Path is the location's path in the buildroot: Root/Rel, and "/." after
// it for Contents (osbuild's parse_location).
func (l Location) Path() string {
	p := path.Join(l.Root, l.Rel)
	if l.Contents {
		p += "/."
	}
	return p
}

// Lstat is the location's file, a final symbolic link not followed; the
// directories above it are resolved within Root.
func (l Location) Lstat() (fs.FileInfo, error) {
	return l.inRoot(func(r *os.Root) (fs.FileInfo, error) { return r.Lstat(l.Rel) })
}

// Stat is the location's file with symbolic links followed, all within
// Root.
func (l Location) Stat() (fs.FileInfo, error) {
	return l.inRoot(func(r *os.Root) (fs.FileInfo, error) { return r.Stat(l.Rel) })
}

// Parent is the location of the directory holding l's file (l itself for
// the root).
func (l Location) Parent() Location {
	p := l
	p.Rel = path.Dir(l.Rel)
	p.Contents = false
	return p
}

func (l Location) inRoot(f func(*os.Root) (fs.FileInfo, error)) (fs.FileInfo, error) {
	r, err := os.OpenRoot(l.Root)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", l.URL, err)
	}
	defer r.Close()
	fi, err := f(r)
	if err != nil {
		var pe *fs.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("%s (%s): %w", l.URL, l.Path(), err)
	}
	return fi, nil
}
