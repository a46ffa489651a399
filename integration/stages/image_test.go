package stages_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/stages/stage"
)

// The image stages of a format-2 image pipeline, run as the builder runs
// them: the libdir's runner runners/org.osbuild.linux executing
// stages/NAME, stdin /dev/null, the arguments in a file (named by
// stage.ArgumentsEnv rather than at /run/osbuild/api/arguments, as no
// buildroot is set up here), on a sparse disk image in a tree.

// grubDir is the host's GRUB for BIOS (grub-pc-bin), which the stage
// takes from its build root: here the host.
const grubDir = "/usr/lib/grub/i386-pc"

// runStage2 runs the format-2 stage name with args (tree, options,
// devices, inputs; meta is added) and returns its output and error.
// Afterwards nothing may be mounted below the tree.
func runStage2(t *testing.T, name string, args map[string]any) (string, error) {
	t.Helper()
	args["meta"] = map[string]any{"id": fmt.Sprintf("%064x", sha256.Sum256([]byte(t.Name())))}
	b, err := json.Marshal(args)
	if err != nil {
		t.Fatal(err)
	}
	argsFile := filepath.Join(t.TempDir(), "arguments")
	must(t, os.WriteFile(argsFile, b, 0o600))
	cmd := exec.CommandContext(context.Background(), filepath.Join(libDir, "runners/org.osbuild.linux"), filepath.Join(libDir, "stages", name))
	cmd.Env = append(os.Environ(), stage.ArgumentsEnv+"="+argsFile)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err = cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s: %v", name, err)
	}
	if tree, _ := args["tree"].(string); tree != "" {
		if m := itest.MountsUnder(tree); len(m) > 0 {
			t.Errorf("%s left mounts below the tree: %q", name, m)
		}
	}
	return out.String(), err
}

func mustRun2(t *testing.T, name string, args map[string]any) string {
	t.Helper()
	out, err := runStage2(t, name, args)
	if err != nil {
		t.Fatalf("%s %v: %v\n%s", name, args["options"], err, out)
	}
	return out
}

// mustFail2 runs a format-2 stage that must exit 1 with a message that
// names the stage and contains want.
func mustFail2(t *testing.T, name string, args map[string]any, want string) {
	t.Helper()
	out, err := runStage2(t, name, args)
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("%s %v: %v, want exit status 1\n%s", name, args["options"], err, out)
	}
	if !strings.Contains(out, name+": ") || !strings.Contains(out, want) {
		t.Errorf("%s %v: output %q, want %q from %s", name, args["options"], out, want, name)
	}
}

// opts is a stage's options from JSON text.
func opts(s string) json.RawMessage { return json.RawMessage(s) }

// partitionedImage makes tree/disk.img with org.osbuild.truncate and
// org.osbuild.sfdisk (the image as device, as sfdisk takes a file too).
func partitionedImage(t *testing.T, tree string, sfdisk string) string {
	t.Helper()
	mustRun2(t, "org.osbuild.truncate", map[string]any{"tree": tree, "options": opts(`{"filename": "disk.img", "size": "64M"}`)})
	img := filepath.Join(tree, "disk.img")
	mustRun2(t, "org.osbuild.sfdisk", map[string]any{"tree": tree, "options": opts(sfdisk),
		"devices": map[string]any{"device": map[string]any{"path": img}}})
	return img
}

// hostCore is the core image the host's grub-mkimage makes for prefix and
// modules, as the stage should have made it.
func hostCore(t *testing.T, prefix string, modules ...string) []byte {
	t.Helper()
	out := filepath.Join(t.TempDir(), "core.img")
	args := append([]string{"--format", "i386-pc", "--directory", grubDir, "--prefix", prefix, "--compression", "auto", "--output", out}, modules...)
	if b, err := exec.Command("grub-mkimage", args...).CombinedOutput(); err != nil {
		t.Fatalf("grub-mkimage: %v\n%s", err, b)
	}
	return read2(t, out)
}

// checkGRUB checks what grub2.inst wrote into img: boot.img's code in
// sector 0 (the core image's LBA at 0x5c, the drive check's jump made
// NOPs, the rest boot.img's) with the disk identifier and partition
// table after it as they were; the core image from sector loc, loading
// its rest from loc+1, byte for byte what grub-mkimage makes otherwise.
func checkGRUB(t *testing.T, img string, tableBefore []byte, loc int64, core []byte) {
	t.Helper()
	disk := read2(t, img)
	boot := read2(t, filepath.Join(grubDir, "boot.img"))
	code := disk[:440]
	if got := binary.LittleEndian.Uint64(code[0x5c:]); got != uint64(loc) {
		t.Errorf("sector 0 loads the core image from sector %d, want %d", got, loc)
	}
	if !bytes.Equal(code[0x66:0x68], []byte{0x90, 0x90}) {
		t.Errorf("the drive check at 0x66 is % x, want two NOPs", code[0x66:0x68])
	}
	if !bytes.Equal(code[:0x5c], boot[:0x5c]) || !bytes.Equal(code[0x64:0x66], boot[0x64:0x66]) || !bytes.Equal(code[0x68:], boot[0x68:440]) {
		t.Error("sector 0 is not boot.img's code")
	}
	if !bytes.Equal(disk[440:512], tableBefore) {
		t.Error("the disk identifier or the partition table changed")
	}
	at := disk[loc*512:]
	if got := binary.LittleEndian.Uint64(at[0x1f4:]); got != uint64(loc+1) {
		t.Errorf("the core image loads its rest from sector %d, want %d", got, loc+1)
	}
	want := bytes.Clone(core)
	binary.LittleEndian.PutUint64(want[0x1f4:], uint64(loc+1))
	if !bytes.Equal(at[:len(want)], want) {
		t.Errorf("sectors from %d do not hold grub-mkimage's core image", loc)
	}
}

func TestGrub2Inst(t *testing.T) {
	for _, tool := range []string{"grub-mkimage", "sfdisk"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%v (scripts/install-deps test installs it)", err)
		}
	}
	t.Run("gpt", func(t *testing.T) {
		// osbuild's layout: a BIOS boot partition at 2048, /boot/grub2 on
		// the third partition (number 2 from 0).
		tree := newTree(t)
		img := partitionedImage(t, tree, `{"label": "gpt", "uuid": "D209C89E-EA5E-4FBD-B161-B461CCE297E0", "partitions": [
			{"start": 2048, "size": 2048, "type": "21686148-6449-6E6F-744E-656564454649"},
			{"start": 4096, "size": 20480, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"},
			{"start": 24576, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4"}]}`)
		before := read2(t, img)[440:512]
		gptBefore := read2(t, img)[512 : 34*512]
		mustRun2(t, "org.osbuild.grub2.inst", map[string]any{"tree": tree, "options": opts(`{"filename": "disk.img", "platform": "i386-pc",
			"location": 2048, "core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4", "binary": "grub-mkimage"},
			"prefix": {"type": "partition", "partlabel": "gpt", "number": 2, "path": "/boot/grub"}}`)})
		checkGRUB(t, img, before, 2048, hostCore(t, "(,gpt3)/boot/grub", "biosdisk", "part_gpt", "ext2"))
		if !bytes.Equal(read2(t, img)[512:34*512], gptBefore) {
			t.Error("the GPT header or partition entries changed")
		}
		if out, err := exec.Command("sfdisk", "--verify", img).CombinedOutput(); err != nil {
			t.Errorf("sfdisk --verify: %v\n%s", err, out)
		}
	})
	t.Run("dos", func(t *testing.T) {
		// Debian's: MBR, the core image in the gap from sector 1, the
		// default grub-mkimage name (grub2-mkimage) absent here.
		tree := newTree(t)
		img := partitionedImage(t, tree, `{"label": "dos", "uuid": "0x14fc63d2", "partitions": [{"start": 2048, "type": "83", "bootable": true}]}`)
		before := read2(t, img)[440:512]
		out := mustRun2(t, "org.osbuild.grub2.inst", map[string]any{"tree": tree, "options": opts(`{"filename": "/disk.img", "platform": "i386-pc",
			"location": 1, "core": {"type": "mkimage", "partlabel": "dos", "filesystem": "ext4"},
			"prefix": {"type": "partition", "partlabel": "dos", "number": 0, "path": "/boot/grub"}}`)})
		checkGRUB(t, img, before, 1, hostCore(t, "(,msdos1)/boot/grub", "biosdisk", "part_msdos", "ext2"))
		if _, err := exec.LookPath("grub2-mkimage"); err != nil && !strings.Contains(out, "+ grub-mkimage ") {
			t.Errorf("without grub2-mkimage the stage did not run grub-mkimage:\n%s", out)
		}
		if fi, err := os.Stat(img); err != nil || fi.Size() != 64<<20 {
			t.Errorf("the image: %v, %v; want 64 MiB", fi, err)
		}
	})
	t.Run("refused", func(t *testing.T) {
		tree := newTree(t)
		// A gap of 33 sectors: too small for the core image.
		img := partitionedImage(t, tree, `{"label": "dos", "uuid": "0x1", "partitions": [{"start": 34, "type": "83"}]}`)
		orig := read2(t, img)
		dos := `{"filename": "disk.img", "platform": "%s", "location": 1, "core": {"type": "mkimage", "partlabel": "dos", "filesystem": "ext4"},
			"prefix": {"type": "partition", "partlabel": "dos", "number": %d, "path": "/boot/grub"}}`
		mustFail2(t, "org.osbuild.grub2.inst", map[string]any{"tree": tree, "options": opts(fmt.Sprintf(dos, "i386-pc", 0))},
			"/disk.img: core.img needs")
		mustFail2(t, "org.osbuild.grub2.inst", map[string]any{"tree": tree, "options": opts(fmt.Sprintf(dos, "x86_64-efi", 0))},
			`option "platform": "x86_64-efi" is not supported: forge installs GRUB for i386-pc (BIOS) only`)
		mustFail2(t, "org.osbuild.grub2.inst", map[string]any{"tree": tree, "options": opts(fmt.Sprintf(dos, "i386-pc", 1))},
			`option "prefix.number": 1 is partition msdos2, which the image does not have`)
		if !bytes.Equal(read2(t, img), orig) {
			t.Error("a refused install changed the image")
		}
		// A link to an image outside the tree is not followed.
		outside := t.TempDir()
		must(t, os.Rename(img, filepath.Join(outside, "disk.img")))
		must(t, os.Symlink(filepath.Join(outside, "disk.img"), img))
		mustFail2(t, "org.osbuild.grub2.inst", map[string]any{"tree": tree, "options": opts(fmt.Sprintf(dos, "i386-pc", 0))},
			`option "filename": /disk.img`)
		if !bytes.Equal(read2(t, filepath.Join(outside, "disk.img")), orig) {
			t.Error("the image outside the tree changed")
		}
	})
}

// qemuImgInfo is qemu-img info's JSON, the fields checked.
type qemuImgInfo struct {
	Format      string `json:"format"`
	VirtualSize int64  `json:"virtual-size"`
}

func imgInfo(t *testing.T, path string) qemuImgInfo {
	t.Helper()
	out, err := exec.Command("qemu-img", "info", "--output=json", path).Output()
	if err != nil {
		t.Fatalf("qemu-img info %s: %v", path, err)
	}
	var info qemuImgInfo
	must(t, json.Unmarshal(out, &info))
	return info
}

func TestQemuStage(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("%v (scripts/install-deps test installs qemu-utils)", err)
	}
	// The image pipeline's tree: a partitioned disk with GRUB and some
	// data, as org.osbuild.copy would leave it.
	image := newTree(t)
	img := partitionedImage(t, image, `{"label": "dos", "uuid": "0x14fc63d2", "partitions": [{"start": 2048, "type": "83", "bootable": true}]}`)
	mustRun2(t, "org.osbuild.grub2.inst", map[string]any{"tree": image, "options": opts(`{"filename": "disk.img", "platform": "i386-pc",
		"location": 1, "core": {"type": "mkimage", "partlabel": "dos", "filesystem": "ext4"}, "prefix": {"path": "/boot/grub"}}`)})
	f, err := os.OpenFile(img, os.O_WRONLY, 0)
	must(t, err)
	for _, off := range []int64{1 << 20, 10 << 20, 40<<20 + 4096} {
		_, err := f.WriteAt(bytes.Repeat([]byte("forge image data "), 10000), off)
		must(t, err)
	}
	must(t, f.Close())
	// osbuild's input: the file of the image pipeline's tree.
	input := map[string]any{"image": map[string]any{"path": image, "data": map[string]any{"files": map[string]any{"disk.img": map[string]any{}}}}}

	convert := func(t *testing.T, options string) (tree string) {
		t.Helper()
		tree = newTree(t)
		mustRun2(t, "org.osbuild.qemu", map[string]any{"tree": tree, "options": opts(options), "inputs": input})
		return tree
	}
	sum := func(t *testing.T, path string) [32]byte {
		t.Helper()
		return sha256.Sum256(read2(t, path))
	}
	for _, tt := range []struct{ name, options string }{
		{"fast", `{"filename": "disk.qcow2", "format": {"type": "qcow2", "compression": false}}`},
		{"osbuild's default", `{"filename": "disk.qcow2", "format": {"type": "qcow2", "compat": "1.1"}}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, b := convert(t, tt.options), convert(t, tt.options)
			out := filepath.Join(a, "disk.qcow2")
			if info := imgInfo(t, out); info.Format != "qcow2" || info.VirtualSize != 64<<20 {
				t.Errorf("qemu-img info: %+v, want qcow2 of 64 MiB", info)
			}
			if b, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "qcow2", img, out).CombinedOutput(); err != nil {
				t.Errorf("qemu-img compare with the raw image: %v\n%s", err, b)
			}
			if sum(t, out) != sum(t, filepath.Join(b, "disk.qcow2")) {
				t.Error("two conversions of the same image gave different bytes")
			}
			if entries, _ := os.ReadDir(a); len(entries) != 1 {
				t.Errorf("the tree holds %d entries, want the image alone", len(entries))
			}
		})
	}
	t.Run("vpc", func(t *testing.T) {
		tree := newTree(t)
		must(t, os.Mkdir(filepath.Join(tree, "images"), 0o755))
		mustRun2(t, "org.osbuild.qemu", map[string]any{"tree": tree, "inputs": input,
			"options": opts(`{"filename": "/images/disk.vhd", "format": {"type": "vpc", "subformat": "dynamic"}}`)})
		out := filepath.Join(tree, "images/disk.vhd")
		if info := imgInfo(t, out); info.Format != "vpc" || info.VirtualSize != 64<<20 {
			t.Errorf("qemu-img info: %+v, want vpc of 64 MiB (force_size)", info)
		}
		if b, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", "vpc", img, out).CombinedOutput(); err != nil {
			t.Errorf("qemu-img compare with the raw image: %v\n%s", err, b)
		}
	})
	t.Run("refused", func(t *testing.T) {
		tree := newTree(t)
		mustFail2(t, "org.osbuild.qemu", map[string]any{"tree": tree, "options": opts(`{"filename": "disk.qcow2", "format": {"type": "qcow2"}}`)},
			`the stage needs an input "image"`)
		mustFail2(t, "org.osbuild.qemu", map[string]any{"tree": tree, "inputs": input,
			"options": opts(`{"filename": "disk.raw", "format": {"type": "raw"}}`)}, `option "format.type": "raw" is not one of`)
		mustFail2(t, "org.osbuild.qemu", map[string]any{"tree": tree, "inputs": input,
			"options": opts(`{"filename": "no/disk.qcow2", "format": {"type": "qcow2"}}`)}, `option "filename": /no/disk.qcow2: its directory /no`)
		if entries, _ := os.ReadDir(tree); len(entries) != 0 {
			t.Errorf("refusals left %d entries in the tree", len(entries))
		}
	})
}
