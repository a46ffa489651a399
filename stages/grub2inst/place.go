package grub2inst

import (
	"encoding/binary"
	"fmt"
	"io"
	"strings"

	"github.com/forge-build/forge/internal/grubpc"
	"github.com/forge-build/forge/loopd/ptable"
)

// BIOSBootGUID is the GPT type of a BIOS boot partition, the one place on
// a GPT disk GRUB's core image may go (grub-install embeds it nowhere
// else).
const BIOSBootGUID = "21686148-6449-6E6F-744E-656564454649"

// disk is what the placement checks know of the image: its size in
// sectors, its partition table and, for GPT, the first sector after the
// primary header and partition entries.
type disk struct {
	sectors     int64
	table       *ptable.Table
	firstUsable int64
}

// readDisk reads r's partition table; r is size bytes.
func readDisk(r io.ReaderAt, size int64) (disk, error) {
	d := disk{sectors: size / grubpc.SectorSize}
	t, err := ptable.Read(r, size, grubpc.SectorSize)
	if err != nil {
		return d, err
	}
	d.table = t
	if t.Kind == ptable.GPT {
		// ptable checked the header (or the backup, when the primary is
		// bad); its first usable LBA is what GRUB must not write below.
		hdr := make([]byte, 92)
		if _, err := r.ReadAt(hdr, grubpc.SectorSize); err != nil {
			return d, fmt.Errorf("read the GPT header: %w", err)
		}
		if string(hdr[:8]) != "EFI PART" {
			return d, fmt.Errorf("the primary GPT header in sector 1 is damaged (only the backup is usable): %w", ptable.ErrCorrupt)
		}
		d.firstUsable = int64(binary.LittleEndian.Uint64(hdr[40:]))
	}
	return d, nil
}

// partitionSectors are a partition's first sector and the one after it.
func partitionSectors(p ptable.Partition) (start, end int64) {
	return p.Start / grubpc.SectorSize, (p.Start + p.Size) / grubpc.SectorSize
}

// checkTable checks that the image has the partition table the options
// say it has: the core image reads it (core.partlabel) and the prefix is
// on one of its partitions.
func checkTable(d disk, p parsed) error {
	kind := ""
	switch d.table.Kind {
	case ptable.DOS:
		kind = "dos"
	case ptable.GPT:
		kind = "gpt"
	default:
		return fmt.Errorf("it has no partition table: GRUB's boot code goes into the MBR of a partitioned disk (partition it first, e.g. with org.osbuild.sfdisk)")
	}
	if p.partlabel != kind {
		return fmt.Errorf("option \"core.partlabel\": %q, but the image has a %s partition table, which that core image cannot read", p.partlabel, kind)
	}
	if p.prefixPart == 0 {
		return nil
	}
	if p.prefixLabel != kind {
		return fmt.Errorf("option \"prefix.partlabel\": %q, but the image has a %s partition table", p.prefixLabel, kind)
	}
	var have []string
	for _, part := range d.table.Partitions {
		if part.Number == p.prefixPart {
			return nil
		}
		have = append(have, fmt.Sprint(part.Number-1))
	}
	name, _ := grubpc.PartitionName(kind, p.prefixPart)
	return fmt.Errorf("option \"prefix.number\": %d is partition %s, which the image does not have (its partitions are numbers %s, counted from 0)",
		p.prefixPart-1, name, orNone(have))
}

func orNone(s []string) string {
	if len(s) == 0 {
		return "none"
	}
	return strings.Join(s, ", ")
}

// checkPlacement checks that a core image of n sectors from sector loc
// overwrites nothing: it must lie on the disk, after sector 0, and either
// in the gap before the first partition (after the GPT's entries on a GPT
// disk) or wholly inside a GPT BIOS boot partition.
func checkPlacement(d disk, loc, n int64) error {
	end := loc + n
	span := fmt.Sprintf("the core image (%d sectors from sector %d)", n, loc)
	if end > d.sectors {
		return fmt.Errorf("%s ends past the image's last sector, %d", span, d.sectors-1)
	}
	first := d.sectors
	for _, part := range d.table.Partitions {
		first = min(first, part.Start/grubpc.SectorSize)
	}
	if loc < first {
		lowest := int64(1)
		what := "sector 0, the MBR"
		if d.table.Kind == ptable.GPT {
			lowest = d.firstUsable
			what = fmt.Sprintf("the MBR and the GPT's header and partition entries (sectors 0-%d)", lowest-1)
		}
		if loc < lowest {
			return fmt.Errorf("%s would overwrite %s", span, what)
		}
		return grubpc.CheckGap(int(n*grubpc.SectorSize), loc, first)
	}
	for _, part := range d.table.Partitions {
		ps, pe := partitionSectors(part)
		biosBoot := d.table.Kind == ptable.GPT && strings.EqualFold(part.Type, BIOSBootGUID)
		switch {
		case loc >= ps && end <= pe && biosBoot:
			return nil
		case loc >= ps && loc < pe && biosBoot:
			return fmt.Errorf("%s does not fit BIOS boot partition %d (sectors %d-%d): %d sectors from sector %d are left in it",
				span, part.Number, ps, pe-1, pe-loc, loc)
		case loc >= ps && end <= pe:
			return fmt.Errorf("%s is inside partition %d (sectors %d-%d, type %s), which is not a GPT BIOS boot partition (%s): it would overwrite the partition's content",
				span, part.Number, ps, pe-1, part.Type, BIOSBootGUID)
		case loc < pe && end > ps:
			return fmt.Errorf("%s overlaps partition %d (sectors %d-%d)", span, part.Number, ps, pe-1)
		}
	}
	return fmt.Errorf("%s is neither in the gap before the first partition (sector %d) nor in a GPT BIOS boot partition", span, first)
}
