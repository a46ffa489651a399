// Package systemd is org.osbuild.systemd: it enables, disables and masks
// units and sets the default target of the tree, with the build root's
// `systemctl --root TREE`, as osbuild does; systemctl then does what the
// units' [Install] sections say (WantedBy, RequiredBy, Also, Alias,
// DefaultInstance), which this stage does not re-implement. The build
// root needs systemctl (Debian's systemd package); without it the stage
// fails and says so. Generators are masked directly, by a link to
// /dev/null in /etc/systemd/system-generators, which is all systemd
// looks at.
package systemd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// options are osbuild's, unchanged.
type options struct {
	EnabledServices  []string `json:"enabled_services"`
	DisabledServices []string `json:"disabled_services"`
	MaskedServices   []string `json:"masked_services"`
	MaskedGenerators []string `json:"masked_generators"`
	DefaultTarget    string   `json:"default_target"`
}

// Run enables, then disables, then masks the units, masks the
// generators and sets the default target: osbuild's order, so a unit both
// enabled and disabled ends up disabled.
func Run(ctx context.Context, a stage.Args) error {
	o, err := parse(a.Options)
	if err != nil {
		return err
	}
	for _, step := range o.steps(a.Tree) {
		if err := systemctl(ctx, step...); err != nil {
			return err
		}
	}
	if len(o.MaskedGenerators) > 0 {
		root, err := os.OpenRoot(a.Tree)
		if err != nil {
			return fmt.Errorf("open tree: %w", err)
		}
		defer root.Close()
		for _, g := range o.MaskedGenerators {
			if err := maskGenerator(root, g); err != nil {
				return err
			}
		}
	}
	return nil
}

func parse(raw []byte) (options, error) {
	var o options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return o, err
	}
	for _, list := range []struct {
		option string
		units  []string
	}{
		{"enabled_services", o.EnabledServices},
		{"disabled_services", o.DisabledServices},
		{"masked_services", o.MaskedServices},
	} {
		for _, u := range list.units {
			if err := validateUnit(u); err != nil {
				return o, stage.OptionError(list.option, "%v", err)
			}
		}
	}
	for _, g := range o.MaskedGenerators {
		if err := validateGenerator(g); err != nil {
			return o, stage.OptionError("masked_generators", "%v", err)
		}
	}
	if o.DefaultTarget != "" {
		if err := validateUnit(o.DefaultTarget); err != nil {
			return o, stage.OptionError("default_target", "%v", err)
		}
		// systemctl set-default takes a bare name as NAME.target.
		if i := strings.LastIndexByte(o.DefaultTarget, '.'); i >= 0 && o.DefaultTarget[i:] != ".target" {
			return o, stage.OptionError("default_target", "%q is not a target", o.DefaultTarget)
		}
	}
	return o, nil
}

// steps are the systemctl command lines the options call for, in order.
// "--" ends systemctl's options, so no unit name can be read as one.
func (o options) steps(tree string) [][]string {
	var steps [][]string
	for _, s := range []struct {
		verb  string
		units []string
	}{
		{"enable", o.EnabledServices},
		{"disable", o.DisabledServices},
		{"mask", o.MaskedServices},
	} {
		for _, u := range s.units {
			steps = append(steps, []string{"--root", tree, s.verb, "--", u})
		}
	}
	if o.DefaultTarget != "" {
		steps = append(steps, []string{"--root", tree, "set-default", "--", o.DefaultTarget})
	}
	return steps
}

// unitSuffixes are systemd's unit types (systemd.unit(5)).
var unitSuffixes = []string{".service", ".socket", ".device", ".mount", ".automount",
	".swap", ".target", ".path", ".timer", ".slice", ".scope"}

// validateUnit checks a unit name as systemd's unit_name_is_valid does:
// at most 255 bytes, letters, digits and ":-_.\@" only, one '@' at most
// (a template or an instance), and a known suffix if there is one
// (systemctl adds ".service" to a name without).
func validateUnit(u string) error {
	if u == "" {
		return fmt.Errorf("empty unit name")
	}
	if len(u) > 255 {
		return fmt.Errorf("unit name %q is longer than 255 bytes", u)
	}
	for _, c := range u {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune(":-_.\\@", c)) {
			return fmt.Errorf("unit name %q contains %q", u, c)
		}
	}
	if u[0] == '-' || u[0] == '.' || u[0] == '@' {
		return fmt.Errorf("unit name %q starts with %q", u, u[0])
	}
	if strings.Count(u, "@") > 1 {
		return fmt.Errorf("unit name %q has more than one '@'", u)
	}
	if i := strings.LastIndexByte(u, '.'); i >= 0 {
		suffix := u[i:]
		for _, s := range unitSuffixes {
			if suffix == s {
				return nil
			}
		}
		return fmt.Errorf("unit name %q has an unknown type %q (want one of %s)", u, suffix, strings.Join(unitSuffixes, " "))
	}
	return nil
}

// validateGenerator checks a generator's name: a file name in
// systemd's generator directories.
func validateGenerator(g string) error {
	if g == "" || g == "." || g == ".." || strings.ContainsRune(g, '/') {
		return fmt.Errorf("%q is not a generator's file name (like systemd-gpt-auto-generator)", g)
	}
	for _, c := range g {
		if c <= ' ' || c == 0x7f {
			return fmt.Errorf("generator name %q contains %q", g, c)
		}
	}
	return nil
}

// maskGenerator links /etc/systemd/system-generators/NAME to /dev/null,
// which makes systemd skip the generator of that name in /usr/lib or
// /lib (systemd.generator(7)).
func maskGenerator(root *os.Root, name string) error {
	dir := "etc/systemd/system-generators"
	if err := root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create /%s: %w", dir, err)
	}
	link := path.Join(dir, name)
	tmp := path.Join(dir, "."+name+".forge-tmp")
	root.Remove(tmp)
	err := root.Symlink("/dev/null", tmp)
	if err == nil {
		err = root.Rename(tmp, link)
	}
	if err != nil {
		root.Remove(tmp)
		return fmt.Errorf("mask generator %s: %w", name, err)
	}
	return nil
}

// toolDirs are searched after PATH, which may lack them in a build root.
var toolDirs = []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"}

// systemctl runs the build root's systemctl; its output goes to the
// stage's log, and into the error when it fails.
func systemctl(ctx context.Context, args ...string) error {
	bin, err := exec.LookPath("systemctl")
	if err != nil {
		for _, d := range toolDirs {
			if fi, serr := os.Stat(path.Join(d, "systemctl")); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				bin, err = path.Join(d, "systemctl"), nil
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("systemctl is not in the build root (Debian's systemd package): %w", err)
	}
	out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
	os.Stdout.Write(out)
	if err != nil {
		return fmt.Errorf("systemctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
