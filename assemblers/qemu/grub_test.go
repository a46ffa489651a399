package qemu

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/internal/grubpc"
)

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
			wantDir := grubpc.Dir
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
	if _, err := grubpc.FindMkimage("grub-mkimage", "grub2-mkimage"); err != nil {
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
	plan := grubPlan{imageDir: grubpc.Dir, prefix: "(,msdos1)/boot/grub", modules: []string{"biosdisk", "part_msdos", "ext2"}}
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
