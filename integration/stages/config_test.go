package stages_test

import (
	"os"
	"path/filepath"
	"testing"
)

// The stages that write configuration files: content, root:root 0644,
// and a clear failure for bad options that leaves the file as it was.
func TestHostname(t *testing.T) {
	tree := accountTree(t)
	writeFiles(t, tree, map[string]string{"etc/hostname": "localhost\n"})
	mustRun(t, "org.osbuild.hostname", tree, `{"hostname": "forge-test"}`)
	checkFile(t, filepath.Join(tree, "etc/hostname"), "forge-test\n", 0o644, 0, 0)
	mustFail(t, "org.osbuild.hostname", tree, `{"hostname": "bad name"}`, `option "hostname": "bad name" contains ' '`)
	mustFail(t, "org.osbuild.hostname", tree, `{"name": "x"}`, `unknown option "name"`)
	checkFile(t, filepath.Join(tree, "etc/hostname"), "forge-test\n", 0o644, 0, 0)
}

func TestLocale(t *testing.T) {
	tree := accountTree(t)
	mustRun(t, "org.osbuild.locale", tree, `{"language": "en_US.UTF-8"}`)
	for _, f := range []string{"etc/locale.conf", "etc/default/locale"} {
		checkFile(t, filepath.Join(tree, f), "LANG=en_US.UTF-8\n", 0o644, 0, 0)
	}
	mustFail(t, "org.osbuild.locale", tree, `{"language": "en_US.UTF-8\nLC_ALL=C"}`, `option "language"`)
	mustFail(t, "org.osbuild.locale", tree, `{}`, `option "language": is required`)
}

func TestTimezone(t *testing.T) {
	const zone = "America/Argentina/Buenos_Aires"
	host := "/usr/share/zoneinfo/" + zone
	if _, err := os.Stat(host); err != nil {
		t.Skipf("needs the host's tzdata to copy zones from: %v", err)
	}
	tree := accountTree(t)
	copyHostFile(t, host, filepath.Join(tree, "usr/share/zoneinfo", zone))
	copyHostFile(t, "/usr/share/zoneinfo/Etc/UTC", filepath.Join(tree, "usr/share/zoneinfo/Etc/UTC"))
	// Debian's base system links /etc/localtime to Etc/UTC.
	must(t, os.Symlink("/usr/share/zoneinfo/Etc/UTC", filepath.Join(tree, "etc/localtime")))

	mustRun(t, "org.osbuild.timezone", tree, `{"zone": "`+zone+`"}`)
	localtime := filepath.Join(tree, "etc/localtime")
	if target, err := os.Readlink(localtime); err != nil || target != "../usr/share/zoneinfo/"+zone {
		t.Errorf("/etc/localtime -> %q, %v; want ../usr/share/zoneinfo/%s", target, err, zone)
	}
	if read(t, localtime) != read(t, host) {
		t.Errorf("/etc/localtime does not resolve, in the tree, to the zone")
	}
	checkFile(t, filepath.Join(tree, "etc/timezone"), zone+"\n", 0o644, 0, 0)

	mustFail(t, "org.osbuild.timezone", tree, `{"zone": "Europe/Berlin"}`, `no zone "Europe/Berlin" in the tree`)
	mustFail(t, "org.osbuild.timezone", tree, `{"zone": "../../../etc/passwd"}`, `has a ".." component`)
	checkFile(t, filepath.Join(tree, "etc/timezone"), zone+"\n", 0o644, 0, 0)
}

func TestFstab(t *testing.T) {
	tree := accountTree(t)
	writeFiles(t, tree, map[string]string{"etc/fstab": "# UNCONFIGURED FSTAB FOR BASE SYSTEM\n"})
	mustRun(t, "org.osbuild.fstab", tree, `{"filesystems": [
	  {"uuid": "76a22bf4-f153-4541-b6c7-0332c0dfaeac", "vfs_type": "ext4", "path": "/", "options": "errors=remount-ro", "passno": 1},
	  {"label": "ESP", "vfs_type": "vfat", "path": "/boot/efi", "options": "umask=0077", "passno": 2}]}`)
	checkFile(t, filepath.Join(tree, "etc/fstab"),
		"UUID=76a22bf4-f153-4541-b6c7-0332c0dfaeac\t/\text4\terrors=remount-ro\t0\t1\n"+
			"LABEL=ESP\t/boot/efi\tvfat\tumask=0077\t0\t2\n", 0o644, 0, 0)
	mustFail(t, "org.osbuild.fstab", tree, `{"filesystems": [{"path": "/"}]}`, `option "filesystems[0]": give exactly one of`)
}
