package qemu

import (
	"context"
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"
)

func int64p(v int64) *int64 { return &v }

func TestSfdiskScript(t *testing.T) {
	o := Options{PTType: "dos", PTUUID: "0x14fc63d2", Partitions: []Partition{
		{Start: int64p(2048), Size: int64p(4096), Type: "0x0c"},
		{Type: "83", Bootable: true},
	}}
	want := "label: dos\nlabel-id: 0x14fc63d2\nstart=2048, size=4096, type=0c\ntype=83, bootable\n"
	if got := SfdiskScript(o); got != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}
}

// TestWritePartitionTable runs sfdisk on a plain file (no root needed) and
// checks the MBR byte for byte where it matters to a BIOS and to GRUB:
// the disk identifier, the bootable flag, the type, the LBA start and
// length of each entry, the boot signature.
func TestWritePartitionTable(t *testing.T) {
	const size = 64 << 20
	tests := []struct {
		name  string
		parts []Partition
		want  []Extent
	}{
		{"legacy root", []Partition{{Bootable: true, Type: "83"}},
			[]Extent{{Start: 2048, Size: size/512 - 2048, Type: "83", Bootable: true}}},
		{"boot and root", []Partition{{Size: int64p(8192), Type: "83"}, {Type: "83", Bootable: true}},
			[]Extent{{Start: 2048, Size: 8192, Type: "83"}, {Start: 10240, Size: size/512 - 10240, Type: "83", Bootable: true}}},
		{"explicit start", []Partition{{Start: int64p(4096), Size: int64p(2048), Type: "c"}},
			[]Extent{{Start: 4096, Size: 2048, Type: "c"}}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			img := filepath.Join(t.TempDir(), "disk.img")
			if err := os.WriteFile(img, nil, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(img, size); err != nil {
				t.Fatal(err)
			}
			o := Options{PTType: "dos", PTUUID: "0x14fc63d2", Partitions: test.parts}
			l, err := WritePartitionTable(context.Background(), img, o)
			if err != nil {
				t.Fatal(err)
			}
			if l.Label != "dos" || l.ID != "0x14fc63d2" {
				t.Errorf("label %q id %q", l.Label, l.ID)
			}
			if len(l.Partitions) != len(test.want) {
				t.Fatalf("partitions %+v, want %+v", l.Partitions, test.want)
			}
			for i, want := range test.want {
				if l.Partitions[i] != want {
					t.Errorf("partition %d: %+v, want %+v", i+1, l.Partitions[i], want)
				}
			}
			mbr := make([]byte, 512)
			f, err := os.Open(img)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			if _, err := f.ReadAt(mbr, 0); err != nil {
				t.Fatal(err)
			}
			if id := binary.LittleEndian.Uint32(mbr[0x1b8:]); id != 0x14fc63d2 {
				t.Errorf("disk identifier %#x", id)
			}
			if mbr[510] != 0x55 || mbr[511] != 0xaa {
				t.Errorf("boot signature % x", mbr[510:])
			}
			for i, want := range test.want {
				e := mbr[0x1be+16*i : 0x1be+16*(i+1)]
				status := byte(0)
				if want.Bootable {
					status = 0x80
				}
				start, n := binary.LittleEndian.Uint32(e[8:]), binary.LittleEndian.Uint32(e[12:])
				if e[0] != status || int64(start) != want.Start || int64(n) != want.Size {
					t.Errorf("entry %d: status %#x start %d sectors %d; want %#x %d %d", i, e[0], start, n, status, want.Start, want.Size)
				}
			}
		})
	}
}

func TestParseSfdiskJSON(t *testing.T) {
	l, err := ParseSfdiskJSON([]byte(`{"partitiontable": {"label": "dos", "id": "0x1", "device": "d", "unit": "sectors",
		"sectorsize": 512, "partitions": [{"node": "d1", "start": 2048, "size": 10, "type": "83", "bootable": true}]}}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (Extent{Start: 2048, Size: 10, Type: "83", Bootable: true}); len(l.Partitions) != 1 || l.Partitions[0] != want {
		t.Errorf("%+v", l)
	}
	for _, bad := range []string{`{}`, `{"partitiontable": {"sectorsize": 4096}}`, `[`} {
		if _, err := ParseSfdiskJSON([]byte(bad)); err == nil {
			t.Errorf("ParseSfdiskJSON(%s) succeeded", bad)
		}
	}
}
