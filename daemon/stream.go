package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"

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
	h, release, err := d.resolvePinned(req.Tree)
	if err != nil {
		fail(err)
		return
	}
	defer release()
	w.Header().Set("Content-Type", client.StreamContentType)
	if err := d.store.StreamTree(r.Context(), h, w); err != nil && !errors.Is(err, context.Canceled) {
		d.cfg.Logf("stream %s: %v", h.Short(), err)
	}
}
