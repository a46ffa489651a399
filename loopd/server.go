package loopd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/forge-build/forge/loopd/loopdev"
	"golang.org/x/sys/unix"
)

// Defaults of Config.
const (
	DefaultMaxPerClient   = 16
	DefaultMaxConns       = 256
	DefaultMaxConnsPerUID = 16
	DefaultIdleTimeout    = 2 * time.Minute
	// maxDatagramWorkers bounds the datagram requests handled at once; the
	// reader waits for a free worker, so a flood queues in the socket.
	maxDatagramWorkers = 16
)

// Config is what a Server allows.
type Config struct {
	// Groups are group IDs whose members may use loopd; root always may.
	// Empty means root only.
	Groups []uint32
	// MaxPerClient caps the devices one client holds at once
	// (DefaultMaxPerClient if 0). A client is a SEQPACKET connection, or a
	// process on the datagram socket.
	MaxPerClient int
	// MaxPerUID caps the devices all the clients of one uid other than
	// root hold together, on both sockets (MaxPerClient if 0). Root is
	// capped per client only: it could bind loop devices itself anyway.
	MaxPerUID int
	// MaxConns caps the concurrent SEQPACKET connections of users other
	// than root, together (DefaultMaxConns if 0). Root's connections have
	// a budget of their own of the same size, so no one else can use up
	// root's.
	MaxConns int
	// MaxConnsPerUID caps the concurrent SEQPACKET connections of one uid
	// other than root (DefaultMaxConnsPerUID if 0).
	MaxConnsPerUID int
	// IdleTimeout closes a SEQPACKET connection that holds no device and
	// has sent nothing for that long (DefaultIdleTimeout if 0; never if
	// negative). A connection holding devices is never idle: osbuild
	// keeps it open, silent, for as long as it uses them.
	IdleTimeout time.Duration
	// Logger receives one line per request (and per client released).
	// Nil means slog.Default().
	Logger *slog.Logger
}

// Server hands out loop devices over a SEQPACKET listener and a datagram
// socket. Create it with NewServer and run it with Serve.
type Server struct {
	cfg Config
	log *slog.Logger
	ctl *loopdev.Control

	mu      sync.Mutex
	closed  bool
	clients map[*client]struct{}
	byPID   map[int32]*client // datagram clients by process
	conns   map[*net.UnixConn]struct{}
	// rootConns and userConns count the connections of root and of
	// everyone else; connsByUID those of each uid but root.
	rootConns, userConns int
	connsByUID           map[uint32]int
	// devsByUID counts the devices of each uid, held, being attached or
	// quarantined, over all its clients.
	devsByUID map[uint32]int
	// quarantine holds devices whose nodes could not be revoked: they stay
	// bound to their client's file, so that no one else gets them while
	// the client may still open them. They are detached at shutdown.
	quarantine []*held

	wg sync.WaitGroup // connections, datagram workers, PID watchers
}

// NewServer opens /dev/loop-control and returns a server ready to Serve.
func NewServer(cfg Config) (*Server, error) {
	if cfg.MaxPerClient <= 0 {
		cfg.MaxPerClient = DefaultMaxPerClient
	}
	if cfg.MaxPerUID <= 0 {
		cfg.MaxPerUID = cfg.MaxPerClient
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.MaxConnsPerUID <= 0 {
		cfg.MaxConnsPerUID = DefaultMaxConnsPerUID
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	ctl, err := loopdev.OpenControl()
	if err != nil {
		return nil, fmt.Errorf("loopd: %w", err)
	}
	return &Server{
		cfg:     cfg,
		log:     log,
		ctl:     ctl,
		clients: map[*client]struct{}{},
		byPID:   map[int32]*client{},
		conns:   map[*net.UnixConn]struct{}{},

		connsByUID: map[uint32]int{},
		devsByUID:  map[uint32]int{},
	}, nil
}

// Serve answers requests on seq (SEQPACKET, today's osbuild) and dgram
// (SOCK_DGRAM, the seed-era client); either may be nil. It owns and closes
// both. It returns nil when ctx ends, or the error that stopped a socket;
// either way every device it attached has been detached by then, and the
// Server cannot be used again.
func (s *Server) Serve(ctx context.Context, seq *net.UnixListener, dgram *net.UnixConn) error {
	var loops sync.WaitGroup
	if seq == nil && dgram == nil {
		s.shutdown(nil, nil, &loops)
		return errors.New("loopd: Serve: no socket to serve")
	}
	if dgram != nil {
		if err := setPassCred(dgram); err != nil {
			s.shutdown(seq, dgram, &loops)
			return err
		}
	}
	errc := make(chan error, 2)
	if seq != nil {
		loops.Go(func() { errc <- s.acceptLoop(ctx, seq) })
	}
	if dgram != nil {
		loops.Go(func() { errc <- s.datagramLoop(ctx, dgram) })
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	s.shutdown(seq, dgram, &loops)
	return err
}

// shutdown stops both loops, closes every connection, detaches every device
// and waits for every goroutine. Requests still being handled find the
// server closed when they try to keep their device, and detach it.
func (s *Server) shutdown(seq *net.UnixListener, dgram *net.UnixConn, loops *sync.WaitGroup) {
	s.mu.Lock()
	s.closed = true
	conns := make([]*net.UnixConn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	clients := make([]*client, 0, len(s.clients))
	for c := range s.clients {
		clients = append(clients, c)
	}
	s.mu.Unlock()

	if seq != nil {
		seq.Close()
	}
	if dgram != nil {
		dgram.Close()
	}
	loops.Wait()
	for _, c := range conns {
		c.Close()
	}
	for _, c := range clients {
		s.release(c, "loopd is shutting down")
	}
	s.wg.Wait()
	s.mu.Lock()
	quarantine := s.quarantine
	s.quarantine = nil
	s.mu.Unlock()
	for _, h := range quarantine {
		// Once loopd's fd is closed the kernel would clear the device
		// anyway (autoclear); detach it in order.
		s.detach(h)
	}
	s.ctl.Close()
}

func (s *Server) acceptLoop(ctx context.Context, l *net.UnixListener) error {
	backoff := 5 * time.Millisecond
	for {
		conn, err := l.AcceptUnix()
		if err != nil {
			if isClosed(err) || ctx.Err() != nil {
				return nil
			}
			// Out of fds or memory: wait and retry, as net/http does;
			// anything else ends the listener.
			if errors.Is(err, unix.EMFILE) || errors.Is(err, unix.ENFILE) || errors.Is(err, unix.ENOBUFS) || errors.Is(err, unix.ENOMEM) {
				s.log.Warn("accept", "error", err, "retry_in", backoff)
				select {
				case <-time.After(backoff):
				case <-ctx.Done():
					return nil
				}
				backoff = min(2*backoff, time.Second)
				continue
			}
			return fmt.Errorf("loopd: accept on %s: %w", l.Addr(), err)
		}
		backoff = 5 * time.Millisecond
		cred, err := s.admit(conn)
		if err != nil {
			s.refuseConn(conn, cred, err)
			continue
		}
		if cred == nil {
			conn.Close() // shutting down
			return nil
		}
		go s.serveConn(ctx, conn, cred)
	}
}

// admit decides, as soon as a connection is accepted, whether it may stay:
// its peer must be root or a member (anyone else is answered and closed at
// once, holding nothing), and the connection must fit in its budget. It
// returns nil, nil when the server is closed.
func (s *Server) admit(conn *net.UnixConn) (*unix.Ucred, error) {
	cred, err := peerCred(conn)
	if err != nil {
		return nil, err
	}
	if !s.authorized(cred.Uid, cred.Gid) {
		return cred, fmt.Errorf("%w: uid %d gid %d is neither root nor in an allowed group", ErrPermission, cred.Uid, cred.Gid)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.closed:
		return nil, nil
	case cred.Uid == 0 && s.rootConns >= s.cfg.MaxConns:
		return cred, fmt.Errorf("%w: root already has %d connections", ErrLimit, s.cfg.MaxConns)
	case cred.Uid != 0 && s.userConns >= s.cfg.MaxConns:
		return cred, fmt.Errorf("%w: users other than root already have %d connections", ErrLimit, s.cfg.MaxConns)
	case cred.Uid != 0 && s.connsByUID[cred.Uid] >= s.cfg.MaxConnsPerUID:
		return cred, fmt.Errorf("%w: uid %d already has %d connections (--max-conns-per-uid)", ErrLimit, cred.Uid, s.cfg.MaxConnsPerUID)
	}
	if cred.Uid == 0 {
		s.rootConns++
	} else {
		s.userConns++
		s.connsByUID[cred.Uid]++
	}
	s.conns[conn] = struct{}{}
	s.wg.Add(1)
	return cred, nil
}

// refuseConn answers a connection that may not stay with err, and closes
// it. The reply never waits: the connection is new, so its peer's queue
// has room. A peer that sent its request before the close reads the reply;
// one that sends after it gets EPIPE. Whatever it sent (fds included) is
// dropped unread with the socket.
func (s *Server) refuseConn(conn *net.UnixConn, cred *unix.Ucred, err error) {
	attrs := []any{"transport", "seqpacket", "error", err}
	if cred != nil {
		attrs = append(attrs, "pid", cred.Pid, "uid", cred.Uid)
	}
	s.log.Warn("connection refused", attrs...)
	if b, merr := json.Marshal(Response{Error: err.Error()}); merr == nil {
		conn.SetWriteDeadline(time.Now().Add(refuseTimeout))
		conn.Write(b)
	}
	conn.Close()
}

// serveConn answers the requests of one SEQPACKET connection in order; when
// the connection closes, the client's devices are released. admit has
// counted the connection.
func (s *Server) serveConn(ctx context.Context, conn *net.UnixConn, cred *unix.Ucred) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, conn)
		if cred.Uid == 0 {
			s.rootConns--
		} else {
			s.userConns--
			if s.connsByUID[cred.Uid]--; s.connsByUID[cred.Uid] <= 0 {
				delete(s.connsByUID, cred.Uid)
			}
		}
		s.mu.Unlock()
		conn.Close()
	}()
	c := &client{transport: "seqpacket", pid: cred.Pid, uid: cred.Uid, gid: cred.Gid}
	if !s.addClient(c) {
		return
	}
	defer s.release(c, "connection closed")
	for {
		if s.cfg.IdleTimeout > 0 {
			var deadline time.Time
			if !s.holds(c) {
				deadline = time.Now().Add(s.cfg.IdleTimeout)
			}
			conn.SetReadDeadline(deadline)
		}
		msg, err := readMessage(conn)
		if err != nil {
			// EOF (the client closed), or our own close at shutdown. A
			// zero-length message means EOF on SEQPACKET, so fds sent
			// with one are closed here, unanswered.
			closeFDs(msg.fds)
			switch {
			case errors.Is(err, os.ErrDeadlineExceeded):
				s.log.Info("idle connection closed", "transport", c.transport, "pid", c.pid, "uid", c.uid, "idle", s.cfg.IdleTimeout)
			case !isClosed(err) && !errors.Is(err, io.EOF):
				s.log.Warn("read", "transport", c.transport, "pid", c.pid, "error", err)
			}
			return
		}
		resp := s.handle(ctx, c, msg)
		if err := s.replyConn(conn, resp); err != nil {
			s.log.Warn("reply", "transport", c.transport, "pid", c.pid, "error", err)
			return
		}
	}
}

// datagramLoop reads requests from the datagram socket and hands each to a
// worker; the reply goes to the sender's (autobound) address.
func (s *Server) datagramLoop(ctx context.Context, conn *net.UnixConn) error {
	workers := make(chan struct{}, maxDatagramWorkers)
	for {
		msg, err := readMessage(conn)
		if err != nil {
			closeFDs(msg.fds)
			if isClosed(err) || ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("loopd: read from %s: %w", conn.LocalAddr(), err)
		}
		select {
		case workers <- struct{}{}:
		case <-ctx.Done():
			closeFDs(msg.fds)
			return nil
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			closeFDs(msg.fds)
			return nil
		}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			defer func() { <-workers }()
			resp := s.handleDatagram(ctx, msg)
			if msg.from == nil || msg.from.Name == "" {
				// The seed-era client sets SO_PASSCRED, which autobinds it;
				// a sender with no address cannot be answered at all.
				s.log.Warn("reply dropped: the sender has no address (bind it or set SO_PASSCRED)")
				return
			}
			if err := s.replyTo(conn, msg.from, resp); err != nil {
				s.log.Warn("reply", "transport", "dgram", "to", msg.from.Name, "error", err)
			}
		}()
	}
}
