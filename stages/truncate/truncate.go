// Package truncate is org.osbuild.truncate: it creates a file in the tree,
// or shrinks or extends one, to a size given as truncate(1) takes it
// (osbuild's stage runs `truncate --size SIZE TREE/FILENAME`). New space
// is a hole: the file is sparse. It works in manifest formats 1 and 2;
// in format 2 it is how an image pipeline makes its disk image file.
package truncate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/forge-build/forge/stages/stage"
)

// options are osbuild's: both strings, both required.
type options struct {
	Filename *string `json:"filename"`
	Size     *string `json:"size"`
}

// parsed are the options checked: the file relative to the tree, and the
// size.
type parsed struct {
	name string
	size Size
}

func parse(raw []byte) (parsed, error) {
	var o options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return parsed{}, err
	}
	if o.Filename == nil {
		return parsed{}, stage.OptionError("filename", "is required")
	}
	if o.Size == nil {
		return parsed{}, stage.OptionError("size", "is required")
	}
	name, err := stage.TreeName(*o.Filename)
	if err != nil {
		return parsed{}, stage.OptionError("filename", "%v", err)
	}
	sz, err := ParseSize(*o.Size)
	if err != nil {
		return parsed{}, stage.OptionError("size", "%v", err)
	}
	return parsed{name: name, size: sz}, nil
}

// Run sets the file's size, creating it (mode 0666 less the umask, as
// truncate(1)) when it does not exist. Symbolic links are followed
// within the tree only; the directory holding the file must exist.
func Run(ctx context.Context, a stage.Args) error {
	p, err := parse(a.Options)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(a.Tree)
	if err != nil {
		return fmt.Errorf("open tree: %w", err)
	}
	defer root.Close()
	return resize(root, p)
}

func resize(root *os.Root, p parsed) error {
	// O_NONBLOCK, as truncate(1): a FIFO must not stall the open.
	f, err := root.OpenFile(p.name, os.O_WRONLY|os.O_CREATE|syscall.O_NONBLOCK, 0o666)
	if err != nil {
		return stage.OptionError("filename", "/%s: %v", p.name, unwrapPath(err))
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("/%s: %w", p.name, err)
	}
	if !fi.Mode().IsRegular() {
		return stage.OptionError("filename", "/%s is not a regular file but a %v", p.name, fi.Mode().Type())
	}
	n, err := p.size.Apply(fi.Size())
	if err != nil {
		return stage.OptionError("size", "/%s: %v", p.name, err)
	}
	if err := f.Truncate(n); err != nil {
		return fmt.Errorf("truncate /%s to %d bytes: %w", p.name, n, unwrapPath(err))
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("/%s: %w", p.name, err)
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}
