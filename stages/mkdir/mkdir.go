// Package mkdir is org.osbuild.mkdir: it makes directories in the tree or
// in the stage's mounts, each at a location URL (tree:///PATH,
// mount://NAME/PATH; a plain PATH is in the tree), with osbuild's
// options: mode (0777 by default, less the umask, for the new directory
// only), parents (make missing directories above it, with 0777 less the
// umask) and exist_ok (an existing one is no error; without parents, as
// in osbuild, whatever exists there). Existing directories keep their
// mode. No path may leave its tree or mount (see stage.Location).
package mkdir

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// options are osbuild's.
type options struct {
	Paths *[]item `json:"paths"`
}

type item struct {
	Path    *string `json:"path"`
	Mode    *int64  `json:"mode"`
	Parents bool    `json:"parents"`
	ExistOK bool    `json:"exist_ok"`
}

// maxMode is the largest mode: permissions, set-ID and sticky bits.
const maxMode = 0o7777

func parse(raw []byte) ([]item, error) {
	var o options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return nil, err
	}
	if o.Paths == nil {
		return nil, stage.OptionError("paths", "is required")
	}
	for i, it := range *o.Paths {
		opt := fmt.Sprintf("paths[%d]", i)
		if it.Path == nil || *it.Path == "" {
			return nil, stage.OptionError(opt+".path", "is required")
		}
		if it.Mode != nil && (*it.Mode < 0 || *it.Mode > maxMode) {
			return nil, stage.OptionError(opt+".mode", "%d (%#o) is not a mode in 0..07777", *it.Mode, *it.Mode)
		}
	}
	return *o.Paths, nil
}

// location is the item's path as a location URL: osbuild reads a relative
// path as one in the tree, and warns.
func location(p string) (url string, relative bool) {
	if strings.Contains(p, "://") || strings.HasPrefix(p, "/") {
		return p, false
	}
	return "tree:///" + p, true
}

// Run makes the directories in order.
func Run(ctx context.Context, a stage.Args) error {
	items, err := parse(a.Options)
	if err != nil {
		return err
	}
	for i, it := range items {
		url, relative := location(*it.Path)
		if relative {
			fmt.Printf("WARNING: relative path %q used, read as %s\n", *it.Path, url)
		}
		l, err := a.ParseLocation(url)
		if err != nil {
			return stage.OptionError(fmt.Sprintf("paths[%d].path", i), "%v", err)
		}
		if err := makeDir(l, it); err != nil {
			return fmt.Errorf("paths[%d]: %w", i, err)
		}
	}
	return nil
}

// perm is an octal mode as os.FileMode.
func perm(mode int64) fs.FileMode {
	m := fs.FileMode(mode) & fs.ModePerm
	if mode&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	if mode&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if mode&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	return m
}

func makeDir(l stage.Location, it item) error {
	mode := int64(0o777)
	if it.Mode != nil {
		mode = *it.Mode
	}
	root, err := os.OpenRoot(l.Root)
	if err != nil {
		return fmt.Errorf("%s: %w", l.URL, err)
	}
	defer root.Close()
	if it.Parents {
		if dir := path.Dir(l.Rel); dir != "." {
			if err := root.MkdirAll(dir, 0o777); err != nil {
				return fmt.Errorf("%s: make its parents: %w", l.URL, err)
			}
		}
	}
	err = root.Mkdir(l.Rel, perm(mode)&fs.ModePerm)
	if errors.Is(err, fs.ErrExist) {
		switch {
		case !it.ExistOK:
			return fmt.Errorf("%s: %w", l.URL, err)
		case it.Parents:
			// os.makedirs: what exists must be a directory.
			fi, serr := root.Stat(l.Rel)
			if serr != nil {
				return fmt.Errorf("%s: %w", l.URL, serr)
			}
			if !fi.IsDir() {
				return fmt.Errorf("%s exists and is not a directory", l.URL)
			}
		}
		return nil
	}
	if err != nil {
		return fmt.Errorf("%s: %w", l.URL, err)
	}
	// mkdir(2) keeps the sticky bit of the mode (less the umask for the
	// rest); os.Root.Mkdir takes permissions only, so it is added here.
	if extra := perm(mode) &^ fs.ModePerm; extra&fs.ModeSticky != 0 {
		fi, err := root.Stat(l.Rel)
		if err == nil {
			err = root.Chmod(l.Rel, fi.Mode().Perm()|fs.ModeSticky)
		}
		if err != nil {
			return fmt.Errorf("%s: set the sticky bit: %w", l.URL, err)
		}
	}
	return nil
}
