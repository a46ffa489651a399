package ptable_test

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf16"

	"github.com/forge-build/forge/loopd/ptable"
)

const mib = 1 << 20

// image is a disk image built in memory, sector by sector.
type image struct {
	b  []byte
	ss int64
}

func newImage(size int64, ss int) *image { return &image{b: make([]byte, size), ss: int64(ss)} }

func (im *image) reader() *bytes.Reader { return bytes.NewReader(im.b) }

func (im *image) sector(lba int64) []byte { return im.b[lba*im.ss : (lba+1)*im.ss] }

// mbrEntry is one of the four slots of an MBR or EBR.
type mbrEntry struct {
	boot, typ  byte
	lba, count uint32
}

// writeMBR writes a boot sector with the given slots and the 0x55AA signature
// at lba (0 for the MBR, an EBR's sector otherwise).
func (im *image) writeMBR(lba int64, entries ...mbrEntry) {
	s := im.sector(lba)
	for i, e := range entries {
		o := s[446+16*i:]
		o[0], o[4] = e.boot, e.typ
		binary.LittleEndian.PutUint32(o[8:], e.lba)
		binary.LittleEndian.PutUint32(o[12:], e.count)
	}
	s[510], s[511] = 0x55, 0xAA
}

type gptEntry struct {
	index       int // slot in the entry array
	typ         [16]byte
	first, last uint64
	name        string
}

var linuxFS = [16]byte{0xAF, 0x3D, 0xC6, 0x0F, 0x83, 0x84, 0x72, 0x47, 0x8E, 0x79, 0x3D, 0x69, 0xD8, 0x47, 0x7D, 0xE4}

// writeGPT writes a protective MBR, the primary header at LBA 1 with its
// entries at LBA 2, and the backup entries and header at the end.
func (im *image) writeGPT(entries ...gptEntry) {
	last := int64(len(im.b))/im.ss - 1
	im.writeMBR(0, mbrEntry{typ: 0xEE, lba: 1, count: uint32(min(last, 0xFFFFFFFF))})
	const n, size = 128, 128
	array := make([]byte, n*size)
	for _, e := range entries {
		o := array[e.index*size:]
		copy(o[0:16], e.typ[:])
		o[16] = byte(e.index + 1) // a unique GUID that is not all zero
		binary.LittleEndian.PutUint64(o[32:], e.first)
		binary.LittleEndian.PutUint64(o[40:], e.last)
		for i, u := range utf16.Encode([]rune(e.name)) {
			binary.LittleEndian.PutUint16(o[56+2*i:], u)
		}
	}
	arraySectors := int64(len(array)) / im.ss
	if arraySectors == 0 {
		arraySectors = 1
	}
	firstUsable := 2 + arraySectors
	lastUsable := last - 1 - arraySectors
	copy(im.b[2*im.ss:], array)
	copy(im.b[(last-arraySectors)*im.ss:], array)
	im.writeGPTHeader(1, last, 2, uint64(firstUsable), uint64(lastUsable), n, size, crc32.ChecksumIEEE(array))
	im.writeGPTHeader(last, 1, last-arraySectors, uint64(firstUsable), uint64(lastUsable), n, size, crc32.ChecksumIEEE(array))
}

func (im *image) writeGPTHeader(at, alt, entriesAt int64, firstUsable, lastUsable uint64, n, size, entriesCRC uint32) {
	h := im.sector(at)
	clear(h)
	copy(h, "EFI PART")
	binary.LittleEndian.PutUint32(h[8:], 0x00010000)
	binary.LittleEndian.PutUint32(h[12:], 92)
	binary.LittleEndian.PutUint64(h[24:], uint64(at))
	binary.LittleEndian.PutUint64(h[32:], uint64(alt))
	binary.LittleEndian.PutUint64(h[40:], firstUsable)
	binary.LittleEndian.PutUint64(h[48:], lastUsable)
	binary.LittleEndian.PutUint64(h[72:], uint64(entriesAt))
	binary.LittleEndian.PutUint32(h[80:], n)
	binary.LittleEndian.PutUint32(h[84:], size)
	binary.LittleEndian.PutUint32(h[88:], entriesCRC)
	binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
}

// part is a compact expected partition: number, start and size in bytes.
type part struct {
	n           int
	start, size int64
}

func parts(t *ptable.Table) []part {
	var out []part
	for _, p := range t.Partitions {
		out = append(out, part{p.Number, p.Start, p.Size})
	}
	return out
}

func TestRead(t *testing.T) {
	tests := []struct {
		name  string
		size  int64
		ss    int
		build func(im *image)
		kind  ptable.Kind
		want  []part
	}{
		{
			name:  "blank disk",
			size:  4 * mib,
			ss:    512,
			build: func(*image) {},
			kind:  ptable.None,
		},
		{
			name: "dos primaries",
			size: 16 * mib,
			ss:   512,
			build: func(im *image) {
				im.writeMBR(0,
					mbrEntry{boot: 0x80, typ: 0x83, lba: 2048, count: 8192},
					mbrEntry{},
					mbrEntry{typ: 0x82, lba: 10240, count: 4096})
			},
			kind: ptable.DOS,
			want: []part{{1, 2048 * 512, 8192 * 512}, {3, 10240 * 512, 4096 * 512}},
		},
		{
			name: "dos extended with logical partitions",
			size: 32 * mib,
			ss:   512,
			build: func(im *image) {
				im.writeMBR(0,
					mbrEntry{typ: 0x83, lba: 2048, count: 4096},
					mbrEntry{typ: 0x05, lba: 8192, count: 40960})
				// First EBR: logical at +2048, link to the next EBR at +20480
				// (relative to the extended partition).
				im.writeMBR(8192,
					mbrEntry{typ: 0x83, lba: 2048, count: 8192},
					mbrEntry{typ: 0x05, lba: 20480, count: 10240})
				im.writeMBR(8192+20480,
					mbrEntry{typ: 0x83, lba: 2048, count: 4096})
			},
			kind: ptable.DOS,
			want: []part{
				{1, 2048 * 512, 4096 * 512},
				{2, 8192 * 512, 1024}, // the kernel's two-sector stub
				{5, (8192 + 2048) * 512, 8192 * 512},
				{6, (8192 + 20480 + 2048) * 512, 4096 * 512},
			},
		},
		{
			name: "dos EBR chain that loops back on itself ends",
			size: 16 * mib,
			ss:   512,
			build: func(im *image) {
				im.writeMBR(0, mbrEntry{typ: 0x0F, lba: 2048, count: 20000})
				im.writeMBR(2048,
					mbrEntry{typ: 0x83, lba: 100, count: 100},
					mbrEntry{typ: 0x05, lba: 0, count: 20000}) // links to itself
			},
			kind: ptable.DOS,
			want: []part{{1, 2048 * 512, 1024}, {5, 2148 * 512, 100 * 512}},
		},
		{
			name: "boot sector with bad boot indicator is not an MBR",
			size: 4 * mib,
			ss:   512,
			build: func(im *image) {
				im.writeMBR(0, mbrEntry{boot: 0x12, typ: 0x83, lba: 2048, count: 100})
			},
			kind: ptable.None,
		},
		{
			name: "dos partitions past the end are dropped or clipped",
			size: 8 * mib, // 16384 sectors
			ss:   512,
			build: func(im *image) {
				im.writeMBR(0,
					mbrEntry{typ: 0x83, lba: 2048, count: 20000},
					mbrEntry{typ: 0x83, lba: 20000, count: 100})
			},
			kind: ptable.DOS,
			want: []part{{1, 2048 * 512, (16384 - 2048) * 512}},
		},
		{
			name: "gpt",
			size: 16 * mib,
			ss:   512,
			build: func(im *image) {
				im.writeGPT(
					gptEntry{index: 0, typ: linuxFS, first: 2048, last: 10239, name: "root"},
					gptEntry{index: 2, typ: linuxFS, first: 10240, last: 20479, name: "data"})
			},
			kind: ptable.GPT,
			want: []part{{1, 2048 * 512, 8192 * 512}, {3, 10240 * 512, 10240 * 512}},
		},
		{
			name: "gpt with 4096-byte sectors",
			size: 64 * mib,
			ss:   4096,
			build: func(im *image) {
				im.writeGPT(gptEntry{index: 0, typ: linuxFS, first: 256, last: 1279, name: "root"})
			},
			kind: ptable.GPT,
			want: []part{{1, 256 * 4096, 1024 * 4096}},
		},
		{
			name: "gpt with a corrupt primary header falls back to the backup",
			size: 16 * mib,
			ss:   512,
			build: func(im *image) {
				im.writeGPT(gptEntry{index: 0, typ: linuxFS, first: 2048, last: 4095})
				im.sector(1)[40] ^= 0xFF // first usable LBA: the CRC no longer matches
			},
			kind: ptable.GPT,
			want: []part{{1, 2048 * 512, 2048 * 512}},
		},
		{
			name: "gpt with corrupt primary entries falls back to the backup",
			size: 16 * mib,
			ss:   512,
			build: func(im *image) {
				im.writeGPT(gptEntry{index: 0, typ: linuxFS, first: 2048, last: 4095})
				im.sector(2)[33] ^= 0xFF
			},
			kind: ptable.GPT,
			want: []part{{1, 2048 * 512, 2048 * 512}},
		},
		{
			name: "gpt entries past the device are ignored",
			size: 16 * mib,
			ss:   512,
			build: func(im *image) {
				im.writeGPT(
					gptEntry{index: 0, typ: linuxFS, first: 2048, last: 4095},
					gptEntry{index: 1, typ: linuxFS, first: 4096, last: 1 << 40},
					gptEntry{index: 2, typ: linuxFS, first: 9000, last: 8000})
			},
			kind: ptable.GPT,
			want: []part{{1, 2048 * 512, 2048 * 512}},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			im := newImage(test.size, test.ss)
			test.build(im)
			got, err := ptable.Read(im.reader(), test.size, test.ss)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			if got.Kind != test.kind {
				t.Errorf("kind = %q, want %q", got.Kind, test.kind)
			}
			if fmt.Sprint(parts(got)) != fmt.Sprint(test.want) {
				t.Errorf("partitions = %v, want %v", parts(got), test.want)
			}
		})
	}
}

func TestReadGPTDetails(t *testing.T) {
	im := newImage(16*mib, 512)
	im.writeGPT(gptEntry{index: 0, typ: linuxFS, first: 2048, last: 4095, name: "räksmörgås"})
	got, err := ptable.Read(im.reader(), int64(len(im.b)), 512)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Partitions) != 1 {
		t.Fatalf("partitions = %+v, want one", got.Partitions)
	}
	p := got.Partitions[0]
	if p.Type != "0FC63DAF-8483-4772-8E79-3D69D8477DE4" {
		t.Errorf("type = %s, want the Linux filesystem GUID", p.Type)
	}
	if p.Name != "räksmörgås" {
		t.Errorf("name = %q", p.Name)
	}
}

func TestReadCorrupt(t *testing.T) {
	tests := []struct {
		name  string
		build func(im *image)
	}{
		{"protective MBR without GPT", func(im *image) {
			im.writeMBR(0, mbrEntry{typ: 0xEE, lba: 1, count: 100})
		}},
		{"both GPT headers corrupt", func(im *image) {
			im.writeGPT(gptEntry{index: 0, typ: linuxFS, first: 2048, last: 4095})
			im.sector(1)[40] ^= 0xFF
			im.sector(int64(len(im.b))/512 - 1)[40] ^= 0xFF
		}},
		{"GPT header that claims another LBA", func(im *image) {
			im.writeGPT()
			for _, lba := range []int64{1, int64(len(im.b))/512 - 1} {
				h := im.sector(lba)
				binary.LittleEndian.PutUint64(h[24:], 7)
				clear(h[16:20])
				binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
			}
		}},
		{"GPT entry array too large", func(im *image) {
			im.writeGPT()
			for _, lba := range []int64{1, int64(len(im.b))/512 - 1} {
				h := im.sector(lba)
				binary.LittleEndian.PutUint32(h[80:], 1<<20)
				clear(h[16:20])
				binary.LittleEndian.PutUint32(h[16:], crc32.ChecksumIEEE(h[:92]))
			}
		}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			im := newImage(8*mib, 512)
			test.build(im)
			got, err := ptable.Read(im.reader(), int64(len(im.b)), 512)
			if !errors.Is(err, ptable.ErrCorrupt) {
				t.Fatalf("Read = %+v, %v; want ErrCorrupt", got, err)
			}
		})
	}
}

func TestReadRejectsBadSectorSize(t *testing.T) {
	for _, ss := range []int{0, 256, 1000, 1 << 20} {
		if _, err := ptable.Read(bytes.NewReader(make([]byte, 4096)), 4096, ss); err == nil {
			t.Errorf("sector size %d accepted", ss)
		}
	}
}

func TestReadShortDevice(t *testing.T) {
	// A reader shorter than the size it claims must fail, not read zeros.
	im := newImage(16*mib, 512)
	im.writeGPT(gptEntry{index: 0, typ: linuxFS, first: 2048, last: 4095})
	_, err := ptable.Read(bytes.NewReader(im.b[:1024]), int64(len(im.b)), 512)
	if err == nil {
		t.Fatal("Read of a truncated device succeeded")
	}
}

// TestReadMatchesSfdisk checks the parser against the tool the integration
// tests use to make images: whatever sfdisk writes, Read must find at the
// offsets sfdisk reports.
func TestReadMatchesSfdisk(t *testing.T) {
	sfdisk, err := exec.LookPath("sfdisk")
	if err != nil {
		t.Skip("needs sfdisk (package fdisk)")
	}
	scripts := map[string]string{
		"dos": "label: dos\n,4MiB,L\n,8MiB,S\n,,E\n,4MiB,L\n,,L\n",
		"gpt": "label: gpt\n,4MiB,L\n,8MiB,S\n,,L\n",
	}
	for label, script := range scripts {
		t.Run(label, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(path, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(path, 64*mib); err != nil {
				t.Fatal(err)
			}
			cmd := exec.Command(sfdisk, "--quiet", "--no-reread", "--no-tell-kernel", path)
			cmd.Stdin = strings.NewReader(script)
			if out, err := cmd.CombinedOutput(); err != nil {
				t.Fatalf("sfdisk: %v\n%s", err, out)
			}
			out, err := exec.Command(sfdisk, "--json", path).Output()
			if err != nil {
				t.Fatalf("sfdisk --json: %v", err)
			}
			var dump struct {
				Table struct {
					Label      string `json:"label"`
					SectorSize int64  `json:"sectorsize"`
					Partitions []struct {
						Node  string `json:"node"`
						Start int64  `json:"start"`
						Size  int64  `json:"size"`
						Type  string `json:"type"`
					} `json:"partitions"`
				} `json:"partitiontable"`
			}
			if err := json.Unmarshal(out, &dump); err != nil {
				t.Fatal(err)
			}
			var want []part
			for _, p := range dump.Table.Partitions {
				var n int
				fmt.Sscanf(p.Node[len(path):], "%d", &n)
				size := p.Size * dump.Table.SectorSize
				if label == "dos" && (p.Type == "5" || p.Type == "f" || p.Type == "85") {
					size = 1024 // the extended partition's stub
				}
				want = append(want, part{n, p.Start * dump.Table.SectorSize, size})
			}
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			got, err := ptable.Read(bytes.NewReader(data), int64(len(data)), 512)
			if err != nil {
				t.Fatal(err)
			}
			if string(got.Kind) != dump.Table.Label {
				t.Errorf("kind = %q, sfdisk says %q", got.Kind, dump.Table.Label)
			}
			if fmt.Sprint(parts(got)) != fmt.Sprint(want) {
				t.Errorf("partitions = %v, sfdisk says %v", parts(got), want)
			}
		})
	}
}

// FuzzRead feeds arbitrary sectors to the parser: it must never panic, loop
// or return partitions outside the device.
func FuzzRead(f *testing.F) {
	im := newImage(1*mib, 512)
	im.writeGPT(gptEntry{index: 0, typ: linuxFS, first: 40, last: 100, name: "x"})
	f.Add(im.b[:64<<10], int64(len(im.b)))
	dos := newImage(64<<10, 512)
	dos.writeMBR(0, mbrEntry{typ: 0x05, lba: 2, count: 100})
	dos.writeMBR(2, mbrEntry{typ: 0x83, lba: 1, count: 10}, mbrEntry{typ: 0x05, lba: 20, count: 10})
	f.Add(dos.b, int64(len(dos.b)))
	f.Fuzz(func(t *testing.T, data []byte, size int64) {
		if size < 0 || size > int64(len(data))+1<<20 {
			size = int64(len(data))
		}
		// Pad so the claimed size is readable: sectors past the data are zero.
		padded := append(data, make([]byte, max(0, size-int64(len(data))))...)
		tbl, err := ptable.Read(bytes.NewReader(padded), size, 512)
		if err != nil {
			return
		}
		for _, p := range tbl.Partitions {
			if p.Start < 0 || p.Size <= 0 || p.Start+p.Size > size || p.Number < 1 || p.Number > ptable.MaxPartitions {
				t.Fatalf("partition %+v outside a device of %d bytes", p, size)
			}
		}
	})
}
