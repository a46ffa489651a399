package grub2inst

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"

	"github.com/forge-build/forge/internal/grubpc"
	"github.com/forge-build/forge/loopd/ptable"
	"github.com/forge-build/forge/stages/stage"
)

// osbuildGPT is the options of osbuild's test manifests (fedora-boot):
// the core in a BIOS boot partition at 2048, the prefix on partition 2
// (from 0).
const osbuildGPT = `{"filename": "disk.img", "platform": "i386-pc", "location": 2048,
	"core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "ext4"},
	"prefix": {"type": "partition", "partlabel": "gpt", "number": 2, "path": "/grub2"}}`

// debianDOS is a Debian disk: MBR, the core in the gap, /boot/grub on
// the first partition.
const debianDOS = `{"filename": "/disk.img", "platform": "i386-pc", "location": 1,
	"core": {"type": "mkimage", "partlabel": "dos", "filesystem": "ext4", "binary": "grub-mkimage"},
	"prefix": {"type": "partition", "partlabel": "dos", "number": 0, "path": "/boot/grub"}}`

func TestParse(t *testing.T) {
	tests := []struct {
		name, raw string
		want      parsed
		wantErr   string
	}{
		{"osbuild's gpt", osbuildGPT, parsed{name: "disk.img", location: 2048, format: "i386-pc", partlabel: "gpt",
			modules: []string{"biosdisk", "part_gpt", "ext2"}, prefix: "(,gpt3)/grub2", prefixPart: 3, prefixLabel: "gpt",
			binaries: []string{"grub2-mkimage", "grub-mkimage"}}, ""},
		{"debian's dos", debianDOS, parsed{name: "disk.img", location: 1, format: "i386-pc", partlabel: "dos",
			modules: []string{"biosdisk", "part_msdos", "ext2"}, prefix: "(,msdos1)/boot/grub", prefixPart: 1, prefixLabel: "dos",
			binaries: []string{"grub-mkimage"}, binaryGiven: true}, ""},
		{"xfs, path prefix, sector size", `{"filename": "images/d.img", "platform": "i386-pc", "location": 34, "sector-size": 512,
			"core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "xfs"}, "prefix": {"path": "/boot/grub2"}}`,
			parsed{name: "images/d.img", location: 34, format: "i386-pc", partlabel: "gpt", modules: []string{"biosdisk", "part_gpt", "xfs"},
				prefix: "/boot/grub2", binaries: []string{"grub2-mkimage", "grub-mkimage"}}, ""},
		{"el torito", `{"filename": "images/eltorito.img", "platform": "i386-pc",
			"core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "iso9660"}, "prefix": {"path": "/boot/grub2"}}`,
			parsed{name: "images/eltorito.img", format: "i386-pc-eltorito", partlabel: "gpt", modules: []string{"biosdisk", "part_gpt", "iso9660"},
				prefix: "/boot/grub2", binaries: []string{"grub2-mkimage", "grub-mkimage"}}, ""},
		{"number as 2.0", strings.Replace(osbuildGPT, `"number": 2`, `"number": 2.0`, 1), parsed{name: "disk.img", location: 2048,
			format: "i386-pc", partlabel: "gpt", modules: []string{"biosdisk", "part_gpt", "ext2"}, prefix: "(,gpt3)/grub2",
			prefixPart: 3, prefixLabel: "gpt", binaries: []string{"grub2-mkimage", "grub-mkimage"}}, ""},

		{"no filename", `{"platform": "i386-pc", "core": {}, "prefix": {}}`, parsed{}, `option "filename": is required`},
		{"no platform", `{"filename": "d", "core": {}, "prefix": {}}`, parsed{}, `option "platform": is required`},
		{"no core", `{"filename": "d", "platform": "i386-pc", "prefix": {}}`, parsed{}, `option "core": is required`},
		{"no prefix", `{"filename": "d", "platform": "i386-pc", "core": {}}`, parsed{}, `option "prefix": is required`},
		{"efi platform", strings.Replace(osbuildGPT, "i386-pc", "x86_64-efi", 1), parsed{},
			`option "platform": "x86_64-efi" is not supported: forge installs GRUB for i386-pc (BIOS) only`},
		{"ppc", strings.Replace(osbuildGPT, "i386-pc", "powerpc-ieee1275", 1), parsed{}, `option "platform": "powerpc-ieee1275" is not supported`},
		{"4k sectors", strings.Replace(osbuildGPT, `"location"`, `"sector-size": 4096, "location"`, 1), parsed{}, `option "sector-size": 4096 is not supported`},
		{"negative location", strings.Replace(osbuildGPT, "2048", "-1", 1), parsed{}, `option "location": -1 is negative`},
		{"location not an integer", strings.Replace(osbuildGPT, "2048", "2048.5", 1), parsed{}, `option "location": want integer`},
		{"filename with ..", strings.Replace(osbuildGPT, `"disk.img"`, `"../disk.img"`, 1), parsed{}, `option "filename": "../disk.img" contains ".."`},
		{"filename empty", strings.Replace(osbuildGPT, `"disk.img"`, `"/"`, 1), parsed{}, `option "filename": "/" names no file`},
		{"unknown option", strings.Replace(osbuildGPT, `"location"`, `"device": "x", "location"`, 1), parsed{}, `unknown option "device"`},
		{"core type", strings.Replace(osbuildGPT, `"mkimage"`, `"prebuilt"`, 1), parsed{}, `option "core.type": "prebuilt" is not "mkimage"`},
		{"core partlabel", strings.Replace(osbuildGPT, `"partlabel": "gpt", "filesystem"`, `"partlabel": "mbr", "filesystem"`, 1), parsed{},
			`option "core.partlabel": "mbr" is not one of gpt, dos`},
		{"core filesystem", strings.Replace(osbuildGPT, `"ext4"`, `"vfat"`, 1), parsed{}, `option "core.filesystem": "vfat" is not one of`},
		{"core without filesystem", strings.Replace(osbuildGPT, `, "filesystem": "ext4"`, ``, 1), parsed{}, `option "core.filesystem": is required`},
		{"core unknown key", strings.Replace(osbuildGPT, `"filesystem": "ext4"`, `"filesystem": "ext4", "modules": []`, 1), parsed{}, `unknown option "modules"`},
		{"empty binary", strings.Replace(osbuildGPT, `"filesystem": "ext4"`, `"filesystem": "ext4", "binary": ""`, 1), parsed{}, `option "core.binary": "" names no program`},
		{"prefix number missing", strings.Replace(osbuildGPT, `"number": 2, `, ``, 1), parsed{}, `option "prefix.number": is required`},
		{"prefix type missing", strings.Replace(osbuildGPT, `"type": "partition", `, ``, 1), parsed{}, `option "prefix.type": is required`},
		{"prefix type", strings.Replace(osbuildGPT, `"partition"`, `"disk"`, 1), parsed{}, `option "prefix.type": "disk" is not "partition"`},
		{"prefix fractional number", strings.Replace(osbuildGPT, `"number": 2`, `"number": 1.5`, 1), parsed{}, `option "prefix.number": 1.5 is not a partition number`},
		{"prefix negative number", strings.Replace(osbuildGPT, `"number": 2`, `"number": -1`, 1), parsed{}, `option "prefix.number": -1 is not`},
		{"prefix path without /", strings.Replace(osbuildGPT, `"/grub2"`, `"grub2"`, 1), parsed{}, `option "prefix.path": "grub2" has no "/"`},
		{"prefix path control", strings.Replace(osbuildGPT, `"/grub2"`, `"/grub2\n"`, 1), parsed{}, `option "prefix.path": "/grub2\n" contains the control character`},
		{"el torito at a location", `{"filename": "e.img", "platform": "i386-pc", "location": 1,
			"core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "iso9660"}, "prefix": {"path": "/boot/grub2"}}`, parsed{},
			`option "location": an El Torito core image`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parse([]byte(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("parsed\n%+v\nwant\n%+v", got, tt.want)
			}
		})
	}
}

// gptDisk and dosDisk are tables as ptable reads them, 512-byte sectors.
func gptDisk(firstUsable int64, parts ...ptable.Partition) disk {
	return disk{sectors: 1 << 21, table: &ptable.Table{Kind: ptable.GPT, Partitions: parts}, firstUsable: firstUsable}
}

func dosDisk(parts ...ptable.Partition) disk {
	return disk{sectors: 1 << 21, table: &ptable.Table{Kind: ptable.DOS, Partitions: parts}}
}

func part(number int, start, size int64, typ string) ptable.Partition {
	return ptable.Partition{Number: number, Start: start * 512, Size: size * 512, Type: typ}
}

const linuxGUID = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"

func TestCheckPlacement(t *testing.T) {
	biosBoot := part(1, 2048, 2048, "21686148-6449-6e6f-744e-656564454649")
	tests := []struct {
		name    string
		d       disk
		loc, n  int64
		wantErr string
	}{
		{"dos gap", dosDisk(part(1, 2048, 100000, "0x83")), 1, 53, ""},
		{"dos gap, exactly full", dosDisk(part(1, 2048, 100000, "0x83")), 1, 2047, ""},
		{"dos gap too small", dosDisk(part(1, 63, 100000, "0x83")), 1, 63, "needs 63 sectors, the gap before the first partition has 62"},
		{"dos sector 0", dosDisk(part(1, 2048, 100000, "0x83")), 0, 53, ""}, // location 0 never gets here; see below
		{"dos second partition first in the table", dosDisk(part(1, 4096, 1000, "0x83"), part(2, 2048, 1000, "0x0c")), 1, 2048,
			"the gap before the first partition has 2047"},
		{"dos into a partition", dosDisk(part(1, 2048, 100000, "0x83")), 2048, 53, "inside partition 1 (sectors 2048-102047, type 0x83), which is not a GPT BIOS boot partition"},
		{"dos overlapping", dosDisk(part(1, 2048, 100000, "0x83")), 2000, 53, "needs 53 sectors, the gap before the first partition has 48"},
		{"dos after the partitions", dosDisk(part(1, 2048, 1000, "0x83")), 5000, 53, "neither in the gap before the first partition (sector 2048) nor in a GPT BIOS boot partition"},
		{"dos past the end", dosDisk(), 1<<21 - 10, 53, "ends past the image's last sector, 2097151"},
		{"gpt bios boot", gptDisk(34, biosBoot, part(2, 4096, 1000, linuxGUID)), 2048, 53, ""},
		{"gpt bios boot not first (el7)", gptDisk(34, part(1, 2048, 1024000, "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"),
			part(3, 2050048, 4096, BIOSBootGUID)), 2050048, 53, ""},
		{"gpt bios boot too small", gptDisk(34, part(1, 2048, 40, BIOSBootGUID), part(2, 2088, 1000, linuxGUID)), 2048, 53,
			"does not fit BIOS boot partition 1 (sectors 2048-2087): 40 sectors from sector 2048 are left in it"},
		{"gpt across partitions", gptDisk(34, part(1, 2048, 40, linuxGUID), part(2, 2088, 1000, BIOSBootGUID)), 2080, 53,
			"overlaps partition 1 (sectors 2048-2087)"},
		{"gpt into a linux partition", gptDisk(34, part(1, 2048, 4096, linuxGUID)), 2048, 53, "which is not a GPT BIOS boot partition"},
		{"gpt gap after the entries", gptDisk(34, part(1, 2048, 4096, linuxGUID)), 34, 53, ""},
		{"gpt over the entries", gptDisk(34, part(1, 2048, 4096, linuxGUID)), 1, 53,
			"would overwrite the MBR and the GPT's header and partition entries (sectors 0-33)"},
		{"no partitions", dosDisk(), 1, 53, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.loc == 0 {
				// The stage writes the core image as the file then; the
				// check still refuses sector 0.
				tt.wantErr = "sector 0"
			}
			err := checkPlacement(tt.d, tt.loc, tt.n)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("%v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestCheckTable(t *testing.T) {
	gpt, dos := gptDisk(34, part(1, 2048, 2048, BIOSBootGUID), part(3, 4096, 1000, linuxGUID)), dosDisk(part(1, 2048, 1000, "0x83"))
	p := func(label string, prefixPart int, prefixLabel string) parsed {
		return parsed{partlabel: label, prefixPart: prefixPart, prefixLabel: prefixLabel}
	}
	tests := []struct {
		name    string
		d       disk
		p       parsed
		wantErr string
	}{
		{"gpt", gpt, p("gpt", 3, "gpt"), ""},
		{"gpt, path prefix", gpt, p("gpt", 0, ""), ""},
		{"dos", dos, p("dos", 1, "dos"), ""},
		{"no table", disk{table: &ptable.Table{Kind: ptable.None}}, p("dos", 1, "dos"), "no partition table"},
		{"core reads dos on gpt", gpt, p("dos", 3, "gpt"), `option "core.partlabel": "dos", but the image has a gpt partition table`},
		{"prefix on dos on gpt", gpt, p("gpt", 3, "dos"), `option "prefix.partlabel": "dos", but the image has a gpt partition table`},
		{"prefix partition missing", gpt, p("gpt", 2, "gpt"), `option "prefix.number": 1 is partition gpt2, which the image does not have (its partitions are numbers 0, 2, counted from 0)`},
		{"prefix on an empty table", dosDisk(), p("dos", 1, "dos"), `its partitions are numbers none`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkTable(tt.d, tt.p)
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("%v, want %q", err, tt.wantErr)
			}
		})
	}
}

// newImage makes a sparse image of size bytes in dir, partitioned by
// sfdisk with script.
func newImage(t *testing.T, path string, size int64, script string) {
	t.Helper()
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("no sfdisk here")
	}
	if err := os.WriteFile(path, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, size); err != nil {
		t.Fatal(err)
	}
	if script == "" {
		return
	}
	cmd := exec.Command("sfdisk", "-q", "--no-tell-kernel", path)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
}

func haveGRUB(t *testing.T) {
	t.Helper()
	if _, err := grubpc.FindMkimage(defaultBinaries...); err != nil {
		t.Fatalf("%v (install grub-common)", err)
	}
	if _, err := os.Stat(filepath.Join(grubDir, "boot.img")); err != nil {
		t.Fatalf("%v (install grub-pc-bin)", err)
	}
}

func run(tree, options string) error {
	return Run(context.Background(), stage.Args{Tree: tree, Format: 2, Options: []byte(options), Meta: stage.Meta{ID: "x"}})
}

// checkInstalled checks that sector 0 of img holds GRUB's boot code set
// to load the core image from loc, and that the core image there is
// grub-mkimage's for prefix and modules, set to load its rest from the
// sectors after loc.
func checkInstalled(t *testing.T, img string, loc int64, prefix string, modules ...string) {
	t.Helper()
	b, err := os.ReadFile(img)
	if err != nil {
		t.Fatal(err)
	}
	boot, err := os.ReadFile(filepath.Join(grubDir, "boot.img"))
	if err != nil {
		t.Fatal(err)
	}
	code, err := grubpc.BootCode(boot, uint64(loc))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(b[:grubpc.BootCodeSize], code) {
		t.Error("sector 0 does not start with GRUB's boot code set for the core image")
	}
	if got := binary.LittleEndian.Uint64(b[grubpc.KernelSectorOffset:]); got != uint64(loc) {
		t.Errorf("the boot code loads the core image from sector %d, want %d", got, loc)
	}
	mkimage, err := grubpc.FindMkimage(defaultBinaries...)
	if err != nil {
		t.Fatal(err)
	}
	run := func(ctx context.Context, name string, args ...string) error {
		return exec.CommandContext(ctx, name, args...).Run()
	}
	want, err := grubpc.Mkimage(context.Background(), run, mkimage, grubpc.Platform, grubDir, prefix, modules)
	if err != nil {
		t.Fatal(err)
	}
	if want, err = grubpc.PatchCore(want, uint64(loc)); err != nil {
		t.Fatal(err)
	}
	if got := b[loc*512 : loc*512+int64(len(want))]; !bytes.Equal(got, want) {
		t.Errorf("sectors from %d do not hold the core image for %s %v", loc, prefix, modules)
	}
	if got := binary.LittleEndian.Uint64(b[loc*512+grubpc.BlocklistOffset:]); got != uint64(loc+1) {
		t.Errorf("the core image loads its rest from sector %d, want %d", got, loc+1)
	}
}

func TestRun(t *testing.T) {
	haveGRUB(t)
	tree := t.TempDir()
	img := filepath.Join(tree, "disk.img")

	// GPT with a BIOS boot partition, as osbuild's manifests make it.
	newImage(t, img, 64<<20, "label: gpt\nstart=2048, size=2048, type=21686148-6449-6E6F-744E-656564454649\nstart=4096, size=4096, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B\nstart=8192, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4\n")
	table := func() []byte {
		b, _ := os.ReadFile(img)
		return bytes.Clone(b[440 : 34*512])
	}
	before := table()
	if err := run(tree, osbuildGPT); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, img, 2048, "(,gpt3)/grub2", "biosdisk", "part_gpt", "ext2")
	if !bytes.Equal(table(), before) {
		t.Error("the protective MBR's table or the GPT changed")
	}
	if out, err := exec.Command("sfdisk", "--verify", img).CombinedOutput(); err != nil {
		t.Errorf("sfdisk --verify: %v\n%s", err, out)
	}

	// MBR, the core in the gap from sector 1.
	newImage(t, img, 64<<20, "label: dos\nlabel-id: 0x14fc63d2\nstart=2048, type=83, bootable\n")
	before = table()[:72]
	if err := run(tree, debianDOS); err != nil {
		t.Fatal(err)
	}
	checkInstalled(t, img, 1, "(,msdos1)/boot/grub", "biosdisk", "part_msdos", "ext2")
	if !bytes.Equal(table()[:72], before) {
		t.Error("the disk identifier or the partition table changed")
	}
	if fi, _ := os.Stat(img); fi.Size() != 64<<20 {
		t.Errorf("the image is %d bytes now", fi.Size())
	}

	// Refusals leave the image as it was.
	refuse := func(name, options, want string) {
		t.Helper()
		orig, _ := os.ReadFile(img)
		if err := run(tree, options); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", name, err, want)
		}
		if now, _ := os.ReadFile(img); !bytes.Equal(now, orig) {
			t.Errorf("%s: the image changed", name)
		}
	}
	newImage(t, img, 64<<20, "label: dos\nstart=34, type=83\n")
	refuse("small gap", debianDOS, "/disk.img: core.img needs 53 sectors, the gap before the first partition has 33")
	refuse("gpt options on dos", osbuildGPT, `/disk.img: option "core.partlabel": "gpt", but the image has a dos partition table`)
	newImage(t, img, 64<<20, "")
	refuse("no table", debianDOS, "/disk.img: it has no partition table")
	refuse("missing binary", strings.Replace(debianDOS, `"grub-mkimage"`, `"forge-no-such-mkimage"`, 1), `option "core.binary": forge-no-such-mkimage: not in the build root`)

	// Not through a link out of the tree, nor on anything but a file.
	outside := t.TempDir()
	newImage(t, filepath.Join(outside, "disk.img"), 64<<20, "label: dos\nstart=2048, type=83\n")
	os.Remove(img)
	os.Symlink(filepath.Join(outside, "disk.img"), img)
	orig, _ := os.ReadFile(filepath.Join(outside, "disk.img"))
	if err := run(tree, debianDOS); err == nil || !strings.Contains(err.Error(), `option "filename": /disk.img`) {
		t.Errorf("through an absolute link out of the tree: %v", err)
	}
	os.Remove(img)
	os.Symlink("../"+filepath.Base(outside)+"/disk.img", img)
	if err := run(tree, debianDOS); err == nil || !strings.Contains(err.Error(), `option "filename": /disk.img`) {
		t.Errorf("through a relative link out of the tree: %v", err)
	}
	if now, _ := os.ReadFile(filepath.Join(outside, "disk.img")); !bytes.Equal(now, orig) {
		t.Error("the image outside the tree changed")
	}
	os.Remove(img)
	os.Mkdir(img, 0o755)
	if err := run(tree, debianDOS); err == nil || !strings.Contains(err.Error(), `option "filename": /disk.img: is a directory`) {
		t.Errorf("a directory: %v", err)
	}
	os.Remove(img)
	syscall.Mkfifo(img, 0o644)
	if err := run(tree, debianDOS); err == nil || !strings.Contains(err.Error(), `option "filename"`) {
		t.Errorf("a FIFO: %v", err)
	}
	os.Remove(img)
	if err := run(tree, debianDOS); err == nil || !strings.Contains(err.Error(), `option "filename": /disk.img: no such file`) {
		t.Errorf("missing: %v", err)
	}
}

// TestRunWithoutLocation: the file becomes the core image, as osbuild's
// stage does for a CD's El Torito image.
func TestRunWithoutLocation(t *testing.T) {
	haveGRUB(t)
	tree := t.TempDir()
	os.Mkdir(filepath.Join(tree, "images"), 0o755)
	os.WriteFile(filepath.Join(tree, "images/eltorito.img"), bytes.Repeat([]byte("old"), 100000), 0o644)
	opts := `{"filename": "images/eltorito.img", "platform": "i386-pc",
		"core": {"type": "mkimage", "partlabel": "gpt", "filesystem": "iso9660"}, "prefix": {"path": "/boot/grub2"}}`
	if err := run(tree, opts); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(tree, "images/eltorito.img"))
	if err != nil {
		t.Fatal(err)
	}
	cdboot, err := os.ReadFile(filepath.Join(grubDir, "cdboot.img"))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < len(cdboot) || !bytes.Equal(b[:len(cdboot)], cdboot) || bytes.Contains(b, []byte("oldold")) {
		t.Errorf("images/eltorito.img (%d bytes) is not an El Torito core image alone", len(b))
	}
	// A new file, for a disk core image.
	opts = strings.Replace(strings.Replace(opts, "eltorito", "core", 1), "iso9660", "ext4", 1)
	if err := run(tree, opts); err != nil {
		t.Fatal(err)
	}
	b, err = os.ReadFile(filepath.Join(tree, "images/core.img"))
	if err != nil {
		t.Fatal(err)
	}
	diskboot, _ := os.ReadFile(filepath.Join(grubDir, "diskboot.img"))
	if len(b) < 1024 || !bytes.Equal(b[:grubpc.BlocklistOffset], diskboot[:grubpc.BlocklistOffset]) {
		t.Errorf("images/core.img (%d bytes) is not an i386-pc core image", len(b))
	}
}
