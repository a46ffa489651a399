package builder

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/builder/manifest"
	"github.com/forge-build/forge/buildroot"
)

// TestAPIException: what a stage sends to osbuild's API socket, as
// osbuild's jsoncomm client sends it, is the stage's exception; other
// messages, junk and passed file descriptors change nothing.
func TestAPIException(t *testing.T) {
	s, err := serveAPI(context.Background(), filepath.Join(t.TempDir(), "api.sock"), apiOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// One connection, as a stage's one client: messages in order.
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: s.path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	send := func(msg []byte, fds ...int) {
		var oob []byte
		if len(fds) > 0 {
			oob = unix.UnixRights(fds...)
		}
		if _, _, err := c.WriteMsgUnix(msg, oob, nil); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	send([]byte("not json"))
	send([]byte(`{"method": "metadata", "data": {}}`), int(f.Fd()))
	exc := map[string]any{"method": "exception", "exception": map[string]string{"type": "ValueError", "value": "bad option", "traceback": "  File x\n"}}
	b, _ := json.Marshal(exc)
	send(b)
	exc["exception"] = map[string]string{"type": "Second", "value": "later"}
	b, _ = json.Marshal(exc)
	send(b)
	// The server reads messages as they come; give it the moment it needs.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		got := s.exc
		s.mu.Unlock()
		if got != nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	e := s.close()
	if e == nil || e.Error() != "ValueError: bad option" || e.Traceback != "  File x\n" {
		t.Fatalf("exception %+v, want the first one sent", e)
	}
	if _, err := os.Stat(s.path); !os.IsNotExist(err) {
		t.Errorf("the socket %s stays after close: %v", s.path, err)
	}
}

// TestMountsV2: osbuild's mount options become mount(2) data, and what
// could smuggle other options in is refused.
func TestMountsV2(t *testing.T) {
	if !kernelHasFS("ext4") {
		t.Skip("no ext4 in this kernel's /proc/filesystems")
	}
	dev := &manifest.Device{Name: "disk", Type: "org.osbuild.loopback"}
	for _, tc := range []struct {
		name, opts string
		partition  int
		target     string
		want       buildroot.FSMount
		err        string
	}{
		{"root", `{}`, 0, "/", buildroot.FSMount{Source: "/dev/loop7", Target: "/run/osbuild/mounts", FSType: "ext4"}, ""},
		{"nested, read-only", `{"readonly": true, "norecovery": true}`, 0, "/boot", buildroot.FSMount{Source: "/dev/loop7", Target: "/run/osbuild/mounts/boot", FSType: "ext4", Data: "norecovery", ReadOnly: true}, ""},
		{"partition", `{}`, 2, "/", buildroot.FSMount{Source: "/dev/loop7p2", Target: "/run/osbuild/mounts", FSType: "ext4"}, ""},
		{"uid", `{"uid": 1000, "gid": 10}`, 0, "/", buildroot.FSMount{Source: "/dev/loop7", Target: "/run/osbuild/mounts", FSType: "ext4", Data: "uid=1000,gid=10"}, ""},
		{"smuggled option", `{"umask": "077,dev"}`, 0, "/", buildroot.FSMount{}, "has ',' or '='"},
		{"smuggled value", `{"shortname": "mixed=x"}`, 0, "/", buildroot.FSMount{}, "has ',' or '='"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := &manifest.Stage{Mounts: []*manifest.Mount{{
				Name: "m", Type: "org.osbuild.ext4", Source: dev, Target: tc.target, Partition: tc.partition,
				Options: json.RawMessage(tc.opts), Path: "pipelines[0].stages[0].mounts[0]",
			}}}
			env := &stageEnv{devicePaths: map[string]string{"disk": "/dev/loop7"}}
			args, err := mountsV2(st, env)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("mountsV2 = %v, want an error saying %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if len(env.mounts) != 1 || env.mounts[0] != tc.want {
				t.Errorf("mount %+v, want %+v", env.mounts, tc.want)
			}
			if p := args["m"].(map[string]any)["path"]; p != tc.want.Target {
				t.Errorf("arguments path %v, want %s", p, tc.want.Target)
			}
		})
	}
	// A mount type forge does not provide, or one without a device.
	for _, mt := range []*manifest.Mount{
		{Name: "o", Type: "org.osbuild.ostree.deployment", Target: "/", Options: json.RawMessage(`{}`)},
		{Name: "x", Type: "org.osbuild.xfs", Options: json.RawMessage(`{}`)},
	} {
		if _, err := mountsV2(&manifest.Stage{Mounts: []*manifest.Mount{mt}}, &stageEnv{}); err == nil {
			t.Errorf("mount %s of type %s accepted", mt.Name, mt.Type)
		}
	}
}

// TestOpenRegularBeneath: a loop device's backing file is a regular file
// of the tree; device nodes, FIFOs (whose open would block for good),
// directories and symlinks out of the tree are refused without being
// opened.
func TestOpenRegularBeneath(t *testing.T) {
	tree := t.TempDir()
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("host"), 0o600)
	os.WriteFile(filepath.Join(tree, "disk.img"), []byte("img"), 0o644)
	os.Mkdir(filepath.Join(tree, "sub"), 0o755)
	os.Symlink("../disk.img", filepath.Join(tree, "sub", "rel"))
	os.Symlink(outside, filepath.Join(tree, "abs"))
	os.Symlink("../../../../../../../../"+outside, filepath.Join(tree, "up"))
	if err := unix.Mkfifo(filepath.Join(tree, "fifo"), 0o644); err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Open(tree, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"disk.img", true}, {"sub/rel", true}, {"sub/../disk.img", true},
		{"abs", false}, {"up", false}, {"../" + filepath.Base(tree) + "/disk.img", false},
		{"fifo", false}, {"sub", false}, {"missing", false},
	} {
		done := make(chan error, 1)
		go func() {
			f, err := openRegularBeneath(fd, tc.name, os.O_RDWR)
			if err == nil {
				b := make([]byte, 3)
				f.Read(b)
				if string(b) != "img" {
					err = errors.New("read " + string(b))
				}
				f.Close()
			}
			done <- err
		}()
		select {
		case err := <-done:
			if (err == nil) != tc.ok {
				t.Errorf("openRegularBeneath(%s) = %v, want ok %v", tc.name, err, tc.ok)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("openRegularBeneath(%s) blocks", tc.name)
		}
	}
}
