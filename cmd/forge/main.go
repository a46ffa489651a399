// Command forge builds OS images from osbuild manifests on a deduplicated,
// content-addressed store. This file dispatches subcommands; the work is in
// the packages.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"

	"github.com/spf13/pflag"

	"github.com/forge-build/forge/builder/runs"
	"github.com/forge-build/forge/buildroot"
)

// command is one `forge …` subcommand.
type command struct {
	name    string // as typed: "store import"
	summary string
	usage   string // arguments after the name
	example string
	flags   func(*pflag.FlagSet)
	run     func(ctx context.Context, env *env, fs *pflag.FlagSet) error
}

// env is what a command may touch: its streams.
type env struct {
	stdout, stderr io.Writer
	stderrIsTTY    bool
}

// usageError is a mistake on the command line: exit 2 with a hint.
type usageError struct{ msg string }

func (e *usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error {
	return &usageError{fmt.Sprintf(format, args...)}
}

// exitError ends the command with a status and no further message (the
// command printed what it had to say).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func commands() []*command {
	return append(append(append(append(storeCommands(), remoteCommands()...), daemonCommands()...), runCommands()...), buildCommands()...)
}

func main() {
	// Re-executions of forge that are not commands: a buildroot's init
	// (it must run before anything else starts) and a run's reaper.
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case buildroot.InitArg:
			buildroot.Init()
		case runs.ReaperArg:
			os.Exit(runs.ReaperMain(os.Args[2:]))
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	e := &env{stdout: os.Stdout, stderr: os.Stderr, stderrIsTTY: isTerminal(os.Stderr)}
	os.Exit(run(ctx, e, os.Args[1:]))
}

func run(ctx context.Context, e *env, args []string) int {
	cmds := commands()
	if len(args) == 0 || args[0] == "help" || args[0] == "--help" || args[0] == "-h" {
		if len(args) > 1 {
			args = append(args[1:], "--help")
		} else {
			printOverview(e.stdout, cmds)
			return 0
		}
	}
	cmd, rest := findCommand(cmds, args)
	if cmd == nil && len(args) > 0 && groupExists(cmds, args[0]) {
		printGroup(e.stdout, cmds, args[0])
		if len(args) == 1 || args[1] == "--help" || args[1] == "-h" || args[1] == "help" {
			return 0
		}
		return 2
	}
	if cmd == nil {
		fmt.Fprintf(e.stderr, "forge: unknown command %q\n\n", strings.Join(args[:min(2, len(args))], " "))
		printOverview(e.stderr, cmds)
		return 2
	}
	fs := pflag.NewFlagSet("forge "+cmd.name, pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.SortFlags = false
	if cmd.flags != nil {
		cmd.flags(fs)
	}
	fs.Usage = func() { printCommandHelp(e.stdout, cmd, fs) }
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		fmt.Fprintf(e.stderr, "forge %s: %v\nRun 'forge %s --help' for usage.\n", cmd.name, err, cmd.name)
		return 2
	}
	err := cmd.run(ctx, e, fs)
	var ue *usageError
	var ee *exitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.code
	case errors.As(err, &ue):
		fmt.Fprintf(e.stderr, "forge %s: %s\nRun 'forge %s --help' for usage.\n", cmd.name, ue.msg, cmd.name)
		return 2
	default:
		fmt.Fprintf(e.stderr, "forge %s: %v\n", cmd.name, err)
		return 1
	}
}

// findCommand matches the longest command name at the start of args.
func findCommand(cmds []*command, args []string) (*command, []string) {
	var best *command
	var bestLen int
	for _, c := range cmds {
		words := strings.Fields(c.name)
		if len(words) > len(args) || len(words) <= bestLen {
			continue
		}
		match := true
		for i, w := range words {
			if args[i] != w {
				match = false
				break
			}
		}
		if match {
			best, bestLen = c, len(words)
		}
	}
	if best == nil {
		return nil, nil
	}
	return best, args[bestLen:]
}

func groupExists(cmds []*command, group string) bool {
	for _, c := range cmds {
		if strings.HasPrefix(c.name, group+" ") {
			return true
		}
	}
	return false
}

func printGroup(w io.Writer, cmds []*command, group string) {
	fmt.Fprintf(w, "Usage: forge %s COMMAND [FLAGS] [ARGS]\n\nCommands:\n", group)
	printList(w, cmds, group+" ")
	fmt.Fprintf(w, "\nRun 'forge %s COMMAND --help' for a command's flags and an example.\n", group)
}

func printList(w io.Writer, cmds []*command, prefix string) {
	sorted := append([]*command(nil), cmds...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].name < sorted[j].name })
	for _, c := range sorted {
		if strings.HasPrefix(c.name, prefix) {
			first, _, _ := strings.Cut(c.summary, "\n")
			fmt.Fprintf(w, "  %-16s %s\n", c.name, first)
		}
	}
}

func printOverview(w io.Writer, cmds []*command) {
	fmt.Fprint(w, `forge builds OS images from osbuild manifests on a deduplicated,
content-addressed store of trees.

Usage: forge COMMAND [FLAGS] [ARGS]

Commands:
`)
	printList(w, cmds, "")
	fmt.Fprint(w, `
The store is --store DIR, else $FORGE_STORE, else /var/cache/forge.
Run 'forge COMMAND --help' for a command's flags and an example.
`)
}

func printCommandHelp(w io.Writer, c *command, fs *pflag.FlagSet) {
	fmt.Fprintf(w, "Usage: forge %s %s\n\n%s\n", c.name, c.usage, c.summary)
	if fs.HasFlags() {
		fmt.Fprintf(w, "\nFlags:\n%s", fs.FlagUsages())
	}
	if c.example != "" {
		fmt.Fprintf(w, "\nExample:\n%s\n", strings.TrimRight(c.example, "\n"))
	}
}

func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
