package builder

import (
	"os"
	"path/filepath"
	"testing"
)

func TestResolveRunner(t *testing.T) {
	lib := t.TempDir()
	os.MkdirAll(filepath.Join(lib, "runners"), 0o755)
	for _, n := range []string{"org.osbuild.fedora30", "org.osbuild.fedora38", "org.osbuild.debian", "org.osbuild.rhel82"} {
		os.WriteFile(filepath.Join(lib, "runners", n), nil, 0o755)
	}
	// Most of osbuild's runners are symlinks.
	os.Symlink("org.osbuild.rhel82", filepath.Join(lib, "runners", "org.osbuild.centos8"))
	for _, tc := range []struct{ name, want string }{
		{"org.osbuild.fedora99", "org.osbuild.fedora38"},
		{"org.osbuild.fedora38", "org.osbuild.fedora38"},
		{"org.osbuild.fedora37", "org.osbuild.fedora30"},
		{"org.osbuild.fedora29", ""},
		{"org.osbuild.debian12", "org.osbuild.debian"},
		{"org.osbuild.centos9", "org.osbuild.centos8"},
		{"org.osbuild.arch", ""},
	} {
		got, err := ResolveRunner(lib, tc.name)
		if tc.want == "" {
			if err == nil {
				t.Errorf("ResolveRunner(%s) = %s, want an error", tc.name, got)
			}
			continue
		}
		if err != nil || filepath.Base(got) != tc.want {
			t.Errorf("ResolveRunner(%s) = %s, %v; want %s", tc.name, got, err, tc.want)
		}
	}
	// forge's libdir answers every name with its generic runner.
	own := t.TempDir()
	os.WriteFile(filepath.Join(own, ownLibdirMarker), nil, 0o755)
	if got, err := ResolveRunner(own, "org.osbuild.whatever7"); err != nil || filepath.Base(got) != GenericRunner {
		t.Errorf("own libdir: %s, %v", got, err)
	}
}

func TestHostRunnerName(t *testing.T) {
	for _, tc := range []struct{ osRelease, want string }{
		{"ID=debian\nVERSION_ID=\"12\"\n", "org.osbuild.debian12"},
		{"NAME=\"Fedora\"\nID=fedora\nVERSION_ID=41\n", "org.osbuild.fedora41"},
		{"ID=rhel\nVERSION_ID=\"9.4\"\n", "org.osbuild.rhel94"},
		{"ID=arch\n", "org.osbuild.arch"},
		{"# nothing\n", "org.osbuild.linux"},
	} {
		p := filepath.Join(t.TempDir(), "os-release")
		os.WriteFile(p, []byte(tc.osRelease), 0o644)
		if got := HostRunnerName(p); got != tc.want {
			t.Errorf("HostRunnerName(%q) = %s, want %s", tc.osRelease, got, tc.want)
		}
	}
}
