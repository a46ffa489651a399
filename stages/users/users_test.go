package users

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
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
		want    []string // user names in order, when wantErr is ""
		wantErr string
	}{
		{"order kept", `{"users": {"zed": {}, "alice": {"uid": 1000}, "bob": {"groups": ["sudo"]}}}`, []string{"zed", "alice", "bob"}, ""},
		{"no users", `{"users": {}}`, nil, ""},
		{"every option", `{"users": {"alice": {"uid": 1000, "gid": 1000, "groups": ["sudo", "adm"], "description": "Alice A.", "home": "/home/alice", "shell": "/bin/bash", "password": "$6$salt$hash", "key": "ssh-ed25519 AAAA alice", "keys": ["ssh-rsa AAAA alice2"], "expiredate": 20000, "force_password_reset": true}}}`, []string{"alice"}, ""},
		{"dotted name", `{"users": {"a.b_c-d": {}}}`, []string{"a.b_c-d"}, ""},
		{"missing", `{}`, nil, `option "users": is required`},
		{"not an object", `{"users": ["alice"]}`, nil, `option "users": want an object`},
		{"null user", `{"users": {"alice": null}}`, nil, `user "alice": want an object`},
		{"duplicate", `{"users": {"alice": {}, "alice": {"uid": 1}}}`, nil, `user "alice" is given twice`},
		{"leading hyphen", `{"users": {"-rf": {}}}`, nil, `user name "-rf" contains '-' at 0`},
		{"colon", `{"users": {"a:b": {}}}`, nil, `contains ':'`},
		{"slash", `{"users": {"../x": {}}}`, nil, `contains '/'`},
		{"dotdot", `{"users": {"..": {}}}`, nil, `user name ".." is not allowed`},
		{"too long", `{"users": {"` + strings.Repeat("a", 33) + `": {}}}`, nil, `want 1 to 32 characters`},
		{"empty name", `{"users": {"": {}}}`, nil, `want 1 to 32 characters`},
		{"unknown user option", `{"users": {"alice": {"sudo": true}}}`, nil, `user "alice": unknown option "sudo"`},
		{"uid type", `{"users": {"alice": {"uid": "1000"}}}`, nil, `user "alice": option "uid": want integer`},
		{"uid fraction", `{"users": {"alice": {"uid": 1000.5}}}`, nil, `option "uid": want integer`},
		{"uid negative", `{"users": {"alice": {"uid": -1}}}`, nil, `option "uid": -1 is out of range`},
		{"gid too large", `{"users": {"alice": {"gid": 4294967295}}}`, nil, `option "gid": 4294967295 is out of range`},
		{"group comma", `{"users": {"alice": {"groups": ["a,b"]}}}`, nil, `option "groups": group name "a,b" contains ','`},
		{"group empty", `{"users": {"alice": {"groups": [""]}}}`, nil, `option "groups": empty group name`},
		{"description colon", `{"users": {"alice": {"description": "a:b"}}}`, nil, `option "description"`},
		{"description newline", `{"users": {"alice": {"description": "a\nroot::0:0::/:/bin/sh"}}}`, nil, `option "description"`},
		{"home relative", `{"users": {"alice": {"home": "home/alice"}}}`, nil, `option "home": "home/alice" is not an absolute path`},
		{"shell relative", `{"users": {"alice": {"shell": "bash"}}}`, nil, `option "shell"`},
		{"password newline", `{"users": {"alice": {"password": "x\ny"}}}`, nil, `option "password"`},
		{"key two lines", `{"users": {"alice": {"key": "ssh-ed25519 A\nssh-rsa B"}}}`, nil, `option "key": a key is one line`},
		{"keys empty", `{"users": {"alice": {"keys": [" "]}}}`, nil, `option "keys": empty key`},
		{"expiredate", `{"users": {"alice": {"expiredate": -2}}}`, nil, `option "expiredate"`},
		{"unknown option", `{"users": {}, "groups": {}}`, nil, `unknown option "groups"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users, err := parse(json.RawMessage(tt.options))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("parse: error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("parse: %v", err)
			}
			var names []string
			for _, u := range users {
				names = append(names, u.name)
			}
			if !reflect.DeepEqual(names, tt.want) {
				t.Errorf("users %q, want %q", names, tt.want)
			}
		})
	}
}

func TestToolArgs(t *testing.T) {
	tests := []struct {
		name    string
		user    string
		useradd string
		usermod string // "" for no usermod run
	}{
		{"defaults", `{}`,
			"--root /t --create-home alice", ""},
		{"every option", `{"uid": 1000, "gid": 100, "groups": ["sudo", "adm"], "description": "Alice", "home": "/srv/alice", "shell": "/bin/bash", "password": "$6$s$h", "expiredate": 20000}`,
			"--root /t --uid 1000 -o --gid 100 --groups sudo,adm --comment Alice --home-dir /srv/alice --create-home --shell /bin/bash --password $6$s$h --expiredate 20000 alice",
			"--root /t --gid 100 --groups sudo,adm --comment Alice --home /srv/alice --shell /bin/bash --password $6$s$h --expiredate 20000 alice"},
		{"no home", `{"home": ""}`, "--root /t --no-create-home alice", ""},
		{"empty password and comment are set", `{"password": "", "description": ""}`,
			"--root /t --comment  --create-home --password  alice", "--root /t --comment  --password  alice"},
		{"uid zero", `{"uid": 0, "gid": 0}`, "--root /t --uid 0 -o --gid 0 --create-home alice", "--root /t --gid 0 alice"},
		{"keys only", `{"key": "ssh-ed25519 AAAA"}`, "--root /t --create-home alice", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			users, err := parse(json.RawMessage(`{"users": {"alice": ` + tt.user + `}}`))
			if err != nil {
				t.Fatal(err)
			}
			if got := strings.Join(useraddArgs("/t", users[0]), " "); got != tt.useradd {
				t.Errorf("useradd %s\nwant    %s", got, tt.useradd)
			}
			if got := strings.Join(usermodArgs("/t", users[0]), " "); got != tt.usermod {
				t.Errorf("usermod %s\nwant    %s", got, tt.usermod)
			}
		})
	}
}

// userTree makes a tree whose /etc/passwd has alice, owned by the test's
// own UID and GID so that chown works without root.
func userTree(t *testing.T, home string) (string, *os.Root) {
	t.Helper()
	tree := t.TempDir()
	must(t, os.MkdirAll(filepath.Join(tree, "etc/skel/.config"), 0o755))
	must(t, os.WriteFile(filepath.Join(tree, "etc/skel/.profile"), []byte("# ~/.profile\n"), 0o644))
	must(t, os.WriteFile(filepath.Join(tree, "etc/skel/.config/secret"), []byte("s\n"), 0o600))
	must(t, os.Symlink("/dev/null", filepath.Join(tree, "etc/skel/.bash_history")))
	must(t, os.WriteFile(filepath.Join(tree, "etc/passwd"), fmt.Appendf(nil,
		"root:x:0:0:root:/root:/bin/bash\nalice:x:%d:%d:Alice:%s:/bin/sh\n", os.Getuid(), os.Getgid(), home), 0o644))
	root, err := os.OpenRoot(tree)
	must(t, err)
	t.Cleanup(func() { root.Close() })
	return tree, root
}

func TestEnsureHome(t *testing.T) {
	tests := []struct {
		name     string
		loginDef string
		mode     os.FileMode
	}{
		{"no login.defs", "", 0o755},
		{"umask", "UMASK\t\t027\n", 0o750},
		{"home mode", "UMASK 022\nHOME_MODE 0700\n", 0o700},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tree, root := userTree(t, "/home/alice")
			if tt.loginDef != "" {
				must(t, os.WriteFile(filepath.Join(tree, "etc/login.defs"), []byte(tt.loginDef), 0o644))
			}
			pw, err := lookup(root, "alice")
			if err != nil || pw == nil {
				t.Fatalf("lookup alice: %v, %v", pw, err)
			}
			if err := ensureHome(root, pw); err != nil {
				t.Fatal(err)
			}
			home := filepath.Join(tree, "home/alice")
			checkMode(t, home, os.ModeDir|tt.mode)
			checkMode(t, filepath.Join(home, ".profile"), 0o644)
			checkMode(t, filepath.Join(home, ".config"), os.ModeDir|0o755)
			checkMode(t, filepath.Join(home, ".config/secret"), 0o600)
			if l, err := os.Readlink(filepath.Join(home, ".bash_history")); err != nil || l != "/dev/null" {
				t.Errorf(".bash_history -> %q, %v; want /dev/null", l, err)
			}
			// An existing home is left alone.
			must(t, os.Remove(filepath.Join(home, ".profile")))
			if err := ensureHome(root, pw); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(home, ".profile")); !os.IsNotExist(err) {
				t.Errorf("ensureHome refilled an existing home")
			}
		})
	}
}

func TestAddKeys(t *testing.T) {
	tree, root := userTree(t, "/home/alice")
	must(t, os.MkdirAll(filepath.Join(tree, "home/alice"), 0o755))
	pw, _ := lookup(root, "alice")
	if err := addKeys(root, pw, []string{"ssh-ed25519 AAAA one", "ssh-rsa BBBB two"}); err != nil {
		t.Fatal(err)
	}
	ak := filepath.Join(tree, "home/alice/.ssh/authorized_keys")
	checkMode(t, filepath.Dir(ak), os.ModeDir|0o700)
	checkMode(t, ak, 0o600)
	checkContent(t, ak, "ssh-ed25519 AAAA one\nssh-rsa BBBB two\n")
	// A second run appends, mending a missing final newline first.
	must(t, os.WriteFile(ak, []byte("ssh-ed25519 AAAA one"), 0o644))
	if err := addKeys(root, pw, []string{"ssh-ed25519 CCCC three"}); err != nil {
		t.Fatal(err)
	}
	checkContent(t, ak, "ssh-ed25519 AAAA one\nssh-ed25519 CCCC three\n")
	checkMode(t, ak, 0o600)
	if ents, _ := os.ReadDir(filepath.Dir(ak)); len(ents) != 1 {
		t.Errorf("~/.ssh holds %v, want authorized_keys only", ents)
	}
}

// Keys for a user without a home directory are an error, not a home
// made from nothing.
func TestAddKeysNoHome(t *testing.T) {
	_, root := userTree(t, "/home/alice")
	pw, _ := lookup(root, "alice")
	err := addKeys(root, pw, []string{"ssh-ed25519 AAAA"})
	if err == nil || !strings.Contains(err.Error(), "home directory /home/alice is not a directory") {
		t.Fatalf("addKeys: %v, want a missing home error", err)
	}
}

// An existing user keeps its UID; the error comes before any tool runs.
func TestExistingUID(t *testing.T) {
	tree, _ := userTree(t, "/home/alice")
	err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(`{"users": {"root": {"uid": 1}}}`)})
	if err == nil || !strings.Contains(err.Error(), `can't set the UID of existing user "root" (0) to 1`) {
		t.Fatalf("Run: %v, want a UID error", err)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func checkMode(t *testing.T, path string, mode os.FileMode) {
	t.Helper()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode(), mode)
	}
}

func checkContent(t *testing.T, path, want string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != want {
		t.Errorf("%s = %q, want %q", path, b, want)
	}
}
