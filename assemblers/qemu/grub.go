package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/forge-build/forge/assemblers/internal/command"
)

// grubPlatform is the only GRUB platform forge installs: BIOS.
const grubPlatform = "i386-pc"

// hostGRUBDir is where the build root keeps GRUB's i386-pc images and
// modules (Debian's grub-pc-bin, Fedora's grub2-pc-modules).
const hostGRUBDir = "/usr/lib/grub/" + grubPlatform

// The places in boot.img and in diskboot.img (the first sector of
// core.img) that installing GRUB fills in, from GRUB's
// include/grub/i386/pc/boot.h; grub-bios-setup and osbuild's qemu
// assembler write the same.
const (
	// bootCodeSize is how much of boot.img goes to sector 0: the rest of
	// the sector is the disk identifier and the partition table.
	bootCodeSize = 0x1b8
	// kernelSectorOffset holds the 64-bit LBA of core.img's first sector.
	kernelSectorOffset = 0x5c
	// driveCheckOffset is a 2-byte short jump that skips the check for a
	// BIOS passing a bogus boot drive; on a hard disk, grub-bios-setup
	// turns it into two NOPs, and so does forge.
	driveCheckOffset = 0x66
	// blocklistOffset is diskboot's blocklist entry: the 64-bit LBA of the
	// rest of core.img, its 16-bit length in sectors, and the 16-bit
	// segment it loads to.
	blocklistOffset = sectorSize - 12
	// kernelSegment is where diskboot loads the rest of core.img: 0x800
	// plus one sector. grub-mkimage puts it there; it is checked, not set.
	kernelSegment = 0x820

	opJmpShort = 0xeb
	opNop      = 0x90
)

// coreSector is where core.img goes: right after the MBR, in the gap
// before the first partition.
const coreSector = 1

// BootCode returns the bytes of boot.img that go to the start of sector 0,
// set to load core.img from coreLBA.
func BootCode(bootImg []byte, coreLBA uint64) ([]byte, error) {
	if len(bootImg) != sectorSize {
		return nil, fmt.Errorf("boot.img has %d bytes, want %d", len(bootImg), sectorSize)
	}
	if bootImg[sectorSize-2] != 0x55 || bootImg[sectorSize-1] != 0xaa {
		return nil, errors.New("boot.img does not end with the boot signature 55 aa")
	}
	if bootImg[driveCheckOffset] != opJmpShort {
		return nil, fmt.Errorf("boot.img has %#02x at %#x, want the short jump (%#02x) GRUB puts there: not GRUB 2's boot.img?",
			bootImg[driveCheckOffset], driveCheckOffset, opJmpShort)
	}
	code := bytes.Clone(bootImg[:bootCodeSize])
	binary.LittleEndian.PutUint64(code[kernelSectorOffset:], coreLBA)
	code[driveCheckOffset], code[driveCheckOffset+1] = opNop, opNop
	return code, nil
}

// PatchCore returns core.img (as grub-mkimage made it) set to load its
// remaining sectors from the ones following coreLBA, after checking that
// its blocklist covers the whole image.
func PatchCore(core []byte, coreLBA uint64) ([]byte, error) {
	if len(core) <= sectorSize {
		return nil, fmt.Errorf("core.img has %d bytes: too small to be GRUB's", len(core))
	}
	core = bytes.Clone(core)
	entry := core[blocklistOffset:sectorSize]
	length := binary.LittleEndian.Uint16(entry[8:])
	segment := binary.LittleEndian.Uint16(entry[10:])
	if segment != kernelSegment {
		return nil, fmt.Errorf("core.img's blocklist loads to segment %#x, want %#x: not an i386-pc core image?", segment, kernelSegment)
	}
	rest := (len(core) - sectorSize + sectorSize - 1) / sectorSize
	if int(length) < rest {
		return nil, fmt.Errorf("core.img's blocklist covers %d sectors, the image needs %d", length, rest)
	}
	binary.LittleEndian.PutUint64(entry, coreLBA+1)
	return core, nil
}

// grubPlan is how GRUB goes on the disk.
type grubPlan struct {
	// imageDir holds boot.img, kernel.img and the modules grub-mkimage
	// builds core.img from.
	imageDir string
	// prefix is where core.img finds normal.mod and grub.cfg:
	// "(,msdos1)/boot/grub".
	prefix string
	// modules are built into core.img: enough to read the partition table
	// and the filesystem holding the prefix.
	modules []string
}

// planGRUB finds GRUB's directory in the tree (/boot/grub, or Fedora's
// /boot/grub2 when only that exists), the partition holding it (the one
// mounted at /boot, else the root), and the images to build core.img
// from: the tree's own copy of the i386-pc directory when it has one, as
// the core must match the modules it loads from there at boot; else the
// build root's, as osbuild does.
func planGRUB(tree string, o Options) (grubPlan, error) {
	grubPath := "/boot/grub"
	if isDir(filepath.Join(tree, "boot/grub2")) && !isDir(filepath.Join(tree, "boot/grub")) {
		grubPath = "/boot/grub2"
	}
	boot := -1
	for _, mp := range []string{"/boot", "/"} {
		for i, p := range o.Partitions {
			if boot < 0 && p.Filesystem != nil && p.Filesystem.Mountpoint == mp {
				boot = i
			}
		}
	}
	if boot < 0 {
		return grubPlan{}, errors.New("GRUB: no partition holds /boot")
	}
	bootFS := o.Partitions[boot].Filesystem
	var fsModule string
	switch bootFS.Type {
	case "ext4":
		fsModule = "ext2"
	default:
		return grubPlan{}, fmt.Errorf("GRUB: no module for a %s /boot", bootFS.Type)
	}
	inPartition := strings.TrimPrefix(grubPath, strings.TrimSuffix(bootFS.Mountpoint, "/"))

	imageDir := hostGRUBDir
	if isFile(filepath.Join(tree, grubPath, grubPlatform, "kernel.img")) {
		imageDir = filepath.Join(tree, grubPath, grubPlatform)
	}
	return grubPlan{
		imageDir: imageDir,
		prefix:   fmt.Sprintf("(,msdos%d)%s", boot+1, inPartition),
		modules:  []string{"biosdisk", "part_msdos", fsModule},
	}, nil
}

// installGRUB builds core.img and writes it and boot.img into the disk
// image: boot.img's code in sector 0 before the partition table, core.img
// from sector 1, which must end before the first partition.
func installGRUB(ctx context.Context, img *os.File, layout *Layout, plan grubPlan) error {
	mkimage, err := findMkimage()
	if err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "forge-grub-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	corePath := filepath.Join(tmp, "core.img")
	args := []string{
		"--format", grubPlatform,
		"--directory", plan.imageDir,
		"--prefix", plan.prefix,
		"--compression", "auto",
		"--output", corePath,
	}
	if err := (command.Cmd{Name: mkimage, Args: append(args, plan.modules...)}).Run(ctx); err != nil {
		return fmt.Errorf("GRUB: %w", err)
	}
	core, err := os.ReadFile(corePath)
	if err != nil {
		return fmt.Errorf("GRUB: %w", err)
	}
	bootImg, err := os.ReadFile(filepath.Join(plan.imageDir, "boot.img"))
	if err != nil {
		return fmt.Errorf("GRUB: %w", err)
	}

	gap := firstStart(layout) - coreSector
	if need := (int64(len(core)) + sectorSize - 1) / sectorSize; need > gap {
		return fmt.Errorf("GRUB: core.img needs %d sectors, the gap before the first partition has %d", need, gap)
	}
	code, err := BootCode(bootImg, coreSector)
	if err != nil {
		return fmt.Errorf("GRUB: %s: %w", filepath.Join(plan.imageDir, "boot.img"), err)
	}
	core, err = PatchCore(core, coreSector)
	if err != nil {
		return fmt.Errorf("GRUB: %w", err)
	}
	if _, err := img.WriteAt(code, 0); err != nil {
		return fmt.Errorf("GRUB: write boot code: %w", err)
	}
	if _, err := img.WriteAt(core, coreSector*sectorSize); err != nil {
		return fmt.Errorf("GRUB: write core.img: %w", err)
	}
	return nil
}

// firstStart is the first sector of the partition that starts first.
func firstStart(l *Layout) int64 {
	first := int64(-1)
	for _, p := range l.Partitions {
		if first < 0 || p.Start < first {
			first = p.Start
		}
	}
	return first
}

// findMkimage is Debian's grub-mkimage or Fedora's grub2-mkimage.
func findMkimage() (string, error) {
	for _, name := range []string{"grub-mkimage", "grub2-mkimage"} {
		if _, err := exec.LookPath(name); err == nil {
			return name, nil
		}
	}
	return "", fmt.Errorf("GRUB: neither grub-mkimage nor grub2-mkimage is in the build root (PATH=%s)", os.Getenv("PATH"))
}

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

func isFile(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}
