package sfdisk

import (
	"context"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

// TestScript pins the scripts against osbuild's stage: each want is what
// its PartitionTable.write_to (osbuild f6b23dbc) fed sfdisk for these
// options and the device /dev/loop9.
func TestScript(t *testing.T) {
	tests := []struct {
		name, options, want string
	}{
		{"gpt", `{"label": "gpt", "uuid": "D209C89E-EA5E-4FBD-B161-B461CCE297E0", "partitions": [
			{"bootable": true, "size": 2048, "start": 2048, "type": "21686148-6449-6E6F-744E-656564454649", "uuid": "FAC7F1FB-3E8D-4137-A512-961DE09A5549"},
			{"size": 204800, "start": 4096, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "uuid": "68B2905B-DF3E-4FB3-80FA-49D1E773AA33"},
			{"size": 20762524, "start": 208896, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "uuid": "6264D520-3FB9-423F-8AB8-7A0A8E3D3562"}]}`,
			"label: gpt\nlabel-id: D209C89E-EA5E-4FBD-B161-B461CCE297E0\n" +
				`start="2048", size="2048", type="21686148-6449-6E6F-744E-656564454649", uuid="FAC7F1FB-3E8D-4137-A512-961DE09A5549", bootable` + "\n" +
				`start="4096", size="204800", type="C12A7328-F81F-11D2-BA4B-00A0C93EC93B", uuid="68B2905B-DF3E-4FB3-80FA-49D1E773AA33"` + "\n" +
				`start="208896", size="20762524", type="0FC63DAF-8483-4772-8E79-3D69D8477DE4", uuid="6264D520-3FB9-423F-8AB8-7A0A8E3D3562"`},
		{"partition numbers and names", `{"uuid": "00000000-0000-4000-a000-000000000001", "label": "gpt", "partitions": [
			{"start": 2048, "partnum": 1, "size": 2048, "type": "21686148-6449-6E6F-744E-656564454649", "bootable": true, "name": "BIOS-BOOT"},
			{"start": 4096, "partnum": 2, "size": 260096, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "name": "EFI-SYSTEM"}]}`,
			"label: gpt\nlabel-id: 00000000-0000-4000-a000-000000000001\n" +
				`/dev/loop9p1: start="2048", size="2048", type="21686148-6449-6E6F-744E-656564454649", name="BIOS-BOOT", bootable` + "\n" +
				`/dev/loop9p2: start="4096", size="260096", type="C12A7328-F81F-11D2-BA4B-00A0C93EC93B", name="EFI-SYSTEM"`},
		// start 0 is left out; attrs keep the named bits and 48-63 only;
		// a partition with nothing set is an empty line.
		{"edges", `{"label": "gpt", "uuid": "D209C89E-EA5E-4FBD-B161-B461CCE297E0", "partitions": [
			{"partnum": 2, "start": 0, "size": 2048, "type": "21686148-6449-6E6F-744E-656564454649", "bootable": true, "name": "BIOS boot", "attrs": [0, 2, 7, 48, 63]},
			{"attrs": [5]}, {}]}`,
			"label: gpt\nlabel-id: D209C89E-EA5E-4FBD-B161-B461CCE297E0\n" +
				`/dev/loop9p2: size="2048", type="21686148-6449-6E6F-744E-656564454649", name="BIOS boot", attrs="RequiredPartition,LegacyBIOSBootable,48,63", bootable` + "\n" +
				`attrs=""` + "\n"},
		{"dos, no partitions", `{"label": "dos", "uuid": "0x14fc63d2"}`, "label: dos\nlabel-id: 0x14fc63d2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parse([]byte(tt.options))
			if err != nil {
				t.Fatal(err)
			}
			if got := script(o, "/dev/loop9"); got != tt.want {
				t.Errorf("script\n%s\nwant\n%s", got, tt.want)
			}
			write, show := commands(o, "/dev/loop9")
			if write.String() != "sfdisk -q --no-tell-kernel /dev/loop9" || show.String() != "sfdisk --json /dev/loop9" {
				t.Errorf("commands %q, %q", write, show)
			}
			if in, _ := io.ReadAll(write.Stdin); string(in) != tt.want {
				t.Errorf("sfdisk's input %q", in)
			}
		})
	}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name, raw, wantErr string
	}{
		{"mbr", `{"label": "mbr", "uuid": "0x1"}`, ""},
		{"no label", `{"uuid": "0x1"}`, `option "label": is required`},
		{"bad label", `{"label": "apm", "uuid": "0x1"}`, `option "label": "apm" is not one of mbr, dos, gpt`},
		{"no uuid", `{"label": "gpt"}`, `option "uuid": is required`},
		{"quote in uuid", `{"label": "gpt", "uuid": "a\nlabel: dos"}`, `option "uuid"`},
		{"quote in name", `{"label": "gpt", "uuid": "u", "partitions": [{"name": "a\"b"}]}`, `option "partitions[0].name"`},
		{"negative start", `{"label": "gpt", "uuid": "u", "partitions": [{}, {"start": -1}]}`, `option "partitions[1].start": -1 is negative`},
		{"attr out of range", `{"label": "gpt", "uuid": "u", "partitions": [{"attrs": [64]}]}`, `option "partitions[0].attrs": bit 64`},
		{"attr twice", `{"label": "gpt", "uuid": "u", "partitions": [{"attrs": [1, 1]}]}`, `bit 1 is given twice`},
		{"unknown key", `{"label": "gpt", "uuid": "u", "partitions": [{"fs": "ext4"}]}`, `unknown option "fs"`},
		{"float size", `{"label": "gpt", "uuid": "u", "partitions": [{"size": 1.5}]}`, `option "partitions.size": want integer`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parse([]byte(tt.raw))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("error %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestNeedsDevice(t *testing.T) {
	a := stage.Args{Tree: "/t", Format: 2, Options: []byte(`{"label": "gpt", "uuid": "u"}`)}
	if err := Run(context.Background(), a); err == nil || !strings.Contains(err.Error(), `needs a device "device"`) {
		t.Errorf("%v", err)
	}
}

// TestRunOnFile partitions an image file with the host's sfdisk, when
// there is one: the device a format-2 builder gives is a loop device, but
// sfdisk takes a file as well.
func TestRunOnFile(t *testing.T) {
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("no sfdisk here")
	}
	img := filepath.Join(t.TempDir(), "disk.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, 64<<20); err != nil {
		t.Fatal(err)
	}
	a := stage.Args{Tree: "/t", Format: 2, Devices: map[string]stage.Device{"device": {Path: img}},
		Options: []byte(`{"label": "gpt", "uuid": "D209C89E-EA5E-4FBD-B161-B461CCE297E0", "partitions": [
			{"start": 2048, "size": 8192, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "uuid": "68B2905B-DF3E-4FB3-80FA-49D1E773AA33", "name": "EFI", "attrs": [0]},
			{"start": 10240, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "uuid": "6264D520-3FB9-423F-8AB8-7A0A8E3D3562"}]}`)}
	if err := Run(context.Background(), a); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("sfdisk", "--json", img).Output()
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		PartitionTable struct {
			Label, ID  string
			Partitions []struct {
				Start, Size      int64
				Type, UUID, Name string
				Attrs            string
			}
		}
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatal(err)
	}
	pt := got.PartitionTable
	if pt.Label != "gpt" || pt.ID != "D209C89E-EA5E-4FBD-B161-B461CCE297E0" || len(pt.Partitions) != 2 {
		t.Fatalf("table %+v", pt)
	}
	p0, p1 := pt.Partitions[0], pt.Partitions[1]
	if p0.Start != 2048 || p0.Size != 8192 || p0.Name != "EFI" || p0.Attrs != "RequiredPartition" || p0.UUID != "68B2905B-DF3E-4FB3-80FA-49D1E773AA33" {
		t.Errorf("first partition %+v", p0)
	}
	if p1.Start != 10240 || p1.Size <= 0 || p1.Type != "0FC63DAF-8483-4772-8E79-3D69D8477DE4" {
		t.Errorf("second partition %+v", p1)
	}
}
