package loopd

import (
	"encoding/json"
	"net"
	"time"

	"github.com/forge-build/forge/loopd/loopdev"
	"golang.org/x/sys/unix"
)

// replyTimeout bounds how long a SEQPACKET reply may wait for room in the
// socket buffer: a client that sends without reading loses its connection.
const replyTimeout = 10 * time.Second

// refuseTimeout bounds the error reply to a connection refused when
// accepted; its peer's queue is empty, so the write does not wait.
const refuseTimeout = 100 * time.Millisecond

// replyConn sends resp on a SEQPACKET connection.
func (s *Server) replyConn(conn *net.UnixConn, resp Response) error {
	b, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	conn.SetWriteDeadline(time.Now().Add(replyTimeout))
	_, err = conn.Write(b)
	return err
}

// replyTo sends resp to addr from the shared datagram socket. It never
// blocks, so one client that does not read cannot stall the others: a
// sender whose queue is full loses its reply (it is not reading, so not
// waiting for it either).
func (s *Server) replyTo(conn *net.UnixConn, addr *net.UnixAddr, resp Response) error {
	b, err := json.Marshal(resp)
	if err != nil {
		return err
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Write(func(fd uintptr) bool {
		serr = unix.Sendto(int(fd), b, unix.MSG_DONTWAIT|unix.MSG_NOSIGNAL, &unix.SockaddrUnix{Name: addr.Name})
		return true
	})
	if err != nil {
		return err
	}
	return serr
}

func setPassCred(c *net.UnixConn) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_PASSCRED, 1)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return &loopdev.OpError{Op: "setsockopt(SO_PASSCRED)", Path: c.LocalAddr().String(), Err: err}
	}
	return nil
}

func peerCred(c *net.UnixConn) (*unix.Ucred, error) {
	rc, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var serr error
	err = rc.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return nil, &loopdev.OpError{Op: "getsockopt(SO_PEERCRED)", Err: err}
	}
	return cred, nil
}
