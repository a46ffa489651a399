package loopd

import (
	"net"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// socketPair returns two connected Unix sockets of the given type as
// *net.UnixConn, closed at the end of the test.
func socketPair(t *testing.T, typ int) (a, b *net.UnixConn) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	conv := func(fd int) *net.UnixConn {
		f := os.NewFile(uintptr(fd), "socketpair")
		defer f.Close()
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c.(*net.UnixConn)
	}
	return conv(fds[0]), conv(fds[1])
}

func openFDs(t *testing.T, n int) []int {
	t.Helper()
	var fds []int
	for range n {
		fd, err := unix.Open("/dev/null", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		fds = append(fds, fd)
	}
	t.Cleanup(func() { closeFDs(fds) })
	return fds
}

func countFDs(t *testing.T) int {
	t.Helper()
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(entries)
}

func TestReadMessage(t *testing.T) {
	tests := []struct {
		name           string
		data           string
		nfds           int
		wantFDs        int // -1: any number
		wantTrunc      bool
		wantTooMany    bool
		wantDataPrefix string
	}{
		{name: "request with two fds", data: `{"fd":0,"dir_fd":1}`, nfds: 2, wantFDs: 2, wantDataPrefix: `{"fd"`},
		{name: "as many fds as allowed", data: `{}`, nfds: MaxFDs, wantFDs: MaxFDs, wantDataPrefix: `{}`},
		{name: "too many fds", data: `{}`, nfds: MaxFDs + 1, wantFDs: MaxFDs + 1, wantTooMany: true, wantDataPrefix: `{}`},
		// More than the control buffer holds: the kernel cuts the list
		// and closes the rest itself.
		{name: "far too many fds", data: `{}`, nfds: 64, wantFDs: -1, wantTooMany: true, wantDataPrefix: `{}`},
		{name: "too long", data: strings.Repeat("x", MaxMessageSize+1), nfds: 2, wantFDs: 2, wantTrunc: true, wantDataPrefix: "xxx"},
		{name: "no fds", data: `{}`, nfds: 0, wantFDs: 0, wantDataPrefix: `{}`},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			a, b := socketPair(t, unix.SOCK_SEQPACKET)
			sent := openFDs(t, test.nfds)
			before := countFDs(t)
			var oob []byte
			if len(sent) > 0 {
				oob = unix.UnixRights(sent...)
			}
			if _, _, err := a.WriteMsgUnix([]byte(test.data), oob, nil); err != nil {
				t.Fatal(err)
			}
			msg, err := readMessage(b)
			if err != nil {
				t.Fatal(err)
			}
			if (test.wantFDs >= 0 && len(msg.fds) != test.wantFDs) || msg.truncated != test.wantTrunc || msg.tooManyFDs != test.wantTooMany {
				t.Errorf("got %d fds, truncated %v, too many %v; want %d, %v, %v",
					len(msg.fds), msg.truncated, msg.tooManyFDs, test.wantFDs, test.wantTrunc, test.wantTooMany)
			}
			if !strings.HasPrefix(string(msg.data), test.wantDataPrefix) {
				t.Errorf("data %.20q, want prefix %q", msg.data, test.wantDataPrefix)
			}
			for _, fd := range msg.fds {
				var st unix.Stat_t
				if err := unix.Fstat(fd, &st); err != nil {
					t.Errorf("received fd %d: %v", fd, err)
				}
			}
			closeFDs(msg.fds)
			// The kernel closed what did not fit; we closed the rest.
			if after := countFDs(t); after != before {
				t.Errorf("fd table grew from %d to %d", before, after)
			}
		})
	}
}

// TestReadMessageCredentials: with SO_PASSCRED on the receiving datagram
// socket, every message carries the sender's credentials, and a sender
// with SO_PASSCRED is autobound, so it has an address to reply to.
func TestReadMessageCredentials(t *testing.T) {
	a, b := socketPair(t, unix.SOCK_DGRAM)
	if err := setPassCred(b); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Write([]byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	msg, err := readMessage(b)
	if err != nil {
		t.Fatal(err)
	}
	if msg.creds == nil {
		t.Fatal("no credentials")
	}
	if int(msg.creds.Pid) != os.Getpid() || int(msg.creds.Uid) != os.Getuid() {
		t.Errorf("credentials %+v, want pid %d uid %d", msg.creds, os.Getpid(), os.Getuid())
	}
}

func TestParseControlTolerant(t *testing.T) {
	good := unix.UnixRights(7, 8)
	tests := []struct {
		name string
		oob  []byte
		want []int
	}{
		{"empty", nil, nil},
		{"rights", good, []int{7, 8}},
		{"short header", good[:4], nil},
		{"length beyond buffer", func() []byte {
			b := append([]byte(nil), good...)
			b[0] = 200
			return b
		}(), nil},
		{"rights then garbage", append(append([]byte(nil), good...), 1, 2, 3), []int{7, 8}},
		{"rights twice", append(append([]byte(nil), good...), unix.UnixRights(9)...), []int{7, 8, 9}},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			fds, _ := parseControl(test.oob)
			if len(fds) != len(test.want) {
				t.Fatalf("fds = %v, want %v", fds, test.want)
			}
			for i := range fds {
				if fds[i] != test.want[i] {
					t.Fatalf("fds = %v, want %v", fds, test.want)
				}
			}
		})
	}
}
