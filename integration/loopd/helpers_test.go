package loopd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/loopd"
	"golang.org/x/sys/unix"
)

const mib = 1 << 20

// patience bounds every wait for something the daemon does asynchronously
// (a detach after a client went away, an fd closed): generous, because it
// is only reached when something is wrong.
const patience = 20 * time.Second

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: loop devices, mknod, mount, clients as nobody")
	}
}

// testDir makes a directory under suiteDir for this test, reachable by
// nobody (mode 0755), removed after every other cleanup of the test.
func testDir(t *testing.T) string {
	t.Helper()
	name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name())
	dir, err := os.MkdirTemp(suiteDir, name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mkdir(t *testing.T, dir string) string {
	t.Helper()
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// newImage creates a sparse file of size bytes.
func newImage(t *testing.T, path string, size int64) string {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	return path
}

// sfdiskImage creates an image and partitions it with sfdisk.
func sfdiskImage(t *testing.T, path string, size int64, script string) string {
	t.Helper()
	newImage(t, path, size)
	cmd := exec.Command("sfdisk", "--quiet", "--no-reread", "--no-tell-kernel", path)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sfdisk: %v\n%s", err, out)
	}
	return path
}

func openFile(t *testing.T, path string, flags int) *os.File {
	t.Helper()
	f, err := os.OpenFile(path, flags, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func pattern(seed string, n int) []byte {
	return bytes.Repeat([]byte(seed), n/len(seed)+1)[:n]
}

// readFileAt reads n bytes of the file at path at off.
func readFileAt(t *testing.T, path string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatalf("read %s at %d: %v", path, off, err)
	}
	return b
}

// writeThrough writes data at off through the device node, and syncs.
func writeThrough(t *testing.T, node string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(node, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatalf("write through %s: %v", node, err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

// deviceSize is the size of a block device node, by seeking to its end.
func deviceSize(t *testing.T, node string) int64 {
	t.Helper()
	f, err := os.Open(node)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, err := f.Seek(0, io.SeekEnd)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// checkNode checks that dir/name is a block device node, mode 0600, owned
// by uid, of the given major (7 for loop devices, 259 for partitions).
func checkNode(t *testing.T, path string, major uint32, uid uint32) {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		t.Fatalf("node: %v", err)
	}
	if st.Mode != unix.S_IFBLK|0o600 || unix.Major(st.Rdev) != major || st.Uid != uid {
		t.Errorf("%s: mode %o, rdev %d:%d, uid %d; want block device 0600, major %d, uid %d",
			path, st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev), st.Uid, major, uid)
	}
}

// eventually polls cond until it holds or patience runs out; then it
// fails the test with what describe says about the state.
func eventually(t *testing.T, what string, cond func() bool, describe func() string) {
	t.Helper()
	deadline := time.Now().Add(patience)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: still not the case after %v: %s", what, patience, describe())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitUnbound waits until no loop device is backed by a file under prefix.
func waitUnbound(t *testing.T, prefix string) {
	t.Helper()
	eventually(t, "devices detached", func() bool { return len(itest.LoopsBackedUnder(prefix)) == 0 },
		func() string { return fmt.Sprint(itest.LoopsBackedUnder(prefix)) })
}

// partitionGone says whether partition part of loop device dev is gone, or
// at least no longer belongs to a device backed by backing (another test on
// the machine may reuse the device number).
func partitionGone(part, dev, backing string) bool {
	if _, err := os.Stat("/sys/class/block/" + part); errors.Is(err, os.ErrNotExist) {
		return true
	}
	b, err := os.ReadFile("/sys/block/" + dev + "/loop/backing_file")
	return err != nil || strings.TrimSpace(string(b)) != backing
}

// daemon is a running loopd.
type daemon struct {
	cmd        *exec.Cmd
	seq, dgram string
	log        itest.LockedBuffer
	done       chan struct{}
	waitErr    error
	sockets    int               // listening sockets it serves
	baseline   map[string]string // its fd table when idle
	stopChecks bool              // stop must not check the exit status
}

// startDaemon runs loopd with its sockets in a fresh directory and extra
// flags; it is stopped with SIGTERM at the end of the test, and must then
// exit 0.
func startDaemon(t *testing.T, args ...string) *daemon {
	t.Helper()
	dir := testDir(t)
	d := &daemon{seq: filepath.Join(dir, "loopd.sock"), dgram: filepath.Join(dir, "loopd.dgram"), sockets: 2}
	d.cmd = exec.Command(loopdBin, append([]string{"--socket", d.seq, "--dgram-socket", d.dgram}, args...)...)
	d.start(t)
	return d
}

func (d *daemon) start(t *testing.T) {
	t.Helper()
	d.cmd.Stderr = &d.log
	// Should this test process die, loopd gets SIGTERM and detaches what
	// it attached, instead of living on with our devices.
	d.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM}
	d.done = make(chan struct{})
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		d.waitErr = d.cmd.Wait()
		close(d.done)
	}()
	t.Cleanup(func() {
		d.stop(t)
		if t.Failed() {
			t.Logf("loopd log:\n%s", d.log.String())
		}
	})
	eventually(t, "loopd answers", func() bool {
		select {
		case <-d.done:
			t.Fatalf("loopd exited before answering: %v\n%s", d.waitErr, d.log.String())
		default:
		}
		c, err := net.Dial("unixpacket", d.seq)
		if err != nil {
			return false
		}
		c.Close()
		fi, err := os.Lstat(d.dgram)
		return err == nil && fi.Mode().Type() == os.ModeSocket
	}, func() string { return d.log.String() })
	// Idle means: no connection left but the listening sockets, and the
	// same table twice in a row, so that an fd open for a moment (the time
	// zone file read for the first log line, say) is not taken for part of
	// the idle state.
	var last map[string]string
	eventually(t, "loopd idle", func() bool {
		now := d.fds()
		stable := d.countSockets() == d.sockets && maps.Equal(now, last)
		last = now
		if !stable {
			time.Sleep(50 * time.Millisecond)
		}
		return stable
	}, func() string { return fmt.Sprint(d.fds()) })
	d.baseline = last
}

// waitLog waits until the daemon has logged n lines with all of subs. The
// log arrives through a pipe, copied by another goroutine, so a line loopd
// wrote before its reply may reach the buffer after the reply reached us.
func (d *daemon) waitLog(t *testing.T, n int, subs ...string) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d log lines with %q", n, subs), func() bool { return len(d.logLines(subs...)) >= n },
		func() string { return fmt.Sprintf("%d lines:\n%s", len(d.logLines(subs...)), d.log.String()) })
	if got := len(d.logLines(subs...)); got != n {
		t.Errorf("%d log lines with %q, want %d", got, subs, n)
	}
}

// stop sends SIGTERM and waits for loopd to exit, which must be with 0.
func (d *daemon) stop(t *testing.T) {
	t.Helper()
	select {
	case <-d.done:
		return
	default:
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(patience):
		d.cmd.Process.Kill()
		<-d.done
		t.Errorf("loopd did not exit within %v of SIGTERM", patience)
		return
	}
	if d.waitErr != nil && !d.stopChecks {
		t.Errorf("loopd exited with %v after SIGTERM, want status 0", d.waitErr)
	}
}

func (d *daemon) pid() int { return d.cmd.Process.Pid }

// fds returns loopd's fd table: fd number → what it points to.
func (d *daemon) fds() map[string]string {
	dir := fmt.Sprintf("/proc/%d/fd", d.pid())
	entries, _ := os.ReadDir(dir)
	m := map[string]string{}
	for _, e := range entries {
		target, err := os.Readlink(filepath.Join(dir, e.Name()))
		if err == nil {
			m[e.Name()] = target
		}
	}
	return m
}

func (d *daemon) countSockets() int {
	n := 0
	for _, target := range d.fds() {
		if strings.HasPrefix(target, "socket:") {
			n++
		}
	}
	return n
}

// checkFDs waits until loopd's fd table is back to what it was when idle:
// every fd it received, every connection and pidfd, closed.
func (d *daemon) checkFDs(t *testing.T) {
	t.Helper()
	eventually(t, "loopd's fd table back to its idle state", func() bool { return maps.Equal(d.fds(), d.baseline) }, func() string {
		var diff []string
		now := d.fds()
		for fd, target := range now {
			if d.baseline[fd] != target {
				diff = append(diff, fmt.Sprintf("+%s=%s", fd, target))
			}
		}
		for fd, target := range d.baseline {
			if now[fd] != target {
				diff = append(diff, fmt.Sprintf("-%s=%s", fd, target))
			}
		}
		sort.Strings(diff)
		return fmt.Sprintf("%s (idle table: %v)", strings.Join(diff, " "), d.baseline)
	})
}

// logLines returns the daemon's log lines containing all of the substrings.
func (d *daemon) logLines(subs ...string) []string {
	var out []string
	for _, line := range strings.Split(d.log.String(), "\n") {
		ok := line != ""
		for _, s := range subs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

func dial(t *testing.T, transport, path string) *loopd.Client {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	var c *loopd.Client
	var err error
	if transport == "seqpacket" {
		c, err = loopd.Dial(ctx, path)
	} else {
		c, err = loopd.DialDatagram(ctx, path)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func (d *daemon) socket(transport string) string {
	if transport == "seqpacket" {
		return d.seq
	}
	return d.dgram
}

func attach(t *testing.T, c *loopd.Client, backing, dir *os.File, opts loopd.AttachOptions) *loopd.Attachment {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	a, err := c.Attach(ctx, backing, dir, opts)
	if err != nil {
		t.Fatalf("Attach: %v", err)
	}
	return a
}

// The Python client speaks like osbuild's assemblers: with SEQPACKET as
// osbuild/util/jsoncomm.py does (autobind, connect, sendmsg, recv), with
// DGRAM as the seed-era osbuild/remoteloop.py did (SO_PASSCRED, connect,
// sendmsg, recv at the autobound address). It closes the backing fd once
// the request is sent, as osbuild does. Then, with a device, it writes
// through it and reports the device's size. With "hold" it keeps its
// connection (and process) until stdin closes or it is killed.
const pythonClient = `
import array, json, os, socket, sys

cfg = json.loads(sys.argv[1])
if cfg["transport"] == "seqpacket":
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    sock.bind("")
    sock.connect(cfg["socket"])
else:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
    sock.connect(cfg["socket"])

fd = os.open(cfg["backing"], os.O_RDWR) if "backing" in cfg else 3
dir_fd = os.open(cfg["dir"], os.O_DIRECTORY) if "dir" in cfg else 4

req = {"fd": 0, "dir_fd": 1}
req.update(cfg.get("request", {}))
sock.sendmsg([json.dumps(req).encode("utf-8")],
             [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd, dir_fd]))])
os.close(fd)
reply = json.loads(sock.recv(4096))

out = {"reply": reply, "pid": os.getpid()}
if "devname" in reply:
    dev = os.open(reply["devname"], os.O_RDWR, dir_fd=dir_fd)
    out["size"] = os.lseek(dev, 0, os.SEEK_END)
    w = cfg.get("write")
    if w:
        os.pwrite(dev, bytes.fromhex(w["hex"]), w["offset"])
        os.fsync(dev)
    os.close(dev)
print(json.dumps(out), flush=True)
if cfg.get("hold"):
    sys.stdin.read()
`

func python(t *testing.T) string {
	t.Helper()
	// The system interpreter: it must run as nobody too, so no per-user
	// installation.
	if _, err := os.Stat("/usr/bin/python3"); err == nil {
		return "/usr/bin/python3"
	}
	p, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("needs python3")
	}
	return p
}

// pyConfig is the Python client's argument.
type pyConfig struct {
	Transport string         `json:"transport"`
	Socket    string         `json:"socket"`
	Backing   string         `json:"backing,omitempty"`
	Dir       string         `json:"dir,omitempty"`
	Request   map[string]any `json:"request,omitempty"`
	Write     *pyWrite       `json:"write,omitempty"`
	Hold      bool           `json:"hold,omitempty"`
}

type pyWrite struct {
	Offset int64  `json:"offset"`
	Hex    string `json:"hex"`
}

type pyResult struct {
	Reply loopd.Response `json:"reply"`
	PID   int            `json:"pid"`
	Size  int64          `json:"size"`
}

// pyProc is a running Python client.
type pyProc struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	result pyResult
	stderr itest.LockedBuffer
}

// startPython runs the Python client and waits for its result line. extra
// are passed as fds 3 and 4 (backing, dir) when cfg names no paths; cred,
// if set, is who it runs as.
func startPython(t *testing.T, cfg pyConfig, cred *syscall.Credential, extra ...*os.File) *pyProc {
	t.Helper()
	p := &pyProc{cmd: pythonCmd(python(t), cfg, cred, extra...)}
	p.cmd.Stderr = &p.stderr
	var err error
	if p.stdin, err = p.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.cmd.Process.Kill()
		p.cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(stdout).ReadString('\n')
		line <- s
		io.Copy(io.Discard, stdout)
	}()
	select {
	case s := <-line:
		if err := json.Unmarshal([]byte(s), &p.result); err != nil {
			t.Fatalf("python client: %q: %v\nstderr:\n%s", s, err, p.stderr.String())
		}
	case <-time.After(patience):
		t.Fatalf("python client: no answer within %v (a client must never hang)\nstderr:\n%s", patience, p.stderr.String())
	}
	return p
}

// pythonCmd is the command running the Python client (written to suiteDir
// by TestMain) with cfg; it touches no *testing.T, so goroutines may use it.
func pythonCmd(interpreter string, cfg pyConfig, cred *syscall.Credential, extra ...*os.File) *exec.Cmd {
	arg, _ := json.Marshal(cfg)
	cmd := exec.Command(interpreter, filepath.Join(suiteDir, "client.py"), string(arg))
	cmd.Dir = suiteDir
	cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "PYTHONDONTWRITEBYTECODE=1"}
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGKILL}
	return cmd
}

// runPython runs the Python client to completion and returns its result.
func runPython(t *testing.T, cfg pyConfig, cred *syscall.Credential, extra ...*os.File) pyResult {
	t.Helper()
	p := startPython(t, cfg, cred, extra...)
	p.stdin.Close()
	if err := p.cmd.Wait(); err != nil {
		t.Fatalf("python client: %v\nstderr:\n%s", err, p.stderr.String())
	}
	return p.result
}

// rawReply is what a raw request got back.
type rawReply struct {
	resp loopd.Response
	eof  bool // the connection was closed without a reply
}

// sendRaw sends data with fds on a fresh connection of the transport and
// returns the reply; it never waits longer than patience.
func sendRaw(t *testing.T, transport, path string, data []byte, fds []int) rawReply {
	t.Helper()
	var conn *net.UnixConn
	if transport == "seqpacket" {
		c, err := net.Dial("unixpacket", path)
		if err != nil {
			t.Fatal(err)
		}
		conn = c.(*net.UnixConn)
	} else {
		fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			t.Fatal(err)
		}
		f := os.NewFile(uintptr(fd), "dgram")
		defer f.Close()
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PASSCRED, 1); err != nil {
			t.Fatal(err)
		}
		if err := unix.Connect(fd, &unix.SockaddrUnix{Name: path}); err != nil {
			t.Fatal(err)
		}
		c, err := net.FileConn(f)
		if err != nil {
			t.Fatal(err)
		}
		conn = c.(*net.UnixConn)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(patience))
	var oob []byte
	if len(fds) > 0 {
		oob = unix.UnixRights(fds...)
	}
	if err := sendmsg(conn, data, oob); err != nil {
		t.Fatalf("send: %v", err)
	}
	buf := make([]byte, 8192)
	n, err := conn.Read(buf)
	if errors.Is(err, io.EOF) {
		return rawReply{eof: true}
	}
	if err != nil {
		t.Fatalf("no reply (a client must never hang): %v", err)
	}
	var r rawReply
	if err := json.Unmarshal(buf[:n], &r.resp); err != nil {
		t.Fatalf("reply %q: %v", buf[:n], err)
	}
	return r
}

// sendmsg sends data with oob as one message, even when data is empty:
// Go's WriteMsgUnix would add a NUL byte on SEQPACKET, and a zero-length
// message with fds is exactly one of the cases to test.
func sendmsg(conn *net.UnixConn, data, oob []byte) error {
	rc, err := conn.SyscallConn()
	if err != nil {
		return err
	}
	var errno syscall.Errno
	err = rc.Write(func(fd uintptr) bool {
		var msg unix.Msghdr
		var iov unix.Iovec
		if len(data) > 0 {
			iov.Base = &data[0]
			iov.SetLen(len(data))
			msg.Iov = &iov
			msg.SetIovlen(1)
		}
		if len(oob) > 0 {
			msg.Control = &oob[0]
			msg.SetControllen(len(oob))
		}
		_, _, errno = unix.Syscall(unix.SYS_SENDMSG, fd, uintptr(unsafe.Pointer(&msg)), 0)
		return errno != unix.EAGAIN
	})
	if err != nil {
		return err
	}
	if errno != 0 {
		return errno
	}
	return nil
}

// nobody is the unprivileged user clients run as.
var nobody = &syscall.Credential{Uid: 65534, Gid: 65534, Groups: []uint32{}}
