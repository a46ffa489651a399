// Package qemu is the stage org.osbuild.qemu (manifest format 2; not the
// format-1 assembler of the same name, package assemblers/qemu): it
// converts the disk image of its input "image", an org.osbuild.files
// input of one file (the image pipeline's disk.img), with the build
// root's `qemu-img convert` to the file "filename" of its tree, in the
// format "format" with osbuild's options for it (package qemuimg has the
// formats, their options and the command line, shared with the
// assembler):
//
//	qcow2  compression (default true: zlib, one core), compat
//	vdi    -
//	vmdk   compression (default true, left out for the Flat subformats,
//	       which qemu-img cannot compress), adapter_type, compat6,
//	       subformat
//	vpc    subformat (fixed, dynamic; default fixed), force_size
//	       (default true)
//	vhdx   -
//
// "format": {"type": "qcow2", "compression": false} is the fast one: an
// uncompressed qcow2 is written at disk speed, while compression runs on
// one core (qemu-img writes clusters in order, which keeps the output
// reproducible and the compression serial). Either way the same input
// bytes give the same qcow2 bytes; the other formats carry random IDs
// qemu-img makes (and vpc the time).
//
// Unlike osbuild's stage, which lets qemu-img guess the input's format,
// forge asks `qemu-img info` first and converts from that format only if
// it is raw, qcow2, vdi, vpc or vhdx without a backing file or an
// external data file: an image naming other files (a qcow2's backing
// file, a VMDK's extents) would have qemu-img read files from outside
// the input into the output. The input's file is reached within the
// input's directory only (no "..", no symbolic link out of it).
//
// qemu-img writes into a new hidden directory at the top of the tree;
// the result (with a split or flat VMDK's extent files, named after it)
// then moves beside "filename", whose directory must exist in the tree,
// reached without leaving it. An existing file of that name is replaced,
// a symbolic link too, never written through.
package qemu

import (
	"bytes"
	"context"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/forge-build/forge/internal/qemuimg"
	"github.com/forge-build/forge/stages/stage"
)

// Meta is the stage org.osbuild.qemu's meta.json.
//
//go:embed org.osbuild.qemu.meta.json
var Meta []byte

// inputName is the input holding the image, osbuild's name.
const inputName = "image"

// options are osbuild's.
type options struct {
	Filename *string         `json:"filename"`
	Format   *qemuimg.Format `json:"format"`
}

// parsed are the options checked: the output relative to the tree, and
// its format.
type parsed struct {
	name   string
	format qemuimg.Format
}

func parse(raw []byte) (parsed, error) {
	var o options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return parsed{}, err
	}
	if o.Filename == nil {
		return parsed{}, stage.OptionError("filename", "is required")
	}
	if o.Format == nil {
		return parsed{}, stage.OptionError("format", "is required")
	}
	name, err := stage.TreeName(*o.Filename)
	if err != nil {
		return parsed{}, stage.OptionError("filename", "%v", err)
	}
	if err := o.Format.Check(); err != nil {
		var fe *qemuimg.FieldError
		if errors.As(err, &fe) {
			return parsed{}, stage.OptionError("format."+fe.Field, "%s", fe.Msg)
		}
		return parsed{}, stage.OptionError("format", "%v", err)
	}
	return parsed{name: name, format: *o.Format}, nil
}

// Run converts the input's image into the tree.
func Run(ctx context.Context, a stage.Args) error {
	p, err := parse(a.Options)
	if err != nil {
		return err
	}
	src, err := source(a)
	if err != nil {
		return err
	}
	srcFormat, err := probe(ctx, src)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(a.Tree)
	if err != nil {
		return fmt.Errorf("open the tree: %w", err)
	}
	defer root.Close()
	dir := path.Dir(p.name)
	if fi, err := root.Stat(dir); err != nil || !fi.IsDir() {
		if err == nil {
			err = errors.New("not a directory")
		}
		return stage.OptionError("filename", "/%s: its directory /%s: %v", p.name, dir, unwrapPath(err))
	}
	return convert(ctx, a.Tree, root, src, srcFormat, p)
}

// source is the path of the input's one file, checked to be a regular
// file reached within the input.
func source(a stage.Args) (string, error) {
	in, ok := a.Inputs[inputName]
	if !ok && a.Format != 2 {
		return "", fmt.Errorf("the stage needs an input %q, the image to convert: inputs exist in manifest format 2 only", inputName)
	}
	if !ok {
		return "", fmt.Errorf("the stage needs an input %q, the image to convert (\"inputs\": {%q: {\"type\": \"org.osbuild.files\", ...}})", inputName, inputName)
	}
	if len(in.Data.Files) != 1 {
		names := make([]string, 0, len(in.Data.Files))
		for n := range in.Data.Files {
			names = append(names, n)
		}
		slices.Sort(names)
		return "", fmt.Errorf("input %q holds %d files (%s), want exactly one, the image", inputName, len(names), strings.Join(names, ", "))
	}
	var file string
	for n := range in.Data.Files {
		file = n
	}
	l, err := a.ParseLocation("input://" + inputName + "/" + strings.TrimLeft(file, "/"))
	if err != nil {
		return "", fmt.Errorf("input %q: %w", inputName, err)
	}
	fi, err := l.Stat()
	if err != nil {
		return "", fmt.Errorf("input %q: %w", inputName, err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("input %q: %s is not a regular file but a %v", inputName, l.Path(), fi.Mode().Type())
	}
	return l.Path(), nil
}

// inputFormats are the image formats converted from: those that are one
// file, unless they name a backing or data file, which is refused.
var inputFormats = []string{"raw", "qcow2", "vdi", "vpc", "vhdx"}

// imageInfo is what `qemu-img info --output=json` says that matters here.
type imageInfo struct {
	Format          string `json:"format"`
	BackingFilename string `json:"backing-filename"`
	FormatSpecific  struct {
		Data struct {
			DataFile string `json:"data-file"`
		} `json:"data"`
	} `json:"format-specific"`
}

// checkInfo reads qemu-img info's JSON and returns the image's format if
// it is one to convert from.
func checkInfo(out []byte) (string, error) {
	var info imageInfo
	if err := json.Unmarshal(out, &info); err != nil {
		return "", fmt.Errorf("qemu-img info: %w", err)
	}
	switch {
	case !slices.Contains(inputFormats, info.Format):
		return "", fmt.Errorf("a %q image: forge converts %s images (others can name files outside the input)", info.Format, strings.Join(inputFormats, ", "))
	case info.BackingFilename != "":
		return "", fmt.Errorf("a %s image with the backing file %q: the input must be self-contained", info.Format, info.BackingFilename)
	case info.FormatSpecific.Data.DataFile != "":
		return "", fmt.Errorf("a %s image with the external data file %q: the input must be self-contained", info.Format, info.FormatSpecific.Data.DataFile)
	}
	return info.Format, nil
}

// probe asks qemu-img for src's format.
func probe(ctx context.Context, src string) (string, error) {
	var out bytes.Buffer
	if err := (stage.Tool{Name: "qemu-img", Args: []string{"info", "--output=json", src}, Stdout: &out}).Run(ctx); err != nil {
		return "", fmt.Errorf("input %q: %w", inputName, err)
	}
	f, err := checkInfo(out.Bytes())
	if err != nil {
		return "", fmt.Errorf("input %q: %s: %w", inputName, src, err)
	}
	return f, nil
}

// convert runs qemu-img into a new directory at the top of the tree (the
// builder's own path, so nothing in the tree redirects it), then moves
// what it wrote next to p.name, through root.
func convert(ctx context.Context, tree string, root *os.Root, src, srcFormat string, p parsed) (err error) {
	tmp, err := os.MkdirTemp(tree, ".forge-qemu-")
	if err != nil {
		return fmt.Errorf("a directory for qemu-img in the tree: %w", err)
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = fmt.Errorf("remove %s: %w", tmp, rerr)
		}
	}()
	base := path.Base(p.name)
	args := append(p.format.ConvertArgs(srcFormat), src, filepath.Join(tmp, base))
	if err := (stage.Tool{Name: "qemu-img", Args: args}).Run(ctx); err != nil {
		return err
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return fmt.Errorf("read %s: %w", tmp, err)
	}
	for _, e := range entries {
		if e.Type().IsRegular() {
			if err := canonicalHoles(filepath.Join(tmp, e.Name())); err != nil {
				return err
			}
		}
	}
	// The output last: a VMDK descriptor that names its extents appears
	// only once they are in place.
	slices.SortStableFunc(entries, func(a, b os.DirEntry) int {
		switch {
		case a.Name() == base:
			return 1
		case b.Name() == base:
			return -1
		}
		return 0
	})
	tmpRel := filepath.Base(tmp)
	dir := path.Dir(p.name)
	for _, e := range entries {
		to := path.Join(dir, e.Name())
		if err := root.Rename(path.Join(tmpRel, e.Name()), to); err != nil {
			return fmt.Errorf("move qemu-img's %s to /%s: %w", e.Name(), to, unwrapPath(err))
		}
		fmt.Printf("wrote /%s\n", to)
	}
	return nil
}

func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	var le *os.LinkError
	if errors.As(err, &le) {
		return le.Err
	}
	return err
}
