package builder

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
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
//
// forge adds one call for its own copy stage, treeStreamMethod: a stage
// asks for one of its tree inputs as a treestream, sending the write end
// of a pipe with the request, and reads the tree from the other end
// rather than through the input's FUSE mount (see treeStream).

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
	// apiMaxStreams bounds a stage's tree streams at once: a copy takes
	// one at a time (two while the last one's relay winds down).
	apiMaxStreams = 2
	// apiStreamStall ends a relay whose stage read nothing for that long,
	// so that a stage cannot hold a stream of the shared daemon open by
	// never reading it (or by reading nothing from a FIFO it also
	// writes).
	apiStreamStall = 5 * time.Minute
)

// treeStreamMethod is forge's API call for a tree input as a treestream:
// {"method": "forge.tree-stream", "input": NAME} with one file descriptor,
// a pipe's write end. The answer is {"ok": true} (the stream follows on
// the pipe) or {"error": MESSAGE}.
const treeStreamMethod = "forge.tree-stream"

// apiOptions are what a stage's API serves besides exceptions.
type apiOptions struct {
	// trees are the stage's tree inputs: the stored tree of each input
	// name, which the stage may ask for as a stream.
	trees map[string]string
	// stream opens a stored tree as a treestream.
	stream func(ctx context.Context, tree string) (io.ReadCloser, error)
	// logf reports what goes wrong with a stream after it started: the
	// stage then sees it end early.
	logf func(format string, args ...any)
	// stall ends a stream its stage read nothing of for that long;
	// apiStreamStall when zero.
	stall time.Duration
}

// apiServer serves one stage's API socket.
type apiServer struct {
	l      *net.UnixListener
	path   string
	opts   apiOptions
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	sem    chan struct{}

	mu      sync.Mutex
	closed  bool
	exc     *StageException
	conns   map[*net.UnixConn]bool
	streams map[*os.File]bool // pipes being written
}

// serveAPI listens on path (a new socket) and serves until close or the
// end of ctx, which also ends the tree streams it relays.
func serveAPI(ctx context.Context, path string, opts apiOptions) (*apiServer, error) {
	os.Remove(path)
	l, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: path, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("stage API socket %s: %w", path, err)
	}
	l.SetUnlinkOnClose(true)
	if opts.logf == nil {
		opts.logf = func(string, ...any) {}
	}
	if opts.stall == 0 {
		opts.stall = apiStreamStall
	}
	ctx, cancel := context.WithCancel(ctx)
	s := &apiServer{
		l: l, path: path, opts: opts, ctx: ctx, cancel: cancel,
		sem: make(chan struct{}, apiMaxConns), conns: map[*net.UnixConn]bool{}, streams: map[*os.File]bool{},
	}
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
		if s.closed {
			s.mu.Unlock()
			c.Close()
			<-s.sem
			return
		}
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
		fds := receivedRights(oob[:oobn])
		if err != nil || n == 0 {
			closeAll(fds)
			return
		}
		var msg struct {
			Method    string          `json:"method"`
			Exception *StageException `json:"exception"`
			Input     string          `json:"input"`
		}
		if json.Unmarshal(buf[:n], &msg) != nil {
			closeAll(fds)
			continue
		}
		if msg.Method == treeStreamMethod {
			s.treeStream(c, msg.Input, fds)
			continue
		}
		closeAll(fds)
		if msg.Method == "exception" && msg.Exception != nil {
			s.mu.Lock()
			if s.exc == nil { // the first is the cause
				s.exc = msg.Exception
			}
			s.mu.Unlock()
		}
	}
}

// receivedRights are the file descriptors a control message carried. The
// caller closes every one it does not keep: a stage must not make forge
// hold its files.
func receivedRights(oob []byte) []int {
	msgs, err := unix.ParseSocketControlMessage(oob)
	if err != nil {
		return nil
	}
	var all []int
	for _, m := range msgs {
		fds, err := unix.ParseUnixRights(&m)
		if err != nil {
			continue
		}
		all = append(all, fds...)
	}
	return all
}

func closeAll(fds []int) {
	for _, fd := range fds {
		unix.Close(fd)
	}
}

// treeStream answers a forge.tree-stream call: it checks that input is
// one of the stage's tree inputs and that the one descriptor sent is a
// pipe open for writing, answers, and writes the stream into the pipe
// until it ends, the stage stops reading, or the server closes.
//
// It gives the stage nothing it lacks: the stage reads the same tree
// through the input's mount. The pipe check keeps forge from writing the
// tree into any other file the stage could pass (its own tree's files are
// writable to it, but so is everything forge then writes, and a pipe is
// all the call needs).
func (s *apiServer) treeStream(c *net.UnixConn, input string, fds []int) {
	answer := func(err error) {
		msg := map[string]any{"ok": true}
		if err != nil {
			msg = map[string]any{"error": err.Error()}
		}
		b, _ := json.Marshal(msg)
		c.WriteMsgUnix(b, nil, nil)
	}
	if len(fds) != 1 {
		closeAll(fds)
		answer(fmt.Errorf("%s takes one file descriptor, a pipe's write end; %d came", treeStreamMethod, len(fds)))
		return
	}
	fd := fds[0]
	if err := checkWritablePipe(fd); err != nil {
		unix.Close(fd)
		answer(err)
		return
	}
	tree, ok := s.opts.trees[input]
	if !ok || s.opts.stream == nil {
		unix.Close(fd)
		answer(fmt.Errorf("the stage has no tree input %q to stream", input))
		return
	}
	// Non-blocking, so that the poller runs the writes, and close and the
	// stall deadline can stop one that waits on a stage not reading.
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		answer(fmt.Errorf("the pipe sent: %w", err))
		return
	}
	pipe := os.NewFile(uintptr(fd), "tree stream of input "+input)
	var err error
	s.mu.Lock()
	switch {
	case s.closed:
		err = errors.New("the stage's API is closing")
	case len(s.streams) >= apiMaxStreams:
		err = fmt.Errorf("%d tree streams are open already", len(s.streams))
	default:
		s.streams[pipe] = true
	}
	s.mu.Unlock()
	if err != nil {
		pipe.Close()
		answer(err)
		return
	}
	drop := func() {
		s.mu.Lock()
		delete(s.streams, pipe)
		s.mu.Unlock()
		pipe.Close()
	}
	r, err := s.opts.stream(s.ctx, tree)
	if err != nil {
		drop()
		answer(fmt.Errorf("input %s: %w", input, err))
		return
	}
	answer(nil)
	s.wg.Go(func() {
		defer func() {
			drop()
			r.Close()
		}()
		// Large writes: each one into the pipe wakes the stage's reader.
		// (io.Copy would use the pipe's ReadFrom, 32 KiB at a time.)
		buf := make([]byte, 1<<20)
		w := stallWriter{pipe, s.opts.stall}
		if _, err := io.CopyBuffer(w, r, buf); err != nil && s.ctx.Err() == nil && !errors.Is(err, unix.EPIPE) {
			s.opts.logf("tree stream of input %s: %v", input, err)
		}
	})
}

// stallWriter writes to a pipe, failing a write the reader leaves waiting
// for stall.
type stallWriter struct {
	pipe  *os.File
	stall time.Duration
}

func (w stallWriter) Write(p []byte) (int, error) {
	w.pipe.SetWriteDeadline(time.Now().Add(w.stall))
	n, err := w.pipe.Write(p)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = fmt.Errorf("the stage read nothing for %s: %w", w.stall, err)
	}
	return n, err
}

// checkWritablePipe checks that fd is a pipe (or FIFO) open for writing.
func checkWritablePipe(fd int) error {
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return fmt.Errorf("the descriptor sent: %w", err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFIFO {
		return fmt.Errorf("the descriptor sent is not a pipe (mode %#o)", st.Mode)
	}
	fl, err := unix.FcntlInt(uintptr(fd), unix.F_GETFL, 0)
	if err != nil {
		return fmt.Errorf("the descriptor sent: %w", err)
	}
	if fl&unix.O_ACCMODE == unix.O_RDONLY {
		return errors.New("the pipe sent is open for reading: send its write end")
	}
	return nil
}

// close stops serving and returns the exception the stage reported, if
// any.
func (s *apiServer) close() *StageException {
	s.l.Close()
	s.cancel()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	for p := range s.streams {
		p.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return s.exc
}
