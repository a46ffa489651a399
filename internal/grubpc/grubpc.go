// Package grubpc installs GRUB for BIOS (GRUB's i386-pc platform) into a
// disk image without grub-install, which wants udev to map a loop device's
// partitions to BIOS drives: grub-mkimage builds a core image from the
// build root's modules, and this package patches it and GRUB's boot.img
// so that each finds the next, as grub-bios-setup does.
//
// Its nouns: the boot code is the first 440 bytes of boot.img, which go
// to sector 0 of the disk before the disk identifier and the partition
// table; the core image (core.img) is diskboot.img's one sector followed
// by GRUB's kernel and the modules needed to find the prefix, the
// directory holding normal.mod and grub.cfg, written from a sector the
// boot code is told (the core LBA). Sectors are 512 bytes throughout: the
// BIOS boot path (boot.img's LBA read, diskboot's blocklist) counts them
// so.
//
// The assembler org.osbuild.qemu and the stage org.osbuild.grub2.inst
// share it.
package grubpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
)

// Platform is the only GRUB platform this package installs.
const Platform = "i386-pc"

// Dir is where a build root keeps GRUB's i386-pc images and modules
// (Debian's grub-pc-bin, Fedora's grub2-pc-modules).
const Dir = "/usr/lib/grub/" + Platform

// SectorSize is the sector size of the BIOS boot path.
const SectorSize = 512

// The places in boot.img and in diskboot.img (the first sector of
// core.img) that installing GRUB fills in, from GRUB's
// include/grub/i386/pc/boot.h; grub-bios-setup and osbuild write the same.
const (
	// BootCodeSize is how much of boot.img goes to sector 0: the rest of
	// the sector is the disk identifier and the partition table.
	BootCodeSize = 0x1b8
	// KernelSectorOffset holds the 64-bit LBA of core.img's first sector.
	KernelSectorOffset = 0x5c
	// DriveCheckOffset is a 2-byte short jump that skips the check for a
	// BIOS passing a bogus boot drive; on a hard disk, grub-bios-setup
	// turns it into two NOPs, and so does forge (osbuild leaves the jump,
	// which is what GRUB does for a floppy).
	DriveCheckOffset = 0x66
	// BlocklistOffset is diskboot's blocklist entry: the 64-bit LBA of the
	// rest of core.img, its 16-bit length in sectors, and the 16-bit
	// segment it loads to.
	BlocklistOffset = SectorSize - 12
	// KernelSegment is where diskboot loads the rest of core.img: 0x800
	// plus one sector. grub-mkimage puts it there; it is checked, not set.
	KernelSegment = 0x820

	opJmpShort = 0xeb
	opNop      = 0x90
)

// Sectors is how many sectors n bytes take.
func Sectors(n int64) int64 { return (n + SectorSize - 1) / SectorSize }

// BootCode returns the bytes of boot.img that go to the start of sector 0,
// set to load core.img from coreLBA.
func BootCode(bootImg []byte, coreLBA uint64) ([]byte, error) {
	if len(bootImg) != SectorSize {
		return nil, fmt.Errorf("boot.img has %d bytes, want %d", len(bootImg), SectorSize)
	}
	if bootImg[SectorSize-2] != 0x55 || bootImg[SectorSize-1] != 0xaa {
		return nil, errors.New("boot.img does not end with the boot signature 55 aa")
	}
	if bootImg[DriveCheckOffset] != opJmpShort {
		return nil, fmt.Errorf("boot.img has %#02x at %#x, want the short jump (%#02x) GRUB puts there: not GRUB 2's boot.img?",
			bootImg[DriveCheckOffset], DriveCheckOffset, opJmpShort)
	}
	code := bytes.Clone(bootImg[:BootCodeSize])
	binary.LittleEndian.PutUint64(code[KernelSectorOffset:], coreLBA)
	code[DriveCheckOffset], code[DriveCheckOffset+1] = opNop, opNop
	return code, nil
}

// PatchCore returns core.img (as grub-mkimage made it) set to load its
// remaining sectors from the ones following coreLBA, after checking that
// its blocklist covers the whole image.
func PatchCore(core []byte, coreLBA uint64) ([]byte, error) {
	if len(core) <= SectorSize {
		return nil, fmt.Errorf("core.img has %d bytes: too small to be GRUB's", len(core))
	}
	core = bytes.Clone(core)
	entry := core[BlocklistOffset:SectorSize]
	length := binary.LittleEndian.Uint16(entry[8:])
	segment := binary.LittleEndian.Uint16(entry[10:])
	if segment != KernelSegment {
		return nil, fmt.Errorf("core.img's blocklist loads to segment %#x, want %#x: not an i386-pc core image?", segment, KernelSegment)
	}
	rest := Sectors(int64(len(core))) - 1
	if int64(length) < rest {
		return nil, fmt.Errorf("core.img's blocklist covers %d sectors, the image needs %d", length, rest)
	}
	binary.LittleEndian.PutUint64(entry, coreLBA+1)
	return core, nil
}

// Install writes core.img at coreLBA and boot.img's code to sector 0 of
// disk, each patched to find the next. Both are checked before anything
// is written, so a refused image leaves the disk as it was. Where core.img
// may go is the caller's to check (see CheckGap).
func Install(disk io.WriterAt, bootImg, core []byte, coreLBA uint64) error {
	code, err := BootCode(bootImg, coreLBA)
	if err != nil {
		return err
	}
	core, err = PatchCore(core, coreLBA)
	if err != nil {
		return err
	}
	// core.img first, as osbuild: until sector 0 points at it, a
	// half-written core is never run.
	if _, err := disk.WriteAt(core, int64(coreLBA)*SectorSize); err != nil {
		return fmt.Errorf("write core.img at sector %d: %w", coreLBA, err)
	}
	if _, err := disk.WriteAt(code, 0); err != nil {
		return fmt.Errorf("write the boot code to sector 0: %w", err)
	}
	return nil
}

// CheckGap checks that a core image of coreBytes bytes written from
// sector coreLBA ends before sector end, the first partition's start,
// and does not overwrite sector 0.
func CheckGap(coreBytes int, coreLBA, end int64) error {
	if coreLBA < 1 {
		return fmt.Errorf("core.img at sector %d would overwrite the partition table in sector 0", coreLBA)
	}
	if need := Sectors(int64(coreBytes)); coreLBA+need > end {
		return fmt.Errorf("core.img needs %d sectors, the gap before the first partition has %d", need, max(end-coreLBA, 0))
	}
	return nil
}

// Modules are the modules a core image needs to find its prefix: the BIOS
// disk driver, the partition map (partlabel "dos", "mbr" or "gpt") and the
// filesystem holding the prefix; osbuild builds the same set.
func Modules(partlabel, filesystem string) ([]string, error) {
	mods := []string{"biosdisk"}
	switch partlabel {
	case "dos", "mbr":
		mods = append(mods, "part_msdos")
	case "gpt":
		mods = append(mods, "part_gpt")
	default:
		return nil, fmt.Errorf("no GRUB module for a %q partition table (want dos, mbr or gpt)", partlabel)
	}
	switch filesystem {
	case "ext2", "ext3", "ext4":
		// GRUB's ext2 module reads all three.
		mods = append(mods, "ext2")
	case "xfs", "btrfs", "iso9660":
		mods = append(mods, filesystem)
	default:
		return nil, fmt.Errorf("no GRUB module for a %q filesystem (want ext4, xfs, btrfs or iso9660)", filesystem)
	}
	return mods, nil
}

// PartitionName is GRUB's name of partition number (from 1) in a table
// of type partlabel: msdos1, gpt2.
func PartitionName(partlabel string, number int) (string, error) {
	switch partlabel {
	case "dos", "mbr":
		return fmt.Sprintf("msdos%d", number), nil
	case "gpt":
		return fmt.Sprintf("gpt%d", number), nil
	}
	return "", fmt.Errorf("no GRUB name for a %q partition table (want dos, mbr or gpt)", partlabel)
}

// Prefix is a prefix on partition number (from 1) of the boot disk:
// "(,msdos1)/boot/grub". dir is the directory within the partition.
func Prefix(partlabel string, number int, dir string) (string, error) {
	name, err := PartitionName(partlabel, number)
	if err != nil {
		return "", err
	}
	return "(," + name + ")/" + strings.TrimLeft(dir, "/"), nil
}

// MkimageArgs are grub-mkimage's arguments for a core image in format
// (i386-pc, or i386-pc-eltorito for a CD) built from dir's images and
// modules, looking for the rest of GRUB in prefix, written to output.
// Compression "auto" is osbuild's and grub-install's choice (LZMA for
// i386-pc).
func MkimageArgs(format, dir, prefix, output string, modules []string) []string {
	args := []string{
		"--format", format,
		"--directory", dir,
		"--prefix", prefix,
		"--compression", "auto",
		"--output", output,
	}
	return append(args, modules...)
}

// FindMkimage returns the first of names found in PATH (a name with a "/"
// is taken as a path): the build root's grub-mkimage, which Debian calls
// grub-mkimage and Fedora grub2-mkimage.
func FindMkimage(names ...string) (string, error) {
	for _, name := range names {
		if _, err := exec.LookPath(name); err == nil {
			return name, nil
		}
	}
	return "", fmt.Errorf("%s: not in the build root (PATH=%s)", strings.Join(names, " or "), os.Getenv("PATH"))
}

// Mkimage runs grub-mkimage (the program mkimage) through run, which
// prints and runs a build-root tool, and returns the core image it made.
// The image goes through a temporary directory of its own.
func Mkimage(ctx context.Context, run func(ctx context.Context, name string, args ...string) error,
	mkimage, format, dir, prefix string, modules []string) ([]byte, error) {
	tmp, err := os.MkdirTemp("", "forge-grub-")
	if err != nil {
		return nil, fmt.Errorf("core.img: %w", err)
	}
	defer os.RemoveAll(tmp)
	out := tmp + "/core.img"
	if err := run(ctx, mkimage, MkimageArgs(format, dir, prefix, out, modules)...); err != nil {
		return nil, err
	}
	core, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("core.img: %w", err)
	}
	return core, nil
}
