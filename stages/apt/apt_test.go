package apt

import (
	"context"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/forge-build/forge/stages/stage"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		name    string
		json    string
		wantErr string // "" for valid options
	}{
		{"one package", `{"packages": ["less"]}`, ""},
		{"all forms", `{"packages": ["g++", "libstdc++6", "python3.11", "hello:amd64", "less=590-2.1~deb12u2", "openssh-server/bookworm-backports", "libc6:i386=2.36-9"]}`, ""},
		{"everything", `{"packages": ["less"], "recommends": true, "update": false, "clean": false}`, ""},

		{"no packages", `{}`, `option "packages": want at least one`},
		{"empty packages", `{"packages": []}`, `option "packages": want at least one`},
		{"upper case", `{"packages": ["less", "Vim"]}`, `option "packages": "Vim"`},
		{"an option", `{"packages": ["-oDebug::X=1"]}`, `option "packages": "-oDebug::X=1"`},
		{"a removal", `{"packages": ["less-"]}`, `option "packages": "less-" ends in "-"`}, // which apt-get install reads as "remove less"
		{"space", `{"packages": ["less vim"]}`, `option "packages": "less vim"`},
		{"empty version", `{"packages": ["less="]}`, `option "packages": "less="`},
		{"path", `{"packages": ["./local.deb"]}`, `option "packages": "./local.deb"`},
		{"not a string", `{"packages": [true]}`, `option "packages": want string`},
		{"update not a bool", `{"packages": ["less"], "update": "yes"}`, `option "update": want bool`},
		{"unknown option", `{"packages": ["less"], "apt_proxy": "http://proxy:3142"}`, `unknown option "apt_proxy"`},
		{"not an object", `["less"]`, `options: want an object`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := parseOptions(json.RawMessage(tt.json))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("error %v, want none", err)
			case tt.wantErr != "" && err == nil:
				t.Errorf("no error, want one with %q", tt.wantErr)
			case tt.wantErr != "" && !strings.Contains(err.Error(), tt.wantErr):
				t.Errorf("error %q, want one with %q", err, tt.wantErr)
			}
		})
	}
}

func TestCommands(t *testing.T) {
	install := []string{aptGet, "install", "-y", "-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold"}
	with := func(extra ...string) []string { return append(append([]string{}, install...), extra...) }
	tests := []struct {
		name string
		json string
		want [][]string
	}{
		{"defaults", `{"packages": ["less", "hello"]}`, [][]string{
			{aptGet, "update"},
			with("--no-install-recommends", "less", "hello"),
			{aptGet, "clean"},
		}},
		{"recommends, no update, no clean", `{"packages": ["less"], "recommends": true, "update": false, "clean": false}`, [][]string{
			with("less"),
		}},
		{"explicit true", `{"packages": ["less"], "update": true, "clean": true}`, [][]string{
			{aptGet, "update"},
			with("--no-install-recommends", "less"),
			{aptGet, "clean"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o, err := parseOptions(json.RawMessage(tt.json))
			if err != nil {
				t.Fatal(err)
			}
			if got := commands(o); !reflect.DeepEqual(got, tt.want) {
				t.Errorf("commands\n%q, want\n%q", got, tt.want)
			}
		})
	}
}

// Run checks the options and the tree before it mounts anything.
func TestRunRefuses(t *testing.T) {
	tree := t.TempDir()
	err := Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(`{"packages": ["less"]}`)})
	if err == nil || !strings.Contains(err.Error(), "no /usr/bin/apt-get") {
		t.Errorf("Run in an empty tree: %v, want an error saying it has no apt-get", err)
	}
	err = Run(context.Background(), stage.Args{Tree: tree, Options: json.RawMessage(`{"packages": ["Less"]}`)})
	if err == nil || !strings.Contains(err.Error(), `option "packages": "Less"`) {
		t.Errorf("Run with a bad package: %v, want an error naming it", err)
	}
}
