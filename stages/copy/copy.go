// Package copy is org.osbuild.copy: it copies files or trees from the
// stage's inputs, mounts or tree to its mounts or tree, each item with
// the build root's `cp -a --reflink=auto`, as osbuild does, so owners,
// modes, times, extended attributes (ACLs, SELinux labels, capabilities)
// and hard links within an item are kept. The usual item of an image
// pipeline, a directory's content into an empty directory (a tree into a
// new filesystem), is copied by the stage itself with internal/treecopy,
// as the assemblers fill images, keeping the same: cp -a asks for every
// file's extended attributes three times (listxattr twice, then the ACL),
// each a round trip to the store's daemon through a FUSE input, 3 of the 4
// requests per file of the Debian tree (67,000 for its 16,000 files);
// treecopy asks once per inode, and goes in name order, so that where ext4
// puts each inode is a function of the tree (cp's order follows the
// source's inode numbers). It also reaches paths past PATH_MAX, where cp
// fails.
//
// When that item's source is a whole tree input, the stage asks forge for
// the tree as a stream from the store (stage.OpenTreeStream) and writes it
// with treecopy.CopyStream: no FUSE round trip at all, and the same calls
// on the destination in the same order, so the filesystem comes out byte
// for byte as if the stage had walked the input's mount. The Debian
// sample's copy went from 6–8 s to about 2 s. Where forge offers no stream,
// the stage walks the mount.
//
// Sources and destinations are osbuild's location URLs (see
// stage.Location): "from" is input://NAME/PATH, mount://NAME/PATH or
// tree:///PATH, "to" is mount://NAME/PATH or tree:///PATH; a PATH ending
// in "/" means the directory's content. Unlike osbuild, no path may leave
// its input, mount or tree, through ".." or a symbolic link: not the
// source, not the destination, nor the name cp writes in a destination
// directory. Below that, when a directory's content merges into an
// existing one, cp's walk is cp's, as in osbuild: an existing link there
// is written through (mounts are usually fresh filesystems).
package copy

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/forge-build/forge/internal/treecopy"
	"github.com/forge-build/forge/stages/stage"
)

// Meta is org.osbuild.copy's meta.json.
//
//go:embed org.osbuild.copy.meta.json
var Meta []byte

// options are osbuild's.
type options struct {
	Paths *[]item `json:"paths"`
}

type item struct {
	From *string `json:"from"`
	To   *string `json:"to"`
	// RemoveDestination removes an existing destination file (or
	// symbolic link) before copying, rather than writing into it
	// (cp --remove-destination).
	RemoveDestination bool `json:"remove_destination"`
}

func parse(raw []byte) ([]item, error) {
	var o options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return nil, err
	}
	if o.Paths == nil {
		return nil, stage.OptionError("paths", "is required")
	}
	if len(*o.Paths) == 0 {
		return nil, stage.OptionError("paths", "want at least one item")
	}
	for i, it := range *o.Paths {
		opt := fmt.Sprintf("paths[%d]", i)
		if it.From == nil {
			return nil, stage.OptionError(opt+".from", "is required")
		}
		if it.To == nil {
			return nil, stage.OptionError(opt+".to", "is required")
		}
		if err := checkURL(*it.From, "input", "mount", "tree"); err != nil {
			return nil, stage.OptionError(opt+".from", "%v", err)
		}
		if err := checkURL(*it.To, "mount", "tree"); err != nil {
			return nil, stage.OptionError(opt+".to", "%v", err)
		}
	}
	return *o.Paths, nil
}

// checkURL checks the URL's form against osbuild's schema: one of the
// schemes, and a name for input and mount, so "input://NAME/...",
// "mount://NAME/..." or "tree:///...".
func checkURL(url string, schemes ...string) error {
	for _, s := range schemes {
		rest, ok := strings.CutPrefix(url, s+"://")
		if !ok {
			continue
		}
		name, _, ok := strings.Cut(rest, "/")
		switch {
		case !ok:
			return fmt.Errorf("%q has no path: want %s://%s/PATH", url, s, name)
		case s == "tree" && name != "":
			return fmt.Errorf("%q: want tree:///PATH", url)
		case s != "tree" && name == "":
			return fmt.Errorf("%q names no %s: want %s://NAME/PATH", url, s, s)
		}
		return nil
	}
	return fmt.Errorf("%q is not a %s URL", url, strings.Join(schemes, "://, ")+"://")
}

// Run copies the items in order.
func Run(ctx context.Context, a stage.Args) error {
	items, err := parse(a.Options)
	if err != nil {
		return err
	}
	for i, it := range items {
		t, fast, err := plan(a, it)
		if err != nil {
			return fmt.Errorf("paths[%d]: %w", i, err)
		}
		src, dst := t.Args[len(t.Args)-2], t.Args[len(t.Args)-1]
		fmt.Printf("copying '%s' -> '%s'\n", src, dst)
		if fast != nil {
			err = fast.run(ctx)
		} else {
			err = t.Run(ctx)
		}
		if err != nil {
			return fmt.Errorf("paths[%d]: %w", i, err)
		}
	}
	return nil
}

// contentsCopy is an item internal/treecopy does in cp's stead: a
// directory's content into an empty directory (the usual item of an image
// pipeline: a tree into a new filesystem). A whole tree input comes as a
// stream from forge (stage.OpenTreeStream) when forge offers one, else
// through the input's mount.
type contentsCopy struct {
	src, dst string
	input    string // the input's name, when src is a whole input
}

func (c *contentsCopy) run(ctx context.Context) error {
	if c.input != "" {
		r, err := stage.OpenTreeStream(c.input)
		if err == nil {
			defer r.Close()
			fmt.Printf("input %s comes as a stream from the store\n", c.input)
			return treecopy.CopyStream(ctx, r, c.dst)
		}
		if !errors.Is(err, stage.ErrNoTreeStream) {
			return err
		}
		fmt.Printf("input %s is read through its mount (%v)\n", c.input, err)
	}
	return treecopy.Copy(ctx, c.src, c.dst)
}

// plan resolves an item's locations, checks that they exist where they
// must and stay in their roots, and returns its cp command line, and fast
// when internal/treecopy is to do it instead.
func plan(a stage.Args, it item) (t stage.Tool, fast *contentsCopy, err error) {
	src, err := a.ParseLocation(*it.From)
	if err != nil {
		return stage.Tool{}, nil, fmt.Errorf("from: %w", err)
	}
	dst, err := a.ParseLocation(*it.To)
	if err != nil {
		return stage.Tool{}, nil, fmt.Errorf("to: %w", err)
	}
	srcDir, err := checkSource(src)
	if err != nil {
		return stage.Tool{}, nil, fmt.Errorf("from: %w", err)
	}
	if err := checkDestination(dst, it.RemoveDestination && !srcDir); err != nil {
		return stage.Tool{}, nil, fmt.Errorf("to: %w", err)
	}
	// Into an existing directory, cp writes DIR/NAME, NAME the source's
	// base name: that one is checked too.
	if !src.Contents && src.Rel != "." {
		if fi, err := dst.Stat(); err == nil && fi.IsDir() {
			into := dst
			into.Rel, into.Contents = path.Join(dst.Rel, path.Base(src.Rel)), false
			into.URL = strings.TrimSuffix(dst.URL, "/") + "/" + path.Base(src.Rel)
			if err := checkDestination(into, it.RemoveDestination && !srcDir); err != nil {
				return stage.Tool{}, nil, fmt.Errorf("to: %w", err)
			}
		}
	}
	t = command(src.Path(), dst.Path(), it.RemoveDestination)
	if srcDir && src.Contents {
		from, to := path.Join(src.Root, src.Rel), path.Join(dst.Root, dst.Rel)
		if fi, err := dst.Stat(); err == nil && fi.IsDir() && canCopyContents(from, to) {
			fast = &contentsCopy{src: from, dst: to}
			if src.Input != "" && src.Rel == "." {
				fast.input = src.Input
			}
		}
	}
	return t, fast, nil
}

// command is osbuild's cp command line.
func command(src, dst string, removeDestination bool) stage.Tool {
	args := []string{"-a", "--reflink=auto"}
	if removeDestination {
		args = append(args, "--remove-destination")
	}
	return stage.Tool{Name: "cp", Args: append(args, src, dst)}
}

// checkSource checks that the source exists (for a directory's content,
// that it is a directory) and says whether it is a directory. A final
// symbolic link is copied as a link, so it is not followed.
func checkSource(l stage.Location) (isDir bool, err error) {
	if l.Contents {
		fi, err := l.Stat()
		if err != nil {
			return false, err
		}
		if !fi.IsDir() {
			return false, fmt.Errorf("%s ends in \"/\" but is not a directory", l.URL)
		}
		return true, nil
	}
	fi, err := l.Lstat()
	if err != nil {
		return false, err
	}
	return fi.IsDir(), nil
}

// checkDestination checks that cp's writes stay in the destination's
// root: a directory to copy into, an existing file or link to write
// through (or, with replace, to replace), or a new name in an existing
// directory.
func checkDestination(l stage.Location, replace bool) error {
	if l.Contents || l.Rel == "." {
		fi, err := l.Stat()
		if err != nil {
			return err
		}
		if !fi.IsDir() {
			return fmt.Errorf("%s is not a directory", l.URL)
		}
		return nil
	}
	fi, err := l.Lstat()
	switch {
	case errors.Is(err, fs.ErrNotExist):
		pfi, perr := l.Parent().Stat()
		if perr != nil {
			return fmt.Errorf("%s: its directory: %w", l.URL, perr)
		}
		if !pfi.IsDir() {
			return fmt.Errorf("%s: its parent is not a directory", l.URL)
		}
		return nil
	case err != nil:
		return err
	case fi.Mode().Type() == os.ModeSymlink && !replace:
		// cp writes through the link: it must lead somewhere in the
		// root.
		if _, err := l.Stat(); err != nil {
			return fmt.Errorf("%s is a symbolic link cp would follow: %w (remove_destination replaces it)", l.URL, err)
		}
	}
	return nil
}
