package qemu

import (
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/forge-build/forge/assemblers/internal/diskfs"
	"github.com/forge-build/forge/assemblers/internal/outfile"
	"github.com/forge-build/forge/internal/grubpc"
	"github.com/forge-build/forge/internal/qemuimg"
	"github.com/forge-build/forge/stages/stage"
)

// Options are org.osbuild.qemu's options.
type Options struct {
	Format        string      `json:"format"`
	Filename      string      `json:"filename"`
	PTUUID        string      `json:"ptuuid"`
	Size          *int64      `json:"size"`
	RootFSUUID    string      `json:"root_fs_uuid"`
	RootFSType    string      `json:"root_fs_type"`
	PTType        string      `json:"pttype"`
	Partitions    []Partition `json:"partitions"`
	Bootloader    *Bootloader `json:"bootloader"`
	QCOW2Compat   string      `json:"qcow2_compat"`
	VMDKSubformat string      `json:"vmdk_subformat"`
}

// Partition is one entry of the partitions option. Start and Size are in
// 512-byte sectors; absent, sfdisk chooses (the next 1 MiB boundary, the
// rest of the disk).
type Partition struct {
	Bootable   bool        `json:"bootable"`
	Name       string      `json:"name"`
	Size       *int64      `json:"size"`
	Start      *int64      `json:"start"`
	Type       string      `json:"type"`
	UUID       string      `json:"uuid"`
	Filesystem *Filesystem `json:"filesystem"`
}

// Filesystem is a partition's filesystem.
type Filesystem struct {
	Label      string `json:"label"`
	Mountpoint string `json:"mountpoint"`
	Type       string `json:"type"`
	UUID       string `json:"uuid"`
}

// Bootloader is the bootloader option.
type Bootloader struct {
	Type     string `json:"type"`
	Platform string `json:"platform"`
}

// Formats are the output formats: osbuild's list.
var Formats = []string{"raw", "raw.xz", "qcow2", "vdi", "vmdk", "vpc", "vhdx"}

// MinSize is the smallest disk accepted: 1 MiB for the partition table
// and GRUB's core.img, 1 MiB for a filesystem.
const MinSize = 2 << 20

// maxPartitions is what an MBR holds without an extended partition.
const maxPartitions = 4

var (
	// An MBR disk identifier, as sfdisk's label-id takes it.
	mbrIDPattern = regexp.MustCompile(`^0x[0-9a-fA-F]{1,8}$`)
	// An MBR partition type: one byte in hex.
	mbrTypePattern = regexp.MustCompile(`^(0x)?[0-9a-fA-F]{1,2}$`)
)

// ParseOptions decodes and checks the options; errors name the option.
// The result has the legacy form (root_fs_uuid) turned into Partitions and
// the defaults filled in.
func ParseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return o, err
	}
	if o.Format == "" {
		return o, stage.OptionError("format", "required")
	}
	if !slices.Contains(Formats, o.Format) {
		return o, stage.OptionError("format", "%q is not one of %s", o.Format, strings.Join(Formats, ", "))
	}
	if err := outfile.CheckOption("filename", o.Filename); err != nil {
		return o, err
	}
	if o.Size == nil {
		return o, stage.OptionError("size", "required")
	}
	if *o.Size <= 0 || *o.Size%sectorSize != 0 {
		return o, stage.OptionError("size", "%d is not a positive multiple of the sector size (%d)", *o.Size, sectorSize)
	}
	if *o.Size < MinSize {
		return o, stage.OptionError("size", "%d bytes is too small for GRUB before a partition at 1 MiB and a filesystem in it (at least %d)", *o.Size, MinSize)
	}
	if o.QCOW2Compat != "" && !slices.Contains(qemuimg.QCOW2Compats, o.QCOW2Compat) {
		return o, stage.OptionError("qcow2_compat", "%q is not one of %s", o.QCOW2Compat, strings.Join(qemuimg.QCOW2Compats, ", "))
	}
	if o.VMDKSubformat != "" && !slices.Contains(qemuimg.VMDKSubformats, o.VMDKSubformat) {
		return o, stage.OptionError("vmdk_subformat", "%q is not one of %s", o.VMDKSubformat, strings.Join(qemuimg.VMDKSubformats, ", "))
	}

	switch o.PTType {
	case "", "mbr", "dos":
		o.PTType = "dos"
	case "gpt":
		return o, stage.OptionError("pttype", "\"gpt\" is not supported: forge writes MBR partition tables only")
	default:
		return o, stage.OptionError("pttype", "%q is not one of mbr, dos, gpt", o.PTType)
	}
	if o.PTUUID == "" {
		return o, stage.OptionError("ptuuid", "required")
	}
	if !mbrIDPattern.MatchString(o.PTUUID) {
		return o, stage.OptionError("ptuuid", "%q is not an MBR disk identifier like \"0x14fc63d2\"", o.PTUUID)
	}

	// osbuild's schema: one of root_fs_uuid (a single root partition), or
	// pttype with partitions.
	switch {
	case o.Partitions == nil && o.RootFSUUID == "":
		return o, stage.OptionError("root_fs_uuid", "required unless \"pttype\" and \"partitions\" are given")
	case o.Partitions == nil:
		if err := diskfs.CheckUUID(o.RootFSUUID); err != nil {
			return o, stage.OptionError("root_fs_uuid", "%v", err)
		}
		if o.RootFSType == "" {
			o.RootFSType = "ext4"
		}
		if err := diskfs.CheckType(o.RootFSType); err != nil {
			return o, stage.OptionError("root_fs_type", "%v", err)
		}
		o.Partitions = []Partition{{
			Bootable:   true,
			Type:       "83",
			Filesystem: &Filesystem{Type: o.RootFSType, UUID: o.RootFSUUID, Mountpoint: "/"},
		}}
	case o.RootFSUUID != "" || o.RootFSType != "":
		return o, stage.OptionError("root_fs_uuid", "not allowed with \"partitions\": the root filesystem is one of the partitions")
	case !hasKey(raw, "pttype"):
		return o, stage.OptionError("pttype", "required with \"partitions\"")
	default:
		if err := checkPartitions(o.Partitions); err != nil {
			return o, err
		}
	}

	if o.Bootloader == nil {
		// As osbuild: an MBR disk gets GRUB unless told otherwise.
		o.Bootloader = &Bootloader{Type: "grub2"}
	}
	switch o.Bootloader.Type {
	case "grub2":
	case "zipl":
		return o, stage.OptionError("bootloader", "type \"zipl\" is not supported: forge installs GRUB for BIOS (i386-pc) only")
	default:
		return o, stage.OptionError("bootloader", "type %q is not one of grub2, zipl", o.Bootloader.Type)
	}
	if o.Bootloader.Platform == "" {
		o.Bootloader.Platform = grubpc.Platform
	}
	if o.Bootloader.Platform != grubpc.Platform {
		return o, stage.OptionError("bootloader", "platform %q is not supported: forge installs GRUB for %s only", o.Bootloader.Platform, grubpc.Platform)
	}
	return o, nil
}

func checkPartitions(parts []Partition) error {
	if len(parts) == 0 {
		return stage.OptionError("partitions", "want at least one partition")
	}
	if len(parts) > maxPartitions {
		return stage.OptionError("partitions", "%d partitions: an MBR holds %d", len(parts), maxPartitions)
	}
	roots := 0
	mountpoints := map[string]int{}
	for i, p := range parts {
		opt := fmt.Sprintf("partitions[%d]", i)
		if p.Name != "" {
			return stage.OptionError(opt+".name", "partition names are GPT's; an MBR has none")
		}
		if p.UUID != "" {
			return stage.OptionError(opt+".uuid", "partition UUIDs are GPT's; an MBR has none")
		}
		if p.Type != "" && !mbrTypePattern.MatchString(p.Type) {
			return stage.OptionError(opt+".type", "%q is not an MBR partition type (one byte in hex, like \"83\")", p.Type)
		}
		if p.Start != nil && *p.Start < 1 {
			return stage.OptionError(opt+".start", "%d: the first sector holds the partition table", *p.Start)
		}
		if p.Size != nil && *p.Size < 1 {
			return stage.OptionError(opt+".size", "%d sectors: want at least one", *p.Size)
		}
		fs := p.Filesystem
		if fs == nil {
			continue
		}
		if err := diskfs.CheckType(fs.Type); err != nil {
			return stage.OptionError(opt+".filesystem.type", "%v", err)
		}
		if err := diskfs.CheckUUID(fs.UUID); err != nil {
			return stage.OptionError(opt+".filesystem.uuid", "%v", err)
		}
		if err := diskfs.CheckMountpoint(fs.Mountpoint); err != nil {
			return stage.OptionError(opt+".filesystem.mountpoint", "%v", err)
		}
		if j, ok := mountpoints[fs.Mountpoint]; ok {
			return stage.OptionError(opt+".filesystem.mountpoint", "%q is partitions[%d]'s too", fs.Mountpoint, j)
		}
		mountpoints[fs.Mountpoint] = i
		if err := (diskfs.Filesystem{Type: fs.Type, UUID: fs.UUID, Label: fs.Label, Mountpoint: fs.Mountpoint, Size: sectorSize}).Check(); err != nil {
			return stage.OptionError(opt+".filesystem", "%v", err)
		}
		if fs.Mountpoint == "/" {
			roots++
		}
	}
	if roots != 1 {
		return stage.OptionError("partitions", "want one filesystem mounted at \"/\", got %d", roots)
	}
	return nil
}

func hasKey(raw json.RawMessage, key string) bool {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return false
	}
	_, ok := m[key]
	return ok
}
