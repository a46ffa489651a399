// Command timeit runs one command and appends how long it took to a file:
// the wall time on the monotonic clock, the user and system CPU time and the
// peak resident size of the command and the descendants it waited for, and
// its exit status. bench/lib.sh times every benchmarked command with it, so
// that all figures of bench/ are measured the same way.
//
// Usage: timeit -o FILE -- COMMAND [ARG...]
//
// The line appended is "elapsed_s user_s sys_s maxrss_kib exit_status". The
// command's standard streams are passed through, and timeit exits with the
// command's status (128+N when a signal N ended it).
package main

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"syscall"
	"time"
)

func main() {
	out := flag.String("o", "", "append the figures to this `file` (default: standard error)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: timeit [-o FILE] -- COMMAND [ARG...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	status, err := run(*out, flag.Args())
	if err != nil {
		fmt.Fprintf(os.Stderr, "timeit: %v\n", err)
		os.Exit(125)
	}
	os.Exit(status)
}

// run times argv and records the figures; it returns the command's exit
// status, or an error when the command could not be started or the figures
// could not be written.
func run(out string, argv []string) (int, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr

	// time.Now carries a monotonic reading, and time.Since uses it: a clock
	// step during the run does not change the figure.
	start := time.Now()
	err := cmd.Run()
	elapsed := time.Since(start)

	var exitErr *exec.ExitError
	if err != nil && !errors.As(err, &exitErr) {
		return 0, fmt.Errorf("run %s: %w", argv[0], err)
	}
	st := cmd.ProcessState
	status := st.ExitCode()
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		status = 128 + int(ws.Signal())
	}
	var maxRSS int64
	if ru, ok := st.SysUsage().(*syscall.Rusage); ok {
		maxRSS = ru.Maxrss // KiB on Linux
	}
	line := fmt.Sprintf("%.6f %.6f %.6f %d %d\n",
		elapsed.Seconds(), st.UserTime().Seconds(), st.SystemTime().Seconds(), maxRSS, status)

	if out == "" {
		_, err := os.Stderr.WriteString(line)
		return status, err
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return status, fmt.Errorf("open figures file: %w", err)
	}
	if _, err := f.WriteString(line); err != nil {
		f.Close()
		return status, fmt.Errorf("write figures to %s: %w", out, err)
	}
	if err := f.Close(); err != nil {
		return status, fmt.Errorf("close %s: %w", out, err)
	}
	return status, nil
}
