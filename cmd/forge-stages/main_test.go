package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

// format2Only are the stages that need format 2's devices, inputs or
// mounts; their meta.json has no format-1 "schema", as in osbuild.
var format2Only = []string{"org.osbuild.copy", "org.osbuild.mkfs.ext4", "org.osbuild.mkfs.fat", "org.osbuild.qemu", "org.osbuild.sfdisk"}

// key names a stage or an assembler: "stages/NAME", "assemblers/NAME".
// A stage and an assembler may share a name (org.osbuild.qemu).
func key(s stage.Stage) string { return string(s.Kind) + "/" + s.Name }

// TestMeta checks every stage's and assembler's meta.json against what
// osbuild's meta.py reads: summary, description as lines, and the
// schemas the stage can be used with.
func TestMeta(t *testing.T) {
	seen := map[string]bool{}
	for _, s := range stages() {
		t.Run(key(s), func(t *testing.T) {
			if seen[key(s)] {
				t.Fatal("listed twice")
			}
			seen[key(s)] = true
			if len(s.MetaJSON) == 0 {
				t.Fatal("no meta.json")
			}
			var m map[string]json.RawMessage
			dec := json.NewDecoder(bytes.NewReader(s.MetaJSON))
			if err := dec.Decode(&m); err != nil {
				t.Fatalf("meta.json: %v", err)
			}
			for k := range m {
				if !slices.Contains([]string{"summary", "description", "capabilities", "schema", "schema_2"}, k) {
					t.Errorf("key %q: osbuild's meta.json has no such key", k)
				}
			}
			var summary string
			var description []string
			if err := json.Unmarshal(m["summary"], &summary); err != nil || summary == "" {
				t.Errorf("summary %s: %v", m["summary"], err)
			}
			if err := json.Unmarshal(m["description"], &description); err != nil || len(description) == 0 {
				t.Errorf("description %s: want lines: %v", m["description"], err)
			}
			_, has1 := m["schema"]
			_, has2 := m["schema_2"]
			switch {
			case s.Kind == stage.KindAssembler && (!has1 || has2):
				t.Errorf("an assembler (format 1 only) wants schema and no schema_2; has schema %v, schema_2 %v", has1, has2)
			case s.Kind == stage.KindStage && slices.Contains(format2Only, s.Name) && (has1 || !has2):
				t.Errorf("a format-2 stage wants schema_2 only; has schema %v, schema_2 %v", has1, has2)
			case s.Kind == stage.KindStage && !slices.Contains(format2Only, s.Name) && (!has1 || !has2):
				t.Errorf("a stage of both formats wants schema and schema_2; has schema %v, schema_2 %v", has1, has2)
			}
			if has2 {
				var s2 map[string]json.RawMessage
				if err := json.Unmarshal(m["schema_2"], &s2); err != nil || s2["options"] == nil {
					t.Errorf("schema_2 wants an options schema: %s", m["schema_2"])
				}
			}
		})
	}
}

// schemaCase is a manifest's stage (format 2) or stage or assembler
// (format 1), and whether osbuild's validation must accept it.
type schemaCase struct {
	Name    string          `json:"name"`
	Kind    string          `json:"kind"`
	Version string          `json:"version"`
	Module  json.RawMessage `json:"module"`
	Valid   bool            `json:"valid"`
	Meta    json.RawMessage `json:"meta"`
}

// schemaCases are, per stage, options it accepts and options it refuses
// (the part a schema can see), each as format 2 and, where the stage has
// a format-1 schema, format 1. A name that is both a stage's and an
// assembler's is keyed "stages/NAME" or "assemblers/NAME".
var schemaCases = map[string]struct{ valid, invalid []string }{
	"org.osbuild.apt": {
		valid:   []string{`{"packages": ["vim", "linux-image-amd64"], "recommends": false, "update": true, "clean": true}`},
		invalid: []string{`{"packages": []}`, `{"recommends": true}`, `{"packages": ["vim"], "install": true}`},
	},
	"org.osbuild.fstab": {
		valid: []string{`{"filesystems": [{"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "path": "/", "vfs_type": "ext4", "options": "defaults", "freq": 1, "passno": 1},
			{"label": "EFI", "path": "/boot/efi"}, {"device": "/dev/sda2", "path": "none", "vfs_type": "swap"}]}`},
		invalid: []string{`{}`, `{"filesystems": [{"uuid": "u", "label": "l", "path": "/"}]}`, `{"filesystems": [{"uuid": "u", "path": "/", "freq": "1"}]}`,
			`{"filesystems": [{"path": "/"}]}`, `{"filesystems": [], "ostree": {}}`},
	},
	"org.osbuild.grub2": {
		valid: []string{`{"root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "kernel_opts": "ro quiet", "legacy": "i386-pc"}`,
			`{"rootfs": {"label": "root"}, "bootfs": {"uuid": "7B77-95E7"}, "legacy": true, "uefi": {"vendor": "debian", "install": true},
			  "config": {"timeout": 1, "timeout_style": "menu", "terminal": ["serial", "console"], "serial": "serial --speed=115200"}, "write_defaults": false}`},
		invalid: []string{`{}`, `{"root_fs_uuid": "not-a-uuid"}`, `{"root_fs_uuid": "7B77-95E7", "rootfs": {"label": "root"}}`,
			`{"root_fs_uuid": "7B77-95E7", "compat_version": 2}`, `{"root_fs_uuid": "7B77-95E7", "config": {"timeout": -1}}`,
			`{"root_fs_uuid": "7B77-95E7", "uefi": {"install": true}}`},
	},
	"org.osbuild.hostname": {
		valid:   []string{`{"hostname": "forge-image"}`},
		invalid: []string{`{}`, `{"hostname": 1}`, `{"hostname": "a", "domain": "b"}`},
	},
	"org.osbuild.locale": {
		valid:   []string{`{"language": "en_US.UTF-8"}`},
		invalid: []string{`{}`, `{"language": ["en_US.UTF-8"]}`},
	},
	"org.osbuild.mkdir": {
		valid:   []string{`{"paths": [{"path": "/boot/efi", "parents": true, "exist_ok": true, "mode": 493}, {"path": "mount://root/home"}]}`},
		invalid: []string{`{"paths": [{"mode": 493}]}`, `{"paths": [{"path": "/x", "mode": 493.5}]}`, `{"paths": [{"path": "/x", "owner": "root"}]}`},
	},
	"org.osbuild.mmdebstrap": {
		valid:   []string{`{"suite": "bookworm", "mirror": "http://deb.debian.org/debian", "variant": "minbase", "components": ["main", "contrib"], "packages": ["systemd"], "architectures": ["amd64"]}`},
		invalid: []string{`{"suite": "bookworm"}`, `{"suite": "bookworm", "mirror": "http://x", "variant": "huge"}`, `{"suite": "bookworm", "mirror": "http://x", "components": []}`},
	},
	"org.osbuild.noop": {
		valid: []string{`{}`, `{"anything": [1, 2]}`},
	},
	"org.osbuild.script": {
		valid:   []string{`{"script": "#!/bin/sh\necho hi\n"}`},
		invalid: []string{`{}`, `{"script": ["echo"]}`},
	},
	"org.osbuild.systemd": {
		valid:   []string{`{"enabled_services": ["ssh.service"], "disabled_services": [], "masked_services": ["x.service"], "masked_generators": ["g"], "default_target": "multi-user.target"}`},
		invalid: []string{`{"enabled_services": "ssh.service"}`, `{"preset": true}`},
	},
	"org.osbuild.timezone": {
		valid:   []string{`{"zone": "Europe/Berlin"}`},
		invalid: []string{`{}`, `{"zone": null}`},
	},
	"org.osbuild.truncate": {
		valid:   []string{`{"filename": "disk.img", "size": "268435456"}`, `{"filename": "/disk.img", "size": "10G"}`},
		invalid: []string{`{"filename": "disk.img"}`, `{"filename": "disk.img", "size": 268435456}`},
	},
	"org.osbuild.users": {
		valid:   []string{`{"users": {"forge": {"uid": 1000, "gid": 1000, "groups": ["sudo"], "home": "/home/forge", "shell": "/bin/bash", "password": "$6$x", "keys": ["ssh-ed25519 AAAA"], "expiredate": -1, "force_password_reset": true}, "svc": {}}}`},
		invalid: []string{`{}`, `{"users": {"bad name!": {}}}`, `{"users": {"forge": {"uid": -1}}}`, `{"users": {"forge": {"uid": 1.5}}}`, `{"users": {"forge": {"admin": true}}}`},
	},
	// osbuild's manifests (fedora-boot, el7-qcow2), and what its schema
	// lets through that the stage refuses when it runs (platforms other
	// than i386-pc, 4096-byte sectors, a fractional partition number).
	"org.osbuild.grub2.inst": {
		valid: []string{
			`{"filename": "disk.img", "platform": "i386-pc", "location": 2048, "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"},
			  "prefix": {"type": "partition", "partlabel": "gpt", "number": 2, "path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "location": 2050048, "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "xfs", "binary": "grub-mkimage"},
			  "prefix": {"type": "partition", "partlabel": "gpt", "number": 1, "path": "/grub2"}}`,
			`{"filename": "/disk.img", "platform": "i386-pc", "location": 1, "sector-size": 512, "core": {"type": "mkimage", "partlabel": "dos", "filesystem": "ext4"},
			  "prefix": {"path": "/boot/grub"}}`,
			`{"filename": "images/eltorito.img", "platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "iso9660"}, "prefix": {"path": "/boot/grub2"}}`,
			`{"filename": "disk.img", "platform": "powerpc-ieee1275", "location": 2048, "sector-size": 4096, "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "btrfs"},
			  "prefix": {"type": "partition", "partlabel": "gpt", "number": 1.5, "path": "x/y"}}`,
		},
		invalid: []string{
			`{"platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"}, "prefix": {"path": "/grub2"}}`,
			`{"filename": "disk.img", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"}, "prefix": {"path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "prefix": {"path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "core": {"type": "grub-mkimage", "partlabel": "gpt", "filesystem": "ext4"}, "prefix": {"path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "mbr", "filesystem": "ext4"}, "prefix": {"path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "vfat"}, "prefix": {"path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "gpt"}, "prefix": {"path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4", "modules": []}, "prefix": {"path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"}, "prefix": {"path": "grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"}, "prefix": {"partlabel": "gpt", "number": 1, "path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"}, "prefix": {"type": "partition", "partlabel": "gpt", "number": "1", "path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"}, "prefix": {"path": "/grub2", "number": 1}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "location": 1.5, "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"}, "prefix": {"path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "location": "2048", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"}, "prefix": {"path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "sector-size": "512", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"}, "prefix": {"path": "/grub2"}}`,
			`{"filename": "disk.img", "platform": "i386-pc", "device": "disk", "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"}, "prefix": {"path": "/grub2"}}`,
		},
	},
	"assemblers/org.osbuild.qemu": {
		valid: []string{`{"format": "qcow2", "filename": "disk.qcow2", "ptuuid": "0x14fc63d2", "size": 2147483648, "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75"}`,
			`{"format": "raw", "filename": "disk.raw", "ptuuid": "0x14fc63d2", "size": 2147483648, "pttype": "mbr", "partitions": [
			  {"bootable": true, "start": 2048, "type": "83", "filesystem": {"type": "ext4", "uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "mountpoint": "/"}}]}`},
		invalid: []string{`{"format": "qcow2", "filename": "d", "ptuuid": "0x1", "size": 2147483648}`,
			`{"format": "iso", "filename": "d", "ptuuid": "0x1", "size": 2147483648, "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75"}`,
			`{"format": "raw", "filename": "d", "ptuuid": "0x1", "size": 2147483648, "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "pttype": "mbr", "partitions": []}`,
			`{"format": "raw", "filename": "d", "ptuuid": "0x1", "size": 2147483648, "pttype": "gpt", "partitions": [{"type": "83"}]}`},
	},
	"org.osbuild.rawfs": {
		valid:   []string{`{"filename": "root.img", "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "size": 1073741824}`},
		invalid: []string{`{"filename": "root.img", "root_fs_uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "size": 1073741824, "fs_type": "xfs"}`, `{"filename": "root.img", "size": 1073741824}`},
	},
	"org.osbuild.tar": {
		valid:   []string{`{"filename": "tree.tar.xz", "compression": "xz", "acls": false, "selinux": false, "xattrs": true}`},
		invalid: []string{`{}`, `{"filename": "t.tar", "compression": "zstd"}`},
	},
}

// format2Cases are whole format-2 stages, for the stages whose devices,
// inputs or mounts the schema checks too.
var format2Cases = map[string]struct{ valid, invalid []string }{
	"org.osbuild.copy": {
		valid: []string{`{"inputs": {"root-tree": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": ["name:tree"]}},
			"options": {"paths": [{"from": "input://root-tree/", "to": "mount://root/"}, {"from": "tree:///a", "to": "tree:///b", "remove_destination": true}]},
			"devices": {"root": {"type": "org.osbuild.loopback", "options": {"filename": "disk.img"}}},
			"mounts": [{"name": "root", "type": "org.osbuild.ext4", "source": "root", "target": "/"}]}`},
		invalid: []string{`{"options": {"paths": []}}`, `{"options": {"paths": [{"from": "tree:///a", "to": "input://x/a"}]}}`,
			`{"options": {"paths": [{"from": "/a", "to": "tree:///b"}]}}`, `{"options": {"paths": [{"from": "tree:///a", "to": "tree:///b", "mode": 1}]}}`},
	},
	"org.osbuild.mkfs.ext4": {
		valid: []string{`{"options": {"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "label": "root", "lazy_init": true, "verity": false, "orphan_file": false, "metadata_csum_seed": true},
			"devices": {"device": {"type": "org.osbuild.loopback", "options": {"filename": "disk.img", "start": 2048, "size": 4096}}}}`},
		invalid: []string{`{"options": {"label": "root"}, "devices": {"device": {"type": "org.osbuild.loopback"}}}`,
			`{"options": {"uuid": "u", "label": "0123456789abcdefg"}, "devices": {"device": {"type": "org.osbuild.loopback"}}}`,
			`{"options": {"uuid": "u"}, "devices": {"disk": {"type": "org.osbuild.loopback"}}}`,
			`{"options": {"uuid": "u", "lazy_itable_init": true}, "devices": {"device": {"type": "org.osbuild.loopback"}}}`,
			`{"options": {"uuid": "u"}, "devices": {"device": {"type": "org.osbuild.loopback"}}, "inputs": {}}`},
	},
	"org.osbuild.mkfs.fat": {
		valid: []string{`{"options": {"volid": "7B7795E7", "label": "EFI-SYSTEM", "fat-size": 16, "geometry": {"heads": 255, "sectors-per-track": 63}},
			"devices": {"device": {"type": "org.osbuild.loopback", "options": {"filename": "disk.img"}}}}`},
		invalid: []string{`{"options": {"volid": "7B7795E7", "fat-size": 24}, "devices": {"device": {"type": "org.osbuild.loopback"}}}`,
			`{"options": {"volid": "7B77-95E7"}, "devices": {"device": {"type": "org.osbuild.loopback"}}}`,
			`{"options": {"volid": "1", "geometry": {"heads": 1}}, "devices": {"device": {"type": "org.osbuild.loopback"}}}`},
	},
	"org.osbuild.sfdisk": {
		valid: []string{`{"options": {"label": "gpt", "uuid": "d209c89e-ea5e-4fbd-b161-b461cce297e0", "partitions": [
			{"start": 2048, "size": 204800, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "uuid": "68b2905b-df3e-4fb3-80fa-49d1e773aa33", "name": "EFI", "attrs": [0, 60], "bootable": true, "partnum": 1}]},
			"devices": {"device": {"type": "org.osbuild.loopback", "options": {"filename": "disk.img"}}}}`},
		invalid: []string{`{"options": {"label": "apm", "uuid": "u"}, "devices": {"device": {"type": "org.osbuild.loopback"}}}`,
			`{"options": {"label": "gpt"}, "devices": {"device": {"type": "org.osbuild.loopback"}}}`,
			`{"options": {"label": "gpt", "uuid": "u", "partitions": [{"attrs": [64]}]}}`,
			`{"options": {"label": "gpt", "uuid": "u", "partitions": [{"filesystem": "ext4"}]}}`},
	},
	"stages/org.osbuild.qemu": {
		valid: []string{
			`{"inputs": {"image": {"type": "org.osbuild.files", "origin": "org.osbuild.pipeline", "references": {"name:image": {"file": "disk.img"}}}},
			  "options": {"filename": "disk.qcow2", "format": {"type": "qcow2", "compat": "1.1", "compression": false}}}`,
			`{"inputs": {"image": {"type": "org.osbuild.files", "origin": "org.osbuild.pipeline", "references": ["name:image"]}},
			  "options": {"filename": "disk.vmdk", "format": {"type": "vmdk", "adapter_type": "legacyESX", "compat6": true, "compression": true, "subformat": "streamOptimized"}}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.vhd", "format": {"type": "vpc", "subformat": "dynamic", "force_size": false}}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.vdi", "format": {"type": "vdi"}}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.vhdx", "format": {"type": "vhdx"}}}`,
			// Any string, for osbuild: qemu-img refuses it when the stage runs.
			`{"inputs": {"image": {}}, "options": {"filename": "disk.qcow2", "format": {"type": "qcow2", "compat": "2.0"}}}`,
			// No inputs at all, for osbuild's schema too: the stage refuses
			// to run without its image.
			`{"options": {"filename": "disk.qcow2", "format": {"type": "qcow2"}}}`,
		},
		invalid: []string{
			`{"inputs": {"tree": {}}, "options": {"filename": "disk.qcow2", "format": {"type": "qcow2"}}}`,
			`{"inputs": {"image": {}, "tree": {}}, "options": {"filename": "disk.qcow2", "format": {"type": "qcow2"}}}`,
			`{"inputs": {"image": []}, "options": {"filename": "disk.qcow2", "format": {"type": "qcow2"}}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.qcow2"}}`,
			`{"inputs": {"image": {}}, "options": {"format": {"type": "qcow2"}}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.raw", "format": {"type": "raw"}}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.qcow2", "format": {"type": "qcow2", "subformat": "fixed"}}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.qcow2", "format": {"type": "qcow2", "compression": "yes"}}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.vmdk", "format": {"type": "vmdk", "adapter_type": "scsi"}}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.vhd", "format": {"type": "vpc", "subformat": "monolithicSparse"}}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.vdi", "format": {"type": "vdi", "compat": "1.1"}}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.qcow2", "format": "qcow2"}}`,
			`{"inputs": {"image": {}}, "options": {"filename": "disk.qcow2", "format": {"type": "qcow2"}, "size": 1}}`,
		},
	},
	// Only stages whose schema_2 says so take inputs.
	"org.osbuild.hostname": {
		invalid: []string{`{"options": {"hostname": "h"}, "inputs": {"x": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": ["name:t"]}}}`},
	},
	"org.osbuild.noop": {
		valid: []string{`{"inputs": {"x": {"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": ["name:t"]}}, "mounts": [], "devices": {}}`},
	},
}

// validateScript validates each case as osbuild's meta.py does: the
// module's schema built by ModuleInfo.get_schema (schema_2, else schema
// as the options; mounts and devices allowed by default; definitions
// moved to the top), checked with jsonschema's Draft4Validator; and the
// meta.json itself against the shape meta.py asks for. It prints one
// line per case: "ok" or the first error.
const validateScript = `
import json, sys, jsonschema
V = jsonschema.Draft4Validator
for c in json.load(sys.stdin):
    meta = c["meta"]
    kind = "Assembler" if c["kind"] == "assemblers" else "Stage"
    type_id = "type" if c["version"] == "2" else "name"
    if c["version"] == "2":
        opts = meta.get("schema_2") or {"options": meta.get("schema", {})}
    else:
        opts = {"options": meta.get("schema", {})}
    opts = json.loads(json.dumps(opts))
    schema = {"title": "Pipeline " + kind, "type": "object", "additionalProperties": False,
              "properties": {type_id: {"enum": [c["name"]]}, **opts}, "required": [type_id]}
    props = schema["properties"]
    props.setdefault("mounts", {"type": "array"})
    props.setdefault("devices", {"type": "object", "additionalProperties": True})
    if "definitions" in props:
        schema["definitions"] = props.pop("definitions")
    if "definitions" in props.get("options", {}):
        schema["definitions"] = props["options"].pop("definitions")
    try:
        V.check_schema(schema)
    except jsonschema.exceptions.SchemaError as e:
        print("bad schema: " + e.message.replace("\n", " "))
        continue
    module = dict(c["module"])
    module[type_id] = c["name"]
    errors = sorted(V(schema).iter_errors(module), key=lambda e: list(e.path))
    print("ok" if not errors else "/".join(map(str, errors[0].path)) + ": " + errors[0].message.replace("\n", " "))
`

func haveJSONSchema(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("python3"); err != nil {
		t.Skip("no python3 here")
	}
	if err := exec.Command("python3", "-c", "import jsonschema").Run(); err != nil {
		t.Skip("python3 has no jsonschema (Debian: python3-jsonschema)")
	}
}

// TestSchemas validates sample options against each stage's schemas with
// python3's jsonschema, the way osbuild validates a manifest's stages,
// so that osbuild (--inspect with forge's libdir) and forge agree on
// what a stage takes.
func TestSchemas(t *testing.T) {
	haveJSONSchema(t)
	lookup := stageLookup(t)
	var cases []schemaCase
	add := func(name, version string, module string, valid bool) {
		s := lookup(name)
		cases = append(cases, schemaCase{Name: s.Name, Kind: string(s.Kind), Version: version, Module: json.RawMessage(module), Valid: valid, Meta: s.MetaJSON})
	}
	for name, c := range schemaCases {
		s := lookup(name)
		for _, valid := range []bool{true, false} {
			list := c.valid
			if !valid {
				list = c.invalid
			}
			for _, opts := range list {
				module := `{"options": ` + opts + `}`
				add(name, "1", module, valid)
				if s.Kind == stage.KindStage {
					add(name, "2", module, valid)
				}
			}
		}
	}
	for name, c := range format2Cases {
		for _, m := range c.valid {
			add(name, "2", m, true)
		}
		for _, m := range c.invalid {
			add(name, "2", m, false)
		}
	}
	// Every stage has a case.
	for _, s := range stages() {
		has := false
		for _, k := range []string{s.Name, key(s)} {
			_, ok1 := schemaCases[k]
			_, ok2 := format2Cases[k]
			has = has || ok1 || ok2
		}
		if !has {
			t.Errorf("%s: no schema test cases", key(s))
		}
	}

	results := validate(t, cases)
	for i, c := range cases {
		r := results[i]
		what := fmt.Sprintf("%s (format %s) %s", c.Name, c.Version, c.Module)
		switch {
		case strings.HasPrefix(r, "bad schema"):
			t.Errorf("%s: %s", c.Name, r)
		case c.Valid && r != "ok":
			t.Errorf("%s: refused: %s", what, r)
		case !c.Valid && r == "ok":
			t.Errorf("%s: accepted, want refused", what)
		}
	}
}

// stageLookup returns the stage or assembler of a test case's key: NAME,
// or KIND/NAME for a name both a stage and an assembler have.
func stageLookup(t *testing.T) func(k string) stage.Stage {
	byKey, byName := map[string]stage.Stage{}, map[string][]stage.Stage{}
	for _, s := range stages() {
		byKey[key(s)] = s
		byName[s.Name] = append(byName[s.Name], s)
	}
	return func(k string) stage.Stage {
		t.Helper()
		if s, ok := byKey[k]; ok {
			return s
		}
		switch found := byName[k]; len(found) {
		case 0:
			t.Fatalf("no stage %s", k)
		case 1:
			return found[0]
		default:
			t.Fatalf("%s is a stage and an assembler: key its cases stages/%s or assemblers/%s", k, k, k)
		}
		return stage.Stage{}
	}
}

// validate runs validateScript on the cases and returns its lines.
func validate(t *testing.T, cases []schemaCase) []string {
	t.Helper()
	in, err := json.Marshal(cases)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("python3", "-c", validateScript)
	cmd.Stdin = bytes.NewReader(in)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, stderr.String())
	}
	results := strings.Split(strings.TrimSuffix(string(out), "\n"), "\n")
	if len(results) != len(cases) {
		t.Fatalf("%d results for %d cases:\n%s", len(results), len(cases), out)
	}
	return results
}

// osbuildSrc is an osbuild checkout, where there is one (see
// internal/jsonschema's conformance test).
const osbuildSrc = "/var/tmp/osbuild-src"

// sameAsOsbuild are stages whose meta.json forge wrote for osbuild's
// options: their schemas must accept what osbuild's accept, and refuse
// what they refuse.
var sameAsOsbuild = []string{"stages/org.osbuild.grub2.inst", "stages/org.osbuild.qemu"}

// TestSchemasAgreeWithOsbuild validates each case of those stages, and
// each of their stages in osbuild's own test manifests, against forge's
// meta.json and against osbuild's, and wants the same answer from both
// (and "ok" for osbuild's manifests).
func TestSchemasAgreeWithOsbuild(t *testing.T) {
	haveJSONSchema(t)
	if _, err := os.Stat(filepath.Join(osbuildSrc, "stages")); err != nil {
		t.Skipf("no osbuild checkout at %s", osbuildSrc)
	}
	lookup := stageLookup(t)
	type origin struct {
		what    string
		fromRun bool // a stage of one of osbuild's manifests
	}
	var cases []schemaCase
	var origins []origin
	add := func(s stage.Stage, version, module, what string, fromRun bool) {
		osb, err := os.ReadFile(filepath.Join(osbuildSrc, string(s.Kind), s.Name+".meta.json"))
		if err != nil {
			t.Fatal(err)
		}
		for _, meta := range [][]byte{s.MetaJSON, osb} {
			cases = append(cases, schemaCase{Name: s.Name, Kind: string(s.Kind), Version: version, Module: json.RawMessage(module), Meta: meta})
		}
		origins = append(origins, origin{what, fromRun})
	}
	for _, k := range sameAsOsbuild {
		s := lookup(k)
		for _, c := range []struct{ valid, invalid []string }{schemaCases[k], schemaCases[s.Name]} {
			for _, opts := range append(append([]string(nil), c.valid...), c.invalid...) {
				for _, v := range []string{"1", "2"} {
					add(s, v, `{"options": `+opts+`}`, fmt.Sprintf("%s format %s %s", k, v, opts), false)
				}
			}
		}
		for _, c := range []struct{ valid, invalid []string }{format2Cases[k], format2Cases[s.Name]} {
			for _, m := range append(append([]string(nil), c.valid...), c.invalid...) {
				add(s, "2", m, fmt.Sprintf("%s %s", k, m), false)
			}
		}
	}
	manifests, _ := filepath.Glob(filepath.Join(osbuildSrc, "test/data/manifests/*.json"))
	more, _ := filepath.Glob(filepath.Join(osbuildSrc, "test/data/manifests/*/*.json"))
	found := 0
	for _, path := range append(manifests, more...) {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var m struct {
			Version   string `json:"version"`
			Pipelines []struct {
				Stages []json.RawMessage `json:"stages"`
			} `json:"pipelines"`
		}
		if json.Unmarshal(b, &m) != nil || m.Version != "2" {
			continue
		}
		for _, p := range m.Pipelines {
			for _, raw := range p.Stages {
				var st map[string]json.RawMessage
				if err := json.Unmarshal(raw, &st); err != nil {
					t.Fatalf("%s: %v", path, err)
				}
				var typ string
				json.Unmarshal(st["type"], &typ)
				k := "stages/" + typ
				if !slices.Contains(sameAsOsbuild, k) {
					continue
				}
				delete(st, "type")
				module, _ := json.Marshal(st)
				add(lookup(k), "2", string(module), fmt.Sprintf("%s in %s", typ, filepath.Base(path)), true)
				found++
			}
		}
	}
	if found == 0 {
		t.Errorf("no %v in %s/test/data/manifests", sameAsOsbuild, osbuildSrc)
	}
	results := validate(t, cases)
	for i, o := range origins {
		forge, osb := results[2*i], results[2*i+1]
		switch {
		case strings.HasPrefix(forge, "bad schema"):
			t.Errorf("%s: forge's meta.json: %s", o.what, forge)
		case (forge == "ok") != (osb == "ok"):
			t.Errorf("%s: forge's schema says %q, osbuild's %q", o.what, forge, osb)
		case o.fromRun && forge != "ok":
			t.Errorf("%s: refused: %s", o.what, forge)
		}
	}
	t.Logf("%d cases and %d stages of osbuild's manifests agree", len(origins)-found, found)
}
