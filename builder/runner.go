package builder

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// A format-2 stage runs through a runner: `<libdir>/runners/<runner>
// /run/osbuild/bin/<stage>`, the runner preparing the build root the way
// its distribution needs (ld.so.cache, CA certificates, ...). Which runner
// a name means follows osbuild's meta.py.

// GenericRunner is the runner of forge's own libdir, which it answers any
// runner name with: it does what osbuild's org.osbuild.linux does (forge's
// buildroot did the distribution's setup already).
const GenericRunner = "org.osbuild.linux"

// ownLibdirMarker is the file only forge's libdir has: its stages' one
// binary.
const ownLibdirMarker = "forge-stages"

// IsOwnLibdir reports whether libdir is forge's (its stages and runner are
// forge's static binaries), rather than osbuild's or another's.
func IsOwnLibdir(libdir string) bool {
	fi, err := os.Stat(filepath.Join(libdir, ownLibdirMarker))
	return err == nil && fi.Mode().IsRegular()
}

// HostRunnerName is the runner name osbuild gives the host: from
// os-release(5), "org.osbuild." + ID + VERSION_ID without dots
// ("org.osbuild.debian12"); ID defaults to "linux". osRelease is the file
// to read ("" for /etc/os-release, falling back to /usr/lib/os-release).
func HostRunnerName(osRelease string) string {
	paths := []string{"/etc/os-release", "/usr/lib/os-release"}
	if osRelease != "" {
		paths = []string{osRelease}
	}
	vals := map[string]string{}
	for _, p := range paths {
		f, err := os.Open(p)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
			if !ok || strings.HasPrefix(k, "#") {
				continue
			}
			if uq, err := strconv.Unquote(v); err == nil {
				v = uq
			} else {
				v = strings.Trim(v, `'"`)
			}
			vals[k] = v
		}
		f.Close()
		break
	}
	id := vals["ID"]
	if id == "" {
		id = "linux"
	}
	return "org.osbuild." + id + strings.ReplaceAll(vals["VERSION_ID"], ".", "")
}

// splitRunnerName is osbuild's RunnerInfo.parse_name: the name and the
// version its trailing digits make (0 without any).
func splitRunnerName(name string) (string, int) {
	i := len(name) - 1
	for i > 0 && name[i] >= '0' && name[i] <= '9' {
		i--
	}
	v, err := strconv.Atoi(name[i+1:])
	if err != nil {
		v = 0
	}
	return name[:i+1], v
}

// ResolveRunner returns the runner file of libdir that serves the runner
// name, as osbuild's Index.detect_runner picks it: among
// libdir/runners/<distro><version>, the highest version not above the
// one asked for, of the same distribution. forge's own libdir answers
// every name with GenericRunner.
func ResolveRunner(libdir, name string) (string, error) {
	if IsOwnLibdir(libdir) {
		return filepath.Join(libdir, "runners", GenericRunner), nil
	}
	distro, version := splitRunnerName(name)
	entries, err := os.ReadDir(filepath.Join(libdir, "runners"))
	if err != nil {
		return "", fmt.Errorf("runner %s: %w", name, err)
	}
	type cand struct {
		file    string
		version int
	}
	var cands []cand
	for _, e := range entries {
		// osbuild's is_file follows symlinks (most runners are links).
		if fi, err := os.Stat(filepath.Join(libdir, "runners", e.Name())); err != nil || !fi.Mode().IsRegular() {
			continue
		}
		d, v := splitRunnerName(e.Name())
		if d == distro && v <= version {
			cands = append(cands, cand{e.Name(), v})
		}
	}
	if len(cands) == 0 {
		return "", fmt.Errorf("runner %s: libdir %s has no runner for %s at version %d or below", name, libdir, distro, version)
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].version < cands[j].version })
	return filepath.Join(libdir, "runners", cands[len(cands)-1].file), nil
}

// HostRunner is what osbuild's --inspect prints for a build pipeline that
// names no runner: the file name of libdir's runner for the host, or, for
// forge's libdir (or none), the host's runner name itself.
func HostRunner(libdir string) string {
	name := HostRunnerName("")
	if libdir == "" || IsOwnLibdir(libdir) {
		return name
	}
	if p, err := ResolveRunner(libdir, name); err == nil {
		return filepath.Base(p)
	}
	return name
}
