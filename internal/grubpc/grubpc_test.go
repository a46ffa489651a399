package grubpc

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// fakeBootImg is a sector shaped like GRUB's boot.img where it matters.
func fakeBootImg() []byte {
	b := bytes.Repeat([]byte{0xcc}, SectorSize)
	binary.LittleEndian.PutUint64(b[KernelSectorOffset:], 1)
	b[DriveCheckOffset], b[DriveCheckOffset+1] = opJmpShort, 0x05
	b[510], b[511] = 0x55, 0xaa
	return b
}

// fakeCore is a core.img of n bytes whose blocklist covers sectors.
func fakeCore(n int, sectors uint16) []byte {
	c := bytes.Repeat([]byte{0xdd}, n)
	binary.LittleEndian.PutUint64(c[BlocklistOffset:], 2)
	binary.LittleEndian.PutUint16(c[BlocklistOffset+8:], sectors)
	binary.LittleEndian.PutUint16(c[BlocklistOffset+10:], KernelSegment)
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
			binary.LittleEndian.PutUint16(c[BlocklistOffset+10:], 0x1000)
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
	boot, err := os.ReadFile(filepath.Join(Dir, "boot.img"))
	if err != nil {
		t.Fatalf("%v (install grub-pc-bin)", err)
	}
	if _, err := BootCode(boot, 1); err != nil {
		t.Errorf("boot.img: %v", err)
	}
	img := realCore(t, "(,msdos1)/boot/grub", "biosdisk", "part_msdos", "ext2")
	patched, err := PatchCore(img, 1)
	if err != nil {
		t.Fatalf("core.img: %v", err)
	}
	if !bytes.Equal(patched, img) {
		t.Error("patching grub-mkimage's core.img for sector 1 changed it; its default is sector 2 for the rest")
	}
}

// realCore is a core.img made by the grub-mkimage installed here.
func realCore(t *testing.T, prefix string, modules ...string) []byte {
	t.Helper()
	mkimage, err := FindMkimage("grub-mkimage", "grub2-mkimage")
	if err != nil {
		t.Fatalf("%v (install grub-common and grub-pc-bin)", err)
	}
	core, err := Mkimage(context.Background(), runTool, mkimage, Platform, Dir, prefix, modules)
	if err != nil {
		t.Fatal(err)
	}
	return core
}

func runTool(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return errors.New(name + ": " + err.Error() + ": " + string(out))
	}
	return nil
}

// disk is an io.WriterAt over a byte slice that refuses writes past its
// end, as a disk does.
type disk []byte

func (d disk) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(d)) {
		return 0, errors.New("past the end of the disk")
	}
	return copy(d[off:], p), nil
}

func TestInstall(t *testing.T) {
	for _, lba := range []uint64{1, 2048} {
		d := make(disk, 4096*SectorSize)
		// A partition table and disk identifier that must survive.
		copy(d[440:], "IDID\x00\x00")
		d[446+4], d[510], d[511] = 0x83, 0x55, 0xaa
		table := bytes.Clone(d[440:512])
		core := fakeCore(5*SectorSize+100, 5)
		if err := Install(d, fakeBootImg(), core, lba); err != nil {
			t.Fatalf("at %d: %v", lba, err)
		}
		if got := binary.LittleEndian.Uint64(d[KernelSectorOffset:]); got != lba {
			t.Errorf("at %d: boot code loads the core from %d", lba, got)
		}
		if !bytes.Equal(d[440:512], table) {
			t.Errorf("at %d: the disk identifier or partition table changed", lba)
		}
		at := d[lba*SectorSize:]
		if got := binary.LittleEndian.Uint64(at[BlocklistOffset:]); got != lba+1 {
			t.Errorf("at %d: the core loads its rest from %d, want %d", lba, got, lba+1)
		}
		if !bytes.Equal(at[SectorSize:len(core)], core[SectorSize:]) {
			t.Errorf("at %d: the core's rest was not written after its first sector", lba)
		}
	}
	// A refused image writes nothing.
	d := make(disk, 64*SectorSize)
	if err := Install(d, fakeBootImg(), fakeCore(3*SectorSize, 1), 1); err == nil || !strings.Contains(err.Error(), "covers 1 sectors") {
		t.Errorf("short blocklist: %v", err)
	}
	bad := fakeBootImg()
	bad[511] = 0
	if err := Install(d, bad, fakeCore(3*SectorSize, 2), 1); err == nil || !strings.Contains(err.Error(), "boot signature") {
		t.Errorf("bad boot.img: %v", err)
	}
	if !bytes.Equal(d, make(disk, len(d))) {
		t.Error("a refused install wrote to the disk")
	}
	// A write error names what failed.
	if err := Install(make(disk, 2*SectorSize), fakeBootImg(), fakeCore(3*SectorSize, 2), 1); err == nil || !strings.Contains(err.Error(), "write core.img at sector 1") {
		t.Errorf("core past the end: %v", err)
	}
}

func TestCheckGap(t *testing.T) {
	tests := []struct {
		bytes    int
		lba, end int64
		wantErr  string
	}{
		{27030, 1, 2048, ""},
		{2047 * 512, 1, 2048, ""},
		{2047*512 + 1, 1, 2048, "needs 2048 sectors, the gap before the first partition has 2047"},
		{27030, 1, 34, "needs 53 sectors, the gap before the first partition has 33"},
		{512, 0, 2048, "sector 0"},
		{512, 40, 34, "has 0"},
	}
	for _, tt := range tests {
		err := CheckGap(tt.bytes, tt.lba, tt.end)
		if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
			t.Errorf("CheckGap(%d, %d, %d): %v, want %q", tt.bytes, tt.lba, tt.end, err, tt.wantErr)
		}
	}
}

func TestModulesAndPrefix(t *testing.T) {
	tests := []struct {
		label, fs  string
		number     int
		dir        string
		wantMods   string
		wantPrefix string
	}{
		{"dos", "ext4", 1, "/boot/grub", "biosdisk part_msdos ext2", "(,msdos1)/boot/grub"},
		{"mbr", "ext4", 2, "grub", "biosdisk part_msdos ext2", "(,msdos2)/grub"},
		{"gpt", "xfs", 3, "/grub2", "biosdisk part_gpt xfs", "(,gpt3)/grub2"},
		{"gpt", "btrfs", 1, "//boot/grub2", "biosdisk part_gpt btrfs", "(,gpt1)/boot/grub2"},
		{"gpt", "iso9660", 1, "/", "biosdisk part_gpt iso9660", "(,gpt1)/"},
	}
	for _, tt := range tests {
		mods, err := Modules(tt.label, tt.fs)
		if err != nil || strings.Join(mods, " ") != tt.wantMods {
			t.Errorf("Modules(%q, %q) = %v, %v; want %s", tt.label, tt.fs, mods, err, tt.wantMods)
		}
		if p, err := Prefix(tt.label, tt.number, tt.dir); err != nil || p != tt.wantPrefix {
			t.Errorf("Prefix(%q, %d, %q) = %q, %v; want %q", tt.label, tt.number, tt.dir, p, err, tt.wantPrefix)
		}
	}
	if _, err := Modules("apm", "ext4"); err == nil {
		t.Error("Modules took an apm table")
	}
	if _, err := Modules("gpt", "zfs"); err == nil {
		t.Error("Modules took zfs")
	}
	if _, err := Prefix("sun", 1, "/"); err == nil {
		t.Error("Prefix took a sun table")
	}
}

func TestMkimageArgs(t *testing.T) {
	got := MkimageArgs("i386-pc", Dir, "(,gpt3)/grub2", "/tmp/core.img", []string{"biosdisk", "part_gpt", "xfs"})
	want := []string{"--format", "i386-pc", "--directory", "/usr/lib/grub/i386-pc", "--prefix", "(,gpt3)/grub2",
		"--compression", "auto", "--output", "/tmp/core.img", "biosdisk", "part_gpt", "xfs"}
	if !slices.Equal(got, want) {
		t.Errorf("MkimageArgs: %q, want %q", got, want)
	}
}

func TestFindMkimage(t *testing.T) {
	if _, err := FindMkimage("forge-no-such-mkimage", "forge-nor-this"); err == nil ||
		!strings.Contains(err.Error(), "forge-no-such-mkimage or forge-nor-this: not in the build root") {
		t.Errorf("missing: %v", err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skip("no sh here")
	}
	if got, err := FindMkimage("forge-no-such-mkimage", "sh"); err != nil || got != "sh" {
		t.Errorf("second name: %q, %v", got, err)
	}
	if got, err := FindMkimage(sh); err != nil || got != sh {
		t.Errorf("a path: %q, %v", got, err)
	}
}

// TestRealCoreReproducible: grub-mkimage makes the same core image twice,
// which the builds' reproducibility relies on.
func TestRealCoreReproducible(t *testing.T) {
	a := realCore(t, "(,gpt3)/grub2", "biosdisk", "part_gpt", "xfs")
	b := realCore(t, "(,gpt3)/grub2", "biosdisk", "part_gpt", "xfs")
	if !bytes.Equal(a, b) {
		t.Error("two core images from the same modules and prefix differ")
	}
	if _, err := PatchCore(a, 2048); err != nil {
		t.Errorf("core.img for sector 2048: %v", err)
	}
}
