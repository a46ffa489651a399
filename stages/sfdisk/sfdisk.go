// Package sfdisk is org.osbuild.sfdisk: it writes a partition table (dos,
// also called mbr, or gpt) to the stage's device "device" (manifest
// format 2) with the build root's sfdisk, from a script built as
// osbuild's stage builds it, and then prints the table sfdisk reads back.
package sfdisk

import (
	"context"
	_ "embed"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// Meta is org.osbuild.sfdisk's meta.json.
//
//go:embed org.osbuild.sfdisk.meta.json
var Meta []byte

// options are osbuild's.
type options struct {
	UUID       *string     `json:"uuid"`
	Label      *string     `json:"label"`
	Partitions []partition `json:"partitions"`
}

// partition is one partition; start and size are in sectors. Fields that
// are absent, zero or empty are left to sfdisk, as osbuild leaves them.
type partition struct {
	Bootable bool   `json:"bootable"`
	Name     string `json:"name"`
	PartNum  int64  `json:"partnum"`
	Size     int64  `json:"size"`
	Start    int64  `json:"start"`
	Type     string `json:"type"`
	UUID     string `json:"uuid"`
	Attrs    []int  `json:"attrs"`
}

// labels are the partition table types.
var labels = []string{"mbr", "dos", "gpt"}

func parse(raw []byte) (options, error) {
	var o options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return o, err
	}
	if o.Label == nil {
		return o, stage.OptionError("label", "is required")
	}
	ok := false
	for _, l := range labels {
		ok = ok || *o.Label == l
	}
	if !ok {
		return o, stage.OptionError("label", "%q is not one of %s", *o.Label, strings.Join(labels, ", "))
	}
	if o.UUID == nil {
		return o, stage.OptionError("uuid", "is required")
	}
	if err := scriptValue(*o.UUID); err != nil {
		return o, stage.OptionError("uuid", "%v", err)
	}
	for i, p := range o.Partitions {
		opt := fmt.Sprintf("partitions[%d]", i)
		for _, f := range []struct {
			name string
			v    int64
		}{{"partnum", p.PartNum}, {"size", p.Size}, {"start", p.Start}} {
			if f.v < 0 {
				return o, stage.OptionError(opt+"."+f.name, "%d is negative", f.v)
			}
		}
		for _, f := range []struct{ name, v string }{{"name", p.Name}, {"type", p.Type}, {"uuid", p.UUID}} {
			if err := scriptValue(f.v); err != nil {
				return o, stage.OptionError(opt+"."+f.name, "%v", err)
			}
		}
		if len(p.Attrs) > 64 {
			return o, stage.OptionError(opt+".attrs", "%d attributes: a GPT entry has 64 bits", len(p.Attrs))
		}
		seen := map[int]bool{}
		for _, b := range p.Attrs {
			if b < 0 || b > 63 {
				return o, stage.OptionError(opt+".attrs", "bit %d is not in 0..63", b)
			}
			if seen[b] {
				return o, stage.OptionError(opt+".attrs", "bit %d is given twice", b)
			}
			seen[b] = true
		}
	}
	return o, nil
}

// scriptValue refuses what would break out of a quoted value or a line of
// sfdisk's script.
func scriptValue(s string) error {
	if i := strings.IndexFunc(s, func(r rune) bool { return r < ' ' || r == 0x7f || r == '"' }); i >= 0 {
		return fmt.Errorf("%q contains %q, which sfdisk's script cannot carry", s, s[i])
	}
	return nil
}

// attrNames are GPT attribute bits sfdisk knows by name; bits 48 to 63
// (the type's own) go by number, and osbuild leaves out the others.
var attrNames = map[int]string{0: "RequiredPartition", 1: "NoBlockIOProtocol", 2: "LegacyBIOSBootable"}

// script is osbuild's sfdisk script for device: the label and its ID,
// then one line per partition with the fields that are set, quoted.
func script(o options, device string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "label: %s\nlabel-id: %s", *o.Label, *o.UUID)
	for _, p := range o.Partitions {
		var fields []string
		add := func(name, v string) { fields = append(fields, name+`="`+v+`"`) }
		if p.Start != 0 {
			add("start", strconv.FormatInt(p.Start, 10))
		}
		if p.Size != 0 {
			add("size", strconv.FormatInt(p.Size, 10))
		}
		if p.Type != "" {
			add("type", p.Type)
		}
		if p.Name != "" {
			add("name", p.Name)
		}
		if p.UUID != "" {
			add("uuid", p.UUID)
		}
		if len(p.Attrs) > 0 {
			var attrs []string
			for _, bit := range p.Attrs {
				if n, ok := attrNames[bit]; ok {
					attrs = append(attrs, n)
				} else if bit >= 48 && bit <= 63 {
					attrs = append(attrs, strconv.Itoa(bit))
				}
			}
			add("attrs", strings.Join(attrs, ","))
		}
		if p.Bootable {
			fields = append(fields, "bootable")
		}
		b.WriteString("\n")
		if p.PartNum != 0 {
			fmt.Fprintf(&b, "%sp%d: ", device, p.PartNum)
		}
		b.WriteString(strings.Join(fields, ", "))
	}
	return b.String()
}

// commands are the sfdisk runs: writing the table, without asking the
// kernel to re-read it (the builder's loop device is not partitioned by
// the kernel), and reading it back as JSON for the log.
func commands(o options, device string) (write, show stage.Tool) {
	s := script(o, device)
	write = stage.Tool{Name: "sfdisk", Args: []string{"-q", "--no-tell-kernel", device}, Stdin: strings.NewReader(s)}
	show = stage.Tool{Name: "sfdisk", Args: []string{"--json", device}}
	return write, show
}

// Run partitions the device "device".
func Run(ctx context.Context, a stage.Args) error {
	o, err := parse(a.Options)
	if err != nil {
		return err
	}
	dev, err := a.Device("device")
	if err != nil {
		return err
	}
	write, show := commands(o, dev)
	fmt.Println(script(o, dev))
	if err := write.Run(ctx); err != nil {
		return err
	}
	// Only for the log, as osbuild's last call: a failure here is not
	// the stage's.
	if err := show.Run(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "(reading the table back failed: %v)\n", err)
	}
	return nil
}
