package qemu

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/forge-build/forge/assemblers/internal/command"
	"github.com/forge-build/forge/internal/grubpc"
)

// coreSector is where core.img goes: right after the MBR, in the gap
// before the first partition.
const coreSector = 1

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
	// MBR: ParseOptions refuses "gpt".
	const ptLabel = "dos"
	modules, err := grubpc.Modules(ptLabel, bootFS.Type)
	if err != nil {
		return grubPlan{}, fmt.Errorf("GRUB: /boot: %w", err)
	}
	inPartition := strings.TrimPrefix(grubPath, strings.TrimSuffix(bootFS.Mountpoint, "/"))
	prefix, err := grubpc.Prefix(ptLabel, boot+1, inPartition)
	if err != nil {
		return grubPlan{}, fmt.Errorf("GRUB: %w", err)
	}

	imageDir := grubpc.Dir
	if isFile(filepath.Join(tree, grubPath, grubpc.Platform, "kernel.img")) {
		imageDir = filepath.Join(tree, grubPath, grubpc.Platform)
	}
	return grubPlan{imageDir: imageDir, prefix: prefix, modules: modules}, nil
}

// installGRUB builds core.img and writes it and boot.img into the disk
// image: boot.img's code in sector 0 before the partition table, core.img
// from sector 1, which must end before the first partition.
func installGRUB(ctx context.Context, img *os.File, layout *Layout, plan grubPlan) error {
	mkimage, err := grubpc.FindMkimage("grub-mkimage", "grub2-mkimage")
	if err != nil {
		return fmt.Errorf("GRUB: %w", err)
	}
	run := func(ctx context.Context, name string, args ...string) error {
		return command.Cmd{Name: name, Args: args}.Run(ctx)
	}
	core, err := grubpc.Mkimage(ctx, run, mkimage, grubpc.Platform, plan.imageDir, plan.prefix, plan.modules)
	if err != nil {
		return fmt.Errorf("GRUB: %w", err)
	}
	bootPath := filepath.Join(plan.imageDir, "boot.img")
	bootImg, err := os.ReadFile(bootPath)
	if err != nil {
		return fmt.Errorf("GRUB: %w", err)
	}
	if err := grubpc.CheckGap(len(core), coreSector, firstStart(layout)); err != nil {
		return fmt.Errorf("GRUB: %w", err)
	}
	if err := grubpc.Install(img, bootImg, core, coreSector); err != nil {
		return fmt.Errorf("GRUB: %s: %w", img.Name(), err)
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

func isDir(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.IsDir()
}

func isFile(p string) bool {
	fi, err := os.Lstat(p)
	return err == nil && fi.Mode().IsRegular()
}
