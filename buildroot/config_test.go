package buildroot

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestConfigCheck(t *testing.T) {
	tests := []struct {
		name    string
		cfg     Config
		want    Config // after check, when wantErr is empty
		wantErr string
	}{
		{
			name: "defaults",
			cfg:  Config{BuildTree: "/", Args: []string{"true"}},
			want: Config{BuildTree: "/", Args: []string{"true"}, Network: NetworkHost,
				Hostname: "forge-buildroot", Env: DefaultEnv(), Dir: "/"},
		},
		{
			name: "given values kept, bind targets cleaned",
			cfg: Config{BuildTree: "/bt", Args: []string{"/bin/sh", "-c", "x"}, Network: NetworkPrivate,
				Hostname: "h", Env: []string{}, Dir: "/tmp",
				Binds: []Bind{{Source: "/src", Target: "/run/osbuild/tree/", ReadOnly: true}, {Source: "/o", Target: "/a/../b"}}},
			want: Config{BuildTree: "/bt", Args: []string{"/bin/sh", "-c", "x"}, Network: NetworkPrivate,
				Hostname: "h", Env: []string{}, Dir: "/tmp",
				Binds: []Bind{{Source: "/src", Target: "/run/osbuild/tree", ReadOnly: true}, {Source: "/o", Target: "/b"}}},
		},
		{name: "no args", cfg: Config{BuildTree: "/"}, wantErr: "no command"},
		{name: "empty command", cfg: Config{BuildTree: "/", Args: []string{""}}, wantErr: "no command"},
		{name: "no build tree", cfg: Config{Args: []string{"true"}}, wantErr: "must be an absolute path"},
		{name: "relative build tree", cfg: Config{BuildTree: "bt", Args: []string{"true"}}, wantErr: "must be an absolute path"},
		{name: "unknown network", cfg: Config{BuildTree: "/", Args: []string{"true"}, Network: "bridge"}, wantErr: `network "bridge"`},
		{name: "relative bind source", cfg: Config{BuildTree: "/", Args: []string{"true"}, Binds: []Bind{{Source: "s", Target: "/t"}}}, wantErr: "bind source"},
		{name: "relative bind target", cfg: Config{BuildTree: "/", Args: []string{"true"}, Binds: []Bind{{Source: "/s", Target: "t"}}}, wantErr: "bind target"},
		{name: "bind over root", cfg: Config{BuildTree: "/", Args: []string{"true"}, Binds: []Bind{{Source: "/s", Target: "/x/.."}}}, wantErr: "bind target"},
		{name: "bind into proc", cfg: Config{BuildTree: "/", Args: []string{"true"}, Binds: []Bind{{Source: "/s", Target: "/proc/sys"}}}, wantErr: "bind target"},
		{name: "bind into dev", cfg: Config{BuildTree: "/", Args: []string{"true"}, Binds: []Bind{{Source: "/s", Target: "/dev"}}}, wantErr: "bind target"},
		{name: "bind into sys", cfg: Config{BuildTree: "/", Args: []string{"true"}, Binds: []Bind{{Source: "/s", Target: "/sys/fs"}}}, wantErr: "bind target"},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			cfg := test.cfg
			err := cfg.check()
			if test.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), test.wantErr) {
					t.Fatalf("check: %v, want an error with %q", err, test.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("check: %v", err)
			}
			if !reflect.DeepEqual(cfg, test.want) {
				t.Fatalf("checked config\n%+v\nwant\n%+v", cfg, test.want)
			}
		})
	}
}

// TestInitConfigRoundTrip sends a config the way Run does and reads it
// the way init does.
func TestInitConfigRoundTrip(t *testing.T) {
	binds := []Bind{{Source: "/lib", Target: LibDir, ReadOnly: true}, {Source: "/out", Target: OutputDir}}
	tests := []struct {
		name string
		cfg  Config
		want initConfig
	}{
		{
			name: "defaults",
			cfg:  Config{BuildTree: "/", Args: []string{"true"}},
			want: initConfig{BuildTree: "/", Network: NetworkHost, Hostname: "forge-buildroot",
				Env: DefaultEnv(), Args: []string{"true"}, Dir: "/", NewRoot: "/state/root-1"},
		},
		{
			name: "every field",
			cfg: Config{BuildTree: "/bt", Chroot: true, Binds: binds, Network: NetworkPrivate, Hostname: "h",
				Env: []string{"A=1", "B=two words"}, Args: []string{"/usr/bin/env", "-0", "x y"}, Dir: "/work",
				// Not init's business: they stay with Run.
				Timeout: time.Second, ForwardSignals: true, StateDir: "/state", InitPath: "/forge"},
			want: initConfig{BuildTree: "/bt", Chroot: true, Binds: binds, Network: NetworkPrivate, Hostname: "h",
				Env: []string{"A=1", "B=two words"}, Args: []string{"/usr/bin/env", "-0", "x y"}, Dir: "/work",
				NewRoot: "/state/root-1"},
		},
		{
			name: "empty environment stays empty",
			cfg:  Config{BuildTree: "/", Args: []string{"true"}, Env: []string{}},
			want: initConfig{BuildTree: "/", Network: NetworkHost, Hostname: "forge-buildroot",
				Env: []string{}, Args: []string{"true"}, Dir: "/", NewRoot: "/state/root-1"},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			cfg := test.cfg
			if err := cfg.check(); err != nil {
				t.Fatal(err)
			}
			var pipe bytes.Buffer
			if err := writeInitConfig(&pipe, newInitConfig(cfg, "/state/root-1")); err != nil {
				t.Fatal(err)
			}
			got, err := readInitConfig(&pipe)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, test.want) {
				t.Fatalf("init got\n%+v\nwant\n%+v", got, test.want)
			}
		})
	}
}

func TestReadInitConfigRefusesGarbage(t *testing.T) {
	for _, in := range []string{"", `{"build_tree": "/"`, `["args"]`, `{"args": "true"}`} {
		if ic, err := readInitConfig(strings.NewReader(in)); err == nil {
			t.Errorf("readInitConfig(%q) = %+v, want an error", in, ic)
		}
	}
}

// TestInitReportRoundTrip reports a phase's failure the way init does and
// reads it the way Run does.
func TestInitReportRoundTrip(t *testing.T) {
	tests := []struct {
		name     string
		phase    string
		err      error
		wantMsg  string
		wantIs   error // the sentinel the SetupError matches
		wantIsnt error
	}{
		{
			name: "command not found", phase: "exec",
			err:     &phaseError{kindNotFound, fmt.Errorf("command %q: %w", "nope", ErrCommandNotFound)},
			wantMsg: `command "nope": command not found`, wantIs: ErrCommandNotFound, wantIsnt: ErrNoUsr,
		},
		{
			name: "no usr, wrapped", phase: "buildtree",
			err:     fmt.Errorf("outer: %w", &phaseError{kindNoUsr, errors.New("build tree /x: no usr")}),
			wantMsg: "outer: build tree /x: no usr", wantIs: ErrNoUsr, wantIsnt: ErrCommandNotFound,
		},
		{
			name: "plain failure", phase: "dev",
			err:     errors.New("mknod /dev/null: operation not permitted"),
			wantMsg: "mknod /dev/null: operation not permitted", wantIsnt: ErrCommandNotFound,
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			var pipe bytes.Buffer
			writeInitReport(&pipe, test.phase, test.err)
			err := readInitReport(pipe.Bytes())
			var se *SetupError
			if !errors.As(err, &se) {
				t.Fatalf("got %T %v, want a *SetupError", err, err)
			}
			if se.Phase != test.phase || se.Message != test.wantMsg {
				t.Fatalf("phase %q message %q, want %q %q", se.Phase, se.Message, test.phase, test.wantMsg)
			}
			if test.wantIs != nil && !errors.Is(err, test.wantIs) {
				t.Errorf("errors.Is(%v, %v) = false", err, test.wantIs)
			}
			if errors.Is(err, test.wantIsnt) || errors.Is(err, ErrTimeout) {
				t.Errorf("%v matches a sentinel it should not", err)
			}
		})
	}
}

func TestReadInitReportRefusesGarbage(t *testing.T) {
	err := readInitReport([]byte("Go runtime: panic"))
	var se *SetupError
	if err == nil || errors.As(err, &se) || !strings.Contains(err.Error(), "init reported") {
		t.Fatalf("got %v, want an error quoting what init wrote", err)
	}
}

func TestReproducibleExt4Config(t *testing.T) {
	epoch := int64(1783764997)
	tests := []struct {
		name     string
		mounts   []FSMount
		epoch    *int64
		wantData []string
		wantSet  bool
	}{
		{"ext4 and fat", []FSMount{{FSType: "ext4"}, {FSType: "vfat", Data: "umask=077"}, {FSType: "ext4", Data: "noatime"}}, &epoch,
			[]string{"nodelalloc", "umask=077", "noatime,nodelalloc"}, true},
		{"no ext4", []FSMount{{FSType: "xfs"}}, &epoch, []string{""}, false},
		{"no epoch", []FSMount{{FSType: "ext4"}}, nil, []string{""}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Config{Mounts: tt.mounts, ReproducibleExt4: tt.epoch}
			ic := newInitConfig(cfg, "/root")
			if (ic.ReproducibleExt4 != nil) != tt.wantSet {
				t.Errorf("ReproducibleExt4 set = %v, want %v", ic.ReproducibleExt4 != nil, tt.wantSet)
			}
			for i, m := range ic.Mounts {
				if m.Data != tt.wantData[i] {
					t.Errorf("mount %d: data %q, want %q", i, m.Data, tt.wantData[i])
				}
			}
			if tt.wantSet && cfg.Mounts[0].Data == "nodelalloc" {
				t.Error("newInitConfig changed the caller's mounts")
			}
		})
	}
}
