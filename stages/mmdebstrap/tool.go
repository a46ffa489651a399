package mmdebstrap

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/forge-build/forge/stages/debrepo"
	"github.com/forge-build/forge/stages/stage"
)

// tool is the bootstrapper the build root has.
type tool int

const (
	toolMmdebstrap tool = iota
	toolDebootstrap
)

func (t tool) String() string {
	if t == toolDebootstrap {
		return "debootstrap"
	}
	return "mmdebstrap"
}

// keptCleanups are the steps of mmdebstrap's cleanup the stage skips.
// The package lists stay: they are the archive's state the tree was made
// from, so that org.osbuild.apt with update false installs from exactly
// that state, without a download and reproducibly, and a stage that does
// update replaces them anyway. The cost is the lists' size in the tree
// (tens of MB for bookworm main), shared in the store by every tree made
// from the same lists. debootstrap keeps its lists too (older versions
// did not: see finishDebootstrap).
var keptCleanups = []string{"cleanup/apt/lists"}

// mmdebstrapArgs are mmdebstrap's arguments for o, in root mode: the
// stage runs as root, and root mode needs no user namespaces.
func mmdebstrapArgs(o Options, tree string) []string {
	args := []string{
		"--mode=root",
		"--format=directory",
		"--variant=" + o.Variant,
		"--components=" + strings.Join(o.Components, ","),
	}
	if len(o.Architectures) > 0 {
		args = append(args, "--architectures="+strings.Join(o.Architectures, ","))
	}
	if len(o.Packages) > 0 {
		args = append(args, "--include="+strings.Join(o.Packages, ","))
	}
	for _, k := range o.Keyrings {
		args = append(args, "--keyring="+k)
	}
	for _, s := range keptCleanups {
		args = append(args, "--skip="+s)
	}
	return append(args, o.Suite, tree, o.Mirror)
}

// treeSourcesName is the file of the local repository's directory that
// holds the tree's apt sources, uploaded into the tree by a hook.
const treeSourcesName = "tree-sources.list"

// treeSources is the sources.list mmdebstrap writes for the mirror, which
// a tree made from pinned packages gets too.
func treeSources(o Options) string {
	return fmt.Sprintf("deb %s %s %s\n", o.Mirror, o.Suite, strings.Join(o.Components, " "))
}

// pinnedArgs are mmdebstrap's arguments for o from the local repository
// at repo (see makeRepo). The default cleanups run, package lists
// included; hooks put the mirror into the tree's sources and drop the
// build host's resolv.conf.
func pinnedArgs(o Options, tree, repo string) []string {
	args := []string{
		"mmdebstrap",
		"--mode=root",
		"--format=directory",
		"--variant=" + o.Variant,
	}
	if len(o.Architectures) > 0 {
		args = append(args, "--architectures="+strings.Join(o.Architectures, ","))
	}
	if len(o.Packages) > 0 {
		args = append(args, "--include="+strings.Join(o.Packages, ","))
	}
	args = append(args,
		"--customize-hook=upload "+filepath.Join(repo, treeSourcesName)+" /etc/apt/sources.list",
		`--customize-hook=rm -f "$1/etc/resolv.conf"`,
	)
	return append(args, o.Suite, tree, debrepo.SourcesLine("copy", repo))
}

// debootstrapVariants maps mmdebstrap's variants onto debootstrap's
// --variant ("" for its default, which is mmdebstrap's important).
// Variants missing here have no debootstrap equivalent.
var debootstrapVariants = map[string]string{
	"minbase":     "minbase",
	"required":    "minbase", // mmdebstrap: an alias of minbase
	"buildd":      "buildd",
	"important":   "",
	"debootstrap": "",
	"-":           "",
}

// debootstrapArgs are debootstrap's arguments for o, or an error naming
// what debootstrap cannot do.
func debootstrapArgs(o Options, tree string) ([]string, error) {
	variant, ok := debootstrapVariants[o.Variant]
	if !ok {
		return nil, stage.OptionError("variant", "%q needs mmdebstrap, which the build root lacks (it has only debootstrap)", o.Variant)
	}
	if len(o.Architectures) > 1 {
		return nil, stage.OptionError("architectures", "%d architectures need mmdebstrap, which the build root lacks (debootstrap makes a tree of one)", len(o.Architectures))
	}
	if len(o.Keyrings) != 1 {
		return nil, stage.OptionError("keyrings", "%d keyrings need mmdebstrap, which the build root lacks (debootstrap takes one)", len(o.Keyrings))
	}
	if st, err := os.Stat(o.Keyrings[0]); err == nil && st.IsDir() {
		return nil, stage.OptionError("keyrings", "%s is a directory: debootstrap, the build root's bootstrapper, wants a keyring file", o.Keyrings[0])
	}
	var args []string
	if variant != "" {
		args = append(args, "--variant="+variant)
	}
	args = append(args, "--components="+strings.Join(o.Components, ","))
	if len(o.Architectures) == 1 {
		args = append(args, "--arch="+o.Architectures[0])
	}
	if len(o.Packages) > 0 {
		args = append(args, "--include="+strings.Join(o.Packages, ","))
	}
	args = append(args, "--keyring="+o.Keyrings[0])
	return append(args, o.Suite, tree, o.Mirror), nil
}

// toolArgs is the command line that bootstraps o into tree with t.
func toolArgs(t tool, o Options, tree string) ([]string, error) {
	if t == toolDebootstrap {
		args, err := debootstrapArgs(o, tree)
		if err != nil {
			return nil, err
		}
		return append([]string{"debootstrap"}, args...), nil
	}
	return append([]string{"mmdebstrap"}, mmdebstrapArgs(o, tree)...), nil
}

// errNoTool says what the build root lacks.
var errNoTool = fmt.Errorf("neither mmdebstrap nor debootstrap is on the build root's PATH (install mmdebstrap in the build root)")
