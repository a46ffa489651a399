package mkfs

import (
	"context"
	_ "embed"
	"regexp"
	"strconv"

	"github.com/forge-build/forge/stages/stage"
)

// MetaFAT is org.osbuild.mkfs.fat's meta.json.
//
//go:embed org.osbuild.mkfs.fat.meta.json
var MetaFAT []byte

// fatOptions are osbuild's.
type fatOptions struct {
	VolID    *string   `json:"volid"`
	Label    string    `json:"label"`
	FATSize  *int      `json:"fat-size"`
	Geometry *geometry `json:"geometry"`
}

type geometry struct {
	Heads           *int `json:"heads"`
	SectorsPerTrack *int `json:"sectors-per-track"`
}

// volIDPattern is a volume ID as mkfs.fat -i takes it: 32 bits in hex,
// perhaps after 0x.
var volIDPattern = regexp.MustCompile(`^(0[xX])?[0-9A-Fa-f]{1,8}$`)

// maxFATLabel is a FAT volume label's size, in bytes.
const maxFATLabel = 11

func parseFAT(raw []byte) (fatOptions, error) {
	var o fatOptions
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return o, err
	}
	if o.VolID == nil {
		return o, stage.OptionError("volid", "is required")
	}
	if !volIDPattern.MatchString(*o.VolID) {
		return o, stage.OptionError("volid", "%q is not a volume ID, 1 to 8 hex digits like 7B7795E7", *o.VolID)
	}
	if len(o.Label) > maxFATLabel {
		return o, stage.OptionError("label", "%q is longer than %d bytes", o.Label, maxFATLabel)
	}
	if err := noControl(o.Label); err != nil {
		return o, stage.OptionError("label", "%v", err)
	}
	if o.FATSize != nil && *o.FATSize != 12 && *o.FATSize != 16 && *o.FATSize != 32 {
		return o, stage.OptionError("fat-size", "%d is not 12, 16 or 32", *o.FATSize)
	}
	if g := o.Geometry; g != nil {
		switch {
		case g.Heads == nil:
			return o, stage.OptionError("geometry.heads", "is required")
		case g.SectorsPerTrack == nil:
			return o, stage.OptionError("geometry.sectors-per-track", "is required")
		case *g.Heads < 1:
			return o, stage.OptionError("geometry.heads", "%d: want at least 1", *g.Heads)
		case *g.SectorsPerTrack < 1:
			return o, stage.OptionError("geometry.sectors-per-track", "%d: want at least 1", *g.SectorsPerTrack)
		}
	}
	return o, nil
}

// fatCommand is osbuild's mkfs.fat command line for device: -I, as
// osbuild, so that partitions seen on the device do not stop it.
func fatCommand(o fatOptions, device string) stage.Tool {
	args := []string{"-I", "-i", *o.VolID}
	if o.Label != "" {
		args = append(args, "-n", o.Label)
	}
	if o.FATSize != nil {
		args = append(args, "-F", strconv.Itoa(*o.FATSize))
	}
	if g := o.Geometry; g != nil {
		args = append(args, "-g", strconv.Itoa(*g.Heads)+"/"+strconv.Itoa(*g.SectorsPerTrack))
	}
	return stage.Tool{Name: "mkfs.fat", Args: append(args, device)}
}

// RunFAT makes a FAT filesystem on the device "device".
func RunFAT(ctx context.Context, a stage.Args) error {
	o, err := parseFAT(a.Options)
	if err != nil {
		return err
	}
	dev, err := a.Device("device")
	if err != nil {
		return err
	}
	return fatCommand(o, dev).Run(ctx)
}
