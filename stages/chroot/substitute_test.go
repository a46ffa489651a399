package chroot

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// watched makes a tree with an etc directory and a Chroot watching it
// (Watch needs no privileges: it only reads the mount table).
func watched(t *testing.T) (*Chroot, string) {
	t.Helper()
	tree := t.TempDir()
	if err := os.Mkdir(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	c, err := Watch(tree, &bytes.Buffer{})
	if err != nil {
		t.Fatal(err)
	}
	return c, tree
}

func inode(t *testing.T, p string) uint64 {
	t.Helper()
	st, err := os.Lstat(p)
	if err != nil {
		t.Fatal(err)
	}
	return st.Sys().(*syscall.Stat_t).Ino
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSubstitute(t *testing.T) {
	const ours = "nameserver 192.0.2.53\n"
	tests := []struct {
		name   string
		before func(t *testing.T, p string) // what the tree has at etc/resolv.conf
		check  func(t *testing.T, p string) // that it has it again afterwards
	}{
		{
			name:   "nothing",
			before: func(t *testing.T, p string) {},
			check: func(t *testing.T, p string) {
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Errorf("%s after teardown: %v, want it gone", p, err)
				}
			},
		},
		{
			name: "file",
			before: func(t *testing.T, p string) {
				if err := os.WriteFile(p, []byte("nameserver 198.51.100.1\n"), 0o600); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, p string) {
				st, err := os.Lstat(p)
				if err != nil {
					t.Fatal(err)
				}
				if st.Mode() != 0o600 || readFile(t, p) != "nameserver 198.51.100.1\n" {
					t.Errorf("%s after teardown: mode %v, %q; want the original back", p, st.Mode(), readFile(t, p))
				}
			},
		},
		{
			name: "dangling symlink",
			before: func(t *testing.T, p string) {
				if err := os.Symlink("../run/systemd/resolve/stub-resolv.conf", p); err != nil {
					t.Fatal(err)
				}
			},
			check: func(t *testing.T, p string) {
				target, err := os.Readlink(p)
				if err != nil || target != "../run/systemd/resolve/stub-resolv.conf" {
					t.Errorf("%s after teardown: link to %q (%v), want the original symlink", p, target, err)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, tree := watched(t)
			p := filepath.Join(tree, "etc/resolv.conf")
			tt.before(t, p)
			var ino uint64
			if _, err := os.Lstat(p); err == nil {
				ino = inode(t, p)
			}
			if err := c.Substitute("etc/resolv.conf", []byte(ours), 0o644); err != nil {
				t.Fatal(err)
			}
			st, err := os.Lstat(p)
			if err != nil {
				t.Fatal(err)
			}
			if !st.Mode().IsRegular() || st.Mode().Perm() != 0o644 || readFile(t, p) != ours {
				t.Errorf("substitute: mode %v, %q; want a 0644 file with %q", st.Mode(), readFile(t, p), ours)
			}
			if err := c.Teardown(); err != nil {
				t.Fatal(err)
			}
			tt.check(t, p)
			if ino != 0 && inode(t, p) != ino {
				t.Errorf("%s is a new inode after teardown: the original was not put back", p)
			}
			if _, err := os.Lstat(filepath.Join(tree, "etc", savedName("resolv.conf"))); !os.IsNotExist(err) {
				t.Errorf("the set-aside original is still there: %v", err)
			}
			// Idempotent: nothing left to do.
			if err := c.Teardown(); err != nil {
				t.Errorf("second teardown: %v", err)
			}
			tt.check(t, p)
		})
	}
}

// A command that replaces or removes the substitute keeps its change.
func TestSubstituteChangedMeanwhile(t *testing.T) {
	for _, change := range []string{"replaced", "removed"} {
		t.Run(change, func(t *testing.T) {
			c, tree := watched(t)
			log := c.log.(*bytes.Buffer)
			p := filepath.Join(tree, "etc/resolv.conf")
			if err := os.WriteFile(p, []byte("original\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := c.Substitute("etc/resolv.conf", []byte("ours\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
			if change == "replaced" {
				if err := os.Symlink("../run/resolvconf/resolv.conf", p); err != nil {
					t.Fatal(err)
				}
			}
			if err := c.Teardown(); err != nil {
				t.Fatal(err)
			}
			target, err := os.Readlink(p)
			switch change {
			case "replaced":
				if target != "../run/resolvconf/resolv.conf" {
					t.Errorf("after teardown: link %q (%v), want the package's symlink kept", target, err)
				}
			case "removed":
				if _, err := os.Lstat(p); !os.IsNotExist(err) {
					t.Errorf("after teardown: %v, want it still removed", err)
				}
			}
			if _, err := os.Lstat(filepath.Join(tree, "etc", savedName("resolv.conf"))); !os.IsNotExist(err) {
				t.Errorf("the set-aside original is still there: %v", err)
			}
			if !strings.Contains(log.String(), change) {
				t.Errorf("log %q does not say the file was %s", log.String(), change)
			}
		})
	}
}

func TestSubstituteRefuses(t *testing.T) {
	t.Run("bad paths", func(t *testing.T) {
		c, _ := watched(t)
		for _, rel := range []string{"", "/etc/x", "../x", "etc/../../x", "etc/", "etc/./x", "."} {
			if err := c.Substitute(rel, nil, 0o644); err == nil {
				t.Errorf("Substitute(%q): no error", rel)
			}
		}
	})
	t.Run("no directory", func(t *testing.T) {
		c, _ := watched(t)
		if err := c.Substitute("usr/sbin/policy-rc.d", nil, 0o755); err == nil {
			t.Error("Substitute into a missing directory: no error")
		}
	})
	t.Run("leftover of a crash", func(t *testing.T) {
		c, tree := watched(t)
		saved := filepath.Join(tree, "etc", savedName("resolv.conf"))
		if err := os.WriteFile(saved, []byte("from a crashed run"), 0o644); err != nil {
			t.Fatal(err)
		}
		err := c.Substitute("etc/resolv.conf", nil, 0o644)
		if err == nil || !strings.Contains(err.Error(), "interrupted") {
			t.Errorf("Substitute with a leftover original: %v, want an error saying so", err)
		}
		if readFile(t, saved) != "from a crashed run" {
			t.Error("the leftover was overwritten")
		}
	})
	t.Run("symlinks stay inside the tree", func(t *testing.T) {
		tree := t.TempDir()
		outside := t.TempDir()
		// etc points at a directory of the host, by absolute path; in the
		// chroot that path does not exist.
		if err := os.Symlink(outside, filepath.Join(tree, "etc")); err != nil {
			t.Fatal(err)
		}
		c, err := Watch(tree, nil)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Substitute("etc/resolv.conf", []byte("x"), 0o644); err == nil {
			t.Error("Substitute through a symlink out of the tree: no error")
		}
		if entries, _ := os.ReadDir(outside); len(entries) != 0 {
			t.Errorf("Substitute wrote outside the tree: %v", entries)
		}
		// The same symlink, relative, resolved as in the chroot: allowed.
		if err := os.Remove(filepath.Join(tree, "etc")); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(tree, "usr/etc"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("/usr/etc", filepath.Join(tree, "etc")); err != nil {
			t.Fatal(err)
		}
		if err := c.Substitute("etc/resolv.conf", []byte("x"), 0o644); err != nil {
			t.Fatalf("Substitute through a symlink inside the tree: %v", err)
		}
		if readFile(t, filepath.Join(tree, "usr/etc/resolv.conf")) != "x" {
			t.Error("Substitute did not write through the tree's own symlink")
		}
		if err := c.Teardown(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Lstat(filepath.Join(tree, "usr/etc/resolv.conf")); !os.IsNotExist(err) {
			t.Errorf("after teardown: %v, want it gone", err)
		}
	})
}

func TestWatchRefusesRoot(t *testing.T) {
	for _, root := range []string{"/", "/.", "/usr/.."} {
		if _, err := Watch(root, nil); err == nil {
			t.Errorf("Watch(%q): no error", root)
		}
	}
	if _, err := Watch(filepath.Join(t.TempDir(), "missing"), nil); err == nil {
		t.Error("Watch of a missing directory: no error")
	}
}

// A substitute can be executed while it is in place: policy-rc.d is run
// by every maintainer script that starts a service, and a writer kept
// open would make that fail with ETXTBSY.
func TestSubstituteExecutable(t *testing.T) {
	c, tree := watched(t)
	if err := c.Substitute("etc/policy-rc.d", []byte("#!/bin/sh\nexit 101\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	defer c.Teardown()
	err := exec.Command(filepath.Join(tree, "etc/policy-rc.d")).Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 101 {
		t.Fatalf("running the substitute: %v, want exit status 101", err)
	}
}
