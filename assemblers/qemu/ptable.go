package qemu

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"github.com/forge-build/forge/assemblers/internal/command"
)

const sectorSize = 512

// SfdiskScript is the sfdisk input that writes the partition table: the
// same as osbuild's, so that sfdisk's defaults (first partition at 1 MiB,
// the last one to the end of the disk) give the same layout.
func SfdiskScript(o Options) string {
	var b strings.Builder
	fmt.Fprintf(&b, "label: %s\nlabel-id: %s\n", o.PTType, o.PTUUID)
	for _, p := range o.Partitions {
		var fields []string
		if p.Start != nil {
			fields = append(fields, "start="+strconv.FormatInt(*p.Start, 10))
		}
		if p.Size != nil {
			fields = append(fields, "size="+strconv.FormatInt(*p.Size, 10))
		}
		if p.Type != "" {
			fields = append(fields, "type="+strings.TrimPrefix(p.Type, "0x"))
		}
		if p.Bootable {
			fields = append(fields, "bootable")
		}
		b.WriteString(strings.Join(fields, ", ") + "\n")
	}
	return b.String()
}

// Layout is the partition table as sfdisk wrote it.
type Layout struct {
	Label      string
	ID         string
	Partitions []Extent // in table order
}

// Extent is a partition's place on the disk, in sectors.
type Extent struct {
	Start, Size int64
	Type        string
	Bootable    bool
}

// WritePartitionTable partitions the image file at path with sfdisk and
// reads back where the partitions went.
func WritePartitionTable(ctx context.Context, path string, o Options) (*Layout, error) {
	write := command.Cmd{
		Name:  "sfdisk",
		Args:  []string{"--quiet", "--no-reread", "--no-tell-kernel", path},
		Stdin: strings.NewReader(SfdiskScript(o)),
	}
	if err := write.Run(ctx); err != nil {
		return nil, fmt.Errorf("partition table: %w", err)
	}
	out, err := command.Cmd{Name: "sfdisk", Args: []string{"--json", path}}.Output(ctx)
	if err != nil {
		return nil, fmt.Errorf("partition table: %w", err)
	}
	l, err := ParseSfdiskJSON(out)
	if err != nil {
		return nil, fmt.Errorf("partition table: sfdisk --json: %w", err)
	}
	if len(l.Partitions) != len(o.Partitions) {
		return nil, fmt.Errorf("partition table: sfdisk made %d partitions, want %d", len(l.Partitions), len(o.Partitions))
	}
	return l, nil
}

// ParseSfdiskJSON reads `sfdisk --json`'s output.
func ParseSfdiskJSON(b []byte) (*Layout, error) {
	var doc struct {
		PartitionTable *struct {
			Label      string `json:"label"`
			ID         string `json:"id"`
			SectorSize int64  `json:"sectorsize"`
			Partitions []struct {
				Start    int64  `json:"start"`
				Size     int64  `json:"size"`
				Type     string `json:"type"`
				Bootable bool   `json:"bootable"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	pt := doc.PartitionTable
	if pt == nil {
		return nil, fmt.Errorf("no partition table in %q", b)
	}
	if pt.SectorSize != 0 && pt.SectorSize != sectorSize {
		return nil, fmt.Errorf("sector size %d, want %d", pt.SectorSize, sectorSize)
	}
	l := &Layout{Label: pt.Label, ID: pt.ID}
	for _, p := range pt.Partitions {
		l.Partitions = append(l.Partitions, Extent{Start: p.Start, Size: p.Size, Type: p.Type, Bootable: p.Bootable})
	}
	return l, nil
}
