package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"syscall"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/daemon/client"
)

// streamTree answers POST /v1/stream: the tree asked for, as a treestream
// (cas.StreamTree), for the builder to hand to a stage that copies it.
//
// Root alone may ask. A member of the daemon's group reads trees through
// their mounts, where each file's mode still applies; a stream carries
// every file's bytes, /etc/shadow's too, so it would read what the modes
// keep from them.
//
// An error before the stream starts is answered as every call's is (one
// JSON event); the stream has its own content type.
func (d *Daemon) streamTree(w http.ResponseWriter, r *http.Request) {
	fail := func(err error) {
		if !errors.Is(err, context.Canceled) {
			d.cfg.Logf("stream: %v", err)
		}
		w.Header().Set("Content-Type", "application/x-ndjson")
		json.NewEncoder(w).Encode(client.Event{Error: client.ToWire(err)})
	}
	cred, _ := r.Context().Value(peerKey{}).(*unix.Ucred)
	if cred == nil || cred.Uid != 0 {
		fail(fmt.Errorf("%w: a tree stream is for root alone (it carries every file's content, whatever its mode)", client.ErrDenied))
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err != nil {
		fail(err)
		return
	}
	req, err := decode[client.StreamRequest](body)
	if err != nil {
		fail(err)
		return
	}
	select {
	case d.streams <- struct{}{}:
		defer func() { <-d.streams }()
	default:
		fail(fmt.Errorf("%w: %d tree streams are being sent already", syscall.EBUSY, cap(d.streams)))
		return
	}
	h, release, err := d.resolvePinned(req.Tree)
	if err != nil {
		fail(err)
		return
	}
	defer release()
	sw := &streamResponse{w: w}
	err = d.store.StreamTree(r.Context(), h, sw)
	switch {
	case err == nil:
	case !sw.started:
		fail(err) // the root was missing or not a directory: say so
	case errors.Is(err, context.Canceled), errors.Is(err, syscall.EPIPE), errors.Is(err, syscall.ECONNRESET):
		// The reader went away: a stage that stopped, or failed.
	default:
		d.cfg.Logf("stream %s: %v", h.Short(), err)
	}
}

// maxStreams bounds the tree streams the daemon sends at once: each
// holds a connection, buffers and a pin of its tree, and the daemon is
// every build's on the host.
const maxStreams = 16

// streamResponse gives the answer the stream's content type with its
// first bytes, so that an error before any is answered as an error.
type streamResponse struct {
	w       http.ResponseWriter
	started bool
}

func (s *streamResponse) Write(p []byte) (int, error) {
	if !s.started {
		s.started = true
		s.w.Header().Set("Content-Type", client.StreamContentType)
	}
	return s.w.Write(p)
}
