package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	"github.com/spf13/pflag"

	"github.com/forge-build/forge/builder/runs"
	"github.com/forge-build/forge/buildroot"
	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/daemon/client"
)

func runCommands() []*command {
	return []*command{{
		name: "run",
		summary: "Run CMD in a buildroot, as a stage runs, optionally on a stored tree copy-on-write.\n" +
			"Private namespaces, /usr from the build tree (--root, the host's\n" +
			"by default), a generated /etc, a stored tree copy-on-write at /run/osbuild/tree (--tree;\n" +
			"committed under --commit-ref NAME when CMD succeeds). With --chroot, the stored tree\n" +
			"itself, copy-on-write, is the root. The exit status is CMD's.",
		usage: "[--store DIR] [--root REF|HASH|host] [--tree REF|HASH] [--commit-ref NAME]\n" +
			"       [--network private|host] [--timeout DUR] -- CMD [ARGS...]\n" +
			"   or: forge run [--store DIR] --chroot REF|HASH [--commit-ref NAME] -- CMD [ARGS...]",
		example: "  forge run --store /var/cache/forge --root debian-build -- /bin/bash\n" +
			"  forge run --tree base --commit-ref base+hello -- sh -c 'echo hi > /run/osbuild/tree/hello'\n" +
			"  forge run --chroot my-image -- /bin/bash",
		flags: func(fs *pflag.FlagSet) {
			storeFlag(fs)
			fs.String("root", "host", "the build tree: a stored `REF|HASH`, or host")
			fs.String("tree", "", "mount stored tree `REF|HASH` copy-on-write at /run/osbuild/tree")
			fs.String("chroot", "", "use stored tree `REF|HASH` (copy-on-write) as the whole root")
			fs.String("commit-ref", "", "when CMD exits 0, commit the tree (or --chroot root) as ref `NAME`")
			fs.String("network", "host", "`host` or private (only lo)")
			fs.Duration("timeout", 0, "kill everything after `DUR` (exit 124)")
		},
		run: runRun,
	}}
}

func runRun(ctx context.Context, e *env, fs *pflag.FlagSet) error {
	args := fs.Args()
	if len(args) == 0 {
		return usagef("run needs a command: forge run [FLAGS] -- CMD [ARGS...]")
	}
	root, _ := fs.GetString("root")
	tree, _ := fs.GetString("tree")
	chroot, _ := fs.GetString("chroot")
	commitRef, _ := fs.GetString("commit-ref")
	network, _ := fs.GetString("network")
	timeout, _ := fs.GetDuration("timeout")
	if chroot != "" && (fs.Changed("root") || tree != "") {
		return usagef("--chroot replaces --root and --tree")
	}
	if network != string(buildroot.NetworkHost) && network != string(buildroot.NetworkPrivate) {
		return usagef("--network %q: want host or private", network)
	}
	if root == "" {
		return usagef("--root is empty")
	}
	if fs.Changed("commit-ref") {
		// Before CMD runs, not when its work is to be committed.
		if err := cas.ValidRefName(commitRef); err != nil {
			return usagef("--commit-ref: %v", err)
		}
	}
	store, _ := fs.GetString("store")
	store, err := absArg(store)
	if err != nil {
		return err
	}
	c, err := connect(ctx, fs)
	if err != nil {
		return err
	}
	defer c.Close()

	run, err := runs.Start(ctx, c, store)
	if err != nil {
		return err
	}
	defer run.Close(ctx)

	cfg := buildroot.Config{
		BuildTree:      "/",
		Network:        buildroot.Network(network),
		Args:           args,
		Env:            buildroot.DefaultEnv(),
		Timeout:        timeout,
		Stdin:          os.Stdin,
		Stdout:         os.Stdout,
		Stderr:         os.Stderr,
		ForwardSignals: true,
		StateDir:       run.Dir,
	}
	if term := os.Getenv("TERM"); term != "" {
		cfg.Env = append(cfg.Env, "TERM="+term)
	}
	var commitAt string
	switch {
	case chroot != "":
		mp, err := run.Mount(ctx, "root", client.MountRequest{Tree: chroot, Writable: true})
		if err != nil {
			return err
		}
		cfg.BuildTree, cfg.Chroot, commitAt = mp, true, mp
	case root != "host":
		mp, err := run.Mount(ctx, "buildtree", client.MountRequest{Tree: root, BuildRoot: true})
		if err != nil {
			return err
		}
		cfg.BuildTree = mp
	}
	if chroot == "" && (tree != "" || commitRef != "") {
		// Without --tree, --commit-ref builds a tree from an empty one.
		mp, err := run.Mount(ctx, "tree", client.MountRequest{Tree: tree, Writable: true})
		if err != nil {
			return err
		}
		cfg.Binds = append(cfg.Binds, buildroot.Bind{Source: mp, Target: buildroot.TreeDir})
		commitAt = mp
	}

	// SIGINT and SIGTERM go to CMD (Config.ForwardSignals), which decides;
	// they must not tear the buildroot down under it.
	code, err := buildroot.Run(context.WithoutCancel(ctx), cfg)
	switch {
	case errors.Is(err, buildroot.ErrTimeout):
		fmt.Fprintf(e.stderr, "forge run: %v: killed everything in the buildroot\n", err)
		return &exitError{124}
	case errors.Is(err, buildroot.ErrCommandNotFound):
		fmt.Fprintf(e.stderr, "forge run: %v\n", err)
		return &exitError{127}
	case err != nil:
		return err
	}
	if code == 0 && commitRef != "" {
		res, err := c.Commit(context.WithoutCancel(ctx), client.CommitRequest{Mountpoint: client.Path(commitAt), Refs: []string{commitRef}})
		if err != nil {
			return fmt.Errorf("commit %s as %s: %w", commitAt, commitRef, err)
		}
		fmt.Fprintf(e.stderr, "forge run: committed tree %s as %s\n", res.Tree, commitRef)
	}
	if code != 0 {
		return &exitError{code}
	}
	return nil
}
