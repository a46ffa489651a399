package ptable

import (
	"errors"
	"fmt"
	"io"
)

// Kind names the partition table format found on a device.
type Kind string

const (
	// None: no partition table was recognised (no 0x55AA signature, or a
	// boot sector that is not an MBR). Not an error: the device is simply
	// not partitioned.
	None Kind = ""
	// DOS is an MBR table, with logical partitions in an extended one.
	DOS Kind = "dos"
	// GPT is a GUID partition table behind a protective MBR.
	GPT Kind = "gpt"
)

// MaxPartitions is the highest partition number kept, matching the kernel's
// DISK_MAX_PARTS: a whole disk plus 255 partitions.
const MaxPartitions = 255

// ErrCorrupt is returned (wrapped) when a table is announced, by the MBR
// signature or a protective MBR, but cannot be trusted.
var ErrCorrupt = errors.New("corrupt partition table")

// Partition is one entry of a table, clipped to the device.
type Partition struct {
	// Number is the kernel's partition number: 1–4 for MBR primaries, 5 and
	// up for logical ones, the entry index + 1 for GPT (so it may skip).
	Number int
	// Start and Size are in bytes from the start of the device.
	Start, Size int64
	// Type is the MBR type byte ("0x83") or the GPT type GUID.
	Type string
	// Name is the GPT partition name; empty for MBR.
	Name string
}

// Table is what Read found.
type Table struct {
	Kind       Kind
	Partitions []Partition
}

// Read parses the partition table at the start of r, a device of size bytes
// with logical sectors of sectorSize bytes (512 unless the device says
// otherwise; GPT LBAs are in these units). A device without a table yields
// Kind None and no error.
func Read(r io.ReaderAt, size int64, sectorSize int) (*Table, error) {
	if sectorSize < 512 || sectorSize&(sectorSize-1) != 0 || sectorSize > 64<<10 {
		return nil, fmt.Errorf("ptable: sector size %d: not a power of two ≥ 512", sectorSize)
	}
	d := disk{r: r, size: size, ss: int64(sectorSize)}
	if size < d.ss {
		return &Table{Kind: None}, nil
	}
	mbr, err := d.readSector(0)
	if err != nil {
		return nil, err
	}
	m, ok := parseMBRSector(mbr)
	if !ok {
		return &Table{Kind: None}, nil
	}
	if m.protective() {
		parts, err := d.readGPT()
		if err != nil {
			return nil, err
		}
		return &Table{Kind: GPT, Partitions: d.clip(parts)}, nil
	}
	return &Table{Kind: DOS, Partitions: d.clip(d.readDOS(m))}, nil
}

// disk is the device being read: a reader, its size and sector size.
type disk struct {
	r    io.ReaderAt
	size int64
	ss   int64
}

// sectors returns the number of whole logical sectors on the device.
func (d *disk) sectors() int64 { return d.size / d.ss }

func (d *disk) readSector(lba int64) ([]byte, error) {
	return d.readAt(lba*d.ss, d.ss)
}

func (d *disk) readAt(off, n int64) ([]byte, error) {
	if off < 0 || n < 0 || off > d.size || n > d.size-off {
		return nil, fmt.Errorf("ptable: read %d bytes at %d: beyond the end of the device (%d bytes): %w", n, off, d.size, ErrCorrupt)
	}
	buf := make([]byte, n)
	// ReadAt may report io.EOF along with a full buffer at the very end of
	// the device; only a short read is a failure.
	got, err := d.r.ReadAt(buf, off)
	if got == len(buf) {
		return buf, nil
	}
	if err == nil {
		err = io.ErrUnexpectedEOF
	}
	return nil, fmt.Errorf("ptable: read %d bytes at %d: %w", n, off, err)
}

// clip drops partitions that start past the end of the device and trims the
// ones that run past it, as the kernel's blk_add_partition does; it also
// drops numbers the kernel would refuse. Sizes stay whole sectors because
// BLKPG_ADD_PARTITION insists on logical-block alignment.
func (d *disk) clip(parts []Partition) []Partition {
	end := d.sectors() * d.ss
	out := parts[:0]
	for _, p := range parts {
		if p.Number < 1 || p.Number > MaxPartitions || p.Size <= 0 || p.Start >= end {
			continue
		}
		if p.Size > end-p.Start {
			p.Size = end - p.Start
		}
		out = append(out, p)
	}
	return out
}
