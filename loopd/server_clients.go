package loopd

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/user"
	"slices"
	"strconv"

	"github.com/forge-build/forge/loopd/loopdev"
	"golang.org/x/sys/unix"
)

// client is who holds devices: one SEQPACKET connection, or one process
// using the datagram socket. Its mutable fields are guarded by Server.mu.
type client struct {
	transport string // "seqpacket" or "dgram"
	pid       int32
	uid, gid  uint32

	devices  []*held
	reserved int  // devices being attached right now
	inflight int  // datagram requests being handled (datagram clients)
	gone     bool // released: no more devices may be added
	pidfd    *os.File
}

// held is a device a client holds, with the nodes loopd made for it.
type held struct {
	dev *loopdev.Device
	uid uint32
	// dir is an O_PATH handle on the directory the nodes were made in (-1
	// when none was made), to remove them by name on release.
	dir   int
	nodes []*loopdev.Node
}

// handleDatagram finds (or creates) the client for the sending process and
// handles the request for it.
func (s *Server) handleDatagram(ctx context.Context, msg message) Response {
	if msg.creds == nil {
		// Cannot happen with SO_PASSCRED set; refuse rather than guess.
		closeFDs(msg.fds)
		err := fmt.Errorf("%w: no sender credentials", ErrPermission)
		s.log.Warn("request refused", "transport", "dgram", "error", err)
		return Response{Error: err.Error()}
	}
	if !s.authorized(msg.creds.Uid, msg.creds.Gid) {
		// Refused before any per-process state (a pidfd) is created.
		return s.handle(ctx, &client{transport: "dgram", pid: msg.creds.Pid, uid: msg.creds.Uid, gid: msg.creds.Gid, gone: true}, msg)
	}
	c, err := s.datagramClient(msg.creds)
	if err != nil {
		closeFDs(msg.fds)
		s.log.Warn("request refused", "transport", "dgram", "pid", msg.creds.Pid, "uid", msg.creds.Uid, "error", err)
		return Response{Error: err.Error()}
	}
	defer s.doneDatagram(c)
	return s.handle(ctx, c, msg)
}

// datagramClient returns the client of process cred.Pid, creating it with a
// pidfd watched for the process's exit. The pidfd is opened as soon as the
// request is read, so a process that sent it cannot be mistaken for a later
// one with the same PID, short of PID reuse within these microseconds.
func (s *Server) datagramClient(cred *unix.Ucred) (*client, error) {
	s.mu.Lock()
	if c := s.byPID[cred.Pid]; c != nil && !c.gone {
		c.inflight++
		s.mu.Unlock()
		return c, nil
	}
	s.mu.Unlock()
	fd, err := unix.PidfdOpen(int(cred.Pid), unix.PIDFD_NONBLOCK)
	if err != nil {
		if errors.Is(err, unix.ESRCH) {
			return nil, fmt.Errorf("%w: client process %d is gone", ErrClosed, cred.Pid)
		}
		return nil, &loopdev.OpError{Op: "pidfd_open", Path: "pid " + strconv.Itoa(int(cred.Pid)), Err: err}
	}
	pidfd := os.NewFile(uintptr(fd), "pidfd "+strconv.Itoa(int(cred.Pid)))
	s.mu.Lock()
	defer s.mu.Unlock()
	if c := s.byPID[cred.Pid]; c != nil && !c.gone {
		pidfd.Close() // another worker of the same process won the race
		c.inflight++
		return c, nil
	}
	if s.closed {
		pidfd.Close()
		return nil, fmt.Errorf("%w: loopd is shutting down", ErrClosed)
	}
	c := &client{transport: "dgram", pid: cred.Pid, uid: cred.Uid, gid: cred.Gid, pidfd: pidfd, inflight: 1}
	s.byPID[c.pid] = c
	s.clients[c] = struct{}{}
	s.wg.Add(1)
	go s.watchExit(c)
	return c, nil
}

// doneDatagram ends one request of a datagram client; a client left with
// no devices is dropped at once, with its pidfd, so that loopd keeps no fd
// for a process that holds nothing.
func (s *Server) doneDatagram(c *client) {
	s.mu.Lock()
	c.inflight--
	idle := c.inflight == 0 && c.reserved == 0 && len(c.devices) == 0 && !c.gone
	s.mu.Unlock()
	if idle {
		s.release(c, "")
	}
}

// watchExit waits until the client's process exits (its pidfd becomes
// readable) and releases the client. Closing the pidfd (release) ends it.
func (s *Server) watchExit(c *client) {
	defer s.wg.Done()
	rc, err := c.pidfd.SyscallConn()
	if err == nil {
		err = rc.Read(func(fd uintptr) bool {
			p := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			n, perr := unix.Poll(p, 0)
			return perr == nil && n > 0
		})
	}
	if err == nil {
		s.release(c, "process exited")
	}
}

func (s *Server) addClient(c *client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.clients[c] = struct{}{}
	return true
}

// release gives up every device of the client and forgets it. It is
// idempotent. An empty why means the client was idle: nothing to log.
func (s *Server) release(c *client, why string) {
	s.mu.Lock()
	if c.gone {
		s.mu.Unlock()
		return
	}
	c.gone = true
	devices := c.devices
	c.devices = nil
	delete(s.clients, c)
	if s.byPID[c.pid] == c {
		delete(s.byPID, c.pid)
	}
	s.mu.Unlock()
	if c.pidfd != nil {
		c.pidfd.Close()
	}
	names := make([]string, 0, len(devices))
	for _, h := range devices {
		names = append(names, h.dev.Name())
		s.drop(c, h)
	}
	if len(devices) > 0 || (why != "" && why != "connection closed") {
		s.log.Info("released", "transport", c.transport, "pid", c.pid, "why", why, "devices", names)
	}
}

// drop ends the client's hold on a device: first every node loopd made for
// it is revoked (root's, mode 0000, through whatever names the client gave
// it) and unlinked; only then is the device detached and its number free
// for the next user. A node that cannot be revoked might still open the
// device, so the device is then kept bound, to the client's own file,
// until loopd exits (quarantine).
func (s *Server) drop(c *client, h *held) {
	revoked := true
	for _, n := range h.nodes {
		if err := n.Revoke(); err != nil {
			revoked = false
			s.log.Error("revoke", "transport", c.transport, "pid", c.pid, "device", h.dev.Name(), "node", n.Name, "error", err)
		}
		if h.dir >= 0 {
			moved, err := n.Remove(h.dir)
			if err != nil {
				s.log.Warn("remove node", "transport", c.transport, "pid", c.pid, "device", h.dev.Name(), "node", n.Name, "error", err)
			} else if links, _ := n.Links(); moved && links > 0 && c.uid != 0 {
				s.log.Info("node moved by its client; revoked where it is", "pid", c.pid, "uid", c.uid, "node", n.Name, "links", links)
			}
		}
		n.Close()
	}
	h.nodes = nil
	if h.dir >= 0 {
		unix.Close(h.dir)
		h.dir = -1
	}
	if !revoked {
		s.log.Error("device kept bound until loopd exits: a node of it could not be revoked", "device", h.dev.Name(), "uid", c.uid)
		s.mu.Lock()
		s.quarantine = append(s.quarantine, h)
		s.mu.Unlock()
		return
	}
	s.detach(h)
}

// detach detaches the device of h (which has no nodes left) and stops
// counting it against its uid.
func (s *Server) detach(h *held) {
	if err := h.dev.Detach(); err != nil {
		s.log.Warn("detach", "device", h.dev.Name(), "error", err)
	}
	s.mu.Lock()
	s.uncount(h.uid)
	s.mu.Unlock()
}

// uncount takes one device off uid's count; s.mu must be held.
func (s *Server) uncount(uid uint32) {
	if s.devsByUID[uid]--; s.devsByUID[uid] <= 0 {
		delete(s.devsByUID, uid)
	}
}

// holds reports whether the client holds a device.
func (s *Server) holds(c *client) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(c.devices) > 0
}

// reserve claims one of the client's device slots, and one of its uid's,
// before attaching, so concurrent requests cannot exceed the caps.
func (s *Server) reserve(c *client) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return fmt.Errorf("%w: loopd is shutting down", ErrClosed)
	case c.gone:
		return fmt.Errorf("%w: the client went away", ErrClosed)
	case len(c.devices)+c.reserved >= s.cfg.MaxPerClient:
		return fmt.Errorf("%w: the client already holds %d devices (--max-per-client)", ErrLimit, s.cfg.MaxPerClient)
	case c.uid != 0 && s.devsByUID[c.uid] >= s.cfg.MaxPerUID:
		return fmt.Errorf("%w: uid %d already holds %d devices (--max-per-uid)", ErrLimit, c.uid, s.cfg.MaxPerUID)
	}
	c.reserved++
	s.devsByUID[c.uid]++
	return nil
}

// keep turns a reservation into a held device, unless the client or the
// server went away meanwhile; the caller then drops the device (which
// takes it off the uid's count).
func (s *Server) keep(c *client, h *held) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c.reserved--
	switch {
	case s.closed:
		return fmt.Errorf("%w: loopd is shutting down", ErrClosed)
	case c.gone:
		return fmt.Errorf("%w: the client went away", ErrClosed)
	}
	c.devices = append(c.devices, h)
	return nil
}

// unreserve gives back a reservation that got no device.
func (s *Server) unreserve(c *client) {
	s.mu.Lock()
	c.reserved--
	s.uncount(c.uid)
	s.mu.Unlock()
}

// authorized: root, or in one of the allowed groups by primary group or by
// the group database.
func (s *Server) authorized(uid, gid uint32) bool {
	if uid == 0 {
		return true
	}
	if len(s.cfg.Groups) == 0 {
		return false
	}
	if slices.Contains(s.cfg.Groups, gid) {
		return true
	}
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return false
	}
	gids, err := u.GroupIds()
	if err != nil {
		return false
	}
	for _, g := range gids {
		n, err := strconv.ParseUint(g, 10, 32)
		if err == nil && slices.Contains(s.cfg.Groups, uint32(n)) {
			return true
		}
	}
	return false
}
