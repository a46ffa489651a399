package store_test

import (
	"os"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stopForgeProcesses ends, by PID, every process running the forge binary
// this harness built whose arguments name path or a path below it (all of
// them when path is empty): a store daemon the CLI may have started
// outlives the command, and must not outlive the test that caused it.
// SIGTERM first, SIGKILL after a grace period. logf reports what it did.
func stopForgeProcesses(path string, logf func(format string, args ...any)) {
	if harness.bin == "" {
		return
	}
	pids := forgeProcesses(path)
	for _, pid := range pids {
		syscall.Kill(pid, syscall.SIGTERM)
	}
	deadline := time.Now().Add(10 * time.Second)
	for _, pid := range pids {
		for running(pid) && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		// Checked again so that a PID reused in the meantime is spared.
		if running(pid) && isForgeFor(pid, path) {
			syscall.Kill(pid, syscall.SIGKILL)
			logf("forge process %d ignored SIGTERM for 10s; killed", pid)
		}
	}
}

// forgeProcesses lists the PIDs of processes of harness.bin for path.
func forgeProcesses(path string) []int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if isForgeFor(pid, path) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func isForgeFor(pid int, path string) bool {
	proc := "/proc/" + strconv.Itoa(pid)
	exe, _ := os.Readlink(proc + "/exe")
	cmdline, err := os.ReadFile(proc + "/cmdline")
	if err != nil {
		return false
	}
	args := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
	if exe != harness.bin && args[0] != harness.bin {
		return false
	}
	if path == "" {
		return true
	}
	for _, a := range args[1:] {
		if a == path || strings.HasPrefix(a, path+"/") {
			return true
		}
	}
	return false
}

// running reports whether pid exists and is not a zombie.
func running(pid int) bool {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name.
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || i+2 >= len(s) || s[i+2] != 'Z'
}
