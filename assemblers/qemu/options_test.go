package qemu

import (
	"encoding/json"
	"strings"
	"testing"
)

const (
	testUUID  = "9c6ae55b-cf88-45b8-84e8-64990759f39d"
	testUUID2 = "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75"
)

func TestParseOptionsLegacy(t *testing.T) {
	o, err := ParseOptions(json.RawMessage(`{"format": "qcow2", "filename": "disk.qcow2", "ptuuid": "0x14fc63d2",
		"root_fs_uuid": "` + testUUID + `", "size": 1073741824}`))
	if err != nil {
		t.Fatal(err)
	}
	if o.PTType != "dos" || o.Bootloader == nil || o.Bootloader.Type != "grub2" || o.Bootloader.Platform != "i386-pc" {
		t.Errorf("defaults: pttype %q, bootloader %+v", o.PTType, o.Bootloader)
	}
	want := Partition{Bootable: true, Type: "83", Filesystem: &Filesystem{Type: "ext4", UUID: testUUID, Mountpoint: "/"}}
	if len(o.Partitions) != 1 || o.Partitions[0].Bootable != want.Bootable || o.Partitions[0].Type != want.Type ||
		*o.Partitions[0].Filesystem != *want.Filesystem || o.Partitions[0].Start != nil || o.Partitions[0].Size != nil {
		t.Errorf("partitions %+v, want [%+v]", o.Partitions, want)
	}
}

func TestParseOptionsPartitions(t *testing.T) {
	o, err := ParseOptions(json.RawMessage(`{"format": "raw", "filename": "d.img", "ptuuid": "0x1", "size": 1073741824,
		"pttype": "mbr", "partitions": [
			{"start": 2048, "size": 409600, "type": "83", "filesystem": {"type": "ext4", "uuid": "` + testUUID2 + `", "mountpoint": "/boot", "label": "boot"}},
			{"start": 411648, "type": "83", "bootable": true, "filesystem": {"type": "ext4", "uuid": "` + testUUID + `", "mountpoint": "/"}}
		]}`))
	if err != nil {
		t.Fatal(err)
	}
	if o.PTType != "dos" || len(o.Partitions) != 2 || o.Partitions[0].Filesystem.Label != "boot" {
		t.Errorf("options %+v", o)
	}
}

// TestParseOptionsErrors: every refusal names the option at fault.
func TestParseOptionsErrors(t *testing.T) {
	base := map[string]any{
		"format": "qcow2", "filename": "disk.qcow2", "ptuuid": "0x14fc63d2",
		"root_fs_uuid": testUUID, "size": 1 << 30,
	}
	part := func(extra map[string]any) map[string]any {
		p := map[string]any{"type": "83", "filesystem": map[string]any{"type": "ext4", "uuid": testUUID, "mountpoint": "/"}}
		for k, v := range extra {
			p[k] = v
		}
		return p
	}
	tests := []struct {
		name    string
		change  map[string]any // nil value: delete the key
		wantErr string
	}{
		{"no format", map[string]any{"format": nil}, `option "format": required`},
		{"unknown format", map[string]any{"format": "iso"}, `option "format": "iso" is not one of`},
		{"no filename", map[string]any{"filename": nil}, `option "filename": required`},
		{"filename with slash", map[string]any{"filename": "a/b"}, `option "filename"`},
		{"filename dot-dot", map[string]any{"filename": ".."}, `option "filename"`},
		{"no size", map[string]any{"size": nil}, `option "size": required`},
		{"size not in sectors", map[string]any{"size": 1000}, `option "size": 1000 is not a positive multiple`},
		{"size zero", map[string]any{"size": 0}, `option "size"`},
		{"size too small", map[string]any{"size": 1 << 20}, `option "size": 1048576 bytes is too small`},
		{"size a string", map[string]any{"size": "1G"}, `option "size": want integer`},
		{"no ptuuid", map[string]any{"ptuuid": nil}, `option "ptuuid": required`},
		{"ptuuid a GUID", map[string]any{"ptuuid": testUUID}, `option "ptuuid": "` + testUUID + `" is not an MBR disk identifier`},
		{"gpt", map[string]any{"pttype": "gpt"}, `option "pttype": "gpt" is not supported`},
		{"unknown pttype", map[string]any{"pttype": "sun"}, `option "pttype"`},
		{"no root_fs_uuid", map[string]any{"root_fs_uuid": nil}, `option "root_fs_uuid": required`},
		{"bad root_fs_uuid", map[string]any{"root_fs_uuid": "nope"}, `option "root_fs_uuid": "nope" is not a UUID`},
		{"xfs root", map[string]any{"root_fs_type": "xfs"}, `option "root_fs_type": "xfs" is not supported`},
		{"zipl", map[string]any{"bootloader": map[string]any{"type": "zipl"}}, `option "bootloader": type "zipl" is not supported`},
		{"efi platform", map[string]any{"bootloader": map[string]any{"type": "grub2", "platform": "x86_64-efi"}}, `option "bootloader": platform "x86_64-efi"`},
		{"unknown option", map[string]any{"colour": "blue"}, `unknown option "colour"`},
		{"bad qcow2_compat", map[string]any{"qcow2_compat": "2"}, `option "qcow2_compat"`},
		{"bad vmdk_subformat", map[string]any{"vmdk_subformat": "x"}, `option "vmdk_subformat"`},
		{"partitions and root_fs_uuid", map[string]any{"pttype": "dos", "partitions": []any{part(nil)}}, `option "root_fs_uuid": not allowed with "partitions"`},
		{"partitions without pttype", map[string]any{"root_fs_uuid": nil, "partitions": []any{part(nil)}}, `option "pttype": required with "partitions"`},
		{"no partitions", map[string]any{"root_fs_uuid": nil, "pttype": "dos", "partitions": []any{}}, `option "partitions": want at least one`},
		{"five partitions", map[string]any{"root_fs_uuid": nil, "pttype": "dos", "partitions": []any{part(nil), part(nil), part(nil), part(nil), part(nil)}}, `option "partitions": 5 partitions`},
		{"GPT name", map[string]any{"root_fs_uuid": nil, "pttype": "dos", "partitions": []any{part(map[string]any{"name": "root"})}}, `option "partitions[0].name"`},
		{"GPT type", map[string]any{"root_fs_uuid": nil, "pttype": "dos", "partitions": []any{part(map[string]any{"type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"})}}, `option "partitions[0].type"`},
		{"start 0", map[string]any{"root_fs_uuid": nil, "pttype": "dos", "partitions": []any{part(map[string]any{"start": 0})}}, `option "partitions[0].start"`},
		{"vfat", map[string]any{"root_fs_uuid": nil, "pttype": "dos", "partitions": []any{part(map[string]any{"filesystem": map[string]any{"type": "vfat", "uuid": testUUID, "mountpoint": "/"}})}}, `option "partitions[0].filesystem.type"`},
		{"relative mountpoint", map[string]any{"root_fs_uuid": nil, "pttype": "dos", "partitions": []any{part(map[string]any{"filesystem": map[string]any{"type": "ext4", "uuid": testUUID, "mountpoint": "boot"}})}}, `option "partitions[0].filesystem.mountpoint"`},
		{"long label", map[string]any{"root_fs_uuid": nil, "pttype": "dos", "partitions": []any{part(map[string]any{"filesystem": map[string]any{"type": "ext4", "uuid": testUUID, "mountpoint": "/", "label": "a-label-of-17-byt"}})}}, `option "partitions[0].filesystem": label`},
		{"no root partition", map[string]any{"root_fs_uuid": nil, "pttype": "dos", "partitions": []any{part(map[string]any{"filesystem": map[string]any{"type": "ext4", "uuid": testUUID, "mountpoint": "/boot"}})}}, `option "partitions": want one filesystem mounted at "/", got 0`},
		{"mountpoint twice", map[string]any{"root_fs_uuid": nil, "pttype": "dos", "partitions": []any{part(nil), part(nil)}}, `option "partitions[1].filesystem.mountpoint": "/" is partitions[0]'s too`},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			opts := map[string]any{}
			for k, v := range base {
				opts[k] = v
			}
			for k, v := range test.change {
				if v == nil {
					delete(opts, k)
				} else {
					opts[k] = v
				}
			}
			raw, err := json.Marshal(opts)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ParseOptions(raw)
			if err == nil || !strings.Contains(err.Error(), test.wantErr) {
				t.Errorf("ParseOptions(%s): %v, want an error with %q", raw, err, test.wantErr)
			}
		})
	}
}

func TestQemuImgArgs(t *testing.T) {
	tests := []struct {
		opts Options
		want string
	}{
		{Options{Format: "qcow2"}, "convert -O qcow2 -c"},
		{Options{Format: "qcow2", QCOW2Compat: "0.10"}, "convert -O qcow2 -c -o compat=0.10"},
		{Options{Format: "vdi"}, "convert -O vdi"},
		{Options{Format: "vmdk", VMDKSubformat: "streamOptimized"}, "convert -O vmdk -c -o subformat=streamOptimized"},
		{Options{Format: "vmdk"}, "convert -O vmdk -c"},
		{Options{Format: "vmdk", VMDKSubformat: "twoGbMaxExtentFlat"}, "convert -O vmdk -o subformat=twoGbMaxExtentFlat"},
		{Options{Format: "vpc"}, "convert -O vpc -o subformat=fixed,force_size"},
		{Options{Format: "vhdx"}, "convert -O vhdx"},
	}
	for _, test := range tests {
		if got := strings.Join(qemuImgArgs(test.opts), " "); got != test.want {
			t.Errorf("%+v: %q, want %q", test.opts, got, test.want)
		}
	}
}
