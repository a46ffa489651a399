// Package rawfs is the assembler org.osbuild.rawfs: the tree as a raw
// filesystem image, output_dir/filename, a sparse file of `size` bytes
// holding an ext4 filesystem with the UUID `root_fs_uuid`.
//
// Options, as osbuild's schema has them:
//
//	filename      string, required: a plain file name
//	root_fs_uuid  string, required: the filesystem's UUID
//	size          integer, required: the image's size in bytes
//	fs_type       string: "ext4" (the default); osbuild's "xfs" and "btrfs"
//	              are refused
//
// The filesystem is made and filled through a loop device from loopd
// (package diskfs), with every property of the tree preserved (package
// treecopy). A tree larger than the filesystem fails the assembler; the
// unused part of the image stays sparse.
package rawfs

import (
	"context"
	"encoding/json"

	"github.com/forge-build/forge/assemblers/internal/diskfs"
	"github.com/forge-build/forge/assemblers/internal/outfile"
	"github.com/forge-build/forge/stages/stage"
)

// MinSize is the smallest image accepted: below it no ext4 with a journal
// fits.
const MinSize = 1 << 20

// Options are org.osbuild.rawfs's options.
type Options struct {
	Filename   string `json:"filename"`
	RootFSUUID string `json:"root_fs_uuid"`
	Size       *int64 `json:"size"`
	FSType     string `json:"fs_type"`
}

// ParseOptions decodes and checks the options; errors name the option.
func ParseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return o, err
	}
	if err := outfile.CheckOption("filename", o.Filename); err != nil {
		return o, err
	}
	if o.RootFSUUID == "" {
		return o, stage.OptionError("root_fs_uuid", "required")
	}
	if err := diskfs.CheckUUID(o.RootFSUUID); err != nil {
		return o, stage.OptionError("root_fs_uuid", "%v", err)
	}
	if o.Size == nil {
		return o, stage.OptionError("size", "required")
	}
	if *o.Size < MinSize {
		return o, stage.OptionError("size", "%d bytes is too small for a filesystem (at least %d)", *o.Size, MinSize)
	}
	if o.FSType == "" {
		o.FSType = "ext4"
	}
	if err := diskfs.CheckType(o.FSType); err != nil {
		return o, stage.OptionError("fs_type", "%v", err)
	}
	return o, nil
}

// Run assembles the image.
func Run(ctx context.Context, a stage.Args) error {
	o, err := ParseOptions(a.Options)
	if err != nil {
		return err
	}
	out, err := outfile.Create(a.OutputDir, o.Filename)
	if err != nil {
		return err
	}
	defer out.Remove()
	if err := out.Truncate(*o.Size); err != nil {
		return err
	}
	// The loop device covers whole sectors; a size that is not a multiple
	// of 512 leaves its last bytes outside the filesystem, as truncate and
	// mkfs did for osbuild.
	fs := diskfs.Filesystem{Type: o.FSType, UUID: o.RootFSUUID, Mountpoint: "/", Size: *o.Size &^ 511}
	if err := diskfs.Fill(ctx, out.File, []diskfs.Filesystem{fs}, a.Tree); err != nil {
		return err
	}
	return out.Commit()
}
