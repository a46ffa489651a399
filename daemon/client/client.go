package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
)

// Client talks to the daemon of one store.
type Client struct {
	store string
	sock  string
	hc    *http.Client
}

// NewClient returns a client for the daemon of the store at dir. It does
// not connect; see Connect to start the daemon when none runs.
func NewClient(dir string) *Client {
	sock := filepath.Join(dir, SocketName)
	return &Client{
		store: dir,
		sock:  sock,
		hc: &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", sock)
			},
			DisableCompression: true,
		}},
	}
}

// Close drops the client's idle connections, so the daemon sees it gone.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// call posts req to /v1/op, passes each progress or item Event to the
// callbacks, and decodes the result into result.
func (c *Client) call(ctx context.Context, op string, req any, progress func(Progress), item func(json.RawMessage) error, result any) error {
	body, err := json.Marshal(req)
	if err != nil {
		return err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://forge/v1/"+op, bytes.NewReader(body))
	if err != nil {
		return err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return fmt.Errorf("store daemon at %s: %w", c.sock, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return fmt.Errorf("store daemon at %s: %s: %s", c.sock, resp.Status, bytes.TrimSpace(msg))
	}
	dec := json.NewDecoder(resp.Body)
	for {
		var ev Event
		if err := dec.Decode(&ev); err != nil {
			if errors.Is(err, io.EOF) {
				return fmt.Errorf("store daemon at %s: %s: answer ended without a result (did the daemon die? see %s)", c.sock, op, filepath.Join(c.store, logName))
			}
			return fmt.Errorf("store daemon at %s: %s: %w", c.sock, op, err)
		}
		switch {
		case ev.Error != nil:
			return &RemoteError{Kind: ev.Error.Kind, Message: ev.Error.Message}
		case ev.Result != nil:
			if result == nil {
				return nil
			}
			return json.Unmarshal(ev.Result, result)
		case ev.Progress != nil:
			if progress != nil {
				progress(*ev.Progress)
			}
		case ev.Item != nil:
			if item != nil {
				if err := item(ev.Item); err != nil {
					return err
				}
			}
		}
	}
}

// StreamTree asks for tree (a ref or hash) as a treestream (package
// treestream), which the caller reads and closes. Root alone may ask.
func (c *Client) StreamTree(ctx context.Context, tree string) (io.ReadCloser, error) {
	body, err := json.Marshal(StreamRequest{Tree: tree})
	if err != nil {
		return nil, err
	}
	hreq, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://forge/v1/stream", bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hreq.Header.Set("Content-Type", "application/json")
	resp, err := c.hc.Do(hreq)
	if err != nil {
		return nil, fmt.Errorf("store daemon at %s: %w", c.sock, err)
	}
	if resp.StatusCode == http.StatusOK && resp.Header.Get("Content-Type") == StreamContentType {
		return resp.Body, nil
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
		return nil, fmt.Errorf("store daemon at %s: %s: %s", c.sock, resp.Status, bytes.TrimSpace(msg))
	}
	var ev Event
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&ev); err != nil || ev.Error == nil {
		return nil, fmt.Errorf("store daemon at %s: stream %s: an answer that is neither a stream nor an error", c.sock, tree)
	}
	return nil, &RemoteError{Kind: ev.Error.Kind, Message: ev.Error.Message}
}

// Ping asks the daemon who it is.
func (c *Client) Ping(ctx context.Context) (PingResult, error) {
	var r PingResult
	err := c.call(ctx, "ping", struct{}{}, nil, nil, &r)
	return r, err
}

// Import stores the tree at req.Path, which must be absolute.
func (c *Client) Import(ctx context.Context, req ImportRequest, progress func(Progress)) (ImportResult, error) {
	var r ImportResult
	err := c.call(ctx, "import", req, progress, nil, &r)
	return r, err
}

// Export recreates a tree at req.Path, which must be absolute.
func (c *Client) Export(ctx context.Context, req ExportRequest, progress func(Progress)) (ExportResult, error) {
	var r ExportResult
	err := c.call(ctx, "export", req, progress, nil, &r)
	return r, err
}

// Refs lists refs with their costs.
func (c *Client) Refs(ctx context.Context) ([]RefInfo, error) {
	var r []RefInfo
	err := c.call(ctx, "refs", RefsRequest{}, nil, nil, &r)
	return r, err
}

// RefNames lists refs with their trees and last use, without their costs:
// cheap however many trees the store holds.
func (c *Client) RefNames(ctx context.Context) ([]RefInfo, error) {
	var r []RefInfo
	err := c.call(ctx, "refs", RefsRequest{NamesOnly: true}, nil, nil, &r)
	return r, err
}

// Push copies a stored tree into a remote bucket.
func (c *Client) Push(ctx context.Context, req PushRequest, progress func(Progress)) (PushResult, error) {
	var r PushResult
	err := c.call(ctx, "push", req, progress, nil, &r)
	return r, err
}

// Pull copies a tree from a remote bucket into the store.
func (c *Client) Pull(ctx context.Context, req PullRequest, progress func(Progress)) (PullResult, error) {
	var r PullResult
	err := c.call(ctx, "pull", req, progress, nil, &r)
	return r, err
}

// Remove drops refs.
func (c *Client) Remove(ctx context.Context, refs ...string) error {
	return c.call(ctx, "rm", RemoveRequest{Refs: refs}, nil, nil, nil)
}

// Usage totals the store.
func (c *Client) Usage(ctx context.Context) (UsageResult, error) {
	var r UsageResult
	err := c.call(ctx, "usage", struct{}{}, nil, nil, &r)
	return r, err
}

// Diff calls fn for each path that differs between two trees.
func (c *Client) Diff(ctx context.Context, req DiffRequest, fn func(Change) error) error {
	return c.call(ctx, "diff", req, nil, func(raw json.RawMessage) error {
		var ch Change
		if err := json.Unmarshal(raw, &ch); err != nil {
			return err
		}
		return fn(ch)
	}, nil)
}

// GC frees what no ref holds.
func (c *Client) GC(ctx context.Context, req GCRequest) (GCResult, error) {
	var r GCResult
	err := c.call(ctx, "gc", req, nil, nil, &r)
	return r, err
}

// Fsck checks the store.
func (c *Client) Fsck(ctx context.Context, req FsckRequest) (FsckResult, error) {
	var r FsckResult
	err := c.call(ctx, "fsck", req, nil, nil, &r)
	return r, err
}

// Mount mounts a tree read-only; it returns once the tree is mounted.
func (c *Client) Mount(ctx context.Context, req MountRequest) (MountInfo, error) {
	var r MountInfo
	err := c.call(ctx, "mount", req, nil, nil, &r)
	return r, err
}

// Commit stores what a writable mount holds now.
func (c *Client) Commit(ctx context.Context, req CommitRequest) (CommitResult, error) {
	var r CommitResult
	err := c.call(ctx, "commit", req, nil, nil, &r)
	return r, err
}

// Unmount detaches a mount.
func (c *Client) Unmount(ctx context.Context, req UnmountRequest) (MountInfo, error) {
	var r MountInfo
	err := c.call(ctx, "umount", req, nil, nil, &r)
	return r, err
}

// Mounts lists the daemon's mounts.
func (c *Client) Mounts(ctx context.Context) ([]MountInfo, error) {
	var r []MountInfo
	err := c.call(ctx, "mounts", struct{}{}, nil, nil, &r)
	return r, err
}

// Shutdown asks the daemon to unmount everything and exit.
func (c *Client) Shutdown(ctx context.Context) error {
	return c.call(ctx, "shutdown", struct{}{}, nil, nil, nil)
}
