package grub2

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// Run configures GRUB in the tree from the stage's options; GRUB's
// modules and EFI files come from the build root, which is "/" for a
// stage.
func Run(ctx context.Context, a stage.Args) error {
	return run(a, "/")
}

// Files the stage writes, relative to the tree.
const (
	grubDir      = "boot/grub"
	grubCfgPath  = "boot/grub/grub.cfg"
	grubenvPath  = "boot/grub/grubenv"
	defaultsPath = "etc/default/grub"
	espEFIDir    = "boot/efi/EFI"
	fontPath     = "usr/share/grub/unicode.pf2" // in the build root
)

func run(a stage.Args, buildRoot string) error {
	s, err := parse(a.Options)
	if err != nil {
		return err
	}
	root, err := os.OpenRoot(a.Tree)
	if err != nil {
		return fmt.Errorf("open tree: %w", err)
	}
	defer root.Close()
	kernels, err := findKernels(root)
	if err != nil {
		return err
	}
	// What comes from the build root is checked before the tree changes.
	var modules []string
	if s.platform != "" {
		if modules, err = grubModules(buildRoot, s.platform); err != nil {
			return err
		}
		if slices.Contains(s.terminalOutput, "gfxterm") {
			if _, err := os.Stat(filepath.Join(buildRoot, fontPath)); err != nil {
				return stage.OptionError("config.terminal_output", "gfxterm needs the build root's /%s: %v", fontPath, err)
			}
		}
	}
	if s.uefi != nil && s.uefi.install {
		for _, d := range []string{"BOOT", s.uefi.vendor} {
			src := filepath.Join(buildRoot, s.uefi.efiSrcDir, d)
			if fi, err := os.Stat(src); err != nil || !fi.IsDir() {
				return stage.OptionError("uefi.install", "the build root has no directory %s to install", path.Join(s.uefi.efiSrcDir, d))
			}
		}
	}

	if s.writeDefaults {
		if err := stage.WriteFile(root, defaultsPath, []byte(s.defaults()), 0o644); err != nil {
			return err
		}
	}
	env, err := s.grubenv()
	if err != nil {
		return err
	}
	if err := stage.WriteFile(root, grubenvPath, []byte(env), 0o644); err != nil {
		return err
	}
	// Where the main grub.cfg goes, as osbuild decides: in the EFI
	// directory for UEFI alone, else in /boot/grub, with a hand-over in
	// the EFI directory for hybrid boot or uefi.unified.
	mainCfg := grubCfgPath
	if s.uefi != nil {
		if s.uefi.install {
			for _, d := range []string{"BOOT", s.uefi.vendor} {
				if err := copyTree(root, filepath.Join(buildRoot, s.uefi.efiSrcDir, d), path.Join(espEFIDir, d)); err != nil {
					return fmt.Errorf("install EFI files: %w", err)
				}
			}
		}
		efiCfg := path.Join(espEFIDir, s.uefi.vendor, "grub.cfg")
		if s.platform != "" || s.uefi.unified {
			if err := stage.WriteFile(root, efiCfg, []byte(s.redirectCfg(efiCfg)), grubCfgMode); err != nil {
				return err
			}
		} else {
			mainCfg = efiCfg
		}
	}
	if err := stage.WriteFile(root, mainCfg, []byte(s.grubCfg(mainCfg, kernels)), grubCfgMode); err != nil {
		return err
	}
	if s.platform != "" {
		if err := copyModules(root, buildRoot, s.platform, modules); err != nil {
			return err
		}
		if err := copyFont(root, buildRoot); err != nil {
			return err
		}
	}
	return nil
}

// grubCfgMode is Debian's: grub-mkconfig makes grub.cfg read-only, a
// reminder that it is generated.
const grubCfgMode = 0o444

// grubModules lists the files of the build root's /usr/lib/grub/PLATFORM
// that GRUB loads at run time, as grub-install copies them: modules
// (*.mod), their lists (*.lst: command.lst lets GRUB load a command's
// module on first use) and the EFI emulator (efiemu*.o).
func grubModules(buildRoot, platform string) ([]string, error) {
	dir := filepath.Join(buildRoot, "usr/lib/grub", platform)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, stage.OptionError("legacy", "the build root has no GRUB modules for %s: %v (install grub-pc-bin for i386-pc)", platform, err)
	}
	var names []string
	for _, e := range ents {
		n := e.Name()
		if e.Type().IsRegular() && (strings.HasSuffix(n, ".mod") || strings.HasSuffix(n, ".lst") ||
			strings.HasPrefix(n, "efiemu") && strings.HasSuffix(n, ".o")) {
			names = append(names, n)
		}
	}
	if !slices.Contains(names, "normal.mod") {
		return nil, stage.OptionError("legacy", "the build root's %s has no normal.mod: not a GRUB module directory", dir)
	}
	return names, nil
}

// copyModules copies the modules into /boot/grub/PLATFORM and removes
// modules of an earlier copy that the build root no longer has: GRUB
// must not load modules of two versions.
func copyModules(root *os.Root, buildRoot, platform string, names []string) error {
	src := filepath.Join(buildRoot, "usr/lib/grub", platform)
	dst := path.Join(grubDir, platform)
	for _, n := range names {
		data, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			return fmt.Errorf("copy GRUB modules: %w", err)
		}
		if err := stage.WriteFile(root, path.Join(dst, n), data, 0o644); err != nil {
			return fmt.Errorf("copy GRUB modules: %w", err)
		}
	}
	ents, err := fs.ReadDir(root.FS(), dst)
	if err != nil {
		return fmt.Errorf("copy GRUB modules: %w", err)
	}
	for _, e := range ents {
		n := e.Name()
		if (strings.HasSuffix(n, ".mod") || strings.HasSuffix(n, ".lst")) && !slices.Contains(names, n) {
			if err := root.Remove(path.Join(dst, n)); err != nil {
				return fmt.Errorf("remove stale GRUB module: %w", err)
			}
		}
	}
	return nil
}

// copyFont copies the build root's unicode.pf2 to /boot/grub/fonts, as
// grub-install does, for gfxterm; without one there is nothing to copy,
// which only matters for gfxterm (checked earlier).
func copyFont(root *os.Root, buildRoot string) error {
	data, err := os.ReadFile(filepath.Join(buildRoot, fontPath))
	if errors.Is(err, fs.ErrNotExist) {
		fmt.Printf("org.osbuild.grub2: the build root has no /%s; /boot/grub/fonts stays empty\n", fontPath)
		return nil
	}
	if err != nil {
		return fmt.Errorf("copy GRUB font: %w", err)
	}
	return stage.WriteFile(root, path.Join(grubDir, "fonts/unicode.pf2"), data, 0o644)
}

// copyTree copies the build root's directory src into the tree at dst:
// directories and regular files, symlinks followed, as osbuild's
// shutil.copytree(symlinks=False).
func copyTree(root *os.Root, src, dst string) error {
	ents, err := os.ReadDir(src)
	if err != nil {
		return err
	}
	if err := root.MkdirAll(dst, 0o755); err != nil {
		return err
	}
	for _, e := range ents {
		s, d := filepath.Join(src, e.Name()), path.Join(dst, e.Name())
		fi, err := os.Stat(s)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			if err := copyTree(root, s, d); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			data, err := os.ReadFile(s)
			if err != nil {
				return err
			}
			if err := stage.WriteFile(root, d, data, fi.Mode().Perm()); err != nil {
				return err
			}
		}
	}
	return nil
}
