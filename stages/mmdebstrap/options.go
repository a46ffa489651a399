package mmdebstrap

import (
	"encoding/json"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// Options are the stage's options.
type Options struct {
	// Suite is the release to bootstrap: a name like bookworm, stable or
	// bookworm-backports. Required.
	Suite string `json:"suite"`
	// Variant is mmdebstrap's package set (DefaultVariant when empty).
	Variant string `json:"variant"`
	// Mirror is the archive's URL (http, https or file). Required.
	Mirror string `json:"mirror"`
	// Components of the archive to use; ["main"] when absent.
	Components []string `json:"components"`
	// Packages to install on top of the variant's.
	Packages []string `json:"packages"`
	// Keyrings are the files (or directories) of keys the archive's
	// Release file is checked against, paths in the build root;
	// [DefaultKeyring] when absent.
	Keyrings []string `json:"keyrings"`
	// Architectures, the first native, the others foreign; the build
	// root's dpkg architecture when absent.
	Architectures []string `json:"architectures"`
}

// DefaultKeyring is Debian's archive keyring, from debian-archive-keyring.
const DefaultKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// DefaultVariant is the smallest tree apt works in: what images start
// from.
const DefaultVariant = "minbase"

// Variants are mmdebstrap's.
var Variants = []string{
	"extract", "custom", "essential", "apt", "required", "minbase",
	"buildd", "important", "debootstrap", "-", "standard",
}

var (
	// A suite or codename as archives name them (dists/<suite>).
	suiteRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]*$`)
	// A component, e.g. main, non-free-firmware, main/debian-installer.
	componentRE = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]*$`)
	// Debian policy 5.6.1: lower case letters, digits, + - and ., at
	// least two characters, starting with a letter or digit.
	packageRE = regexp.MustCompile(`^[a-z0-9][a-z0-9+.-]+$`)
	// A dpkg architecture, e.g. amd64, arm64, armhf, hurd-i386.
	archRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]*$`)
)

// maxName bounds suites, components and package names: a longer one is a
// mistake, not a name.
const maxName = 128

// parseOptions decodes the options, fills in the defaults and checks
// every value; errors name the option and the bad item.
func parseOptions(raw json.RawMessage) (Options, error) {
	var o Options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return o, err
	}
	if o.Variant == "" {
		o.Variant = DefaultVariant
	}
	if o.Components == nil {
		o.Components = []string{"main"}
	}
	defaultKeyring := o.Keyrings == nil
	if defaultKeyring {
		o.Keyrings = []string{DefaultKeyring}
	}

	switch {
	case o.Suite == "":
		return o, stage.OptionError("suite", "required: the release to bootstrap, e.g. bookworm")
	case len(o.Suite) > maxName || !suiteRE.MatchString(o.Suite):
		return o, stage.OptionError("suite", "%q is not a suite name (like bookworm or bookworm-backports)", o.Suite)
	}
	if err := checkMirror(o.Mirror); err != nil {
		return o, err
	}
	if !slices.Contains(Variants, o.Variant) {
		return o, stage.OptionError("variant", "%q is not one of mmdebstrap's: %s", o.Variant, strings.Join(Variants, ", "))
	}
	if len(o.Components) == 0 {
		return o, stage.OptionError("components", "want at least one component, e.g. [\"main\"]")
	}
	for _, c := range o.Components {
		if len(c) > maxName || !componentRE.MatchString(c) {
			return o, stage.OptionError("components", "%q is not a component name (like main or non-free-firmware)", c)
		}
	}
	for _, p := range o.Packages {
		if len(p) > maxName || !packageRE.MatchString(p) {
			return o, stage.OptionError("packages", "%q is not a Debian package name (lower case letters, digits, + - and ., at least two)", p)
		}
	}
	for i, a := range o.Architectures {
		if len(a) > maxName || !archRE.MatchString(a) {
			return o, stage.OptionError("architectures", "%q is not a dpkg architecture (like amd64 or arm64)", a)
		}
		if slices.Contains(o.Architectures[:i], a) {
			return o, stage.OptionError("architectures", "%q is given twice", a)
		}
	}
	if err := checkKeyrings(o.Keyrings, defaultKeyring); err != nil {
		return o, err
	}
	return o, nil
}

// checkMirror accepts an http, https or file URL that can stand in a
// sources.list line.
func checkMirror(m string) error {
	if m == "" {
		return stage.OptionError("mirror", "required: the archive's URL, e.g. http://deb.example.org/debian")
	}
	if strings.ContainsAny(m, " \t\r\n\"'[]") {
		return stage.OptionError("mirror", "%q has white space, quotes or brackets, which a sources.list cannot hold", m)
	}
	u, err := url.Parse(m)
	if err != nil {
		return stage.OptionError("mirror", "%q is not a URL: %v", m, err)
	}
	switch u.Scheme {
	case "http", "https":
		if u.Host == "" {
			return stage.OptionError("mirror", "%q has no host", m)
		}
	case "file":
		if u.Host != "" || !strings.HasPrefix(u.Path, "/") {
			return stage.OptionError("mirror", "%q: a file URL names an absolute path, file:///srv/debian", m)
		}
	default:
		return stage.OptionError("mirror", "%q: want an http, https or file URL", m)
	}
	if u.Fragment != "" || u.RawQuery != "" {
		return stage.OptionError("mirror", "%q: an archive URL has no query or fragment", m)
	}
	return nil
}

// checkKeyrings wants absolute paths that exist: in the buildroot, /etc
// has no apt, so without an explicit keyring there is nothing to check
// the archive against.
func checkKeyrings(keyrings []string, isDefault bool) error {
	if len(keyrings) == 0 {
		return stage.OptionError("keyrings", "want at least one keyring file or directory")
	}
	for _, k := range keyrings {
		if !filepath.IsAbs(k) || strings.ContainsAny(k, "\"\n") {
			return stage.OptionError("keyrings", "%q: want an absolute path without quotes", k)
		}
		_, err := os.Stat(k)
		switch {
		case err != nil && isDefault:
			return stage.OptionError("keyrings", "not given, and the default, %s, is not in the build root (%v): install debian-archive-keyring there, or name the keyring", k, err)
		case err != nil:
			return stage.OptionError("keyrings", "keyring %s: %v", k, err)
		}
	}
	return nil
}
