package stages_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"testing"
)

// systemdLinks lists the symlinks under the tree's /etc/systemd.
func systemdLinks(t *testing.T, tree string) map[string]string {
	t.Helper()
	links := map[string]string{}
	filepath.Walk(filepath.Join(tree, "etc/systemd"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			rel, _ := filepath.Rel(tree, p)
			links[rel] = target
		}
		return nil
	})
	return links
}

func TestSystemd(t *testing.T) {
	if _, err := exec.LookPath("systemctl"); err != nil {
		t.Skipf("needs systemctl (Debian's systemd package): %v", err)
	}
	tree := accountTree(t)
	// Debian's layout, with a template unit and a Debian-style Alias.
	writeFiles(t, tree, map[string]string{
		"usr/lib/systemd/system/ssh.service":           "[Unit]\nDescription=OpenBSD Secure Shell server\n[Service]\nExecStart=/usr/sbin/sshd -D\n[Install]\nWantedBy=multi-user.target\nAlias=sshd.service\n",
		"usr/lib/systemd/system/serial-getty@.service": "[Unit]\nDescription=Serial Getty on %I\n[Service]\nExecStart=-/sbin/agetty %I\n[Install]\nWantedBy=getty.target\n",
		"usr/lib/systemd/system/apt-daily.timer":       "[Unit]\nDescription=Daily apt download activities\n[Timer]\nOnCalendar=daily\n[Install]\nWantedBy=timers.target\n",
		"usr/lib/systemd/system/apt-daily.service":     "[Unit]\nDescription=Daily apt download activities\n[Service]\nExecStart=/usr/lib/apt/apt.systemd.daily update\n",
		"usr/lib/systemd/system/multi-user.target":     "[Unit]\nDescription=Multi-User System\n",
		"usr/lib/systemd/system/getty.target":          "[Unit]\nDescription=Login Prompts\n",
		"usr/lib/systemd/system/timers.target":         "[Unit]\nDescription=Timers\n",
		"usr/lib/systemd/system/graphical.target":      "[Unit]\nDescription=Graphical Interface\n",
	})
	// The timer is enabled in the base tree, as Debian's apt enables it.
	must(t, os.MkdirAll(filepath.Join(tree, "etc/systemd/system/timers.target.wants"), 0o755))
	must(t, os.Symlink("/usr/lib/systemd/system/apt-daily.timer", filepath.Join(tree, "etc/systemd/system/timers.target.wants/apt-daily.timer")))

	mustRun(t, "org.osbuild.systemd", tree, `{"enabled_services": ["ssh.service", "serial-getty@ttyS0.service"],
	  "disabled_services": ["apt-daily.timer"], "masked_services": ["apt-daily.service"],
	  "masked_generators": ["systemd-gpt-auto-generator"], "default_target": "multi-user.target"}`)
	want := map[string]string{
		"etc/systemd/system/multi-user.target.wants/ssh.service":           "/usr/lib/systemd/system/ssh.service",
		"etc/systemd/system/sshd.service":                                  "/usr/lib/systemd/system/ssh.service",
		"etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service": "/usr/lib/systemd/system/serial-getty@.service",
		"etc/systemd/system/apt-daily.service":                             "/dev/null",
		"etc/systemd/system/default.target":                                "/usr/lib/systemd/system/multi-user.target",
		"etc/systemd/system-generators/systemd-gpt-auto-generator":         "/dev/null",
	}
	if got := systemdLinks(t, tree); !reflect.DeepEqual(got, want) {
		t.Errorf("links under /etc/systemd:\n%v\nwant\n%v", got, want)
	}
	mustFail(t, "org.osbuild.systemd", tree, `{"enabled_services": ["nginx.service"]}`, "nginx.service does not exist")
	mustFail(t, "org.osbuild.systemd", tree, `{"enabled_services": ["--global"]}`, `option "enabled_services": unit name "--global" starts with '-'`)
	mustFail(t, "org.osbuild.systemd", tree, `{"default_target": "ssh.service"}`, `"ssh.service" is not a target`)
}
