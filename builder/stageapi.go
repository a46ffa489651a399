package builder

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// osbuild's stages report what went wrong through osbuild's API socket,
// /run/osbuild/api/osbuild (osbuild/api.py): a SOCK_SEQPACKET socket where
// each message is one JSON object (osbuild/util/jsoncomm.py), possibly
// with file descriptors. The one call today's stages make is
// {"method": "exception", "exception": {"type", "value", "traceback"}}
// before they exit; osbuild reports it as the stage's error.

// StageException is what a stage reported through the API socket.
type StageException struct {
	Type      string `json:"type"`
	Value     string `json:"value"`
	Traceback string `json:"traceback"`
}

func (e *StageException) Error() string {
	if e.Value == "" {
		return e.Type
	}
	return e.Type + ": " + e.Value
}

// Bounds on what a stage may send: a traceback is a few KiB; the stage is
// untrusted, so connections and message sizes are capped.
const (
	apiMaxMessage = 1 << 20
	apiMaxConns   = 8
	apiReadLimit  = 10 * time.Minute
)

// apiServer serves one stage's API socket.
type apiServer struct {
	l    *net.UnixListener
	path string
	wg   sync.WaitGroup
	sem  chan struct{}

	mu    sync.Mutex
	exc   *StageException
	conns map[*net.UnixConn]bool
}

// serveAPI listens on path (a new socket) and serves until close.
func serveAPI(path string) (*apiServer, error) {
	os.Remove(path)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("stage API socket %s: %w", path, err)
	}
	l.SetUnlinkOnClose(true)
	s := &apiServer{l: l, path: path, sem: make(chan struct{}, apiMaxConns), conns: map[*net.UnixConn]bool{}}
	s.wg.Go(s.accept)
	return s, nil
}

func (s *apiServer) accept() {
	for {
		c, err := s.l.AcceptUnix()
		if err != nil {
			return
		}
		select {
		case s.sem <- struct{}{}:
		default:
			c.Close() // too many at once: a stage has no need for more
			continue
		}
		s.mu.Lock()
		s.conns[c] = true
		s.mu.Unlock()
		s.wg.Go(func() {
			defer func() {
				s.mu.Lock()
				delete(s.conns, c)
				s.mu.Unlock()
				c.Close()
				<-s.sem
			}()
			s.serve(c)
		})
	}
}

func (s *apiServer) serve(c *net.UnixConn) {
	buf := make([]byte, apiMaxMessage)
	oob := make([]byte, unix.CmsgSpace(16*4))
	for {
		c.SetReadDeadline(time.Now().Add(apiReadLimit))
		n, oobn, _, _, err := c.ReadMsgUnix(buf, oob)
		closeRights(oob[:oobn])
		if err != nil || n == 0 {
			return
		}
		var msg struct {
			Method    string          `json:"method"`
			Exception *StageException `json:"exception"`
		}
		if json.Unmarshal(buf[:n], &msg) != nil {
			continue
		}
		if msg.Method == "exception" && msg.Exception != nil {
			s.mu.Lock()
			if s.exc == nil { // the first is the cause
				s.exc = msg.Exception
			}
			s.mu.Unlock()
		}
	}
}

// closeRights closes every file descriptor a control message carried: the
// API takes none, and a stage must not make forge hold its files.
func closeRights(oob []byte) {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return
	}
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
}

// close stops serving and returns the exception the stage reported, if
// any.
func (s *apiServer) close() *StageException {
	s.l.Close()
	s.mu.Lock()
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return s.exc
}
