// Package timezone is org.osbuild.timezone: it sets the system time zone.
// /etc/localtime becomes a relative symlink to ../usr/share/zoneinfo/ZONE,
// as systemd-firstboot (osbuild's tool) makes it, and Debian's
// /etc/timezone gets the zone's name, as tzdata's configuration writes it.
// The zone must be a TZif file in the tree's own zoneinfo.
package timezone

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// options are osbuild's, unchanged.
type options struct {
	Zone *string `json:"zone"`
}

// zoneinfo is where tzdata installs the zones, relative to the tree.
const zoneinfo = "usr/share/zoneinfo"

// Run points /etc/localtime at the zone and writes /etc/timezone.
func Run(ctx context.Context, a stage.Args) error {
	var o options
	if err := stage.DecodeOptions(a.Options, &o); err != nil {
		return err
	}
	if o.Zone == nil {
		return stage.OptionError("zone", "is required")
	}
	zone := *o.Zone
	if err := validate(zone); err != nil {
		return stage.OptionError("zone", "%v", err)
	}
	root, err := os.OpenRoot(a.Tree)
	if err != nil {
		return fmt.Errorf("open tree: %w", err)
	}
	defer root.Close()
	if err := checkZoneFile(root, zone); err != nil {
		return stage.OptionError("zone", "%v", err)
	}
	if err := root.MkdirAll("etc", 0o755); err != nil {
		return fmt.Errorf("create /etc: %w", err)
	}
	if err := replaceSymlink(root, "../"+zoneinfo+"/"+zone, "etc/localtime"); err != nil {
		return err
	}
	return stage.WriteFile(root, "etc/timezone", []byte(zone+"\n"), 0o644)
}

// validate checks the form of a zone name such as Europe/Berlin,
// America/Argentina/Buenos_Aires, Etc/GMT+5 or UTC: relative, no empty,
// "." or ".." component, and only letters, digits and "_+-./" (tzdb's
// names use no others), so it can name nothing outside zoneinfo.
func validate(zone string) error {
	if zone == "" {
		return errors.New("empty zone name")
	}
	for _, c := range zone {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '+' || c == '-' || c == '/' || c == '.') {
			return fmt.Errorf("%q contains %q: a tz database name holds only letters, digits and \"_+-./\"", zone, c)
		}
	}
	for _, part := range strings.Split(zone, "/") {
		switch part {
		case "":
			return fmt.Errorf("%q is not a relative name like Europe/Berlin (empty component)", zone)
		case ".", "..":
			return fmt.Errorf("%q has a %q component: it must name a zone inside zoneinfo", zone, part)
		}
	}
	return nil
}

// tzifMagic starts every compiled zone file (tzfile(5)).
var tzifMagic = []byte("TZif")

// checkZoneFile checks that the tree's zoneinfo holds zone as a TZif file
// (zoneinfo's own symlinks, all relative, are followed, within the tree).
func checkZoneFile(root *os.Root, zone string) error {
	name := zoneinfo + "/" + zone
	f, err := root.Open(name)
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("no zone %q in the tree: /%s does not exist (is tzdata installed?)", zone, name)
	}
	if err != nil {
		return fmt.Errorf("zone %q: %w", zone, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("zone %q: %w", zone, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("zone %q: /%s is not a zone file but a %v", zone, name, fi.Mode().Type())
	}
	magic := make([]byte, len(tzifMagic))
	if _, err := io.ReadFull(f, magic); err != nil || !bytes.Equal(magic, tzifMagic) {
		return fmt.Errorf("zone %q: /%s is not a TZif zone file", zone, name)
	}
	return nil
}

// replaceSymlink makes name a symlink to target, replacing what was there
// in one rename.
func replaceSymlink(root *os.Root, target, name string) error {
	tmp := path.Join(path.Dir(name), "."+path.Base(name)+".forge-tmp")
	root.Remove(tmp)
	err := root.Symlink(target, tmp)
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
		return fmt.Errorf("link /%s to %s: %w", name, target, err)
	}
	return nil
}
