package qemu

import (
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// fakeBootImg is a sector shaped like GRUB's boot.img where it matters.
func fakeBootImg() []byte {
	b := bytes.Repeat([]byte{0xcc}, sectorSize)
	binary.LittleEndian.PutUint64(b[kernelSectorOffset:], 1)
	b[driveCheckOffset], b[driveCheckOffset+1] = opJmpShort, 0x05
	b[510], b[511] = 0x55, 0xaa
	return b
}

// fakeCore is a core.img of n bytes whose blocklist covers sectors.
func fakeCore(n int, sectors uint16) []byte {
	c := bytes.Repeat([]byte{0xdd}, n)
	binary.LittleEndian.PutUint64(c[blocklistOffset:], 2)
	binary.LittleEndian.PutUint16(c[blocklistOffset+8:], sectors)
	binary.LittleEndian.PutUint16(c[blocklistOffset+10:], kernelSegment)
	return c
}

func TestBootCode(t *testing.T) {
	img := fakeBootImg()
	code, err := BootCode(img, 34)
	if err != nil {
		t.Fatal(err)
	}
	if len(code) != 440 {
		t.Fatalf("%d bytes of boot code, want 440: the rest of sector 0 is the partition table", len(code))
	}
	if got := binary.LittleEndian.Uint64(code[0x5c:]); got != 34 {
		t.Errorf("kernel sector %d, want 34", got)
	}
	if code[0x66] != 0x90 || code[0x67] != 0x90 {
		t.Errorf("drive check % x, want two NOPs", code[0x66:0x68])
	}
	// Nothing else changes.
	want := bytes.Clone(img[:440])
	copy(want[0x5c:], code[0x5c:0x64])
	copy(want[0x66:], []byte{0x90, 0x90})
	if !bytes.Equal(code, want) {
		t.Error("bytes other than the kernel sector and the drive check changed")
	}
	if !bytes.Equal(img, fakeBootImg()) {
		t.Error("BootCode changed its input")
	}

	bad := []struct {
		name string
		img  []byte
		want string
	}{
		{"short", img[:511], "511 bytes"},
		{"no signature", append(bytes.Clone(img[:510]), 0, 0), "boot signature"},
		{"no jump", func() []byte { b := fakeBootImg(); b[0x66] = 0x90; return b }(), "short jump"},
	}
	for _, b := range bad {
		if _, err := BootCode(b.img, 1); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%s: %v, want an error with %q", b.name, err, b.want)
		}
	}
}

func TestPatchCore(t *testing.T) {
	tests := []struct {
		name      string
		core      []byte
		lba       uint64
		wantStart uint64
		wantErr   string
	}{
		{"in the MBR gap", fakeCore(27030, 52), 1, 2, ""},
		{"elsewhere", fakeCore(1024, 1), 2048, 2049, ""},
		{"exactly full sectors", fakeCore(512*3, 2), 1, 2, ""},
		{"blocklist too short", fakeCore(512*3+1, 2), 1, 0, "covers 2 sectors, the image needs 3"},
		{"one sector", fakeCore(512, 0), 1, 0, "too small"},
		{"wrong segment", func() []byte {
			c := fakeCore(2048, 3)
			binary.LittleEndian.PutUint16(c[blocklistOffset+10:], 0x1000)
			return c
		}(), 1, 0, "segment 0x1000"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			orig := bytes.Clone(test.core)
			got, err := PatchCore(test.core, test.lba)
			if test.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), test.wantErr) {
					t.Fatalf("%v, want an error with %q", err, test.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if start := binary.LittleEndian.Uint64(got[0x1f4:]); start != test.wantStart {
				t.Errorf("blocklist start %d, want %d", start, test.wantStart)
			}
			want := bytes.Clone(orig)
			binary.LittleEndian.PutUint64(want[0x1f4:], test.wantStart)
			if !bytes.Equal(got, want) {
				t.Error("bytes other than the blocklist start changed")
			}
			if !bytes.Equal(test.core, orig) {
				t.Error("PatchCore changed its input")
			}
		})
	}
}

// TestRealGRUBImages: the checks accept the images of the GRUB installed
// here, and grub-mkimage's core.img already loads from sector 2, which is
// what installing at sector 1 sets.
func TestRealGRUBImages(t *testing.T) {
	boot, err := os.ReadFile(filepath.Join(hostGRUBDir, "boot.img"))
	if err != nil {
		t.Fatalf("%v (install grub-pc-bin)", err)
	}
	if _, err := BootCode(boot, coreSector); err != nil {
		t.Errorf("boot.img: %v", err)
	}
	core := filepath.Join(t.TempDir(), "core.img")
	out, err := exec.Command("grub-mkimage", "--format", "i386-pc", "--directory", hostGRUBDir, "--prefix", "(,msdos1)/boot/grub",
		"--output", core, "biosdisk", "part_msdos", "ext2").CombinedOutput()
	if err != nil {
		t.Fatalf("grub-mkimage: %v\n%s", err, out)
	}
	img, err := os.ReadFile(core)
	if err != nil {
		t.Fatal(err)
	}
	patched, err := PatchCore(img, coreSector)
	if err != nil {
		t.Fatalf("core.img: %v", err)
	}
	if !bytes.Equal(patched, img) {
		t.Error("patching grub-mkimage's core.img for sector 1 changed it; its default is sector 2 for the rest")
	}
}

func TestPlanGRUB(t *testing.T) {
	root := Partition{Type: "83", Filesystem: &Filesystem{Type: "ext4", UUID: testUUID, Mountpoint: "/"}}
	boot := Partition{Type: "83", Filesystem: &Filesystem{Type: "ext4", UUID: testUUID2, Mountpoint: "/boot"}}
	empty := Partition{Type: "0c"}
	tests := []struct {
		name       string
		dirs       []string
		files      []string
		parts      []Partition
		wantPrefix string
		wantInTree bool
	}{
		{"root only", []string{"boot/grub"}, nil, []Partition{root}, "(,msdos1)/boot/grub", false},
		{"separate boot", []string{"boot/grub"}, nil, []Partition{boot, root}, "(,msdos1)/grub", false},
		{"boot second", []string{"boot/grub"}, nil, []Partition{empty, root, boot}, "(,msdos3)/grub", false},
		{"grub2 only", []string{"boot/grub2"}, nil, []Partition{empty, root}, "(,msdos2)/boot/grub2", false},
		{"both grub dirs", []string{"boot/grub", "boot/grub2"}, nil, []Partition{root}, "(,msdos1)/boot/grub", false},
		{"tree has the images", []string{"boot/grub/i386-pc"}, []string{"boot/grub/i386-pc/kernel.img"}, []Partition{root}, "(,msdos1)/boot/grub", true},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			tree := t.TempDir()
			for _, d := range test.dirs {
				if err := os.MkdirAll(filepath.Join(tree, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range test.files {
				if err := os.WriteFile(filepath.Join(tree, f), nil, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			plan, err := planGRUB(tree, Options{Partitions: test.parts})
			if err != nil {
				t.Fatal(err)
			}
			if plan.prefix != test.wantPrefix {
				t.Errorf("prefix %q, want %q", plan.prefix, test.wantPrefix)
			}
			wantDir := hostGRUBDir
			if test.wantInTree {
				wantDir = filepath.Join(tree, "boot/grub/i386-pc")
			}
			if plan.imageDir != wantDir {
				t.Errorf("images from %s, want %s", plan.imageDir, wantDir)
			}
			if strings.Join(plan.modules, " ") != "biosdisk part_msdos ext2" {
				t.Errorf("modules %v", plan.modules)
			}
		})
	}
}

// TestInstallGRUBGap: a core.img that does not fit before the first
// partition is refused before anything is written.
func TestInstallGRUBGap(t *testing.T) {
	if _, err := findMkimage(); err != nil {
		t.Fatalf("%v (install grub-common)", err)
	}
	img, err := os.Create(filepath.Join(t.TempDir(), "disk"))
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := img.Truncate(1 << 20); err != nil {
		t.Fatal(err)
	}
	plan := grubPlan{imageDir: hostGRUBDir, prefix: "(,msdos1)/boot/grub", modules: []string{"biosdisk", "part_msdos", "ext2"}}
	err = installGRUB(context.Background(), img, &Layout{Partitions: []Extent{{Start: 34, Size: 100}}}, plan)
	if err == nil || !strings.Contains(err.Error(), "the gap before the first partition has 33") {
		t.Errorf("installGRUB with a 33-sector gap: %v", err)
	}
	head := make([]byte, 64<<10)
	if _, err := img.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(head, make([]byte, len(head))) {
		t.Error("something was written before the refusal")
	}
}
