// Command loopd is the host's loop-device daemon: build roots without
// /dev/loop-control ask it for loop devices over a Unix socket, with
// osbuild's remoteloop protocol. See package loopd.
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"os/user"
	"strconv"
	"syscall"

	"github.com/forge-build/forge/loopd"
	"github.com/spf13/pflag"
)

const usage = `loopd hands out loop devices to processes that cannot make their own
(osbuild assemblers in a build root), speaking osbuild's remoteloop protocol
on a SOCK_SEQPACKET socket and on a SOCK_DGRAM socket.

A client sends {"fd": 0, "dir_fd": 1, "offset"?, "sizelimit"?, "partscan"?,
"read_only"?, "sector_size"?} with two fds (backing file, directory); loopd
creates loopN (and loopNp1… with partscan) in that directory and answers
{"devname": "loopN"} or {"error": "..."}. Devices are detached when the
client's connection closes (SEQPACKET) or its process exits (DGRAM), and all
of them on SIGTERM.

Under systemd, the sockets come from loopd.socket (socket activation) and
the path flags are ignored.

Usage:
  loopd [--socket PATH] [--dgram-socket PATH] [--group NAME] [--max-per-client N]

Example:
  # root and members of group "builders" may ask; at most 8 devices each
  loopd --group builders --max-per-client 8

Flags:
`

func main() {
	os.Exit(run(os.Args[1:]))
}

func run(args []string) int {
	flags := pflag.NewFlagSet("loopd", pflag.ContinueOnError)
	socket := flags.String("socket", loopd.DefaultSocket, "SOCK_SEQPACKET socket to listen on (\"\" for none)")
	dgramSocket := flags.String("dgram-socket", loopd.DefaultDgramSocket, "SOCK_DGRAM socket to listen on (\"\" for none)")
	group := flags.String("group", "", "group (name or GID) whose members may use loopd besides root")
	maxPerClient := flags.Int("max-per-client", loopd.DefaultMaxPerClient, "devices one client may hold at once")
	flags.Usage = func() {
		fmt.Fprint(os.Stderr, usage)
		flags.PrintDefaults()
	}
	if err := flags.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(os.Stderr, "loopd: %v\nRun 'loopd --help' for usage.\n", err)
		return 2
	}
	if flags.NArg() != 0 {
		fmt.Fprintf(os.Stderr, "loopd: unexpected arguments %q\n", flags.Args())
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := serve(log, *socket, *dgramSocket, *group, *maxPerClient); err != nil {
		log.Error("loopd", "error", err)
		return 1
	}
	return 0
}

func serve(log *slog.Logger, socket, dgramSocket, group string, maxPerClient int) error {
	if maxPerClient < 1 {
		return fmt.Errorf("--max-per-client %d: must be at least 1", maxPerClient)
	}
	cfg := loopd.Config{MaxPerClient: maxPerClient, Logger: log}
	if group != "" {
		gid, err := lookupGroup(group)
		if err != nil {
			return err
		}
		cfg.Groups = []uint32{gid}
	}
	// Catch the signals before the sockets exist: a SIGTERM sent as soon
	// as the socket answers must still end in an orderly shutdown.
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	seq, dgram, err := loopd.ActivatedSockets()
	if err != nil {
		return err
	}
	if seq == nil && dgram == nil {
		if seq, dgram, err = listen(socket, dgramSocket); err != nil {
			return err
		}
		if dgramSocket != "" {
			defer loopd.RemoveSocket(dgramSocket)
		}
	}
	srv, err := loopd.NewServer(cfg)
	if err != nil {
		if seq != nil {
			seq.Close()
		}
		if dgram != nil {
			dgram.Close()
		}
		return err
	}
	log.Info("serving", "seqpacket", listenerAddr(seq), "dgram", connAddr(dgram), "group", group, "max_per_client", maxPerClient)
	err = srv.Serve(ctx, seq, dgram)
	log.Info("stopped; every device detached")
	return err
}

func listen(socket, dgramSocket string) (*net.UnixListener, *net.UnixConn, error) {
	if socket == "" && dgramSocket == "" {
		return nil, nil, errors.New("--socket and --dgram-socket are both empty: nothing to serve")
	}
	var seq *net.UnixListener
	var dgram *net.UnixConn
	var err error
	if dgramSocket != "" {
		if dgram, err = loopd.ListenDatagram(dgramSocket); err != nil {
			return nil, nil, err
		}
	}
	if socket != "" {
		if seq, err = loopd.ListenSeqpacket(socket); err != nil {
			if dgram != nil {
				dgram.Close()
				loopd.RemoveSocket(dgramSocket)
			}
			return nil, nil, err
		}
	}
	return seq, dgram, nil
}

func lookupGroup(name string) (uint32, error) {
	if gid, err := strconv.ParseUint(name, 10, 32); err == nil {
		return uint32(gid), nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return 0, fmt.Errorf("--group %s: %w", name, err)
	}
	gid, err := strconv.ParseUint(g.Gid, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("--group %s: gid %q: %w", name, g.Gid, err)
	}
	return uint32(gid), nil
}

func listenerAddr(l *net.UnixListener) string {
	if l == nil {
		return ""
	}
	return l.Addr().String()
}

func connAddr(c *net.UnixConn) string {
	if c == nil {
		return ""
	}
	return c.LocalAddr().String()
}
