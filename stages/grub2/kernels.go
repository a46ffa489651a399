package grub2

import (
	"cmp"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"regexp"
	"slices"
	"strings"
)

// kernel is one kernel of the tree's /boot and its initramfs.
type kernel struct {
	version string // e.g. 6.1.0-13-amd64
	linux   string // file name in /boot: vmlinuz-VERSION
	initrd  string // initrd.img-VERSION
}

// garbage are file names Debian's grub-mkconfig skips as not kernels
// (grub_file_is_not_garbage): dpkg's and rpm's leftovers, signatures.
var garbage = regexp.MustCompile(`\.dpkg-[^/]*$|\.rpmsave$|\.rpmnew$|\.sig$`)

// versionChars are those a kernel version may hold here: they need no
// quoting in grub.cfg, and Debian's all fit.
var versionChars = regexp.MustCompile(`^[A-Za-z0-9._+~-]+$`)

// findKernels lists the kernels in the tree's /boot, newest first, as
// Debian's grub-mkconfig orders them. Each needs its initramfs: the
// command line names the root filesystem by UUID or label, which only an
// initramfs can resolve.
func findKernels(root *os.Root) ([]kernel, error) {
	ents, err := fs.ReadDir(root.FS(), "boot")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, errors.New("no kernel: the tree has no /boot (install a linux-image package)")
	}
	if err != nil {
		return nil, fmt.Errorf("read /boot: %w", err)
	}
	var kernels []kernel
	for _, e := range ents {
		version, ok := strings.CutPrefix(e.Name(), "vmlinuz-")
		if !ok || version == "" || garbage.MatchString(e.Name()) {
			continue
		}
		if !isFile(root, "boot/"+e.Name()) {
			continue
		}
		if !versionChars.MatchString(version) {
			return nil, fmt.Errorf("kernel /boot/%s: version %q has characters grub.cfg would need quoted", e.Name(), version)
		}
		k := kernel{version: version, linux: e.Name(), initrd: "initrd.img-" + version}
		if !isFile(root, "boot/"+k.initrd) {
			return nil, fmt.Errorf("kernel /boot/%s has no initramfs /boot/%s: root=UUID= and root=LABEL= need one (install initramfs-tools)", k.linux, k.initrd)
		}
		kernels = append(kernels, k)
	}
	if len(kernels) == 0 {
		return nil, errors.New("no kernel: /boot holds no vmlinuz-VERSION (install a linux-image package)")
	}
	slices.SortFunc(kernels, func(a, b kernel) int {
		if c := compareKernelVersions(b.version, a.version); c != 0 {
			return c
		}
		return cmp.Compare(a.version, b.version)
	})
	return kernels, nil
}

// isFile says whether name is a regular file in the tree, or a symlink
// to one that stays in the tree.
func isFile(root *os.Root, name string) bool {
	fi, err := root.Stat(name)
	return err == nil && fi.Mode().IsRegular()
}

// preRelease are the version words Debian's grub-mkconfig sorts before
// the release they precede (version_test_gt: "-rc1" becomes "~rc1").
var preRelease = regexp.MustCompile(`[._-](pre|rc|test|git|old|trunk)`)

// compareKernelVersions orders kernel versions as Debian's
// grub-mkconfig does: pre-release words marked with '~', then compared as
// Debian package versions. It returns <0, 0 or >0 as a is older, equal or
// newer.
func compareKernelVersions(a, b string) int {
	a = preRelease.ReplaceAllString(a, "~$1")
	b = preRelease.ReplaceAllString(b, "~$1")
	return compareDebianVersions(a, b)
}

// compareDebianVersions compares two Debian package versions,
// [epoch:]upstream[-revision], as dpkg does (deb-version(7)).
func compareDebianVersions(a, b string) int {
	ea, ua, ra := splitVersion(a)
	eb, ub, rb := splitVersion(b)
	if c := cmp.Compare(ea, eb); c != 0 {
		return c
	}
	if c := compareVersionPart(ua, ub); c != 0 {
		return c
	}
	return compareVersionPart(ra, rb)
}

func splitVersion(v string) (epoch int, upstream, revision string) {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		fmt.Sscanf(v[:i], "%d", &epoch)
		v = v[i+1:]
	}
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		return epoch, v[:i], v[i+1:]
	}
	return epoch, v, ""
}

// order is a character's weight in dpkg's comparison of non-digit runs:
// '~' before the end of the string, which comes before letters, which
// come before everything else.
func order(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return 0
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
		return int(c)
	case c == '~':
		return -1
	case c != 0:
		return int(c) + 256
	}
	return 0
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// compareVersionPart is dpkg's verrevcmp: alternating runs of non-digits
// (compared by order) and digits (compared as numbers).
func compareVersionPart(a, b string) int {
	at := func(s string, i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		firstDiff := 0
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := order(at(a, i)), order(at(b, j))
			if ac != bc {
				return ac - bc
			}
			i++
			j++
		}
		for at(a, i) == '0' {
			i++
		}
		for at(b, j) == '0' {
			j++
		}
		for isDigit(at(a, i)) && isDigit(at(b, j)) {
			if firstDiff == 0 {
				firstDiff = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if isDigit(at(a, i)) {
			return 1
		}
		if isDigit(at(b, j)) {
			return -1
		}
		if firstDiff != 0 {
			return firstDiff
		}
	}
	return 0
}
