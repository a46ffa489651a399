package loopd

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// Client asks a loopd for loop devices. The devices it gets stay attached
// while the client lives: until Close for a SEQPACKET client, until the
// process exits for a datagram one. Requests are answered in order; a
// Client is safe for concurrent use, one request at a time.
type Client struct {
	mu   sync.Mutex
	conn *net.UnixConn
	addr string
}

// Dial connects to loopd's SEQPACKET socket at path.
func Dial(ctx context.Context, path string) (*Client, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "unixpacket", path)
	if err != nil {
		return nil, fmt.Errorf("loopd: dial %s: %w", path, err)
	}
	return &Client{conn: c.(*net.UnixConn), addr: path}, nil
}

// DialDatagram connects to loopd's datagram socket at path the way the
// seed-era osbuild client does: SO_PASSCRED set, which autobinds the socket
// to an abstract address where the reply arrives.
func DialDatagram(ctx context.Context, path string) (*Client, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("loopd: dial %s: socket: %w", path, err)
	}
	f := os.NewFile(uintptr(fd), "loopd datagram client")
	defer f.Close() // net.FileConn holds a dup
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
		return nil, fmt.Errorf("loopd: dial %s: SO_PASSCRED: %w", path, err)
	}
	if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
		return nil, fmt.Errorf("loopd: dial %s: %w", path, err)
	}
	c, err := net.FileConn(f)
	if err != nil {
		return nil, fmt.Errorf("loopd: dial %s: %w", path, err)
	}
	return &Client{conn: c.(*net.UnixConn), addr: path}, nil
}

// Close closes the connection; on SEQPACKET, loopd then detaches every
// device this client got.
func (c *Client) Close() error { return c.conn.Close() }

// AttachOptions are the optional fields of a request.
type AttachOptions struct {
	Offset     uint64 // bytes into the backing file
	SizeLimit  uint64 // bytes; 0 means to the end
	SectorSize uint32 // 512…4096; 0 means 512
	Partscan   bool   // add partitions and create their nodes
	ReadOnly   bool
}

// Attachment is a device loopd attached for this client. Its nodes are in
// the directory given to Attach.
type Attachment struct {
	Devname    string   // "loopN"
	Partitions []string // "loopNp1", … with Partscan
}

// ReplyError is an error reply from loopd.
type ReplyError struct{ Message string }

func (e *ReplyError) Error() string { return e.Message }

// Attach asks for a loop device backed by backing, with its node (and its
// partitions' nodes) created in dir. backing must be open read-write unless
// opts.ReadOnly; dir may be an O_PATH handle. Both stay owned by the caller.
func (c *Client) Attach(ctx context.Context, backing, dir *os.File, opts AttachOptions) (*Attachment, error) {
	req := Request{
		FD:         0,
		DirFD:      1,
		Offset:     opts.Offset,
		SizeLimit:  opts.SizeLimit,
		SectorSize: opts.SectorSize,
		Partscan:   opts.Partscan,
		ReadOnly:   opts.ReadOnly,
	}
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	resp, err := c.roundTrip(ctx, body, unix.UnixRights(int(backing.Fd()), int(dir.Fd())))
	runtime.KeepAlive(backing)
	runtime.KeepAlive(dir)
	if err != nil {
		return nil, fmt.Errorf("loopd %s: attach %s: %w", c.addr, backing.Name(), err)
	}
	if resp.Error != "" {
		return nil, fmt.Errorf("loopd %s: attach %s: %w", c.addr, backing.Name(), &ReplyError{resp.Error})
	}
	if resp.Devname == "" {
		return nil, fmt.Errorf("loopd %s: attach %s: reply without devname", c.addr, backing.Name())
	}
	return &Attachment{Devname: resp.Devname, Partitions: resp.Partitions}, nil
}

// roundTrip sends one message and reads the reply, both bounded by ctx.
func (c *Client) roundTrip(ctx context.Context, body, oob []byte) (*Response, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// A context that ends interrupts the blocked call through a deadline
	// in the past; the deadline is cleared for the next request.
	interrupted := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(interrupted)
		c.conn.SetDeadline(time.Unix(1, 0))
	})
	defer func() {
		if !stop() {
			<-interrupted
			c.conn.SetDeadline(time.Time{})
		}
	}()
	if _, _, err := c.conn.WriteMsgUnix(body, oob, nil); err != nil {
		return nil, ctxErr(ctx, err)
	}
	buf := make([]byte, MaxMessageSize)
	roob := make([]byte, oobSize)
	n, oobn, flags, _, err := c.conn.ReadMsgUnix(buf, roob)
	n, oobn = max(n, 0), max(oobn, 0)
	fds, _ := parseControl(roob[:oobn])
	closeFDs(fds) // a reply carries none; never keep what a peer slips in
	if err != nil {
		return nil, ctxErr(ctx, err)
	}
	if flags&unix.MSG_TRUNC != 0 {
		return nil, fmt.Errorf("reply longer than %d bytes", MaxMessageSize)
	}
	var resp Response
	if err := json.Unmarshal(buf[:n], &resp); err != nil {
		return nil, fmt.Errorf("bad reply %q: %w", buf[:n], err)
	}
	return &resp, nil
}

func ctxErr(ctx context.Context, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return cerr
	}
	return err
}
