package stages_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// forgeHash is crypt(3)'s SHA-512 of "forge" with salt "forgesalt".
const forgeHash = `$6$forgesalt$4BseGtQFGi8o./lPAWezpiAdDOlDJIVxyIPaGg7AjUaks32r00JJQN1aEcfOQ9SwRacrMxp.faleRKl0cJ6eK.`

// entry returns the line of an /etc/passwd-like file for name, split.
func entry(t *testing.T, file, name string) []string {
	t.Helper()
	for _, line := range strings.Split(read(t, file), "\n") {
		if f := strings.Split(line, ":"); f[0] == name {
			return f
		}
	}
	return nil
}

func TestUsers(t *testing.T) {
	for _, tool := range []string{"useradd", "usermod", "passwd"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian's passwd package): %v", tool, err)
		}
	}
	tree := accountTree(t)
	etc := filepath.Join(tree, "etc")
	mustRun(t, "org.osbuild.users", tree, `{"users": {
	  "alice": {"description": "Alice", "groups": ["sudo", "adm"], "shell": "/bin/bash", "password": "`+forgeHash+`",
	            "keys": ["ssh-rsa AAAAB3NzaC1yc2E alice@old"], "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 alice@forge"},
	  "bob": {"uid": 1500, "gid": 100, "home": "/srv/bob", "expiredate": 20000, "force_password_reset": true},
	  "svc": {"home": ""},
	  "admin": {"groups": ["sudo"], "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 admin"}}}`)

	// In the options' order: alice gets the first free UID; svc comes
	// after bob, and useradd takes the UID after the highest.
	for name, want := range map[string]string{
		"alice": "alice:x:1000:1000:Alice:/home/alice:/bin/bash",
		"bob":   "bob:x:1500:100::/srv/bob:/bin/sh",
		"svc":   "svc:x:1501:1501::/home/svc:/bin/sh",
		"admin": "admin:x:999:999:Admin:/home/admin:/bin/sh",
		"root":  "root:x:0:0:root:/root:/bin/bash",
	} {
		if got := strings.Join(entry(t, filepath.Join(etc, "passwd"), name), ":"); got != want {
			t.Errorf("passwd: %q, want %q", got, want)
		}
	}
	if got := strings.Join(entry(t, filepath.Join(etc, "group"), "sudo"), ":"); got != "sudo:x:27:alice,admin" {
		t.Errorf("group sudo: %q", got)
	}
	if got := strings.Join(entry(t, filepath.Join(etc, "group"), "adm"), ":"); got != "adm:x:4:alice" {
		t.Errorf("group adm: %q", got)
	}
	if s := entry(t, filepath.Join(etc, "shadow"), "alice"); len(s) < 2 || s[1] != forgeHash {
		t.Errorf("shadow alice: %q, want the password hash", s)
	}
	// force_password_reset: last change 0; expiredate: field 8.
	if s := entry(t, filepath.Join(etc, "shadow"), "bob"); len(s) != 9 || s[2] != "0" || s[7] != "20000" {
		t.Errorf("shadow bob: %q, want last change 0 and expiry 20000", s)
	}
	checkOwner(t, filepath.Join(etc, "shadow"), 0o640, 0, 0)

	// Homes: made by useradd for new users, by the stage for admin, whose
	// home was missing; none for svc.
	for _, h := range []struct {
		dir      string
		uid, gid int
	}{{"home/alice", 1000, 1000}, {"srv/bob", 1500, 100}, {"home/admin", 999, 999}} {
		checkOwner(t, filepath.Join(tree, h.dir), os.ModeDir|0o755, h.uid, h.gid)
		checkFile(t, filepath.Join(tree, h.dir, ".profile"), baseFiles["etc/skel/.profile"].content, 0o644, h.uid, h.gid)
	}
	if _, err := os.Lstat(filepath.Join(tree, "home/svc")); !os.IsNotExist(err) {
		t.Errorf("svc, with home \"\", got a home directory (%v)", err)
	}

	// Keys: osbuild's order, "keys" then "key"; ~/.ssh 0700, the file
	// 0600, both the user's.
	ssh := filepath.Join(tree, "home/alice/.ssh")
	checkOwner(t, ssh, os.ModeDir|0o700, 1000, 1000)
	checkFile(t, filepath.Join(ssh, "authorized_keys"),
		"ssh-rsa AAAAB3NzaC1yc2E alice@old\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5 alice@forge\n", 0o600, 1000, 1000)
	checkFile(t, filepath.Join(tree, "home/admin/.ssh/authorized_keys"), "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 admin\n", 0o600, 999, 999)

	// A second run changes an existing user with usermod and adds a key.
	mustRun(t, "org.osbuild.users", tree, `{"users": {"alice": {"description": "Alice Liddell", "key": "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5 second"}}}`)
	if got := strings.Join(entry(t, filepath.Join(etc, "passwd"), "alice"), ":"); got != "alice:x:1000:1000:Alice Liddell:/home/alice:/bin/bash" {
		t.Errorf("passwd after usermod: %q", got)
	}
	checkFile(t, filepath.Join(ssh, "authorized_keys"),
		"ssh-rsa AAAAB3NzaC1yc2E alice@old\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5 alice@forge\nssh-ed25519 AAAAC3NzaC1lZDI1NTE5 second\n", 0o600, 1000, 1000)

	mustFail(t, "org.osbuild.users", tree, `{"users": {"alice": {"uid": 2000}}}`, `can't set the UID of existing user "alice" (1000) to 2000`)
	mustFail(t, "org.osbuild.users", tree, `{"users": {"carol": {"groups": ["wheel"]}}}`, `group 'wheel' does not exist`)
	mustFail(t, "org.osbuild.users", tree, `{"users": {"-o": {}}}`, `user name "-o" contains '-' at 0`)
	mustFail(t, "org.osbuild.users", tree, `{"users": {"dave": {"description": "x:0:0"}}}`, `option "description"`)
	if entry(t, filepath.Join(etc, "passwd"), "carol") != nil || entry(t, filepath.Join(etc, "passwd"), "dave") != nil {
		t.Errorf("a failed run added a user")
	}
}
