package builder

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// DefaultLibdir is where `make install` puts forge's stages.
const DefaultLibdir = "/usr/libexec/forge"

// FindLibdir returns the libdir to use: flag when set, else $FORGE_LIBDIR,
// else the one beside the running forge (bin/libexec/forge in a build
// tree, PREFIX/libexec/forge for an install), else DefaultLibdir. A libdir
// is a directory holding osbuild-run.
func FindLibdir(flag string) (string, error) {
	check := func(dir, from string) (string, error) {
		abs, err := filepath.Abs(dir)
		if err != nil {
			return "", err
		}
		// osbuild-run: forge's libdir and osbuild's of format 1's days;
		// runners/: osbuild's of today.
		fi, err := os.Stat(filepath.Join(abs, "osbuild-run"))
		if err != nil || fi.IsDir() {
			if fi, err := os.Stat(filepath.Join(abs, "runners")); err != nil || !fi.IsDir() {
				return "", fmt.Errorf("libdir %s (%s) has neither osbuild-run nor runners/", abs, from)
			}
		}
		return abs, nil
	}
	if flag != "" {
		return check(flag, "--libdir")
	}
	if env := os.Getenv("FORGE_LIBDIR"); env != "" {
		return check(env, "$FORGE_LIBDIR")
	}
	var tried []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		for _, d := range []string{filepath.Join(dir, "libexec/forge"), filepath.Join(dir, "../libexec/forge")} {
			if p, err := check(d, "beside forge"); err == nil {
				return p, nil
			}
			tried = append(tried, filepath.Clean(d))
		}
	}
	if p, err := check(DefaultLibdir, "default"); err == nil {
		return p, nil
	}
	tried = append(tried, DefaultLibdir)
	return "", fmt.Errorf("no libdir found (looked in %s): build one with `make` or pass --libdir", strings.Join(tried, ", "))
}
