package stages_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const rootUUID = "76a22bf4-f153-4541-b6c7-0332c0dfaeac"

// kernelTree is an account tree with two kernels and their initramfs
// images in /boot.
func kernelTree(t *testing.T) string {
	t.Helper()
	tree := accountTree(t)
	writeFiles(t, tree, map[string]string{
		"boot/vmlinuz-6.1.0-9-amd64":     "old kernel",
		"boot/initrd.img-6.1.0-9-amd64":  "old initramfs",
		"boot/vmlinuz-6.1.0-13-amd64":    "new kernel",
		"boot/initrd.img-6.1.0-13-amd64": "new initramfs",
		"boot/config-6.1.0-13-amd64":     "CONFIG_EXT4_FS=y\n",
	})
	return tree
}

func TestGrub2(t *testing.T) {
	tree := kernelTree(t)
	mustRun(t, "org.osbuild.grub2", tree, `{"root_fs_uuid": "`+rootUUID+`", "kernel_opts": "console=ttyS0,115200 console=tty0",
	  "config": {"timeout": 1, "serial": "serial --unit=0 --speed=115200", "terminal_input": ["serial", "console"], "terminal_output": ["serial", "console"]}}`)
	cfgPath := filepath.Join(tree, "boot/grub/grub.cfg")
	cfg := read(t, cfgPath)
	checkOwner(t, cfgPath, 0o444, 0, 0)
	// The lines that make the image boot on a serial console, in order:
	// the newest kernel first, the older one in the submenu.
	wantInOrder := []string{
		"set timeout=1",
		"search --no-floppy --set=root --fs-uuid " + rootUUID,
		"serial --unit=0 --speed=115200",
		"terminal_input serial console",
		"terminal_output serial console",
		"menuentry 'Debian GNU/Linux' ",
		"\tlinux\t/boot/vmlinuz-6.1.0-13-amd64 root=UUID=" + rootUUID + " ro console=ttyS0,115200 console=tty0",
		"\tinitrd\t/boot/initrd.img-6.1.0-13-amd64",
		"submenu 'Advanced options for Debian GNU/Linux' ",
		"\tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-13-amd64' ",
		"\tmenuentry 'Debian GNU/Linux, with Linux 6.1.0-9-amd64' ",
		"\t\tlinux\t/boot/vmlinuz-6.1.0-9-amd64 root=UUID=" + rootUUID + " ro console=ttyS0,115200 console=tty0",
		"\t\tinitrd\t/boot/initrd.img-6.1.0-9-amd64",
	}
	rest := cfg
	for _, w := range wantInOrder {
		i := strings.Index(rest, "\n"+w)
		if i < 0 {
			t.Fatalf("grub.cfg lacks %q after the lines before it:\n%s", w, cfg)
		}
		rest = rest[i+1:]
	}
	// GRUB's own tools accept what the stage wrote.
	if check, err := exec.LookPath("grub-script-check"); err == nil {
		if out, err := exec.Command(check, cfgPath).CombinedOutput(); err != nil {
			t.Errorf("grub-script-check: %v\n%s", err, out)
		}
	}
	if editenv, err := exec.LookPath("grub-editenv"); err == nil {
		out, err := exec.Command(editenv, filepath.Join(tree, "boot/grub/grubenv"), "list").CombinedOutput()
		if want := "kernelopts=root=UUID=" + rootUUID + " console=ttyS0,115200 console=tty0\n"; err != nil || string(out) != want {
			t.Errorf("grub-editenv list: %q, %v; want %q", out, err, want)
		}
	}
	checkFile(t, filepath.Join(tree, "etc/default/grub"), read(t, filepath.Join(tree, "etc/default/grub")), 0o644, 0, 0)
	if !strings.Contains(read(t, filepath.Join(tree, "etc/default/grub")), "GRUB_SERIAL_COMMAND='serial --unit=0 --speed=115200'\n") {
		t.Errorf("/etc/default/grub lacks the serial command")
	}

	mustFail(t, "org.osbuild.grub2", tree, `{"root_fs_uuid": "not-a-uuid"}`, `option "root_fs_uuid"`)
	empty := accountTree(t)
	mustFail(t, "org.osbuild.grub2", empty, `{"root_fs_uuid": "`+rootUUID+`"}`, "no kernel")
}

// With legacy boot, the build root's (here: the host's) i386-pc modules
// land in /boot/grub/i386-pc, where a core.img with prefix
// (,msdos1)/boot/grub finds them.
func TestGrub2Legacy(t *testing.T) {
	src := "/usr/lib/grub/i386-pc"
	if _, err := os.Stat(filepath.Join(src, "normal.mod")); err != nil {
		t.Skipf("needs the host's GRUB BIOS modules (apt-get install grub-pc-bin): %v", err)
	}
	tree := kernelTree(t)
	mustRun(t, "org.osbuild.grub2", tree, `{"root_fs_uuid": "`+rootUUID+`", "legacy": "i386-pc"}`)
	dst := filepath.Join(tree, "boot/grub/i386-pc")
	ents, err := os.ReadDir(src)
	must(t, err)
	copied := 0
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".mod") && !strings.HasSuffix(n, ".lst") {
			continue
		}
		copied++
		b, err := os.ReadFile(filepath.Join(dst, n))
		if err != nil || !bytes.Equal(b, read2(t, filepath.Join(src, n))) {
			t.Errorf("/boot/grub/i386-pc/%s is not the build root's: %v", n, err)
		}
	}
	for _, n := range []string{"normal.mod", "linux.mod", "search.mod", "serial.mod", "terminal.mod", "command.lst", "moddep.lst"} {
		checkOwner(t, filepath.Join(dst, n), 0o644, 0, 0)
	}
	if got, _ := os.ReadDir(dst); len(got) < copied {
		t.Errorf("/boot/grub/i386-pc holds %d files, want at least %d", len(got), copied)
	}
	if _, err := os.Stat("/usr/share/grub/unicode.pf2"); err == nil {
		checkOwner(t, filepath.Join(tree, "boot/grub/fonts/unicode.pf2"), 0o644, 0, 0)
	}
}

func read2(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	must(t, err)
	return b
}
