package grub2inst

import (
	"math"
	"slices"
	"strings"

	"github.com/forge-build/forge/internal/grubpc"
	"github.com/forge-build/forge/loopd/ptable"
	"github.com/forge-build/forge/stages/stage"
)

// options are osbuild's.
type options struct {
	Filename   *string        `json:"filename"`
	Platform   *string        `json:"platform"`
	Location   *int64         `json:"location"`
	Core       *coreOptions   `json:"core"`
	Prefix     *prefixOptions `json:"prefix"`
	SectorSize *float64       `json:"sector-size"`
}

// coreOptions say how the core image is made; osbuild knows one way,
// "mkimage".
type coreOptions struct {
	Type       *string `json:"type"`
	PartLabel  *string `json:"partlabel"`
	Filesystem *string `json:"filesystem"`
	Binary     *string `json:"binary"`
}

// prefixOptions are either a partition (type "partition", partlabel,
// number from 0, path) or a path alone.
type prefixOptions struct {
	Type      *string  `json:"type"`
	PartLabel *string  `json:"partlabel"`
	Number    *float64 `json:"number"`
	Path      *string  `json:"path"`
}

// defaultBinaries are the grub-mkimage names tried when core.binary is
// not given: osbuild's default, Fedora's name, then Debian's.
var defaultBinaries = []string{"grub2-mkimage", "grub-mkimage"}

// partLabels and filesystems are osbuild's enums.
var (
	partLabels  = []string{"gpt", "dos"}
	filesystems = []string{"ext4", "xfs", "btrfs", "iso9660"}
)

// parsed are the options checked.
type parsed struct {
	// name is the disk image, relative to the tree.
	name string
	// location is the core image's first sector; 0 when the file is to
	// become the core image itself.
	location int64
	// format is grub-mkimage's --format.
	format string
	// partlabel is the partition table the core image reads: gpt, dos.
	partlabel string
	// modules are built into the core image.
	modules []string
	// prefix is grub-mkimage's --prefix.
	prefix string
	// prefixPart is the partition (from 1) the prefix is on, and
	// prefixLabel its table; 0 and "" for a prefix that is a path alone.
	prefixPart  int
	prefixLabel string
	// binaries are the grub-mkimage names to try, in order; binaryGiven
	// says the manifest named one.
	binaries    []string
	binaryGiven bool
}

func parse(raw []byte) (parsed, error) {
	var o options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return parsed{}, err
	}
	var p parsed
	switch {
	case o.Filename == nil:
		return p, stage.OptionError("filename", "is required")
	case o.Platform == nil:
		return p, stage.OptionError("platform", "is required")
	case o.Core == nil:
		return p, stage.OptionError("core", "is required")
	case o.Prefix == nil:
		return p, stage.OptionError("prefix", "is required")
	}
	name, err := stage.TreeName(*o.Filename)
	if err != nil {
		return p, stage.OptionError("filename", "%v", err)
	}
	p.name = name
	if *o.Platform != grubpc.Platform {
		return p, stage.OptionError("platform", "%q is not supported: forge installs GRUB for %s (BIOS) only", *o.Platform, grubpc.Platform)
	}
	if o.SectorSize != nil && *o.SectorSize != grubpc.SectorSize {
		return p, stage.OptionError("sector-size", "%v is not supported: GRUB's i386-pc boot code and core image count %d-byte sectors", *o.SectorSize, grubpc.SectorSize)
	}
	if o.Location != nil {
		if *o.Location < 0 {
			return p, stage.OptionError("location", "%d is negative", *o.Location)
		}
		p.location = *o.Location
	}

	c := o.Core
	switch {
	case c.Type == nil:
		return p, stage.OptionError("core.type", "is required")
	case *c.Type != "mkimage":
		return p, stage.OptionError("core.type", "%q is not \"mkimage\", the one way osbuild makes a core image", *c.Type)
	case c.PartLabel == nil:
		return p, stage.OptionError("core.partlabel", "is required")
	case !slices.Contains(partLabels, *c.PartLabel):
		return p, stage.OptionError("core.partlabel", "%q is not one of %s", *c.PartLabel, strings.Join(partLabels, ", "))
	case c.Filesystem == nil:
		return p, stage.OptionError("core.filesystem", "is required")
	case !slices.Contains(filesystems, *c.Filesystem):
		return p, stage.OptionError("core.filesystem", "%q is not one of %s", *c.Filesystem, strings.Join(filesystems, ", "))
	}
	p.partlabel = *c.PartLabel
	p.binaries = defaultBinaries
	if c.Binary != nil {
		if *c.Binary == "" || strings.ContainsRune(*c.Binary, 0) {
			return p, stage.OptionError("core.binary", "%q names no program", *c.Binary)
		}
		// Asked for by name: that one, or an error.
		p.binaries, p.binaryGiven = []string{*c.Binary}, true
	}
	if p.modules, err = grubpc.Modules(p.partlabel, *c.Filesystem); err != nil {
		return p, stage.OptionError("core", "%v", err)
	}
	p.format = grubpc.Platform
	if *c.Filesystem == "iso9660" {
		// As osbuild: a core image for a CD, booted by El Torito.
		p.format = grubpc.Platform + "-eltorito"
		if p.location != 0 {
			return p, stage.OptionError("location", "an El Torito core image (core.filesystem iso9660) is a file of its own, not part of a disk: leave location out")
		}
	}

	if err := parsePrefix(o.Prefix, &p); err != nil {
		return p, err
	}
	return p, nil
}

// parsePrefix sets p's prefix as osbuild builds it: "(,gpt3)/boot/grub2"
// for partition 2 (from 0) of a gpt table and path "/boot/grub2", or the
// path as given.
func parsePrefix(o *prefixOptions, p *parsed) error {
	if o.Path == nil {
		return stage.OptionError("prefix.path", "is required")
	}
	// osbuild's schema asks for a "/" somewhere in it ("pattern": "/.*").
	if !strings.Contains(*o.Path, "/") {
		return stage.OptionError("prefix.path", "%q has no \"/\": want a directory such as /boot/grub", *o.Path)
	}
	if i := strings.IndexFunc(*o.Path, func(r rune) bool { return r < ' ' || r == 0x7f }); i >= 0 {
		return stage.OptionError("prefix.path", "%q contains the control character %q", *o.Path, (*o.Path)[i])
	}
	if o.Type == nil && o.PartLabel == nil && o.Number == nil {
		p.prefix = *o.Path
		return nil
	}
	// A partition: all four, as osbuild's schema has it.
	switch {
	case o.Type == nil:
		return stage.OptionError("prefix.type", "is required with partlabel and number (a prefix on a partition)")
	case *o.Type != "partition":
		return stage.OptionError("prefix.type", "%q is not \"partition\"", *o.Type)
	case o.PartLabel == nil:
		return stage.OptionError("prefix.partlabel", "is required")
	case !slices.Contains(partLabels, *o.PartLabel):
		return stage.OptionError("prefix.partlabel", "%q is not one of %s", *o.PartLabel, strings.Join(partLabels, ", "))
	case o.Number == nil:
		return stage.OptionError("prefix.number", "is required")
	}
	// osbuild adds 1 and formats the number as Python does, so 1.5 would
	// name no partition GRUB knows: forge takes whole numbers only (1.0
	// as 1).
	n := *o.Number
	if n != math.Trunc(n) || n < 0 || n >= ptable.MaxPartitions {
		return stage.OptionError("prefix.number", "%v is not a partition number from 0 to %d", n, ptable.MaxPartitions-1)
	}
	p.prefixPart = int(n) + 1
	p.prefixLabel = *o.PartLabel
	prefix, err := grubpc.Prefix(p.prefixLabel, p.prefixPart, *o.Path)
	if err != nil {
		return stage.OptionError("prefix", "%v", err)
	}
	p.prefix = prefix
	return nil
}
