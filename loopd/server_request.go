package loopd

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/forge-build/forge/loopd/loopdev"
	"github.com/forge-build/forge/loopd/ptable"
	"golang.org/x/sys/unix"
)

// outcome is what a request did, for its log line.
type outcome struct {
	file    string // the backing file, as our fd table names it
	retries int    // devices taken by others before ours (EBUSY)
}

// node is a device node to create in the client's directory.
type node struct {
	name string
	rdev uint64
}

// handle answers one request of client c and logs one line about it. It
// closes the message's fds, whatever happens.
func (s *Server) handle(ctx context.Context, c *client, msg message) Response {
	defer closeFDs(msg.fds)
	start := time.Now()
	attrs := []any{"transport", c.transport, "pid", c.pid, "uid", c.uid}
	var out outcome
	resp, err := s.attach(ctx, c, msg, &out)
	if out.file != "" {
		attrs = append(attrs, "file", out.file)
	}
	if err != nil {
		s.log.Warn("request refused", append(attrs, "error", err)...)
		return Response{Error: err.Error()}
	}
	attrs = append(attrs, "device", resp.Devname)
	if len(resp.Partitions) > 0 {
		attrs = append(attrs, "partitions", resp.Partitions)
	}
	if out.retries > 0 {
		attrs = append(attrs, "retries", out.retries)
	}
	s.log.Info("request", append(attrs, "took", time.Since(start).Round(time.Microsecond))...)
	return resp
}

// attach validates the request and the peer, attaches a device, adds its
// partitions and creates the nodes. On failure nothing it did is left.
func (s *Server) attach(ctx context.Context, c *client, msg message, out *outcome) (resp Response, err error) {
	switch {
	case msg.truncated:
		return resp, fmt.Errorf("%w: message longer than %d bytes", ErrInvalidRequest, MaxMessageSize)
	case msg.tooManyFDs:
		return resp, fmt.Errorf("%w: control data cut: more than %d file descriptors, or some refused by the kernel", ErrInvalidRequest, MaxFDs)
	case !s.authorized(c.uid, c.gid):
		return resp, fmt.Errorf("%w: uid %d gid %d is neither root nor in an allowed group", ErrPermission, c.uid, c.gid)
	}
	req, err := ParseRequest(msg.data, len(msg.fds))
	if err != nil {
		return resp, err
	}
	backing, dir := msg.fds[req.FD], msg.fds[req.DirFD]
	out.file = loopdev.FDPath(backing)
	if err := loopdev.CheckBacking(backing, req.ReadOnly); err != nil {
		return resp, err
	}
	owner := loopdev.Owner{}
	if c.uid != 0 {
		owner = loopdev.Owner{UID: c.uid, GID: c.gid}
	}
	if err := loopdev.CheckDir(dir, owner); err != nil {
		return resp, err
	}
	if err := s.reserve(c); err != nil {
		return resp, err
	}
	reserved := true
	defer func() {
		if reserved {
			s.unreserve(c)
		}
	}()
	dev, err := s.ctl.Attach(ctx, backing, loopdev.Options{
		Offset:     req.Offset,
		SizeLimit:  req.SizeLimit,
		SectorSize: req.SectorSize,
		ReadOnly:   req.ReadOnly,
		Partscan:   req.Partscan,
		Lock:       req.Lock,
	})
	if err != nil {
		return resp, err
	}
	out.retries = dev.Retries
	h := &held{dev: dev, uid: c.uid, dir: -1}
	undo := func(err error) (Response, error) {
		if reserved {
			// drop takes the device off the uid's count; the client's
			// reservation is given back here.
			s.mu.Lock()
			c.reserved--
			s.mu.Unlock()
			reserved = false
		}
		s.drop(c, h)
		return Response{}, err
	}
	nodes := []node{{dev.Name(), dev.Rdev}}
	if req.Partscan {
		parts, err := addPartitions(dev)
		if err != nil {
			return undo(err)
		}
		for _, p := range parts {
			nodes = append(nodes, node{p.Name, p.Rdev})
			resp.Partitions = append(resp.Partitions, p.Name)
		}
	}
	// A handle on the directory of its own (O_PATH: no open file of the
	// client's is kept), to remove the nodes by name on release.
	h.dir, err = unix.Openat(dir, ".", unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		h.dir = -1
		return undo(&loopdev.OpError{Op: "openat(O_PATH)", Device: dev.Path(), Path: "dir fd", Err: err})
	}
	for _, n := range nodes {
		made, err := loopdev.MakeNode(dir, n.name, n.rdev, owner)
		if made != nil {
			h.nodes = append(h.nodes, made)
		}
		if err != nil {
			return undo(err)
		}
	}
	if len(h.nodes) == 0 {
		// Every node was there already (a devtmpfs /dev): nothing of
		// loopd's to remove, so no reason to pin the directory's mount.
		unix.Close(h.dir)
		h.dir = -1
	}
	reserved = false // keep takes the reservation over, whatever it answers
	if err := s.keep(c, h); err != nil {
		return undo(err)
	}
	resp.Devname = dev.Name()
	return resp, nil
}

// addPartitions reads the device's partition table and adds, with BLKPG,
// each partition the kernel does not already have (this kernel may have no
// partition parsers at all; one that has them found the same ones when
// LO_FLAGS_PARTSCAN was set). It returns the device's partitions.
func addPartitions(dev *loopdev.Device) ([]loopdev.Partition, error) {
	size, err := dev.Size()
	if err != nil {
		return nil, err
	}
	ss, err := dev.SectorSize()
	if err != nil {
		return nil, err
	}
	table, err := ptable.Read(dev, size, ss)
	if err != nil {
		return nil, fmt.Errorf("partscan %s: %w", dev.Name(), err)
	}
	have, err := dev.Partitions()
	if err != nil {
		return nil, err
	}
	for _, p := range table.Partitions {
		if slices.ContainsFunc(have, func(h loopdev.Partition) bool { return h.Number == p.Number }) {
			continue
		}
		if err := dev.AddPartition(p.Number, p.Start, p.Size); err != nil {
			return nil, fmt.Errorf("partscan %s (%s table): %w", dev.Name(), table.Kind, err)
		}
	}
	return dev.Partitions()
}
