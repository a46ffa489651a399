package mkfs

import (
	"context"
	_ "embed"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// MetaExt4 is org.osbuild.mkfs.ext4's meta.json.
//
//go:embed org.osbuild.mkfs.ext4.meta.json
var MetaExt4 []byte

// ext4Options are osbuild's.
type ext4Options struct {
	UUID             *string `json:"uuid"`
	Label            string  `json:"label"`
	LazyInit         *bool   `json:"lazy_init"`
	MetadataCsumSeed *bool   `json:"metadata_csum_seed"`
	OrphanFile       *bool   `json:"orphan_file"`
	Verity           *bool   `json:"verity"`
}

// uuidPattern is a UUID as mke2fs -U takes it; it also takes "clear",
// "random" and "time".
var uuidPattern = regexp.MustCompile(`^[0-9A-Fa-f]{8}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{4}-[0-9A-Fa-f]{12}$`)

// maxExt4Label is the ext4 superblock's label size, in bytes.
const maxExt4Label = 16

func parseExt4(raw []byte) (ext4Options, error) {
	var o ext4Options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return o, err
	}
	if o.UUID == nil {
		return o, stage.OptionError("uuid", "is required")
	}
	switch u := *o.UUID; {
	case u == "clear" || u == "random" || u == "time":
	case !uuidPattern.MatchString(u):
		return o, stage.OptionError("uuid", "%q is not a UUID like 6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", u)
	}
	if len(o.Label) > maxExt4Label {
		return o, stage.OptionError("label", "%q is longer than %d bytes", o.Label, maxExt4Label)
	}
	if err := noControl(o.Label); err != nil {
		return o, stage.OptionError("label", "%v", err)
	}
	return o, nil
}

// ext4Command is osbuild's mkfs.ext4 command line for device; epoch, when
// set, is the time e2fsprogs writes.
func ext4Command(o ext4Options, device string, epoch *int64) stage.Tool {
	args := []string{"-U", *o.UUID}
	if o.Label != "" {
		args = append(args, "-L", o.Label)
	}
	if o.LazyInit != nil && epoch == nil {
		v := "0"
		if *o.LazyInit {
			v = "1"
		}
		args = append(args, "-E", "lazy_itable_init="+v, "-E", "lazy_journal_init="+v)
	}
	for _, f := range []struct {
		name string
		on   *bool
	}{{"verity", o.Verity}, {"orphan_file", o.OrphanFile}, {"metadata_csum_seed", o.MetadataCsumSeed}} {
		switch {
		case f.on == nil:
		case *f.on:
			args = append(args, "-O", f.name)
		default:
			args = append(args, "-O", "^"+f.name)
		}
	}
	if epoch != nil {
		// A reproducible filesystem: the directory hash seed (random
		// otherwise) from the UUID, when it is one, and the inode tables
		// and journal written now, not zeroed by the kernel after the
		// first mount, which flags each group done whenever it gets to
		// it (a lazy_init option asked for is overridden).
		ext := "lazy_itable_init=0,lazy_journal_init=0"
		if uuidPattern.MatchString(*o.UUID) {
			ext = "hash_seed=" + strings.ToLower(*o.UUID) + "," + ext
		}
		args = append(args, "-E", ext)
	}
	t := stage.Tool{Name: "mkfs.ext4", Args: append(args, device)}
	if epoch != nil {
		t.Env = []string{"E2FSPROGS_FAKE_TIME=" + strconv.FormatInt(*epoch, 10)}
	}
	return t
}

// RunExt4 makes an ext4 filesystem on the device "device".
func RunExt4(ctx context.Context, a stage.Args) error {
	o, err := parseExt4(a.Options)
	if err != nil {
		return err
	}
	dev, err := a.Device("device")
	if err != nil {
		return err
	}
	return ext4Command(o, dev, epoch(a)).Run(ctx)
}

func epoch(a stage.Args) *int64 {
	if e, ok := a.SourceEpoch(); ok {
		return &e
	}
	return nil
}

func noControl(s string) error {
	if i := strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f }); i >= 0 {
		return fmt.Errorf("%q contains the control character %q", s, s[i])
	}
	return nil
}
