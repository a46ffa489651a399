package main

import (
	"context"
	"fmt"
	"log"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/forge-build/forge/daemon"
	"github.com/forge-build/forge/daemon/client"
)

func daemonCommands() []*command {
	return []*command{
		{
			name: "daemon",
			summary: "Run the store daemon in the foreground (commands start one when none runs).\n" +
				"It owns the store and serves every forge command and mount over <store>/forge.sock.\n" +
				"Run it yourself under systemd (dist/forge@.service).",
			usage:   "[--store DIR] [--group NAME] [--idle-timeout DUR]",
			example: "  forge daemon --store /var/cache/forge --group forge --idle-timeout 0",
			flags: func(fs *pflag.FlagSet) {
				storeFlag(fs)
				fs.String("group", "", "also admit members of group `NAME` (root always may)")
				fs.Duration("idle-timeout", 5*time.Minute, "exit after `DUR` with no clients and no mounts (0: never)")
			},
			run: runDaemon,
		},
		{
			name:    "daemon stop",
			summary: "Ask the store's daemon to unmount everything and exit, and wait until it has.",
			usage:   "[--store DIR]",
			example: "  forge daemon stop --store /var/cache/forge",
			flags:   storeFlag,
			run:     runDaemonStop,
		},
	}
}

func runDaemon(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 0 {
		return usagef("daemon takes no arguments")
	}
	dir, _ := fs.GetString("store")
	group, _ := fs.GetString("group")
	idle, _ := fs.GetDuration("idle-timeout")
	logger := log.New(e.stderr, "", log.LstdFlags|log.Lmicroseconds)
	return daemon.Run(ctx, daemon.Config{
		StoreDir:    dir,
		Group:       group,
		IdleTimeout: idle,
		Logf:        logger.Printf,
	})
}

func runDaemonStop(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	if fs.NArg() != 0 {
		return usagef("daemon stop takes no arguments")
	}
	dir, _ := fs.GetString("store")
	c := client.NewClient(dir)
	defer c.Close()
	info, err := c.Ping(ctx)
	if err != nil {
		fmt.Fprintf(e.stderr, "no daemon answers for store %s\n", dir)
		return nil
	}
	if err := c.Shutdown(ctx); err != nil {
		return err
	}
	c.Close()
	// The daemon stops serving once its mounts are gone, then closes the
	// store (pebble writes as it closes) and exits: wait for the exit, so
	// that whoever stopped it may then remove or move the store.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if _, err := c.Ping(ctx); err != nil && !processExists(info.PID) {
			fmt.Fprintf(e.stderr, "stopped daemon %d\n", info.PID)
			return nil
		}
	}
	return fmt.Errorf("daemon %d for store %s did not stop within 60s", info.PID, dir)
}

// processExists reports whether pid is a process that has not exited (a
// zombie has: its files are closed).
func processExists(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// "PID (COMM) STATE ...": COMM may hold spaces and parentheses.
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
