package systemd

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		options string
		steps   []string // systemctl command lines after --root T, when wantErr is ""
		wantErr string
	}{
		{"nothing", `{}`, nil, ""},
		{"osbuild's order",
			`{"default_target": "multi-user.target", "masked_services": ["c.service"], "disabled_services": ["b.socket"], "enabled_services": ["a.service", "getty@ttyS0.service", "sshd"]}`,
			[]string{"enable -- a.service", "enable -- getty@ttyS0.service", "enable -- sshd", "disable -- b.socket",
				"mask -- c.service", "set-default -- multi-user.target"}, ""},
		{"bare target", `{"default_target": "graphical"}`, []string{"set-default -- graphical"}, ""},
		{"generators need no systemctl", `{"masked_generators": ["systemd-gpt-auto-generator"]}`, nil, ""},
		{"option-like unit", `{"enabled_services": ["--now"]}`, nil, `option "enabled_services": unit name "--now" starts with '-'`},
		{"space", `{"disabled_services": ["a b.service"]}`, nil, `option "disabled_services": unit name "a b.service" contains ' '`},
		{"slash", `{"masked_services": ["../x.service"]}`, nil, `option "masked_services": unit name "../x.service" contains '/'`},
		{"empty", `{"enabled_services": [""]}`, nil, `empty unit name`},
		{"bad type", `{"enabled_services": ["a.conf"]}`, nil, `unknown type ".conf"`},
		{"two ats", `{"enabled_services": ["a@b@c.service"]}`, nil, `more than one '@'`},
		{"too long", `{"enabled_services": ["` + strings.Repeat("a", 250) + `.service"]}`, nil, `longer than 255 bytes`},
		{"target not a target", `{"default_target": "sshd.service"}`, nil, `option "default_target": "sshd.service" is not a target`},
		{"generator path", `{"masked_generators": ["../../bin/sh"]}`, nil, `option "masked_generators"`},
		{"generator dotdot", `{"masked_generators": [".."]}`, nil, `option "masked_generators"`},
		{"wrong type", `{"enabled_services": "sshd"}`, nil, `option "enabled_services": want array`},
		{"unknown option", `{"unit_dropins": {}}`, nil, `unknown option "unit_dropins"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parse(json.RawMessage(tt.options))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parse: error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			var got []string
			for _, s := range o.steps("T") {
				if s[0] != "--root" || s[1] != "T" {
					t.Fatalf("step %q lacks --root T", s)
				}
				got = append(got, strings.Join(s[2:], " "))
			}
			if !reflect.DeepEqual(got, tt.steps) {
				t.Errorf("steps\n%q\nwant\n%q", got, tt.steps)
			}
		})
	}
}

// unitTree makes a tree with a service that multi-user.target wants, a
// socket, and the two targets, laid out as Debian's systemd does.
func unitTree(t *testing.T) string {
	t.Helper()
	tree := t.TempDir()
	units := map[string]string{
		"forge-a.service":   "[Unit]\nDescription=a\n[Service]\nExecStart=/bin/true\n[Install]\nWantedBy=multi-user.target\nAlso=forge-b.socket\n",
		"forge-b.socket":    "[Unit]\nDescription=b\n[Socket]\nListenStream=/run/forge-b\n[Install]\nWantedBy=sockets.target\n",
		"forge-b.service":   "[Unit]\nDescription=b\n[Service]\nExecStart=/bin/true\n",
		"multi-user.target": "[Unit]\nDescription=Multi-User System\n",
		"graphical.target":  "[Unit]\nDescription=Graphical Interface\n",
		"sockets.target":    "[Unit]\nDescription=Sockets\n",
	}
	dir := filepath.Join(tree, "usr/lib/systemd/system")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, body := range units {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	return tree
}

// Against the real systemctl (it needs no root for --root).
func TestRunSystemctl(t *testing.T) {
	if _, err := exec.LookPath("systemctl"); err != nil {
		t.Skip("needs systemctl (Debian's systemd package): ", err)
	}
	tree := unitTree(t)
	run := func(options string) error {
		return Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(options)})
	}
	links := func() map[string]string {
		got := map[string]string{}
		filepath.Walk(filepath.Join(tree, "etc"), func(p string, fi os.FileInfo, err error) error {
			if err == nil && fi.Mode()&os.ModeSymlink != 0 {
				target, _ := os.Readlink(p)
				rel, _ := filepath.Rel(tree, p)
				got[rel] = target
			}
			return nil
		})
		return got
	}
	if err := run(`{"enabled_services": ["forge-a.service"], "default_target": "graphical.target", "masked_generators": ["systemd-gpt-auto-generator"]}`); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"etc/systemd/system/multi-user.target.wants/forge-a.service": "/usr/lib/systemd/system/forge-a.service",
		"etc/systemd/system/sockets.target.wants/forge-b.socket":     "/usr/lib/systemd/system/forge-b.socket",
		"etc/systemd/system/default.target":                          "/usr/lib/systemd/system/graphical.target",
		"etc/systemd/system-generators/systemd-gpt-auto-generator":   "/dev/null",
	}
	if got := links(); !reflect.DeepEqual(got, want) {
		t.Errorf("after enable:\n%v\nwant\n%v", got, want)
	}
	// Enabled then disabled ends disabled; mask links to /dev/null.
	if err := run(`{"enabled_services": ["forge-b.socket"], "disabled_services": ["forge-a.service", "forge-b.socket"], "masked_services": ["forge-b.service"], "masked_generators": ["systemd-gpt-auto-generator"]}`); err != nil {
		t.Fatal(err)
	}
	want = map[string]string{
		"etc/systemd/system/default.target":                        "/usr/lib/systemd/system/graphical.target",
		"etc/systemd/system/forge-b.service":                       "/dev/null",
		"etc/systemd/system-generators/systemd-gpt-auto-generator": "/dev/null",
	}
	if got := links(); !reflect.DeepEqual(got, want) {
		t.Errorf("after disable and mask:\n%v\nwant\n%v", got, want)
	}
	// A unit the tree lacks is systemctl's error, passed on.
	err := run(`{"enabled_services": ["forge-missing.service"]}`)
	if err == nil || !strings.Contains(err.Error(), "forge-missing.service does not exist") {
		t.Errorf("enable of a missing unit: %v, want systemctl's error", err)
	}
}
