// Package grub2inst is org.osbuild.grub2.inst: it installs GRUB for BIOS
// boot (platform i386-pc) into a disk image file of the stage's tree, as
// osbuild's stage does, without grub-install (which needs udev to map a
// loop device's partitions to BIOS drives): the build root's grub-mkimage
// makes a core image from the build root's /usr/lib/grub/i386-pc
// (Debian's grub-pc-bin), written from sector "location"; the first 440
// bytes of that directory's boot.img go into sector 0, before the disk
// identifier and the partition table, set to load it (package grubpc
// does the patching, which the qemu assembler shares).
//
// Options are osbuild's:
//
//	filename     the disk image, in the tree; a regular file, reached
//	             without leaving the tree (symbolic links are followed
//	             inside it only)
//	platform     "i386-pc"; any other is refused
//	location     the core image's first sector. Without it (or with 0,
//	             which osbuild treats alike) the file is replaced by the
//	             core image, as for a CD's El Torito image
//	core         {"type": "mkimage", "partlabel": "dos"|"gpt",
//	             "filesystem": "ext4"|"xfs"|"btrfs"|"iso9660", "binary"}:
//	             the modules built in (biosdisk, part_msdos or part_gpt,
//	             the filesystem's) and grub-mkimage's name
//	prefix       {"type": "partition", "partlabel", "number" (from 0),
//	             "path"} for "(,gpt3)/boot/grub2", or {"path"} alone
//	sector-size  512, the only size GRUB's BIOS boot path counts in
//
// core.binary defaults to osbuild's grub2-mkimage, Fedora's name; when
// the build root has no grub2-mkimage the stage uses grub-mkimage,
// Debian's name for the same program, so Fedora's and Debian's manifests
// both work without naming it. A binary named in the manifest is used
// as named, and its absence is an error.
//
// Unlike osbuild, which writes wherever it is told, the stage first reads
// the image's partition table and refuses what would break the disk or
// could not boot: no partition table, a table of another kind than
// core.partlabel and prefix.partlabel say, a prefix partition the table
// lacks, and a core image that would not fit the gap between sector 0
// (on GPT, the end of the partition entries) and the first partition or
// lie wholly inside a GPT BIOS boot partition. Nothing is written then.
// An El Torito image (filesystem iso9660) goes in a file of its own, so
// it takes no location.
//
// Two more departures: like grub-bios-setup on a hard disk, forge turns
// boot.img's jump over the BIOS boot drive check into NOPs (osbuild
// leaves it, which is GRUB's floppy setting); and grub-mkimage runs
// without --verbose, which lists every module in the log.
package grub2inst

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/forge-build/forge/internal/grubpc"
	"github.com/forge-build/forge/stages/stage"
)

// Meta is org.osbuild.grub2.inst's meta.json.
//
//go:embed org.osbuild.grub2.inst.meta.json
var Meta []byte

// grubDir holds boot.img and the modules: the build root's.
const grubDir = grubpc.Dir

// Run installs GRUB into the image, or writes the core image as the file
// when there is no location.
func Run(ctx context.Context, a stage.Args) error {
	p, err := parse(a.Options)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(a.Tree)
	if err != nil {
		return fmt.Errorf("open the tree: %w", err)
	}
	defer root.Close()
	mkimage, err := grubpc.FindMkimage(p.binaries...)
	if err != nil {
		if p.binaryGiven {
			return stage.OptionError("core.binary", "%v", err)
		}
		return fmt.Errorf("grub-mkimage (Debian: grub-common): %w", err)
	}
	fmt.Printf("prefix: %s\n", p.prefix)
	if p.location == 0 {
		core, err := makeCore(ctx, mkimage, p)
		if err != nil {
			return err
		}
		return writeCore(root, p.name, core)
	}
	return install(ctx, root, mkimage, p)
}

func makeCore(ctx context.Context, mkimage string, p parsed) ([]byte, error) {
	run := func(ctx context.Context, name string, args ...string) error {
		return stage.Tool{Name: name, Args: args}.Run(ctx)
	}
	core, err := grubpc.Mkimage(ctx, run, mkimage, p.format, grubDir, p.prefix, p.modules)
	if err != nil {
		return nil, err
	}
	fmt.Printf("core image: %d bytes\n", len(core))
	return core, nil
}

// openImage opens the tree's file name for reading and writing: a regular
// file reached without leaving the tree. O_NONBLOCK, so that a FIFO does
// not stall the open (it is refused after).
func openImage(root *os.Root, name string, flag int) (*os.File, error) {
	f, err := root.OpenFile(name, flag|syscall.O_NONBLOCK, 0o644)
	if err != nil {
		return nil, stage.OptionError("filename", "/%s: %v", name, unwrapPath(err))
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("/%s: %w", name, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, stage.OptionError("filename", "/%s is not a regular file but a %v", name, fi.Mode().Type())
	}
	return f, nil
}

// install checks the image's partition table against the options before
// making the core image, then checks where the core image goes, and
// writes it and the boot code.
func install(ctx context.Context, root *os.Root, mkimage string, p parsed) error {
	f, err := openImage(root, p.name, os.O_RDWR)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("/%s: %w", p.name, err)
	}
	d, err := readDisk(f, fi.Size())
	if err != nil {
		return fmt.Errorf("/%s: %w", p.name, err)
	}
	if err := checkTable(d, p); err != nil {
		return fmt.Errorf("/%s: %w", p.name, err)
	}
	bootPath := filepath.Join(grubDir, "boot.img")
	bootImg, err := os.ReadFile(bootPath)
	if err != nil {
		return fmt.Errorf("GRUB's boot image (Debian: grub-pc-bin): %w", err)
	}
	core, err := makeCore(ctx, mkimage, p)
	if err != nil {
		return err
	}
	n := grubpc.Sectors(int64(len(core)))
	if err := checkPlacement(d, p.location, n); err != nil {
		return fmt.Errorf("/%s: %w", p.name, err)
	}
	fmt.Printf("writing the core image to sectors %d-%d of /%s, the boot code to sector 0\n", p.location, p.location+n-1, p.name)
	if err := grubpc.Install(f, bootImg, core, uint64(p.location)); err != nil {
		return fmt.Errorf("/%s: %w", p.name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("/%s: %w", p.name, err)
	}
	return nil
}

// writeCore makes the file the core image, as osbuild does without a
// location: its content replaced, created if missing.
func writeCore(root *os.Root, name string, core []byte) error {
	f, err := openImage(root, name, os.O_WRONLY|os.O_CREATE)
	if err != nil {
		return err
	}
	defer f.Close()
	if err := f.Truncate(0); err != nil {
		return fmt.Errorf("/%s: %w", name, err)
	}
	if _, err := f.WriteAt(core, 0); err != nil {
		return fmt.Errorf("write the core image to /%s: %w", name, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("/%s: %w", name, err)
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
