package loopd

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/forge-build/forge/loopd/loopdev"
	"golang.org/x/sys/unix"
)

// Default socket paths.
const (
	DefaultSocket      = "/run/loopd/loopd.sock"
	DefaultDgramSocket = "/run/loopd/loopd.dgram"
)

// socketMode lets anyone connect: who may use loopd is decided per request
// from the peer's credentials, so that a refused client gets an answer
// instead of EACCES on connect.
const socketMode = 0o666

// ListenSeqpacket binds a SOCK_SEQPACKET listener at path, creating its
// directory. A stale socket file (nobody answers on it) is replaced; a live
// one is an error, so two daemons never steal each other's socket.
func ListenSeqpacket(path string) (*net.UnixListener, error) {
	if err := prepareSocketPath(path, "unixpacket"); err != nil {
		return nil, err
	}
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("loopd: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, socketMode); err != nil {
		l.Close()
		return nil, fmt.Errorf("loopd: %w", err)
	}
	return l, nil
}

// ListenDatagram binds a SOCK_DGRAM socket at path, like ListenSeqpacket.
// It is removed again by RemoveSocket, as a datagram socket does not remove
// its file on Close.
func ListenDatagram(path string) (*net.UnixConn, error) {
	if err := prepareSocketPath(path, "unixgram"); err != nil {
		return nil, err
	}
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return nil, fmt.Errorf("loopd: listen on %s: %w", path, err)
	}
	if err := os.Chmod(path, socketMode); err != nil {
		c.Close()
		os.Remove(path)
		return nil, fmt.Errorf("loopd: %w", err)
	}
	return c, nil
}

// RemoveSocket removes the socket file at path if it is a socket.
func RemoveSocket(path string) error {
	fi, err := os.Lstat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket {
		return nil
	}
	return os.Remove(path)
}

func prepareSocketPath(path, network string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("loopd: %w", err)
	}
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("loopd: %w", err)
	}
	if fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("loopd: %s exists and is not a socket", path)
	}
	c, err := net.Dial(network, path)
	if err == nil {
		c.Close()
		return fmt.Errorf("loopd: another server answers on %s", path)
	}
	if !errors.Is(err, unix.ECONNREFUSED) {
		return fmt.Errorf("loopd: probing %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("loopd: removing stale socket: %w", err)
	}
	return nil
}

// ActivatedSockets returns the sockets systemd passed by socket activation
// (LISTEN_PID, LISTEN_FDS), one of each type at most; both nil when loopd
// was not socket-activated. The variables are removed from the environment.
func ActivatedSockets() (seq *net.UnixListener, dgram *net.UnixConn, err error) {
	pid, fdsVar := os.Getenv("LISTEN_PID"), os.Getenv("LISTEN_FDS")
	if fdsVar == "" || pid != strconv.Itoa(os.Getpid()) {
		return nil, nil, nil
	}
	for _, v := range []string{"LISTEN_PID", "LISTEN_FDS", "LISTEN_FDNAMES"} {
		os.Unsetenv(v)
	}
	n, err := strconv.Atoi(fdsVar)
	if err != nil || n < 0 {
		return nil, nil, fmt.Errorf("loopd: LISTEN_FDS=%q", fdsVar)
	}
	const firstFD = 3 // SD_LISTEN_FDS_START
	fail := func(err error) (*net.UnixListener, *net.UnixConn, error) {
		if seq != nil {
			seq.Close()
		}
		if dgram != nil {
			dgram.Close()
		}
		return nil, nil, err
	}
	for fd := firstFD; fd < firstFD+n; fd++ {
		unix.CloseOnExec(fd)
		typ, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_TYPE)
		if err != nil {
			return fail(&loopdev.OpError{Op: "getsockopt(SO_TYPE)", Path: "fd " + strconv.Itoa(fd), Err: err})
		}
		f := os.NewFile(uintptr(fd), "activated socket "+strconv.Itoa(fd))
		switch {
		case typ == unix.SOCK_SEQPACKET && seq == nil:
			l, err := net.FileListener(f)
			f.Close()
			if err != nil {
				return fail(fmt.Errorf("loopd: activated fd %d: %w", fd, err))
			}
			seq = l.(*net.UnixListener)
		case typ == unix.SOCK_DGRAM && dgram == nil:
			c, err := net.FilePacketConn(f)
			f.Close()
			if err != nil {
				return fail(fmt.Errorf("loopd: activated fd %d: %w", fd, err))
			}
			dgram = c.(*net.UnixConn)
		default:
			f.Close()
			return fail(fmt.Errorf("loopd: activated fd %d: unexpected socket type %d (want one SOCK_SEQPACKET, one SOCK_DGRAM)", fd, typ))
		}
	}
	if seq == nil && dgram == nil {
		return nil, nil, fmt.Errorf("loopd: socket-activated without sockets (LISTEN_FDS=%s)", strings.TrimSpace(fdsVar))
	}
	return seq, dgram, nil
}
