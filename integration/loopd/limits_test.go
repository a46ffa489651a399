package loopd_test

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/loopd"
)

// floodEnds is how the connections of a "flood" attacker ended.
type floodEnds struct {
	Ends map[string]int
}

// TestFloodDoesNotLockOutRoot (issue 14, part 5): 300 idle connections of
// one local user do not keep root from getting a device. Those of a user
// who may not use loopd are closed when accepted (after an error reply);
// a member keeps only --max-conns-per-uid of them, and only until
// --idle-timeout.
func TestFloodDoesNotLockOutRoot(t *testing.T) {
	needRoot(t)
	const count = 300
	rootAttach := func(t *testing.T, d *daemon) {
		t.Helper()
		dir := testDir(t)
		c := dial(t, "seqpacket", d.seq)
		attach(t, c, openFile(t, newImage(t, filepath.Join(dir, "root.img"), 1*mib), os.O_RDWR),
			openFile(t, mkdir(t, filepath.Join(dir, "dev")), os.O_RDONLY), loopd.AttachOptions{})
		c.Close()
		waitUnbound(t, dir)
	}
	t.Run("non-member", func(t *testing.T) {
		d := startDaemon(t)
		a := startAttacker(t, map[string]any{"mode": "flood", "socket": d.seq, "count": count, "wait": 5})
		var opened struct{ Opened int }
		a.next(t, &opened)
		if opened.Opened != count {
			t.Fatalf("opened %d connections", opened.Opened)
		}
		// loopd holds none of them, though the attacker keeps them open.
		eventually(t, "loopd holds only its listening sockets", func() bool { return d.countSockets() == d.sockets },
			func() string { return fmt.Sprintf("%d sockets", d.countSockets()) })
		rootAttach(t, d)
		a.say(t, "check")
		var res floodEnds
		a.next(t, &res)
		want := "eof: permission denied: uid 65534 gid 65534 is neither root nor in an allowed group"
		if res.Ends[want] != count {
			t.Errorf("connections ended %v, want all %d with %q", res.Ends, count, want)
		}
		d.checkFDs(t)
	})
	t.Run("member", func(t *testing.T) {
		d := startDaemon(t, "--group", "65534", "--max-conns-per-uid", "4", "--idle-timeout", "2s")
		start := time.Now()
		a := startAttacker(t, map[string]any{"mode": "flood", "socket": d.seq, "count": count, "wait": 15})
		var opened struct{ Opened int }
		a.next(t, &opened)
		if opened.Opened != count {
			t.Fatalf("opened %d connections", opened.Opened)
		}
		rootAttach(t, d)
		if time.Since(start) > 2*time.Second {
			t.Logf("root's request came after the idle timeout (slow machine); it proves less")
		}
		a.say(t, "check")
		var res floodEnds
		a.next(t, &res)
		refused, idle := 0, 0
		for end, n := range res.Ends {
			switch {
			case strings.HasPrefix(end, "eof: limit reached: uid 65534 already has 4 connections"):
				refused += n
			case end == "eof: ":
				idle += n
			default:
				t.Errorf("%d connections ended with %q", n, end)
			}
		}
		if refused != count-4 || idle != 4 {
			t.Errorf("%d refused, %d closed when idle; want %d and 4 (%v)", refused, idle, count-4, res.Ends)
		}
		d.waitLog(t, 4, "msg=\"idle connection closed\"")
		d.checkFDs(t)
	})
}

// TestDevicesPerUID (issue 14, part 5): --max-per-client caps what one
// member's uid holds over all its clients, on both sockets; root is not
// counted with it.
func TestDevicesPerUID(t *testing.T) {
	needRoot(t)
	d := startDaemon(t, "--group", "65534", "--max-per-client", "2")
	dir := testDir(t)
	images := chownNobody(t, mkdir(t, filepath.Join(dir, "images")))
	clients := []string{"seqpacket", "seqpacket", "dgram", "seqpacket"}
	for i := range clients {
		chownNobody(t, newImage(t, filepath.Join(images, fmt.Sprintf("%d.img", i)), 1*mib))
	}
	devDir := chownNobody(t, mkdir(t, filepath.Join(dir, "dev")))
	a := startAttacker(t, map[string]any{"mode": "devices", "socket": d.seq, "dgram": d.dgram,
		"clients": clients, "images": images, "dir": devDir})
	var res struct{ Replies []loopd.Response }
	a.next(t, &res)
	granted := 0
	for i, r := range res.Replies {
		switch {
		case r.Devname != "":
			granted++
		case !strings.Contains(r.Error, "limit reached"):
			t.Errorf("request %d (%s): %+v, want a device or the limit", i, clients[i], r)
		}
	}
	if granted != 2 || len(itest.LoopsBackedUnder(images)) != 2 {
		t.Errorf("uid 65534 got %d devices over %d clients (bound: %v), want 2", granted, len(clients), itest.LoopsBackedUnder(images))
	}
	// Root is not held back by the member's devices.
	rootDir := testDir(t)
	c := dial(t, "seqpacket", d.seq)
	for i := range 2 {
		attach(t, c, openFile(t, newImage(t, filepath.Join(rootDir, fmt.Sprintf("%d.img", i)), 1*mib), os.O_RDWR),
			openFile(t, mkdir(t, filepath.Join(rootDir, fmt.Sprintf("dev%d", i))), os.O_RDONLY), loopd.AttachOptions{})
	}
	c.Close()
	a.say(t, "done")
	a.cmd.Wait()
	waitUnbound(t, dir)
	waitUnbound(t, rootDir)
	d.checkFDs(t)
}
