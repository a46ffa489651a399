// Package qemu is the assembler org.osbuild.qemu: the tree as a bootable
// disk image, output_dir/filename. The disk has an MBR partition table,
// ext4 filesystems holding the tree with every property preserved, and
// GRUB for BIOS boot; it is built as a sparse raw file, then converted to
// the format asked for.
//
// Options, as osbuild's schema has them:
//
//	format         string, required: raw, raw.xz, qcow2, vdi, vmdk, vpc or
//	               vhdx (qemu-img convert; raw.xz with xz)
//	filename       string, required: a plain file name
//	ptuuid         string, required: the MBR disk identifier, "0x14fc63d2"
//	size           integer, required: the disk's size in bytes, a multiple
//	               of 512
//	root_fs_uuid   string: the UUID of the root filesystem, for a disk with
//	               one bootable Linux partition from 1 MiB to the end
//	root_fs_type   string: "ext4" (the default)
//	pttype         string: "mbr" or "dos" (the default); "gpt" is refused
//	partitions     array, instead of root_fs_uuid (with pttype): up to four
//	               partitions, each {start, size (sectors), type (MBR type
//	               in hex), bootable, filesystem {type: "ext4", uuid,
//	               mountpoint, label}}; GPT's name and uuid are refused
//	bootloader     object: {"type": "grub2"} (the default), optionally with
//	               "platform": "i386-pc"; "zipl" is refused
//	qcow2_compat   string: qcow2's compat level ("0.10", "1.1")
//	vmdk_subformat string: VMDK's subformat
//
// GRUB goes on without grub-install, which needs udev to map a loop
// partition to a BIOS drive: grub-mkimage builds core.img with the modules
// to read the partition table and the filesystem of /boot, boot.img's code
// goes in sector 0 before the partition table and core.img from sector 1,
// each patched to find the next (package grubpc, which the stage
// org.osbuild.grub2.inst shares). GRUB's modules and grub.cfg are the
// tree's, under /boot/grub. The conversion's qemu-img options are package
// qemuimg's, shared with the stage org.osbuild.qemu.
//
// The filesystems are made and filled through loop devices from loopd over
// each partition's byte range (package diskfs): the kernel's partition
// scan is not needed.
package qemu

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/forge-build/forge/assemblers/internal/command"
	"github.com/forge-build/forge/assemblers/internal/diskfs"
	"github.com/forge-build/forge/assemblers/internal/outfile"
	"github.com/forge-build/forge/internal/qemuimg"
	"github.com/forge-build/forge/stages/stage"
)

// Run assembles the disk image.
func Run(ctx context.Context, a stage.Args) error {
	o, err := ParseOptions(a.Options)
	if err != nil {
		return err
	}
	// The raw disk is built in the output directory, which is on disk,
	// rather than in the build root's /var/tmp, which may be memory; for
	// format raw it is the output itself.
	rawName := o.Filename
	if o.Format != "raw" {
		rawName = "disk.raw"
	}
	disk, err := outfile.Create(a.OutputDir, rawName)
	if err != nil {
		return err
	}
	defer disk.Remove()
	if err := disk.Truncate(*o.Size); err != nil {
		return err
	}
	layout, err := WritePartitionTable(ctx, disk.Name(), o)
	if err != nil {
		return err
	}
	filesystems, err := partitionFilesystems(o, layout, *o.Size)
	if err != nil {
		return err
	}
	// GRUB first: it is quick and fails on a missing file or a small gap,
	// better found before the copy. It writes the sectors before the first
	// partition, which no filesystem covers.
	plan, err := planGRUB(a.Tree, o)
	if err != nil {
		return err
	}
	if err := installGRUB(ctx, disk.File, layout, plan); err != nil {
		return err
	}
	if err := diskfs.Fill(ctx, disk.File, filesystems, a.Tree); err != nil {
		return err
	}
	if o.Format == "raw" {
		return disk.Commit()
	}
	return convert(ctx, disk.Name(), a.OutputDir, o)
}

// partitionFilesystems places each partition's filesystem where sfdisk put
// the partition.
func partitionFilesystems(o Options, l *Layout, diskSize int64) ([]diskfs.Filesystem, error) {
	var out []diskfs.Filesystem
	for i, p := range o.Partitions {
		e := l.Partitions[i]
		if e.Start < 1 || e.Size < 1 || (e.Start+e.Size)*sectorSize > diskSize {
			return nil, fmt.Errorf("partition %d: sectors %d+%d do not fit a disk of %d bytes", i+1, e.Start, e.Size, diskSize)
		}
		if p.Filesystem == nil {
			continue
		}
		out = append(out, diskfs.Filesystem{
			Type:       p.Filesystem.Type,
			UUID:       p.Filesystem.UUID,
			Label:      p.Filesystem.Label,
			Mountpoint: p.Filesystem.Mountpoint,
			Offset:     e.Start * sectorSize,
			Size:       e.Size * sectorSize,
		})
	}
	return out, nil
}

// convert writes the raw disk at raw as output_dir/filename in o.Format,
// with osbuild's options for each format. qemu-img writes into a hidden
// directory of its own first: some VMDK subformats are several files,
// named after the output, and all of them move to the output directory
// only once complete.
func convert(ctx context.Context, raw, outputDir string, o Options) (err error) {
	tmp, err := os.MkdirTemp(outputDir, ".forge-partial-")
	if err != nil {
		return err
	}
	defer func() {
		if rerr := os.RemoveAll(tmp); rerr != nil && err == nil {
			err = rerr
		}
	}()
	target := filepath.Join(tmp, o.Filename)
	var cmd command.Cmd
	switch o.Format {
	case "raw.xz":
		f, err := os.OpenFile(target, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			return err
		}
		defer f.Close()
		cmd = command.Cmd{Name: "xz", Args: []string{"--keep", "--stdout", "-0", raw}, Stdout: f,
			Env: []string{"XZ_OPT=--threads=0"}}
	default:
		cmd = command.Cmd{Name: "qemu-img", Args: append(qemuImgArgs(o), raw, target)}
	}
	if err := cmd.Run(ctx); err != nil {
		return err
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.Rename(filepath.Join(tmp, e.Name()), filepath.Join(outputDir, e.Name())); err != nil {
			return fmt.Errorf("output: %w", err)
		}
	}
	return nil
}

// qemuImgArgs are qemu-img's arguments before the source and the target:
// osbuild's for each format, from the format-1 options that name them.
func qemuImgArgs(o Options) []string {
	f := qemuimg.Format{Type: o.Format}
	if o.QCOW2Compat != "" && o.Format == "qcow2" {
		f.Compat = &o.QCOW2Compat
	}
	if o.VMDKSubformat != "" && o.Format == "vmdk" {
		f.Subformat = &o.VMDKSubformat
	}
	return f.ConvertArgs("")
}
