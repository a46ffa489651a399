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
{"devname": "loopN"} or {"error": "..."}. Devices are released when the
client's connection closes (SEQPACKET) or its process exits (DGRAM), and all
of them on SIGTERM: the nodes loopd made are first revoked (root's, mode
0000, through any hard link or new name the client gave them) and removed,
then the device is detached.

Who may ask: root, and with --group the members of that group. A member
gets nodes it owns in a directory it owns, for its own files, and keeps no
access to a device once released. Everyone else's connection is answered
with an error and closed as soon as it is accepted. Members share
--max-conns connections, at most --max-conns-per-uid each, and hold at most
--max-per-uid devices per uid over all their clients; root has a
connection budget of its own. A connection that holds no device and sends
nothing for --idle-timeout is closed.

Under systemd, the sockets come from loopd.socket (socket activation) and
the path flags are ignored.

Usage:
  loopd [--socket PATH] [--dgram-socket PATH] [--group NAME] [--max-per-client N]
        [--max-per-uid N] [--max-conns N] [--max-conns-per-uid N] [--idle-timeout DUR]

Example:
  # root and members of group "builders" may ask; at most 8 devices per
  # member, over 4 connections at most
  loopd --group builders --max-per-uid 8 --max-conns-per-uid 4

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
	var cfg loopd.Config
	flags.IntVar(&cfg.MaxPerClient, "max-per-client", loopd.DefaultMaxPerClient, "devices one client (connection, or datagram process) may hold at once")
	flags.IntVar(&cfg.MaxPerUID, "max-per-uid", 0, "devices all clients of one uid other than root may hold together (0: the value of --max-per-client)")
	flags.IntVar(&cfg.MaxConns, "max-conns", loopd.DefaultMaxConns, "SEQPACKET connections of users other than root, together; root has as many of its own")
	flags.IntVar(&cfg.MaxConnsPerUID, "max-conns-per-uid", loopd.DefaultMaxConnsPerUID, "SEQPACKET connections of one uid other than root")
	flags.DurationVar(&cfg.IdleTimeout, "idle-timeout", loopd.DefaultIdleTimeout, "close a connection that holds no device and sends nothing for this long (0: never)")
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
	if err := serve(log, *socket, *dgramSocket, *group, cfg); err != nil {
		log.Error("loopd", "error", err)
		return 1
	}
	return 0
}

func serve(log *slog.Logger, socket, dgramSocket, group string, cfg loopd.Config) error {
	for _, f := range []struct {
		name   string
		v, min int
	}{
		{"--max-per-client", cfg.MaxPerClient, 1},
		{"--max-per-uid", cfg.MaxPerUID, 0},
		{"--max-conns", cfg.MaxConns, 1},
		{"--max-conns-per-uid", cfg.MaxConnsPerUID, 1},
	} {
		if f.v < f.min {
			return fmt.Errorf("%s %d: must be at least %d", f.name, f.v, f.min)
		}
	}
	if cfg.IdleTimeout < 0 {
		return fmt.Errorf("--idle-timeout %v: must not be negative", cfg.IdleTimeout)
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = -1 // never; 0 in a Config means the default
	}
	if cfg.MaxPerUID == 0 {
		cfg.MaxPerUID = cfg.MaxPerClient
	}
	cfg.Logger = log
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
	log.Info("serving", "seqpacket", listenerAddr(seq), "dgram", connAddr(dgram), "group", group,
		"max_per_client", cfg.MaxPerClient, "max_per_uid", cfg.MaxPerUID, "max_conns", cfg.MaxConns,
		"max_conns_per_uid", cfg.MaxConnsPerUID, "idle_timeout", max(cfg.IdleTimeout, 0))
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
