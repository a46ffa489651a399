package loopd_test

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/loopd"
	"golang.org/x/sys/unix"
)

// attackScript is what a hostile local user runs against loopd, in the
// mode cfg["mode"], answering with lines of JSON on stdout:
//
//   - "keep": a group member gets a device (its own file, partitions too)
//     from a child process, and before the child lets go of it the member
//     hard-links the node elsewhere, moves the partition's node away, grants
//     its group an ACL on the node and holds an O_PATH fd on it. Once the
//     device is released (the child's connection closed, or the child gone
//     for a datagram client), it waits for "probe" on stdin and tries to
//     open every path it kept, reading through those it can open.
//   - "open": a group member opens its device and keeps it open past the
//     release; then it unbinds it (LOOP_CLR_FD) and reads through it.
//   - "flood": opens "count" SEQPACKET connections and sends nothing;
//     after "check" on stdin it reports how each ended.
//   - "devices": asks for a device on each of "clients" clients (seqpacket
//     connections or datagram processes), every one of them held, and
//     reports the replies.
const attackScript = `
import array, errno, json, os, select, socket, subprocess, sys, time

cfg = json.loads(sys.argv[1])

def connect(transport, path):
    if transport == "seqpacket":
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.connect(path)
    else:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, socket.SO_PASSCRED, 1)
        s.connect(path)
    return s

def request(s, backing, dirpath, extra):
    fd = os.open(backing, os.O_RDWR)
    dfd = os.open(dirpath, os.O_DIRECTORY)
    req = {"fd": 0, "dir_fd": 1}
    req.update(extra)
    s.sendmsg([json.dumps(req).encode()], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, array.array("i", [fd, dfd]))])
    os.close(fd)
    os.close(dfd)
    s.settimeout(20)
    return json.loads(s.recv(4096))

def out(v):
    print(json.dumps(v), flush=True)

mode = cfg["mode"]
if mode == "keep":
    r, w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        # The client: holds the device until the parent has kept its paths.
        os.close(r); os.close(go_w)
        s = connect(cfg["transport"], cfg["socket"])
        reply = request(s, cfg["backing"], cfg["dir"], {"partscan": True})
        os.write(w, json.dumps(reply).encode())
        os.close(w)
        os.read(go_r, 1)
        s.close()
        os._exit(0)
    os.close(w); os.close(go_r)
    reply = json.loads(os.read(r, 65536))
    dev = reply.get("devname")
    kept = {}
    if dev:
        node = os.path.join(cfg["dir"], dev)
        link = os.path.join(cfg["keep"], "link")
        os.link(node, link)
        kept[link] = 1048576
        opath = os.open(node, os.O_PATH)
        kept["/proc/self/fd/%d" % opath] = 1048576
        subprocess.run(["setfacl", "-m", "g:%d:rw,m::rw" % os.getgid(), link], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        kept[node] = 1048576
        for p in reply.get("partitions", []):
            moved = os.path.join(cfg["keep"], "moved-" + p)
            os.rename(os.path.join(cfg["dir"], p), moved)
            kept[moved] = 0
            kept[os.path.join(cfg["dir"], p)] = 0
    os.write(go_w, b"x")
    os.close(go_w)
    os.waitpid(pid, 0)
    out({"reply": reply})
    sys.stdin.readline()
    probes = {}
    for path, off in kept.items():
        try:
            fd = os.open(path, os.O_RDONLY)
        except OSError as e:
            probes[path] = {"errno": errno.errorcode[e.errno]}
            continue
        probes[path] = {"read": os.pread(fd, 64, off).hex()}
        os.close(fd)
    out({"probes": probes})
elif mode == "open":
    # The member opens its device and keeps it open past the release.
    s = connect("seqpacket", cfg["socket"])
    reply = request(s, cfg["backing"], cfg["dir"], {})
    fd = os.open(os.path.join(cfg["dir"], reply["devname"]), os.O_RDONLY)
    s.close()
    out({"reply": reply})
    sys.stdin.readline()
    # Released: now try to unbind the device under the open fd, so that
    # the next client's file shows through it.
    import fcntl
    try:
        fcntl.ioctl(fd, 0x4C01)  # LOOP_CLR_FD
        clr = "ok"
    except OSError as e:
        clr = errno.errorcode[e.errno]
    out({"clr": clr})
    sys.stdin.readline()
    try:
        got = os.pread(fd, 64, 1048576).hex()
    except OSError as e:
        got = errno.errorcode[e.errno]
    os.close(fd)
    out({"read": got})
elif mode == "flood":
    socks = []
    for i in range(cfg["count"]):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        s.settimeout(10)
        try:
            s.connect(cfg["socket"])
        except OSError as e:
            out({"connect_error": str(e), "opened": len(socks)})
            sys.exit(1)
        socks.append((s, time.monotonic()))
    out({"opened": len(socks)})
    sys.stdin.readline()
    ends = {}
    deadline = time.monotonic() + cfg["wait"]
    for s, t0 in socks:
        replies = []
        end = "open"
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([s], [], [], left)
            if not ready:
                break
            try:
                b = s.recv(4096)
            except OSError as e:
                end = "error " + errno.errorcode[e.errno]
                break
            if not b:
                end = "eof"
                break
            replies.append(json.loads(b).get("error", "?"))
        key = end + ": " + " / ".join(replies)
        ends[key] = ends.get(key, 0) + 1
    out({"ends": ends})
elif mode == "devices":
    socks = []
    replies = []
    procs = []
    for i, transport in enumerate(cfg["clients"]):
        backing = os.path.join(cfg["images"], "%d.img" % i)
        if transport == "seqpacket":
            s = connect(transport, cfg["socket"])
            socks.append(s)
            replies.append(request(s, backing, cfg["dir"], {}))
        else:
            # A datagram client is a process: one that lives on, holding.
            r, w = os.pipe()
            hold_r, hold_w = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.close(r); os.close(hold_w)
                s = connect(transport, cfg["dgram"])
                os.write(w, json.dumps(request(s, backing, cfg["dir"], {})).encode())
                os.close(w)
                os.read(hold_r, 1)
                os._exit(0)
            os.close(w); os.close(hold_r)
            replies.append(json.loads(os.read(r, 65536)))
            procs.append((pid, hold_w))
    out({"replies": replies})
    sys.stdin.readline()
    for pid, hold_w in procs:
        os.close(hold_w)
        os.waitpid(pid, 0)
`

// attacker is a running attackScript.
type attacker struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string
	stderr itest.LockedBuffer
}

// startAttacker runs attackScript as nobody with cfg.
func startAttacker(t *testing.T, cfg map[string]any) *attacker {
	t.Helper()
	script := filepath.Join(testDir(t), "attack.py")
	if err := os.WriteFile(script, []byte(attackScript), 0o644); err != nil {
		t.Fatal(err)
	}
	arg, _ := json.Marshal(cfg)
	a := &attacker{lines: make(chan string, 4)}
	a.cmd = exec.Command(python(t), script, string(arg))
	a.cmd.Dir = suiteDir
	a.cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=/nonexistent", "PYTHONDONTWRITEBYTECODE=1"}
	a.cmd.Stderr = &a.stderr
	a.cmd.SysProcAttr = &syscall.SysProcAttr{Credential: nobody, Pdeathsig: syscall.SIGKILL, Setpgid: true}
	var err error
	if a.stdin, err = a.cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	stdout, err := a.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		// Its children (datagram clients) hold a pipe to it and exit with
		// it (_exit once the pipe closes), or get SIGKILL as orphans of
		// nobody's process group when the kill below ends it.
		syscall.Kill(-a.cmd.Process.Pid, syscall.SIGKILL)
		a.cmd.Process.Kill()
		a.cmd.Wait()
	})
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			a.lines <- sc.Text()
		}
		close(a.lines)
	}()
	return a
}

// next decodes the attacker's next line into v.
func (a *attacker) next(t *testing.T, v any) {
	t.Helper()
	select {
	case line, ok := <-a.lines:
		if !ok {
			a.cmd.Wait()
			t.Fatalf("attacker exited (%v) without a line\nstderr:\n%s", a.cmd.ProcessState, a.stderr.String())
		}
		if err := json.Unmarshal([]byte(line), v); err != nil {
			t.Fatalf("attacker: %q: %v\nstderr:\n%s", line, err, a.stderr.String())
		}
	case <-time.After(2 * patience):
		t.Fatalf("attacker: no line within %v\nstderr:\n%s", 2*patience, a.stderr.String())
	}
}

func (a *attacker) say(t *testing.T, line string) {
	t.Helper()
	if _, err := io.WriteString(a.stdin, line+"\n"); err != nil {
		t.Fatal(err)
	}
}

func chownNobody(t *testing.T, path string) string {
	t.Helper()
	if err := os.Chown(path, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	return path
}

// tryBind binds loop device name to the file img (autoclear, partscan),
// as any root process could; it is unbound when the test ends.
func tryBind(t *testing.T, name, img string) error {
	t.Helper()
	f := openFile(t, img, os.O_RDWR)
	dev, err := os.OpenFile("/dev/"+name, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	cfg := unix.LoopConfig{Fd: uint32(f.Fd()), Info: unix.LoopInfo64{Flags: unix.LO_FLAGS_AUTOCLEAR | unix.LO_FLAGS_PARTSCAN}}
	if err := unix.IoctlLoopConfigure(int(dev.Fd()), &cfg); err != nil {
		// Not ours: an open fd would keep someone else's device bound.
		dev.Close()
		return err
	}
	t.Cleanup(func() { dev.Close() })
	return nil
}

// bindDevice binds loop device name to the file img, as any root process
// after loopd could: LOOP_CONFIGURE, autoclear, partscan. The device is
// unbound again when the test ends (its last fd closed). It skips the test
// if another process took the device first.
func bindDevice(t *testing.T, name, img string) {
	t.Helper()
	if err := tryBind(t, name, img); err != nil {
		if errors.Is(err, unix.EBUSY) {
			t.Skipf("%s was taken by another process before the test could bind it", name)
		}
		t.Fatalf("LOOP_CONFIGURE %s: %v", name, err)
	}
}

// TestReleasedNodeRevoked (issue 14, part 4): a group member that got a
// device keeps no way into it once it is released: its nodes are gone from
// its directory, and a hard link, a node moved away, an ACL or an O_PATH fd
// kept from before the release does not open the device that the next
// client (here root, with a secret) gets under the same number.
func TestReleasedNodeRevoked(t *testing.T) {
	needRoot(t)
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			d := startDaemon(t, "--group", "65534")
			dir := testDir(t)
			layout := "label: gpt\n,4MiB,L\n"
			own := sfdiskImage(t, filepath.Join(dir, "own.img"), 8*mib, layout)
			chownNobody(t, own)
			devDir := chownNobody(t, mkdir(t, filepath.Join(dir, "dev")))
			keep := chownNobody(t, mkdir(t, filepath.Join(dir, "keep")))
			secret := sfdiskImage(t, filepath.Join(dir, "secret.img"), 8*mib, layout)
			secretData := pattern("root's secret", 64)
			f := openFile(t, secret, os.O_RDWR)
			if _, err := f.WriteAt(secretData, 1*mib); err != nil {
				t.Fatal(err)
			}

			a := startAttacker(t, map[string]any{"mode": "keep", "transport": transport, "socket": d.socket(transport),
				"backing": own, "dir": devDir, "keep": keep})
			var got struct{ Reply loopd.Response }
			a.next(t, &got)
			if got.Reply.Error != "" || len(got.Reply.Partitions) != 1 {
				t.Fatalf("member's request: %+v", got.Reply)
			}
			dev := got.Reply.Devname
			// Released: the client closed its connection or exited.
			waitUnbound(t, own)
			d.waitLog(t, 1, "msg=released", "devices=["+dev+"]")
			for _, name := range append([]string{dev}, got.Reply.Partitions...) {
				if _, err := os.Lstat(filepath.Join(devDir, name)); !errors.Is(err, os.ErrNotExist) {
					t.Errorf("node %s still in the member's directory after release (%v)", name, err)
				}
			}
			// The next client of that device number: root, with a secret.
			bindDevice(t, dev, secret)
			a.say(t, "probe")
			var res struct {
				Probes map[string]struct{ Errno, Read string }
			}
			a.next(t, &res)
			if len(res.Probes) < 5 {
				t.Fatalf("the attacker kept only %d paths: %v", len(res.Probes), res.Probes)
			}
			for path, p := range res.Probes {
				switch {
				case p.Errno == "":
					leak := ""
					if strings.Contains(p.Read, fmt.Sprintf("%x", secretData[:16])) {
						leak = ", and read root's secret through it"
					}
					t.Errorf("the member opened %s after releasing the device%s", path, leak)
				case p.Errno != "EACCES" && p.Errno != "ENOENT" && p.Errno != "EPERM":
					t.Errorf("opening %s: %s, want EACCES or ENOENT", path, p.Errno)
				}
			}
			// What the member kept is root's now, and no one's to open.
			var st unix.Stat_t
			if err := unix.Lstat(filepath.Join(keep, "link"), &st); err != nil {
				t.Fatal(err)
			}
			if st.Uid != 0 || st.Mode&0o7777 != 0 {
				t.Errorf("kept link: uid %d mode %o, want uid 0 mode 0", st.Uid, st.Mode&0o7777)
			}
			d.checkFDs(t)
		})
	}
}

// TestReleasedWhileOpen: a member that opened its device before the
// release keeps its open file, but the device stays bound to the member's
// own file for as long as that file is open, even if the member then
// unbinds it itself (LOOP_CLR_FD): the kernel clears an autoclear device on
// its last close only. So no one else's file can show through that fd.
// (loopd relies on this; kernels that cleared a device at LOOP_CLR_FD with
// an opener left would fail here.)
func TestReleasedWhileOpen(t *testing.T) {
	needRoot(t)
	d := startDaemon(t, "--group", "65534")
	dir := testDir(t)
	own := chownNobody(t, newImage(t, filepath.Join(dir, "own.img"), 4*mib))
	devDir := chownNobody(t, mkdir(t, filepath.Join(dir, "dev")))
	secret := newImage(t, filepath.Join(dir, "secret.img"), 4*mib)
	secretData := pattern("root's secret", 64)
	if _, err := openFile(t, secret, os.O_RDWR).WriteAt(secretData, 1*mib); err != nil {
		t.Fatal(err)
	}
	a := startAttacker(t, map[string]any{"mode": "open", "socket": d.seq, "backing": own, "dir": devDir})
	var got struct{ Reply loopd.Response }
	a.next(t, &got)
	dev := got.Reply.Devname
	if dev == "" {
		t.Fatalf("member's request: %+v", got.Reply)
	}
	d.waitLog(t, 1, "msg=released", "devices=["+dev+"]")
	bound := func() bool { return len(itest.LoopsBackedUnder(dir)) == 1 }
	if !bound() {
		t.Fatalf("%s unbound while the member holds it open", dev)
	}
	if err := tryBind(t, dev, secret); !errors.Is(err, unix.EBUSY) {
		t.Fatalf("binding %s while the member holds it open: %v, want EBUSY", dev, err)
	}
	a.say(t, "clear")
	var clr struct{ Clr string }
	a.next(t, &clr)
	t.Logf("the member's LOOP_CLR_FD: %s", clr.Clr)
	if err := tryBind(t, dev, secret); err == nil {
		a.say(t, "read")
		var r struct{ Read string }
		a.next(t, &r)
		t.Fatalf("root bound %s while the member still had it open (the member read %s)", dev, r.Read)
	}
	a.say(t, "read")
	var r struct{ Read string }
	a.next(t, &r)
	if strings.Contains(r.Read, fmt.Sprintf("%x", secretData[:16])) {
		t.Fatal("the member read root's secret")
	}
	a.cmd.Wait()
	waitUnbound(t, dir)
	d.checkFDs(t)
}
