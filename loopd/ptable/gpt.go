package ptable

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"unicode/utf16"
)

// GPT header fields (UEFI spec §5.3.2), offsets into the header sector.
const (
	gptSignature     = "EFI PART"
	gptHeaderMinSize = 92
	gptEntryMinSize  = 128

	// maxEntryArray bounds the partition entry array we are willing to read
	// and checksum; a real one is 16 KiB (128 entries of 128 bytes).
	maxEntryArray = 4 << 20
)

type gptHeader struct {
	myLBA                   uint64
	firstUsable, lastUsable uint64
	entriesLBA              uint64
	numEntries, entrySize   uint32
	entriesCRC              uint32
}

// readGPT reads the primary GPT at LBA 1 and, if it does not check out,
// the backup at the last LBA, as the kernel's find_valid_gpt does. A
// protective MBR without a usable GPT is ErrCorrupt, never "no table": the
// kernel's msdos parser refuses such a disk too.
func (d *disk) readGPT() ([]Partition, error) {
	parts, perr := d.gptAt(1)
	if perr == nil {
		return parts, nil
	}
	last := d.sectors() - 1
	if last > 1 {
		if parts, aerr := d.gptAt(last); aerr == nil {
			return parts, nil
		}
	}
	return nil, fmt.Errorf("ptable: gpt: primary and backup header unusable: %w", perr)
}

// gptAt validates the header at lba and its entry array (both CRC32s) and
// returns the used entries.
func (d *disk) gptAt(lba int64) ([]Partition, error) {
	b, err := d.readSector(lba)
	if err != nil {
		return nil, err
	}
	h, err := d.parseGPTHeader(b, uint64(lba))
	if err != nil {
		return nil, fmt.Errorf("header at LBA %d: %w", lba, err)
	}
	arrayLen := int64(h.numEntries) * int64(h.entrySize)
	if h.entriesLBA > uint64(d.sectors()) {
		return nil, fmt.Errorf("entries at LBA %d: beyond the device: %w", h.entriesLBA, ErrCorrupt)
	}
	array, err := d.readAt(int64(h.entriesLBA)*d.ss, arrayLen)
	if err != nil {
		return nil, fmt.Errorf("entries at LBA %d: %w", h.entriesLBA, err)
	}
	if crc32.ChecksumIEEE(array) != h.entriesCRC {
		return nil, fmt.Errorf("entries at LBA %d: CRC mismatch: %w", h.entriesLBA, ErrCorrupt)
	}
	lastLBA := uint64(d.sectors() - 1)
	var parts []Partition
	for i := 0; i < int(h.numEntries) && i < MaxPartitions; i++ {
		e := array[i*int(h.entrySize):]
		typ := e[0:16]
		if bytes.Equal(typ, make([]byte, 16)) {
			continue // unused entry
		}
		first := binary.LittleEndian.Uint64(e[32:])
		last := binary.LittleEndian.Uint64(e[40:])
		// The kernel's is_pte_valid: entries past the device are ignored.
		if first > lastLBA || last > lastLBA || last < first {
			continue
		}
		parts = append(parts, Partition{
			Number: i + 1,
			Start:  int64(first) * d.ss,
			Size:   int64(last-first+1) * d.ss,
			Type:   formatGUID(typ),
			Name:   decodeName(e[56:128]),
		})
	}
	return parts, nil
}

func (d *disk) parseGPTHeader(b []byte, lba uint64) (gptHeader, error) {
	var h gptHeader
	if string(b[:8]) != gptSignature {
		return h, fmt.Errorf("no %q signature: %w", gptSignature, ErrCorrupt)
	}
	size := binary.LittleEndian.Uint32(b[12:])
	if size < gptHeaderMinSize || int64(size) > d.ss {
		return h, fmt.Errorf("header size %d: %w", size, ErrCorrupt)
	}
	// The CRC covers the header with its own CRC field zeroed.
	hdr := bytes.Clone(b[:size])
	want := binary.LittleEndian.Uint32(hdr[16:])
	clear(hdr[16:20])
	if crc32.ChecksumIEEE(hdr) != want {
		return h, fmt.Errorf("header CRC mismatch: %w", ErrCorrupt)
	}
	h = gptHeader{
		myLBA:       binary.LittleEndian.Uint64(b[24:]),
		firstUsable: binary.LittleEndian.Uint64(b[40:]),
		lastUsable:  binary.LittleEndian.Uint64(b[48:]),
		entriesLBA:  binary.LittleEndian.Uint64(b[72:]),
		numEntries:  binary.LittleEndian.Uint32(b[80:]),
		entrySize:   binary.LittleEndian.Uint32(b[84:]),
		entriesCRC:  binary.LittleEndian.Uint32(b[88:]),
	}
	lastLBA := uint64(d.sectors() - 1)
	switch {
	case h.myLBA != lba:
		return h, fmt.Errorf("header says it is at LBA %d: %w", h.myLBA, ErrCorrupt)
	case h.firstUsable > h.lastUsable || h.lastUsable > lastLBA:
		return h, fmt.Errorf("usable LBAs %d–%d outside the device (last LBA %d): %w", h.firstUsable, h.lastUsable, lastLBA, ErrCorrupt)
	case h.entrySize < gptEntryMinSize || h.entrySize%8 != 0:
		return h, fmt.Errorf("entry size %d: %w", h.entrySize, ErrCorrupt)
	case int64(h.numEntries)*int64(h.entrySize) > maxEntryArray:
		return h, fmt.Errorf("%d entries of %d bytes: more than %d bytes: %w", h.numEntries, h.entrySize, maxEntryArray, ErrCorrupt)
	}
	return h, nil
}

// formatGUID renders a GUID as stored on disk (the first three groups little
// endian) in its usual text form.
func formatGUID(b []byte) string {
	return fmt.Sprintf("%08X-%04X-%04X-%X-%X",
		binary.LittleEndian.Uint32(b[0:]),
		binary.LittleEndian.Uint16(b[4:]),
		binary.LittleEndian.Uint16(b[6:]),
		b[8:10], b[10:16])
}

// decodeName decodes a NUL-terminated UTF-16LE partition name.
func decodeName(b []byte) string {
	units := make([]uint16, 0, len(b)/2)
	for i := 0; i+1 < len(b); i += 2 {
		u := binary.LittleEndian.Uint16(b[i:])
		if u == 0 {
			break
		}
		units = append(units, u)
	}
	return string(utf16.Decode(units))
}
