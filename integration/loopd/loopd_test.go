package loopd_test

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/loopd"
	"golang.org/x/sys/unix"
)

var transports = []string{"seqpacket", "dgram"}

// TestGoClient: the Go client gets a device on either socket, writes
// through it, and the bytes are in the file; the node is what the protocol
// promises; the device goes away with the client.
func TestGoClient(t *testing.T) {
	needRoot(t)
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			d := startDaemon(t)
			dir := testDir(t)
			img := newImage(t, filepath.Join(dir, "disk.img"), 8*mib)
			devDir := mkdir(t, filepath.Join(dir, "dev"))
			c := dial(t, transport, d.socket(transport))
			a := attach(t, c, openFile(t, img, os.O_RDWR), openFile(t, devDir, os.O_RDONLY), loopd.AttachOptions{})
			node := filepath.Join(devDir, a.Devname)
			checkNode(t, node, 7, 0)
			if got := itest.LoopsBackedUnder(dir); len(got) != 1 || !strings.HasPrefix(got[0], a.Devname+"=") {
				t.Fatalf("bound devices %v, want %s backed by %s", got, a.Devname, img)
			}
			data := pattern("go client "+transport, 64<<10)
			writeThrough(t, node, 4096, data)
			if got := readFileAt(t, img, 4096, len(data)); !bytes.Equal(got, data) {
				t.Fatal("the file does not hold what was written through the device")
			}
			if size := deviceSize(t, node); size != 8*mib {
				t.Errorf("device size %d, want %d", size, 8*mib)
			}
			d.waitLog(t, 1, `msg=request `, "device="+a.Devname, "file="+img)
			if transport == "seqpacket" {
				c.Close()
			} else {
				// A datagram client is a process: this test process lives
				// on, so the device goes when loopd stops.
				d.stop(t)
			}
			waitUnbound(t, dir)
			if transport == "seqpacket" {
				d.checkFDs(t)
			}
		})
	}
}

// TestPythonClient: the way osbuild's assemblers speak, on both sockets.
func TestPythonClient(t *testing.T) {
	needRoot(t)
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			d := startDaemon(t)
			dir := testDir(t)
			img := newImage(t, filepath.Join(dir, "disk.img"), 4*mib)
			devDir := mkdir(t, filepath.Join(dir, "dev"))
			data := pattern("python "+transport, 10000)
			p := startPython(t, pyConfig{
				Transport: transport, Socket: d.socket(transport), Backing: img, Dir: devDir,
				Write: &pyWrite{Offset: 1 * mib, Hex: hex.EncodeToString(data)}, Hold: true,
			}, nil)
			res := p.result
			if res.Reply.Error != "" || !strings.HasPrefix(res.Reply.Devname, "loop") {
				t.Fatalf("reply %+v", res.Reply)
			}
			if res.Size != 4*mib {
				t.Errorf("device size seen by the client %d, want %d", res.Size, 4*mib)
			}
			if got := readFileAt(t, img, 1*mib, len(data)); !bytes.Equal(got, data) {
				t.Fatal("the file does not hold what the Python client wrote through the device")
			}
			node := filepath.Join(devDir, res.Reply.Devname)
			checkNode(t, node, 7, 0)
			// The client exits: its connection closes (SEQPACKET), its
			// process is gone (DGRAM). Either way the device goes, and the
			// node loopd made with it.
			p.stdin.Close()
			p.cmd.Wait()
			waitUnbound(t, dir)
			d.checkFDs(t)
			d.waitLog(t, 1, "msg=released", fmt.Sprintf("pid=%d", res.PID), "devices=["+res.Reply.Devname+"]")
			if _, err := os.Lstat(node); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("node %s left after release (%v)", node, err)
			}
		})
	}
}

// TestOffsetSizelimit: offset and sizelimit shape the device, and writes
// land where they must in the file; sector_size sets the logical block size.
func TestOffsetSizelimit(t *testing.T) {
	needRoot(t)
	d := startDaemon(t)
	tests := []struct {
		name       string
		opts       loopd.AttachOptions
		wantSize   int64
		wantSector int
	}{
		{"offset", loopd.AttachOptions{Offset: 1 * mib}, 7 * mib, 512},
		{"sizelimit", loopd.AttachOptions{SizeLimit: 2 * mib}, 2 * mib, 512},
		{"offset and sizelimit", loopd.AttachOptions{Offset: 3 * mib, SizeLimit: 2 * mib}, 2 * mib, 512},
		{"sizelimit past the end", loopd.AttachOptions{Offset: 6 * mib, SizeLimit: 4 * mib}, 2 * mib, 512},
		{"sector size 4096", loopd.AttachOptions{Offset: 1 * mib, SectorSize: 4096}, 7 * mib, 4096},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			dir := testDir(t)
			img := newImage(t, filepath.Join(dir, "disk.img"), 8*mib)
			devDir := mkdir(t, filepath.Join(dir, "dev"))
			c := dial(t, "seqpacket", d.seq)
			a := attach(t, c, openFile(t, img, os.O_RDWR), openFile(t, devDir, os.O_RDONLY), test.opts)
			node := filepath.Join(devDir, a.Devname)
			if size := deviceSize(t, node); size != test.wantSize {
				t.Errorf("device size %d, want %d", size, test.wantSize)
			}
			f := openFile(t, node, os.O_RDONLY)
			if ss, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKSSZGET); err != nil || ss != test.wantSector {
				t.Errorf("logical sector size %d (%v), want %d", ss, err, test.wantSector)
			}
			f.Close()
			// The last 4 KiB of the device are at offset+size-4096 in the file.
			data := pattern(test.name, 4096)
			writeThrough(t, node, test.wantSize-4096, data)
			at := int64(test.opts.Offset) + test.wantSize - 4096
			if got := readFileAt(t, img, at, len(data)); !bytes.Equal(got, data) {
				t.Errorf("write at the device's end did not land at %d in the file", at)
			}
			// Nothing can be written past the device's end.
			w := openFile(t, node, os.O_WRONLY)
			if n, err := w.WriteAt(data, test.wantSize); n != 0 || err == nil {
				t.Errorf("write past the end: %d bytes, %v", n, err)
			}
			// Our own opens would keep the device bound (autoclear waits
			// for the last close).
			w.Close()
			c.Close()
			waitUnbound(t, dir)
		})
	}
	t.Run("python", func(t *testing.T) {
		dir := testDir(t)
		img := newImage(t, filepath.Join(dir, "disk.img"), 8*mib)
		devDir := mkdir(t, filepath.Join(dir, "dev"))
		data := pattern("python offset", 512)
		res := runPython(t, pyConfig{
			Transport: "seqpacket", Socket: d.seq, Backing: img, Dir: devDir,
			Request: map[string]any{"offset": 2 * mib, "sizelimit": 1 * mib},
			Write:   &pyWrite{Offset: 0, Hex: hex.EncodeToString(data)},
		}, nil)
		if res.Reply.Error != "" || res.Size != 1*mib {
			t.Fatalf("reply %+v, device size %d; want a device of %d bytes", res.Reply, res.Size, 1*mib)
		}
		if got := readFileAt(t, img, 2*mib, len(data)); !bytes.Equal(got, data) {
			t.Error("write at device offset 0 did not land at the request's offset")
		}
		waitUnbound(t, dir)
	})
	d.checkFDs(t)
}

// TestReadOnly: read_only gives a read-only device, with a read-only fd
// (which a writable device would refuse) or a writable one.
func TestReadOnly(t *testing.T) {
	needRoot(t)
	d := startDaemon(t)
	for _, flags := range []int{os.O_RDONLY, os.O_RDWR} {
		t.Run(fmt.Sprintf("fd flags %#x", flags), func(t *testing.T) {
			dir := testDir(t)
			img := newImage(t, filepath.Join(dir, "disk.img"), 1*mib)
			devDir := mkdir(t, filepath.Join(dir, "dev"))
			c := dial(t, "seqpacket", d.seq)
			a := attach(t, c, openFile(t, img, flags), openFile(t, devDir, os.O_RDONLY), loopd.AttachOptions{ReadOnly: true})
			node := filepath.Join(devDir, a.Devname)
			f := openFile(t, node, os.O_RDWR)
			if ro, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKROGET); err != nil || ro != 1 {
				t.Errorf("BLKROGET = %d, %v; want 1", ro, err)
			}
			// The kernel lets a read-only block device be opened for
			// writing, and refuses the writes.
			if _, err := f.WriteAt([]byte("x"), 0); !errors.Is(err, unix.EPERM) && !errors.Is(err, unix.EROFS) {
				t.Errorf("write to a read-only device: %v, want EPERM", err)
			}
			f.Close()
			c.Close()
			waitUnbound(t, dir)
		})
	}
}

// TestPartscan: loopd reads the partition table itself (this kernel has
// no parsers), adds the partitions and creates their nodes; mkfs.ext4 and
// mount accept them; they go with the device.
func TestPartscan(t *testing.T) {
	needRoot(t)
	if _, err := exec.LookPath("mkfs.ext4"); err != nil {
		t.Skip("needs mkfs.ext4 (e2fsprogs)")
	}
	if _, err := exec.LookPath("sfdisk"); err != nil {
		t.Skip("needs sfdisk (fdisk)")
	}
	d := startDaemon(t)
	tests := []struct {
		label  string
		script string
		// fs is the partition that gets a file system.
		fs int
	}{
		// p2 is an extended partition holding the logical p5 and p6.
		{label: "dos", script: "label: dos\n,8MiB,L\n,,E\n,8MiB,L\n,,L\n", fs: 6},
		{label: "gpt", script: "label: gpt\n,8MiB,L\n,16MiB,L\n,,L\n", fs: 3},
	}
	for _, test := range tests {
		t.Run(test.label, func(t *testing.T) {
			dir := testDir(t)
			img := sfdiskImage(t, filepath.Join(dir, "disk.img"), 64*mib, test.script)
			want := sfdiskSizes(t, img)
			devDir := mkdir(t, filepath.Join(dir, "dev"))
			c := dial(t, "seqpacket", d.seq)
			a := attach(t, c, openFile(t, img, os.O_RDWR), openFile(t, devDir, os.O_RDONLY), loopd.AttachOptions{Partscan: true})
			var names []string
			for n := range want {
				names = append(names, fmt.Sprintf("%sp%d", a.Devname, n))
			}
			slices.Sort(names)
			if !slices.Equal(slices.Sorted(slices.Values(a.Partitions)), names) {
				t.Fatalf("partitions %v, want %v", a.Partitions, names)
			}
			for n, size := range want {
				node := filepath.Join(devDir, fmt.Sprintf("%sp%d", a.Devname, n))
				checkNode(t, node, 259, 0)
				if got := deviceSize(t, node); got != size {
					t.Errorf("%s: size %d, sfdisk says %d", node, got, size)
				}
			}
			// A file system on a partition, through its node.
			part := filepath.Join(devDir, fmt.Sprintf("%sp%d", a.Devname, test.fs))
			if out, err := exec.Command("mkfs.ext4", "-q", "-F", part).CombinedOutput(); err != nil {
				t.Fatalf("mkfs.ext4 %s: %v\n%s", part, err, out)
			}
			mnt := mkdir(t, filepath.Join(dir, "mnt"))
			if err := unix.Mount(part, mnt, "ext4", 0, ""); err != nil {
				t.Fatalf("mount %s: %v", part, err)
			}
			mounted := true
			t.Cleanup(func() {
				if mounted {
					unix.Unmount(mnt, 0)
				}
			})
			content := pattern("on a partition", 100000)
			if err := os.WriteFile(filepath.Join(mnt, "hello"), content, 0o644); err != nil {
				t.Fatal(err)
			}
			if err := unix.Unmount(mnt, 0); err != nil {
				t.Fatal(err)
			}
			mounted = false
			// The ext4 superblock (magic 0xEF53 at byte 56 of the block at
			// 1024) is in the image where sfdisk put the partition.
			start := sfdiskStart(t, img, test.fs)
			if magic := readFileAt(t, img, start+1024+56, 2); magic[0] != 0x53 || magic[1] != 0xEF {
				t.Errorf("no ext4 superblock at the partition's start %d in the image", start)
			}
			// Mount it again: the file system is intact.
			if err := unix.Mount(part, mnt, "ext4", unix.MS_RDONLY, ""); err != nil {
				t.Fatalf("mount again: %v", err)
			}
			mounted = true
			got, err := os.ReadFile(filepath.Join(mnt, "hello"))
			if err != nil || !bytes.Equal(got, content) {
				t.Errorf("file on the partition: %v", err)
			}
			if err := unix.Unmount(mnt, 0); err != nil {
				t.Fatal(err)
			}
			mounted = false

			c.Close()
			waitUnbound(t, dir)
			for _, name := range a.Partitions {
				eventually(t, name+" removed", func() bool { return partitionGone(name, a.Devname, img) },
					func() string { return "/sys/class/block/" + name + " exists" })
			}
		})
	}
	t.Run("python", func(t *testing.T) {
		dir := testDir(t)
		img := sfdiskImage(t, filepath.Join(dir, "disk.img"), 32*mib, "label: gpt\n,8MiB,L\n,,L\n")
		devDir := mkdir(t, filepath.Join(dir, "dev"))
		p := startPython(t, pyConfig{Transport: "seqpacket", Socket: d.seq, Backing: img, Dir: devDir,
			Request: map[string]any{"partscan": true}, Hold: true}, nil)
		res := p.result
		if res.Reply.Error != "" || len(res.Reply.Partitions) != 2 {
			t.Fatalf("reply %+v, want two partitions", res.Reply)
		}
		for _, part := range res.Reply.Partitions {
			checkNode(t, filepath.Join(devDir, part), 259, 0)
		}
		p.stdin.Close()
		p.cmd.Wait()
		waitUnbound(t, dir)
		eventually(t, "nodes removed", func() bool {
			entries, _ := os.ReadDir(devDir)
			return len(entries) == 0
		}, func() string { entries, _ := os.ReadDir(devDir); return fmt.Sprint(entries) })
	})
	t.Run("corrupt gpt", func(t *testing.T) {
		// A protective MBR whose GPT headers are both gone: the request
		// fails, and leaves neither device nor node behind.
		dir := testDir(t)
		img := sfdiskImage(t, filepath.Join(dir, "disk.img"), 8*mib, "label: gpt\n,,L\n")
		f := openFile(t, img, os.O_RDWR)
		zero := make([]byte, 512)
		for _, off := range []int64{512, 8*mib - 512} {
			if _, err := f.WriteAt(zero, off); err != nil {
				t.Fatal(err)
			}
		}
		devDir := mkdir(t, filepath.Join(dir, "dev"))
		c := dial(t, "seqpacket", d.seq)
		ctx, cancel := context.WithTimeout(context.Background(), patience)
		defer cancel()
		_, err := c.Attach(ctx, f, openFile(t, devDir, os.O_RDONLY), loopd.AttachOptions{Partscan: true})
		if err == nil || !strings.Contains(err.Error(), "corrupt partition table") {
			t.Fatalf("Attach: %v, want a corrupt partition table error", err)
		}
		if entries, _ := os.ReadDir(devDir); len(entries) != 0 {
			t.Errorf("nodes left behind: %v", entries)
		}
		waitUnbound(t, dir)
		c.Close()
	})
	t.Run("no table", func(t *testing.T) {
		dir := testDir(t)
		img := newImage(t, filepath.Join(dir, "disk.img"), 4*mib)
		devDir := mkdir(t, filepath.Join(dir, "dev"))
		c := dial(t, "seqpacket", d.seq)
		a := attach(t, c, openFile(t, img, os.O_RDWR), openFile(t, devDir, os.O_RDONLY), loopd.AttachOptions{Partscan: true})
		if len(a.Partitions) != 0 {
			t.Errorf("partitions %v on a blank disk", a.Partitions)
		}
		c.Close()
		waitUnbound(t, dir)
	})
	d.checkFDs(t)
}

// sfdiskSizes returns partition number → size in bytes as the kernel shows
// them: sfdisk's sizes, with an extended partition as its 1 KiB stub.
func sfdiskSizes(t *testing.T, img string) map[int]int64 {
	t.Helper()
	m := map[int]int64{}
	for _, p := range sfdiskDump(t, img) {
		size := p.size
		if p.typ == "5" || p.typ == "f" || p.typ == "85" {
			size = 1024
		}
		m[p.n] = size
	}
	return m
}

func sfdiskStart(t *testing.T, img string, n int) int64 {
	t.Helper()
	for _, p := range sfdiskDump(t, img) {
		if p.n == n {
			return p.start
		}
	}
	t.Fatalf("sfdisk shows no partition %d", n)
	return 0
}

type sfdiskPart struct {
	n           int
	start, size int64
	typ         string
}

// sfdiskDump parses `sfdisk --dump`: "img1 : start= 2048, size= 16384, type=83".
func sfdiskDump(t *testing.T, img string) []sfdiskPart {
	t.Helper()
	out, err := exec.Command("sfdisk", "--dump", img).Output()
	if err != nil {
		t.Fatalf("sfdisk --dump: %v", err)
	}
	var parts []sfdiskPart
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, img) {
			continue
		}
		var p sfdiskPart
		name, rest, _ := strings.Cut(line, ":")
		fmt.Sscanf(strings.TrimSpace(name)[len(img):], "%d", &p.n)
		for _, field := range strings.Split(rest, ",") {
			k, v, _ := strings.Cut(strings.TrimSpace(field), "=")
			v = strings.TrimSpace(v)
			switch k {
			case "start":
				fmt.Sscanf(v, "%d", &p.start)
				p.start *= 512
			case "size":
				fmt.Sscanf(v, "%d", &p.size)
				p.size *= 512
			case "type":
				p.typ = v
			}
		}
		parts = append(parts, p)
	}
	return parts
}

// TestConcurrentClients: 20 clients at once, Go and Python, on both
// sockets, while another process keeps taking free loop devices from under
// loopd (so LOOP_CONFIGURE meets EBUSY and must retry). Every client gets
// its own device, and writes only to its own file.
func TestConcurrentClients(t *testing.T) {
	needRoot(t)
	d := startDaemon(t)
	dir := testDir(t)
	const goClients, pyClients = 14, 6
	interp := python(t)

	// The racer: LOOP_CTL_GET_FREE, then bind that device to its own file
	// with LOOP_SET_FD, then unbind it; as fast as it can, until the
	// clients are done. It only ever touches devices it bound itself.
	racerImg := newImage(t, filepath.Join(dir, "racer.img"), 1*mib)
	racerFile := openFile(t, racerImg, os.O_RDWR)
	ctl := openFile(t, "/dev/loop-control", os.O_RDWR)
	raceCtx, stopRace := context.WithCancel(context.Background())
	var steals atomic.Int64
	var racer sync.WaitGroup
	racer.Go(func() {
		for raceCtx.Err() == nil {
			index, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
			if err != nil {
				continue
			}
			fd, err := unix.Open(fmt.Sprintf("/dev/loop%d", index), unix.O_RDWR|unix.O_CLOEXEC, 0)
			if err != nil {
				continue
			}
			if unix.IoctlSetInt(fd, unix.LOOP_SET_FD, int(racerFile.Fd())) == nil {
				steals.Add(1)
				unix.IoctlSetInt(fd, unix.LOOP_CLR_FD, 0)
			}
			unix.Close(fd)
		}
	})
	t.Cleanup(func() { stopRace(); racer.Wait() })

	type result struct {
		who, devname string
		err          error
	}
	results := make(chan result, goClients+pyClients)
	var clients []*loopd.Client
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range goClients {
		img := newImage(t, filepath.Join(dir, fmt.Sprintf("go%d.img", i)), 2*mib)
		devDir := mkdir(t, filepath.Join(dir, fmt.Sprintf("go%d-dev", i)))
		backing, dirf := openFile(t, img, os.O_RDWR), openFile(t, devDir, os.O_RDONLY)
		c := dial(t, "seqpacket", d.seq)
		clients = append(clients, c)
		who := fmt.Sprintf("go client %d", i)
		wg.Go(func() {
			<-start
			ctx, cancel := context.WithTimeout(context.Background(), patience)
			defer cancel()
			a, err := c.Attach(ctx, backing, dirf, loopd.AttachOptions{})
			if err != nil {
				results <- result{who: who, err: err}
				return
			}
			data := pattern(who, 8192)
			f, err := os.OpenFile(filepath.Join(devDir, a.Devname), os.O_RDWR, 0)
			if err == nil {
				_, err = f.WriteAt(data, 0)
				if err == nil {
					err = f.Sync()
				}
				f.Close()
			}
			if err == nil {
				got := make([]byte, len(data))
				if _, err = backing.ReadAt(got, 0); err == nil && !bytes.Equal(got, data) {
					err = errors.New("file does not hold what was written through the device")
				}
			}
			results <- result{who: who, devname: a.Devname, err: err}
		})
	}
	for i := range pyClients {
		transport := transports[i%2]
		img := newImage(t, filepath.Join(dir, fmt.Sprintf("py%d.img", i)), 2*mib)
		devDir := mkdir(t, filepath.Join(dir, fmt.Sprintf("py%d-dev", i)))
		who := fmt.Sprintf("python client %d (%s)", i, transport)
		data := pattern(who, 8192)
		cmd := pythonCmd(interp, pyConfig{Transport: transport, Socket: d.socket(transport), Backing: img, Dir: devDir,
			Write: &pyWrite{Offset: 0, Hex: hex.EncodeToString(data)}}, nil)
		wg.Go(func() {
			<-start
			out, err := cmd.Output()
			var res pyResult
			if err == nil {
				err = jsonUnmarshal(out, &res)
			}
			if err == nil && res.Reply.Error != "" {
				err = errors.New(res.Reply.Error)
			}
			if err == nil {
				var got []byte
				if got, err = os.ReadFile(img); err == nil && !bytes.Equal(got[:len(data)], data) {
					err = errors.New("file does not hold what was written through the device")
				}
			}
			results <- result{who: who, devname: res.Reply.Devname, err: err}
		})
	}
	close(start)
	wg.Wait()
	close(results)
	stopRace()
	racer.Wait()
	devnames := map[string]string{}
	for r := range results {
		if r.err != nil {
			t.Errorf("%s: %v", r.who, r.err)
			continue
		}
		if other, dup := devnames[r.devname]; dup && strings.HasPrefix(r.who, "go") && strings.HasPrefix(other, "go") {
			// Go clients hold their devices until closed: no two may share one.
			t.Errorf("%s and %s both got %s", r.who, other, r.devname)
		}
		devnames[r.devname] = r.who
	}
	// One log line per request; whether loopd met the racer is up to the
	// scheduler, so that is only reported.
	d.waitLog(t, goClients+pyClients, "msg=request ")
	t.Logf("the racer took %d devices meanwhile; loopd retried after EBUSY in %d requests",
		steals.Load(), len(d.logLines("msg=request ", "retries=")))
	for _, c := range clients {
		c.Close()
	}
	waitUnbound(t, dir)
	d.checkFDs(t)
}

func jsonUnmarshal(b []byte, v any) error {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return json.Unmarshal(line, v)
}

// TestClientKilled: a client killed while it holds a device (and its
// partitions) loses them: SEQPACKET by its connection closing, DGRAM by its
// process exiting.
func TestClientKilled(t *testing.T) {
	needRoot(t)
	d := startDaemon(t)
	for _, transport := range transports {
		t.Run(transport, func(t *testing.T) {
			dir := testDir(t)
			img := sfdiskImage(t, filepath.Join(dir, "disk.img"), 16*mib, "label: gpt\n,4MiB,L\n,,L\n")
			devDir := mkdir(t, filepath.Join(dir, "dev"))
			p := startPython(t, pyConfig{Transport: transport, Socket: d.socket(transport), Backing: img, Dir: devDir,
				Request: map[string]any{"partscan": true}, Hold: true}, nil)
			if p.result.Reply.Error != "" || len(p.result.Reply.Partitions) != 2 {
				t.Fatalf("reply %+v", p.result.Reply)
			}
			dev := p.result.Reply.Devname
			if got := itest.LoopsBackedUnder(dir); len(got) != 1 {
				t.Fatalf("bound %v while the client holds %s", got, dev)
			}
			if err := p.cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			p.cmd.Wait()
			waitUnbound(t, dir)
			for _, part := range p.result.Reply.Partitions {
				eventually(t, part+" removed", func() bool { return partitionGone(part, dev, img) },
					func() string { return "/sys/class/block/" + part + " exists" })
			}
			d.waitLog(t, 1, "msg=released", fmt.Sprintf("pid=%d", p.result.PID), "devices=["+dev+"]")
			d.checkFDs(t)
		})
	}
}

// TestRefused: every bad request gets an error reply, on both sockets, and
// leaves nothing behind: no fd in loopd, no device.
func TestRefused(t *testing.T) {
	needRoot(t)
	d := startDaemon(t)
	dir := testDir(t)
	img := newImage(t, filepath.Join(dir, "disk.img"), 1*mib)
	img2 := newImage(t, filepath.Join(dir, "disk2.img"), 1*mib)
	devDir := mkdir(t, filepath.Join(dir, "dev"))
	rw := int(openFile(t, img, os.O_RDWR).Fd())
	rw2 := int(openFile(t, img2, os.O_RDWR).Fd())
	ro := int(openFile(t, img, os.O_RDONLY).Fd())
	dirfd := int(openFile(t, devDir, os.O_RDONLY).Fd())
	dir2 := int(openFile(t, dir, os.O_RDONLY).Fd())
	opath, err := unix.Open(img, unix.O_PATH|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(opath)
	sp, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(sp[0])
	defer unix.Close(sp[1])
	var pipe [2]int
	if err := unix.Pipe2(pipe[:], unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(pipe[0])
	defer unix.Close(pipe[1])
	null := int(openFile(t, "/dev/null", os.O_RDWR).Fd())

	ok := `{"fd": 0, "dir_fd": 1}`
	tests := []struct {
		name    string
		data    string
		fds     []int
		wantErr string
		// seqEOF: on SEQPACKET a zero-length message is end-of-file; loopd
		// closes the connection (and the fds) without a reply.
		seqEOF bool
	}{
		{name: "malformed JSON", data: `{"fd": 0, "dir_fd": `, fds: []int{rw, dirfd}, wantErr: "not a JSON object"},
		{name: "JSON array", data: `[0, 1]`, fds: []int{rw, dirfd}, wantErr: "not a JSON object"},
		{name: "binary garbage", data: "\x00\xff\xfe", fds: []int{rw, dirfd}, wantErr: "not UTF-8"},
		{name: "unknown key", data: `{"fd": 0, "dir_fd": 1, "flock": true}`, fds: []int{rw, dirfd}, wantErr: `unknown key "flock"`},
		{name: "missing dir_fd", data: `{"fd": 0}`, fds: []int{rw, dirfd}, wantErr: `"dir_fd" is required`},
		{name: "no fds", data: ok, fds: nil, wantErr: "carries 0 file descriptors"},
		{name: "one fd", data: ok, fds: []int{rw}, wantErr: "carries 1 file descriptors"},
		{name: "three fds", data: ok, fds: []int{rw, dirfd, rw2}, wantErr: "carries 3 file descriptors"},
		{name: "too many fds", data: ok, fds: []int{rw, dirfd, rw2, ro, null, dir2, rw, dirfd}, wantErr: "more than 4 file descriptors"},
		{name: "index out of range", data: `{"fd": 0, "dir_fd": 2}`, fds: []int{rw, dirfd}, wantErr: `"dir_fd" is 2`},
		{name: "same index twice", data: `{"fd": 0, "dir_fd": 0}`, fds: []int{rw, dirfd}, wantErr: "both 0"},
		{name: "directory as backing", data: ok, fds: []int{dir2, dirfd}, wantErr: "is a directory"},
		{name: "socket as backing", data: ok, fds: []int{sp[0], dirfd}, wantErr: "is a socket"},
		{name: "pipe as backing", data: ok, fds: []int{pipe[0], dirfd}, wantErr: "is a pipe"},
		{name: "character device as backing", data: ok, fds: []int{null, dirfd}, wantErr: "is a character device"},
		{name: "O_PATH backing", data: ok, fds: []int{opath, dirfd}, wantErr: "O_PATH"},
		{name: "read-only backing without read_only", data: ok, fds: []int{ro, dirfd}, wantErr: "not open for writing"},
		{name: "file as directory", data: ok, fds: []int{rw, rw2}, wantErr: "not a directory"},
		{name: "bad sector size", data: `{"fd": 0, "dir_fd": 1, "sector_size": 1000}`, fds: []int{rw, dirfd}, wantErr: "sector_size"},
		{name: "oversized message", data: `{"fd": 0, "dir_fd": 1, "x": "` + strings.Repeat("a", 5000) + `"}`, fds: []int{rw, dirfd}, wantErr: "longer than 4096 bytes"},
		{name: "empty message", data: "", fds: []int{rw, dirfd}, wantErr: "not a JSON object", seqEOF: true},
	}
	refusals := 0
	for _, transport := range transports {
		for _, test := range tests {
			t.Run(transport+"/"+test.name, func(t *testing.T) {
				r := sendRaw(t, transport, d.socket(transport), []byte(test.data), test.fds)
				switch {
				case transport == "seqpacket" && test.seqEOF:
					if !r.eof {
						t.Errorf("got %+v, want the connection closed", r.resp)
					}
				case r.eof:
					t.Errorf("connection closed without a reply, want an error containing %q", test.wantErr)
				case r.resp.Devname != "" || !strings.Contains(r.resp.Error, test.wantErr):
					t.Errorf("reply %+v, want an error containing %q", r.resp, test.wantErr)
				default:
					refusals++
				}
				d.checkFDs(t)
				if got := itest.LoopsBackedUnder(dir); len(got) != 0 {
					t.Fatalf("devices left bound: %v", got)
				}
				if entries, _ := os.ReadDir(devDir); len(entries) != 0 {
					t.Errorf("nodes left in the directory: %v", entries)
				}
			})
		}
	}
	// One log line per refused request.
	d.waitLog(t, refusals, "request refused")
	// And after all that, a good request still works.
	c := dial(t, "seqpacket", d.seq)
	attach(t, c, openFile(t, img, os.O_RDWR), openFile(t, devDir, os.O_RDONLY), loopd.AttachOptions{})
	c.Close()
	waitUnbound(t, dir)
	d.checkFDs(t)
}

// TestUnprivileged: a client that is neither root nor in --group is
// refused on either socket; one in --group gets a device, with nodes it
// owns, but only in a directory it owns, and the nodes go with the device.
func TestUnprivileged(t *testing.T) {
	needRoot(t)
	for _, transport := range transports {
		t.Run("refused/"+transport, func(t *testing.T) {
			d := startDaemon(t)
			dir := testDir(t)
			img := newImage(t, filepath.Join(dir, "disk.img"), 1*mib)
			devDir := mkdir(t, filepath.Join(dir, "dev"))
			if err := os.Chown(devDir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			cmd := pythonCmd(python(t), pyConfig{Transport: transport, Socket: d.socket(transport)}, nobody,
				openFile(t, img, os.O_RDWR), openFile(t, devDir, os.O_RDONLY))
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			var res pyResult
			switch {
			case err == nil:
				if jerr := jsonUnmarshal(out, &res); jerr != nil {
					t.Fatalf("python client: %q: %v", out, jerr)
				}
				if res.Reply.Devname != "" || !strings.Contains(res.Reply.Error, "permission denied") {
					t.Fatalf("reply %+v, want permission denied", res.Reply)
				}
			case transport == "seqpacket" && (strings.Contains(stderr.String(), "BrokenPipeError") || strings.Contains(stderr.String(), "ConnectionResetError")):
				// The connection was refused when accepted, before the
				// client sent its request: the reply waits unread in its
				// socket, and sending fails (EPIPE).
			default:
				t.Fatalf("python client: %v\nstderr:\n%s", err, stderr.String())
			}
			if transport == "seqpacket" {
				d.waitLog(t, 1, "msg=\"connection refused\"", "uid=65534", "permission denied")
			}
			if got := itest.LoopsBackedUnder(dir); len(got) != 0 {
				t.Fatalf("devices bound: %v", got)
			}
			d.checkFDs(t)
		})
	}
	for _, transport := range transports {
		t.Run("group member/"+transport, func(t *testing.T) {
			d := startDaemon(t, "--group", "65534")
			dir := testDir(t)
			img := newImage(t, filepath.Join(dir, "disk.img"), 1*mib)
			devDir := mkdir(t, filepath.Join(dir, "dev"))
			// A directory that is not the client's own is refused.
			res := runPython(t, pyConfig{Transport: transport, Socket: d.socket(transport)}, nobody,
				openFile(t, img, os.O_RDWR), openFile(t, devDir, os.O_RDONLY))
			if !strings.Contains(res.Reply.Error, "not by the client") {
				t.Fatalf("reply %+v for a root-owned directory, want a refusal", res.Reply)
			}
			if err := os.Chown(devDir, 65534, 65534); err != nil {
				t.Fatal(err)
			}
			data := pattern("nobody was here", 4096)
			p := startPython(t, pyConfig{Transport: transport, Socket: d.socket(transport),
				Write: &pyWrite{Offset: 8192, Hex: hex.EncodeToString(data)}, Hold: true}, nobody,
				openFile(t, img, os.O_RDWR), openFile(t, devDir, os.O_RDONLY))
			if p.result.Reply.Error != "" {
				t.Fatalf("reply %+v", p.result.Reply)
			}
			node := filepath.Join(devDir, p.result.Reply.Devname)
			checkNode(t, node, 7, 65534)
			if got := readFileAt(t, img, 8192, len(data)); !bytes.Equal(got, data) {
				t.Error("the file does not hold what nobody wrote through its device")
			}
			p.stdin.Close()
			p.cmd.Wait()
			waitUnbound(t, dir)
			d.checkFDs(t)
			if _, err := os.Lstat(node); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("node %s left after release (%v)", node, err)
			}
		})
	}
}

// TestPerClientLimit: --max-per-client caps what one client holds; other
// clients are not affected.
func TestPerClientLimit(t *testing.T) {
	needRoot(t)
	d := startDaemon(t, "--max-per-client", "2")
	dir := testDir(t)
	devDir := mkdir(t, filepath.Join(dir, "dev"))
	dirf := openFile(t, devDir, os.O_RDONLY)
	img := func(i int) *os.File {
		return openFile(t, newImage(t, filepath.Join(dir, fmt.Sprintf("%d.img", i)), 1*mib), os.O_RDWR)
	}
	c := dial(t, "seqpacket", d.seq)
	attach(t, c, img(0), dirf, loopd.AttachOptions{})
	attach(t, c, img(1), dirf, loopd.AttachOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	_, err := c.Attach(ctx, img(2), dirf, loopd.AttachOptions{})
	var re *loopd.ReplyError
	if !errors.As(err, &re) || !strings.Contains(re.Message, "limit reached") {
		t.Fatalf("third Attach: %v, want a limit error", err)
	}
	if got := itest.LoopsBackedUnder(dir); len(got) != 2 {
		t.Errorf("bound %v, want two devices", got)
	}
	other := dial(t, "seqpacket", d.seq)
	attach(t, other, img(3), dirf, loopd.AttachOptions{})
	c.Close()
	other.Close()
	waitUnbound(t, dir)
	d.checkFDs(t)
}

// TestSIGTERM: loopd detaches every device it attached and exits 0, while
// its clients still hold them.
func TestSIGTERM(t *testing.T) {
	needRoot(t)
	d := startDaemon(t)
	dir := testDir(t)
	devDir := mkdir(t, filepath.Join(dir, "dev"))
	dirf := openFile(t, devDir, os.O_RDONLY)
	c := dial(t, "seqpacket", d.seq)
	for i := range 2 {
		attach(t, c, openFile(t, newImage(t, filepath.Join(dir, fmt.Sprintf("seq%d.img", i)), 1*mib), os.O_RDWR), dirf, loopd.AttachOptions{})
	}
	dg := dial(t, "dgram", d.dgram)
	attach(t, dg, openFile(t, newImage(t, filepath.Join(dir, "dgram.img"), 1*mib), os.O_RDWR), dirf, loopd.AttachOptions{})
	p := startPython(t, pyConfig{Transport: "seqpacket", Socket: d.seq,
		Backing: newImage(t, filepath.Join(dir, "py.img"), 16*mib), Dir: devDir, Request: map[string]any{}, Hold: true}, nil)
	if p.result.Reply.Error != "" {
		t.Fatalf("python: %+v", p.result.Reply)
	}
	if got := itest.LoopsBackedUnder(dir); len(got) != 4 {
		t.Fatalf("bound %v, want 4 devices", got)
	}
	d.stop(t) // SIGTERM; fails the test unless loopd exits 0
	if got := itest.LoopsBackedUnder(dir); len(got) != 0 {
		t.Errorf("after SIGTERM, still bound: %v", got)
	}
	for _, path := range []string{d.seq, d.dgram} {
		if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket %s left behind (%v)", path, err)
		}
	}
	// The client still connected learns the server is gone.
	ctx, cancel := context.WithTimeout(context.Background(), patience)
	defer cancel()
	if _, err := c.Attach(ctx, openFile(t, newImage(t, filepath.Join(dir, "late.img"), 1*mib), os.O_RDWR), dirf, loopd.AttachOptions{}); err == nil {
		t.Error("Attach after loopd stopped succeeded")
	}
}

// TestSocketActivation: loopd serves the sockets systemd passes it
// (LISTEN_PID, LISTEN_FDS), of either type, in any order.
func TestSocketActivation(t *testing.T) {
	needRoot(t)
	dir := testDir(t)
	seqPath, dgramPath := filepath.Join(dir, "activated.sock"), filepath.Join(dir, "activated.dgram")
	dgram, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: dgramPath, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	seq, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: seqPath, Net: "unixpacket"})
	if err != nil {
		t.Fatal(err)
	}
	seq.SetUnlinkOnClose(false)
	dgramFile, err := dgram.File()
	if err != nil {
		t.Fatal(err)
	}
	seqFile, err := seq.File()
	if err != nil {
		t.Fatal(err)
	}
	dgram.Close()
	seq.Close()
	// systemd sets LISTEN_PID to the service's PID after fork; a shell that
	// execs loopd keeps its PID, so $$ is that PID.
	d := &daemon{seq: seqPath, dgram: dgramPath, sockets: 2}
	d.cmd = exec.Command("/bin/sh", "-c", `LISTEN_PID=$$ LISTEN_FDS=2 LISTEN_FDNAMES=dgram:seq exec "$0" --socket '' --dgram-socket ''`, loopdBin)
	d.cmd.ExtraFiles = []*os.File{dgramFile, seqFile}
	d.start(t)
	dgramFile.Close()
	seqFile.Close()

	devDir := mkdir(t, filepath.Join(dir, "dev"))
	for _, transport := range transports {
		c := dial(t, transport, d.socket(transport))
		a := attach(t, c, openFile(t, newImage(t, filepath.Join(dir, transport+".img"), 1*mib), os.O_RDWR), openFile(t, devDir, os.O_RDONLY), loopd.AttachOptions{})
		checkNode(t, filepath.Join(devDir, a.Devname), 7, 0)
	}
	d.stop(t)
	waitUnbound(t, dir)
}

// TestSecondDaemonRefused: a second loopd does not take over sockets that
// a live one answers on; a stale socket file (nobody answers) is replaced.
func TestSecondDaemonRefused(t *testing.T) {
	needRoot(t)
	d := startDaemon(t)
	out, err := exec.Command(loopdBin, "--socket", d.seq, "--dgram-socket", d.dgram+".other").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "another server answers") {
		t.Errorf("second loopd on a live socket: %v\n%s", err, out)
	}
	d.stop(t)

	// A stale socket left by a crash: bound, never served.
	dir := testDir(t)
	stale := filepath.Join(dir, "stale.sock")
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: stale}); err != nil {
		t.Fatal(err)
	}
	unix.Close(fd)
	d2 := &daemon{seq: stale, dgram: filepath.Join(dir, "stale.dgram"), sockets: 2}
	d2.cmd = exec.Command(loopdBin, "--socket", d2.seq, "--dgram-socket", d2.dgram)
	d2.start(t)
	c := dial(t, "seqpacket", d2.seq)
	attach(t, c, openFile(t, newImage(t, filepath.Join(dir, "x.img"), 1*mib), os.O_RDWR), openFile(t, mkdir(t, filepath.Join(dir, "dev")), os.O_RDONLY), loopd.AttachOptions{})
	c.Close()
	waitUnbound(t, dir)
}

// TestClientContext: a canceled context ends an Attach at once.
func TestClientContext(t *testing.T) {
	needRoot(t)
	d := startDaemon(t)
	dir := testDir(t)
	c := dial(t, "seqpacket", d.seq)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.Attach(ctx, openFile(t, newImage(t, filepath.Join(dir, "x.img"), 1*mib), os.O_RDWR), openFile(t, dir, os.O_RDONLY), loopd.AttachOptions{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Attach with a canceled context: %v", err)
	}
	// The client stays usable.
	a := attach(t, c, openFile(t, filepath.Join(dir, "x.img"), os.O_RDWR), openFile(t, mkdir(t, filepath.Join(dir, "dev")), os.O_RDONLY), loopd.AttachOptions{})
	if a.Devname == "" {
		t.Error("no device after a canceled request")
	}
	c.Close()
	waitUnbound(t, dir)
}

// TestLock: today's osbuild client sends "lock" with every request; with
// "lock": true the device is held under an exclusive flock until it is
// released, as osbuild's loop.py holds it (udev leaves such a device be).
func TestLock(t *testing.T) {
	needRoot(t)
	d := startDaemon(t)
	for _, lock := range []bool{false, true} {
		t.Run(fmt.Sprint("lock=", lock), func(t *testing.T) {
			dir := testDir(t)
			img := newImage(t, filepath.Join(dir, "disk.img"), 4*mib)
			devDir := mkdir(t, filepath.Join(dir, "dev"))
			// The keys and values remoteloop.py sends by default.
			req := map[string]any{"lock": lock, "partscan": false, "read_only": false, "sector_size": 512}
			p := startPython(t, pyConfig{Transport: "seqpacket", Socket: d.seq, Backing: img, Dir: devDir,
				Request: req, Hold: true}, nil)
			if p.result.Reply.Error != "" {
				t.Fatalf("reply %+v", p.result.Reply)
			}
			// The lock is on the host's node, the one udev and osbuild's
			// loop.py open (an flock belongs to an inode, and the node in
			// the client's directory is another).
			f := openFile(t, filepath.Join("/dev", p.result.Reply.Devname), os.O_RDONLY)
			err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
			switch {
			case lock && !errors.Is(err, unix.EWOULDBLOCK):
				t.Errorf("flock of a device attached with lock: %v, want EWOULDBLOCK", err)
			case !lock && err != nil:
				t.Errorf("flock of a device attached without lock: %v", err)
			}
			f.Close()
			p.stdin.Close()
			p.cmd.Wait()
			waitUnbound(t, dir)
		})
	}
}
