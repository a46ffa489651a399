// Package outfile is an assembler's output file: a name checked to stay in
// the output directory, written under a hidden temporary name, and renamed
// to its own name only once it is complete, so that a failed assembler
// leaves nothing that could pass for its output.
package outfile

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// CheckOption checks the assembler option named option (usually
// "filename") that gives the output file's name: required, and a name
// CheckName accepts. The error names the option.
func CheckOption(option, name string) error {
	if name == "" {
		return stage.OptionError(option, "required")
	}
	if err := CheckName(name); err != nil {
		return stage.OptionError(option, "%v", err)
	}
	return nil
}

// CheckName reports whether name can name a file directly in the output
// directory: not empty, no "/", not "." or "..", no NUL. The error does
// not name the option; callers wrap it.
func CheckName(name string) error {
	switch {
	case name == "":
		return errors.New("must not be empty")
	case name == "." || name == "..":
		return fmt.Errorf("%q is not a file name", name)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("%q must be a plain file name, without \"/\"", name)
	case strings.ContainsRune(name, 0):
		return fmt.Errorf("%q contains a NUL byte", name)
	case len(name) > 255-len(tempPrefix)-16:
		return fmt.Errorf("%q is longer than %d bytes", name, 255-len(tempPrefix)-16)
	}
	return nil
}

// tempPrefix starts the names of partial files.
const tempPrefix = ".forge-partial-"

// Partial is a file being written in the output directory.
type Partial struct {
	*os.File
	dir, name string
	done      bool
}

// Create creates an empty partial file for name in dir, mode 0644.
func Create(dir, name string) (*Partial, error) {
	if err := CheckName(name); err != nil {
		return nil, err
	}
	f, err := os.CreateTemp(dir, tempPrefix+"*-"+name)
	if err != nil {
		return nil, fmt.Errorf("create output: %w", err)
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, fmt.Errorf("create output: %w", err)
	}
	return &Partial{File: f, dir: dir, name: name}, nil
}

// Path is where the complete file will be.
func (p *Partial) Path() string { return filepath.Join(p.dir, p.name) }

// Commit closes the file and renames it to its name, replacing whatever
// was there.
func (p *Partial) Commit() error {
	if p.done {
		return errors.New("output already committed or removed")
	}
	p.done = true
	if err := p.File.Close(); err != nil {
		os.Remove(p.File.Name())
		return fmt.Errorf("output %s: %w", p.Path(), err)
	}
	if err := os.Rename(p.File.Name(), p.Path()); err != nil {
		os.Remove(p.File.Name())
		return fmt.Errorf("output %s: %w", p.Path(), err)
	}
	return nil
}

// Remove closes and removes the partial file unless it was committed; it
// is meant for a defer on every path.
func (p *Partial) Remove() {
	if p.done {
		return
	}
	p.done = true
	p.File.Close()
	os.Remove(p.File.Name())
}
