package stage

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// APISocketPath is osbuild's API socket in the buildroot, where a stage
// reports its exception; forge serves a tree stream there too.
const APISocketPath = "/run/osbuild/api/osbuild"

// ErrNoTreeStream is a tree stream that forge did not start: no API
// socket, an input that is not a stored tree, or a refusal. The stage
// then reads the input through its mount, as it would under osbuild.
var ErrNoTreeStream = errors.New("no tree stream")

// treeStreamAnswerWait bounds the wait for forge's answer: it opens the
// stream with the store's daemon first, which answers at once.
const treeStreamAnswerWait = 2 * time.Minute

const streamPipeSize = 1 << 20

// OpenTreeStream asks forge, through the API socket, for the stage's tree
// input named input as a treestream (package internal/treestream): the
// whole stored tree, read by the store's daemon and written into a pipe
// whose read end this returns. Reading a tree that way takes a fraction of
// what reading it through the input's FUSE mount takes (a round trip per
// lookup, listxattr and read). An error wrapping ErrNoTreeStream means no
// stream started; use the mount.
func OpenTreeStream(input string) (io.ReadCloser, error) {
	return OpenTreeStreamAt(APISocketPath, input)
}

// OpenTreeStreamAt is OpenTreeStream through the API socket at socket.
func OpenTreeStreamAt(socket, input string) (io.ReadCloser, error) {
	c, err := net.DialUnix("unixpacket", nil, &net.UnixAddr{Name: socket, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNoTreeStream, err)
	}
	defer c.Close()
	r, w, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	// A pipe holds 64 KiB: the reader and forge would take turns every
	// 64 KiB of the tree. 1 MiB, the default limit for unprivileged
	// processes; a failure only costs speed.
	unix.FcntlInt(w.Fd(), unix.F_SETPIPE_SZ, streamPipeSize)
	msg, _ := json.Marshal(map[string]string{"method": "forge.tree-stream", "input": input})
	_, _, err = c.WriteMsgUnix(msg, unix.UnixRights(int(w.Fd())), nil)
	// forge holds its own copy of the write end now: ours must go, or the
	// stream would never end for the reader.
	w.Close()
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: %v", ErrNoTreeStream, err)
	}
	c.SetReadDeadline(time.Now().Add(treeStreamAnswerWait))
	buf := make([]byte, 64<<10)
	n, _, _, _, err := c.ReadMsgUnix(buf, nil)
	if err != nil {
		r.Close()
		return nil, fmt.Errorf("%w: no answer: %v", ErrNoTreeStream, err)
	}
	var answer struct {
		OK    bool   `json:"ok"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal(buf[:n], &answer); err != nil || !answer.OK {
		r.Close()
		if answer.Error == "" {
			answer.Error = fmt.Sprintf("answer %q", buf[:n])
		}
		return nil, fmt.Errorf("%w: %s", ErrNoTreeStream, answer.Error)
	}
	return r, nil
}
