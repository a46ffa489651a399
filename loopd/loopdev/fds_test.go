package loopdev_test

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/forge-build/forge/loopd/loopdev"
	"golang.org/x/sys/unix"
)

func TestCheckBacking(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "img")
	if err := os.WriteFile(file, make([]byte, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	open := func(path string, flags int) func(t *testing.T) int {
		return func(t *testing.T) int {
			fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			return fd
		}
	}
	tests := []struct {
		name     string
		fd       func(t *testing.T) int
		readOnly bool
		ok       bool
	}{
		{"read-write file", open(file, unix.O_RDWR), false, true},
		{"read-only file, read_only", open(file, unix.O_RDONLY), true, true},
		{"read-write file, read_only", open(file, unix.O_RDWR), true, true},
		{"read-only file", open(file, unix.O_RDONLY), false, false},
		{"write-only file", open(file, unix.O_WRONLY), false, false},
		{"O_PATH file", open(file, unix.O_PATH), true, false},
		{"directory", open(dir, unix.O_RDONLY|unix.O_DIRECTORY), true, false},
		{"socket", func(t *testing.T) int {
			fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			return fd
		}, true, false},
		{"pipe", func(t *testing.T) int {
			var p [2]int
			if err := unix.Pipe2(p[:], unix.O_CLOEXEC); err != nil {
				t.Fatal(err)
			}
			unix.Close(p[1])
			return p[0]
		}, true, false},
		{"character device", open("/dev/null", unix.O_RDWR), false, false},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			fd := test.fd(t)
			defer unix.Close(fd)
			err := loopdev.CheckBacking(fd, test.readOnly)
			if test.ok && err != nil {
				t.Fatalf("CheckBacking: %v", err)
			}
			if !test.ok && !errors.Is(err, loopdev.ErrUnsuitable) {
				t.Fatalf("CheckBacking = %v, want ErrUnsuitable", err)
			}
		})
	}
}

func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "f")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	me := loopdev.Owner{UID: uint32(os.Getuid()), GID: uint32(os.Getgid())}
	stranger := loopdev.Owner{UID: me.UID + 12345, GID: me.GID}
	tests := []struct {
		name   string
		path   string
		flags  int
		client loopdev.Owner
		ok     bool
	}{
		{"own directory", dir, unix.O_RDONLY | unix.O_DIRECTORY, me, true},
		{"O_PATH directory", dir, unix.O_PATH | unix.O_DIRECTORY, me, true},
		{"directory of someone else", dir, unix.O_RDONLY | unix.O_DIRECTORY, stranger, false},
		{"regular file", file, unix.O_RDONLY, me, false},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			fd, err := unix.Open(test.path, test.flags|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			defer unix.Close(fd)
			err = loopdev.CheckDir(fd, test.client)
			if test.ok && err != nil {
				t.Fatalf("CheckDir: %v", err)
			}
			if !test.ok && !errors.Is(err, loopdev.ErrUnsuitable) {
				t.Fatalf("CheckDir = %v, want ErrUnsuitable", err)
			}
		})
	}
}

func TestOpErrorUnwraps(t *testing.T) {
	err := error(&loopdev.OpError{Op: "LOOP_CONFIGURE", Device: "/dev/loop3", Path: "/img", Detail: "offset=0", Err: unix.EBUSY})
	if !errors.Is(err, unix.EBUSY) {
		t.Error("errors.Is(EBUSY) fails through OpError")
	}
	want := "loopdev: LOOP_CONFIGURE /dev/loop3 /img (offset=0): device or resource busy"
	if err.Error() != want {
		t.Errorf("Error() = %q, want %q", err, want)
	}
}
