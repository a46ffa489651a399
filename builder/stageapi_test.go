package builder

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/stages/stage"
)

// TestAPITreeStream: a stage's tree input comes through the API socket as
// the stage's client asks for it (stage.OpenTreeStreamAt); what is not a
// tree input of the stage, and descriptors that are not a pipe's write
// end, are refused and closed.
func TestAPITreeStream(t *testing.T) {
	const content = "forge-treestream 1\nthe tree's bytes"
	asked := make(chan string, 10)
	s, err := serveAPI(context.Background(), filepath.Join(t.TempDir(), "api.sock"), apiOptions{
		trees: map[string]string{"root-tree": "0123abcd"},
		stream: func(ctx context.Context, tree string) (io.ReadCloser, error) {
			asked <- tree
			return io.NopCloser(strings.NewReader(content)), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()

	r, err := stage.OpenTreeStreamAt(s.path, "root-tree")
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	r.Close()
	if err != nil || string(got) != content {
		t.Fatalf("stream: %q, %v; want %q", got, err, content)
	}
	if tree := <-asked; tree != "0123abcd" || len(asked) != 0 {
		t.Fatalf("the store was asked for %q (and %d more), want the input's tree once", tree, len(asked))
	}
	for _, input := range []string{"other", ""} {
		if _, err := stage.OpenTreeStreamAt(s.path, input); !errors.Is(err, stage.ErrNoTreeStream) || !strings.Contains(err.Error(), "no tree input") {
			t.Errorf("input %q: %v; want a refusal", input, err)
		}
	}
	if _, err := stage.OpenTreeStreamAt(filepath.Join(t.TempDir(), "none"), "root-tree"); !errors.Is(err, stage.ErrNoTreeStream) {
		t.Errorf("no API socket: %v; want ErrNoTreeStream", err)
	}

	// A regular file, a pipe's read end, two pipes: refused, and forge
	// keeps none of them open.
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: s.path, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	file, err := os.CreateTemp(t.TempDir(), "victim")
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pr.Close()
	defer pw.Close()
	for _, tc := range []struct {
		name string
		fds  []int
		want string
	}{
		{"regular file", []int{int(file.Fd())}, "not a pipe"},
		{"read end", []int{int(pr.Fd())}, "open for reading"},
		{"two", []int{int(pw.Fd()), int(pw.Fd())}, "one file descriptor"},
		{"none", nil, "one file descriptor"},
	} {
		var oob []byte
		if len(tc.fds) > 0 {
			oob = unix.UnixRights(tc.fds...)
		}
		if _, _, err := c.WriteMsgUnix([]byte(`{"method": "forge.tree-stream", "input": "root-tree"}`), oob, nil); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 4096)
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _, _, _, err := c.ReadMsgUnix(buf, nil)
		if err != nil || !strings.Contains(string(buf[:n]), tc.want) {
			t.Errorf("%s: answer %q, %v; want an error containing %q", tc.name, buf[:n], err, tc.want)
		}
	}
	if fi, err := file.Stat(); err != nil || fi.Size() != 0 {
		t.Errorf("the regular file sent got written: %v, %v", fi, err)
	}
	// forge holds no copy of the write end: closing ours ends the pipe.
	pw.Close()
	pr.SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := pr.Read(make([]byte, 1)); n != 0 || !errors.Is(err, io.EOF) {
		t.Errorf("the pipe after closing its write end here: %d bytes, %v; want EOF (forge kept a copy)", n, err)
	}
}

// TestAPITreeStreamClose: closing the API while a stage has stopped
// reading its stream returns, and leaves the stage's reader at the end of
// what was written.
func TestAPITreeStreamClose(t *testing.T) {
	s, err := serveAPI(context.Background(), filepath.Join(t.TempDir(), "api.sock"), apiOptions{
		trees: map[string]string{"t": "tree"},
		stream: func(ctx context.Context, tree string) (io.ReadCloser, error) {
			return io.NopCloser(endless{}), nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := stage.OpenTreeStreamAt(s.path, "t")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if _, err := r.Read(make([]byte, 10)); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.close(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("close waits on a stream nobody reads")
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		t.Fatalf("reading the rest after close: %v", err)
	}
}

// TestAPITreeStreamLimits: a stage gets apiMaxStreams streams at once,
// and a stream it stops reading ends after the stall time, so that it
// cannot hold the store daemon's streams open.
func TestAPITreeStreamLimits(t *testing.T) {
	var logged atomic.Int32
	s, err := serveAPI(context.Background(), filepath.Join(t.TempDir(), "api.sock"), apiOptions{
		trees:  map[string]string{"t": "tree"},
		stream: func(ctx context.Context, tree string) (io.ReadCloser, error) { return io.NopCloser(endless{}), nil },
		logf:   func(string, ...any) { logged.Add(1) },
		stall:  300 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	var open []io.ReadCloser
	for range apiMaxStreams {
		r, err := stage.OpenTreeStreamAt(s.path, "t")
		if err != nil {
			t.Fatal(err)
		}
		defer r.Close()
		open = append(open, r)
	}
	if _, err := stage.OpenTreeStreamAt(s.path, "t"); !errors.Is(err, stage.ErrNoTreeStream) || !strings.Contains(err.Error(), "open already") {
		t.Fatalf("stream %d at once: %v; want a refusal", apiMaxStreams+1, err)
	}
	// Nobody reads: each relay gives up after the stall time, and the
	// reader then finds the end of what was written.
	time.Sleep(time.Second)
	for i, r := range open {
		done := make(chan error, 1)
		go func() { _, err := io.Copy(io.Discard, r); done <- err }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stream %d after its stall: %v", i, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("stream %d never ended: the stall did not stop its relay", i)
		}
	}
	if logged.Load() == 0 {
		t.Error("the stalled relays were not reported")
	}
	// Freed: a new stream may start.
	deadline := time.Now().Add(10 * time.Second)
	for {
		r, err := stage.OpenTreeStreamAt(s.path, "t")
		if err == nil {
			r.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the stalled streams ended: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

type endless struct{}

func (endless) Read(p []byte) (int, error) { return len(p), nil }
