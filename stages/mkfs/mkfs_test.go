package mkfs

import (
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

func TestExt4(t *testing.T) {
	epoch := int64(1700000000)
	tests := []struct {
		name, raw string
		epoch     *int64
		want      string // the command line, or the error
		wantErr   bool
	}{
		{"minimal", `{"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75"}`, nil,
			"mkfs.ext4 -U 6e4ff95f-f662-45ee-a82a-bdf44a2d0b75 /dev/loop3", false},
		{"everything", `{"uuid": "6E4FF95F-F662-45EE-A82A-BDF44A2D0B75", "label": "root", "lazy_init": true,
			"verity": true, "orphan_file": false, "metadata_csum_seed": true}`, &epoch,
			"E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -U 6E4FF95F-F662-45EE-A82A-BDF44A2D0B75 -L root " +
				"-O verity -O ^orphan_file -O metadata_csum_seed -E hash_seed=6e4ff95f-f662-45ee-a82a-bdf44a2d0b75,lazy_itable_init=0,lazy_journal_init=0 /dev/loop3", false},
		{"epoch, random UUID", `{"uuid": "random"}`, &epoch,
			"E2FSPROGS_FAKE_TIME=1700000000 mkfs.ext4 -U random -E lazy_itable_init=0,lazy_journal_init=0 /dev/loop3", false},
		{"lazy off, features off", `{"uuid": "random", "lazy_init": false, "verity": false}`, nil,
			"mkfs.ext4 -U random -E lazy_itable_init=0 -E lazy_journal_init=0 -O ^verity /dev/loop3", false},
		{"empty label", `{"uuid": "clear", "label": ""}`, nil, "mkfs.ext4 -U clear /dev/loop3", false},
		{"label of 16", `{"uuid": "time", "label": "0123456789abcdef"}`, nil, "mkfs.ext4 -U time -L 0123456789abcdef /dev/loop3", false},
		{"no uuid", `{"label": "root"}`, nil, `option "uuid": is required`, true},
		{"bad uuid", `{"uuid": "-F"}`, nil, `option "uuid": "-F" is not a UUID`, true},
		{"long label", `{"uuid": "clear", "label": "0123456789abcdefg"}`, nil, `option "label": "0123456789abcdefg" is longer than 16 bytes`, true},
		{"control in label", `{"uuid": "clear", "label": "a\nb"}`, nil, `option "label"`, true},
		{"osbuild's old split options", `{"uuid": "clear", "lazy_itable_init": true}`, nil, `unknown option "lazy_itable_init"`, true},
		{"wrong type", `{"uuid": "clear", "verity": "yes"}`, nil, `option "verity": want bool, got string`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseExt4([]byte(tt.raw))
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := ext4Command(o, "/dev/loop3", tt.epoch).String(); got != tt.want {
				t.Errorf("command\n %s\nwant\n %s", got, tt.want)
			}
		})
	}
}

func TestFAT(t *testing.T) {
	tests := []struct {
		name, raw string
		want      string
		wantErr   bool
	}{
		{"minimal", `{"volid": "7B7795E7"}`, "mkfs.fat -I -i 7B7795E7 /dev/loop4", false},
		{"everything", `{"volid": "0x7b7795e7", "label": "EFI-SYSTEM", "fat-size": 16, "geometry": {"heads": 255, "sectors-per-track": 63}}`,
			"mkfs.fat -I -i 0x7b7795e7 -n EFI-SYSTEM -F 16 -g 255/63 /dev/loop4", false},
		{"no volid", `{"label": "EFI"}`, `option "volid": is required`, true},
		{"dashed volid", `{"volid": "7B77-95E7"}`, `option "volid": "7B77-95E7" is not a volume ID`, true},
		{"long volid", `{"volid": "123456789"}`, `option "volid"`, true},
		{"long label", `{"volid": "1", "label": "EFI-SYSTEM-X"}`, `option "label": "EFI-SYSTEM-X" is longer than 11 bytes`, true},
		{"fat size", `{"volid": "1", "fat-size": 24}`, `option "fat-size": 24 is not 12, 16 or 32`, true},
		{"geometry without heads", `{"volid": "1", "geometry": {"sectors-per-track": 63}}`, `option "geometry.heads": is required`, true},
		{"geometry without sectors", `{"volid": "1", "geometry": {"heads": 16}}`, `option "geometry.sectors-per-track": is required`, true},
		{"geometry zero", `{"volid": "1", "geometry": {"heads": 0, "sectors-per-track": 63}}`, `option "geometry.heads": 0`, true},
		{"geometry extra", `{"volid": "1", "geometry": {"heads": 1, "sectors-per-track": 1, "cylinders": 2}}`, `unknown option "cylinders"`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseFAT([]byte(tt.raw))
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v, want %q", err, tt.want)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := fatCommand(o, "/dev/loop4").String(); got != tt.want {
				t.Errorf("command\n %s\nwant\n %s", got, tt.want)
			}
		})
	}
}

// TestNeedsDevice: without the device "device" the stages fail before
// running anything.
func TestNeedsDevice(t *testing.T) {
	for _, tt := range []struct {
		name, options string
		run           stage.Func
	}{{"ext4", `{"uuid": "clear"}`, RunExt4}, {"fat", `{"volid": "1"}`, RunFAT}} {
		a := stage.Args{Tree: "/t", Format: 2, Options: []byte(tt.options)}
		if err := tt.run(context.Background(), a); err == nil || !strings.Contains(err.Error(), `needs a device "device"`) {
			t.Errorf("%s: %v", tt.name, err)
		}
	}
}

func TestEpoch(t *testing.T) {
	t.Setenv("SOURCE_DATE_EPOCH", "")
	if e := epoch(stage.Args{}); e != nil {
		t.Errorf("no epoch: %d", *e)
	}
	t.Setenv("SOURCE_DATE_EPOCH", "12")
	if e := epoch(stage.Args{}); e == nil || *e != 12 {
		t.Errorf("SOURCE_DATE_EPOCH=12: %v", e)
	}
}

// imageFile is a sparse file of size bytes, the "device" of a test run.
func imageFile(t *testing.T, size int64) string {
	t.Helper()
	img := filepath.Join(t.TempDir(), "fs.img")
	if err := os.WriteFile(img, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(img, size); err != nil {
		t.Fatal(err)
	}
	return img
}

// TestRunOnFile makes the filesystems in image files with the host's
// tools, when it has them (no root needed), and reads back what the
// options asked for.
func TestRunOnFile(t *testing.T) {
	t.Run("ext4", func(t *testing.T) {
		for _, tool := range []string{"mkfs.ext4", "dumpe2fs"} {
			if _, err := exec.LookPath(tool); err != nil {
				t.Skipf("no %s here", tool)
			}
		}
		img := imageFile(t, 64<<20)
		a := stage.Args{Tree: "/t", Format: 2, Devices: map[string]stage.Device{"device": {Path: img}},
			Options: []byte(`{"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "label": "root", "orphan_file": false}`)}
		epoch := int64(1700000000)
		a.Meta.SourceEpoch = &epoch
		if err := RunExt4(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("dumpe2fs", "-h", img)
		cmd.Env = append(os.Environ(), "TZ=UTC")
		out, err := cmd.Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{
			"Filesystem UUID:          6e4ff95f-f662-45ee-a82a-bdf44a2d0b75",
			"Filesystem volume name:   root",
			// 1700000000 is 2023-11-14 22:13:20 UTC.
			"Filesystem created:       Tue Nov 14 22:13:20 2023",
		} {
			if !strings.Contains(string(out), want+"\n") {
				t.Errorf("dumpe2fs has no %q:\n%s", want, out)
			}
		}
		if strings.Contains(string(out), " orphan_file") {
			t.Error("orphan_file on, asked off")
		}
	})
	t.Run("fat", func(t *testing.T) {
		if _, err := exec.LookPath("mkfs.fat"); err != nil {
			t.Skip("no mkfs.fat here")
		}
		img := imageFile(t, 64<<20)
		a := stage.Args{Tree: "/t", Format: 2, Devices: map[string]stage.Device{"device": {Path: img}},
			Options: []byte(`{"volid": "7B7795E7", "label": "EFI-SYSTEM", "fat-size": 16}`)}
		if err := RunFAT(context.Background(), a); err != nil {
			t.Fatal(err)
		}
		// The boot sector of FAT12/16: volume ID at 39, label at 43,
		// type at 54.
		b := make([]byte, 62)
		f, err := os.Open(img)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if _, err := f.ReadAt(b, 0); err != nil {
			t.Fatal(err)
		}
		if id := binary.LittleEndian.Uint32(b[39:]); id != 0x7B7795E7 {
			t.Errorf("volume ID %#x", id)
		}
		if label, typ := string(b[43:54]), string(b[54:62]); label != "EFI-SYSTEM " || typ != "FAT16   " {
			t.Errorf("label %q, type %q", label, typ)
		}
	})
}
