package ptable

import (
	"encoding/binary"
	"fmt"
)

// Layout of an MBR or EBR sector.
const (
	mbrEntriesOffset = 446
	mbrEntrySize     = 16
	mbrSignature     = 510

	mbrTypeGPT = 0xEE // protective MBR entry: the disk is GPT
)

// maxEBRs bounds the walk of a chain of extended boot records, so a table
// that loops back on itself (or a fuzzed one) cannot keep us reading.
const maxEBRs = 1024

type mbrEntry struct {
	boot  byte
	typ   byte
	lba   uint32 // first sector, relative to the table that holds the entry
	count uint32 // number of sectors
}

func (e mbrEntry) extended() bool {
	// DOS (0x05), Windows LBA (0x0F) and Linux (0x85) extended partitions.
	return e.typ == 0x05 || e.typ == 0x0F || e.typ == 0x85
}

func (e mbrEntry) typeName() string { return fmt.Sprintf("0x%02x", e.typ) }

type mbrSector struct {
	entries [4]mbrEntry
}

func (m mbrSector) protective() bool {
	for _, e := range m.entries {
		if e.typ == mbrTypeGPT {
			return true
		}
	}
	return false
}

// hasSignature reports whether a sector ends in the 0x55AA boot signature.
func hasSignature(b []byte) bool {
	return len(b) >= 512 && b[mbrSignature] == 0x55 && b[mbrSignature+1] == 0xAA
}

func decodeEntries(b []byte) mbrSector {
	var m mbrSector
	for i := range m.entries {
		e := b[mbrEntriesOffset+i*mbrEntrySize:]
		m.entries[i] = mbrEntry{
			boot:  e[0],
			typ:   e[4],
			lba:   binary.LittleEndian.Uint32(e[8:]),
			count: binary.LittleEndian.Uint32(e[12:]),
		}
	}
	return m
}

// parseMBRSector decodes sector 0. It refuses, like the kernel, a sector
// whose boot indicators are not 0x00 or 0x80: that is a FAT or other boot
// sector which merely happens to carry the 0x55AA signature.
func parseMBRSector(b []byte) (mbrSector, bool) {
	if !hasSignature(b) {
		return mbrSector{}, false
	}
	m := decodeEntries(b)
	for _, e := range m.entries {
		if e.boot != 0 && e.boot != 0x80 {
			return mbrSector{}, false
		}
	}
	return m, true
}

// readDOS lists the primaries in slot order, then the logical partitions of
// each extended one, numbered from 5 across all of them: the kernel's order.
func (d *disk) readDOS(m mbrSector) []Partition {
	var parts []Partition
	for i, e := range m.entries {
		if e.count == 0 {
			continue
		}
		p := Partition{
			Number: i + 1,
			Start:  int64(e.lba) * d.ss,
			Size:   int64(e.count) * d.ss,
			Type:   e.typeName(),
		}
		if e.extended() {
			// The kernel exposes an extended partition as a stub of one
			// sector (two for 512-byte sectors), enough for tools to reach
			// the first EBR but too small to mkfs by mistake.
			p.Size = min(p.Size, max(d.ss, 1024))
		}
		parts = append(parts, p)
	}
	next := 5
	for _, e := range m.entries {
		if e.count == 0 || !e.extended() {
			continue
		}
		parts = d.readLogical(parts, int64(e.lba), int64(e.count), &next)
	}
	return parts
}

// readLogical walks the EBR chain of one extended partition starting at
// sector first, spanning size sectors. Each EBR holds the logical
// partition(s), relative to the EBR itself, and a link to the next EBR,
// relative to the extended partition. A chain that ends early, leaves the
// device or loops simply ends: what was found so far is kept, as the kernel
// does.
func (d *disk) readLogical(parts []Partition, first, size int64, next *int) []Partition {
	seen := map[int64]bool{}
	this, thisSize := first, size
	for hops := 0; hops < maxEBRs && *next <= MaxPartitions; hops++ {
		if seen[this] || this >= d.sectors() {
			return parts
		}
		seen[this] = true
		b, err := d.readSector(this)
		if err != nil || !hasSignature(b) {
			return parts
		}
		ebr := decodeEntries(b)
		for i, e := range ebr.entries {
			if e.count == 0 || e.extended() {
				continue
			}
			start, count := this+int64(e.lba), int64(e.count)
			// Entries 3 and 4 of an EBR are often garbage: keep them only
			// if they fit inside this EBR's span and the extended partition.
			if i >= 2 && (int64(e.lba)+count > thisSize || start < first || start+count > first+size) {
				continue
			}
			parts = append(parts, Partition{
				Number: *next,
				Start:  start * d.ss,
				Size:   count * d.ss,
				Type:   e.typeName(),
			})
			if *next++; *next > MaxPartitions {
				return parts
			}
		}
		link := -1
		for i, e := range ebr.entries {
			if e.count != 0 && e.extended() {
				link = i
				break
			}
		}
		if link < 0 {
			return parts
		}
		this = first + int64(ebr.entries[link].lba)
		thisSize = int64(ebr.entries[link].count)
	}
	return parts
}
