package buildroot_test

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/forge-build/forge/integration/itest"
	"github.com/forge-build/forge/internal/mountinfo"
)

// The view from inside: PID 1 is forge, ps sees only the buildroot, the
// hostname is its own, the tree is writable and /usr is not, and the
// mount table holds only the buildroot's mounts.
func TestInside(t *testing.T) {
	store := storeDir(t)
	script := `set -e
if echo 1 > /proc/sys/kernel/core_uses_pid 2>/dev/null; then echo proc-sys-writable; fi
ps -e -o pid=,comm= > /run/osbuild/tree/ps
hostname > /run/osbuild/tree/hostname
if touch /usr/forge-probe 2>/dev/null; then echo usr-writable; fi
cut -d' ' -f5 /proc/self/mountinfo > /run/osbuild/tree/mounts
echo hello > /run/osbuild/tree/hello`
	out, errOut, code := forge(t, "run", "--store", store, "--commit-ref", "inside", "--", "sh", "-c", script)
	if code != 0 {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(out, "usr-writable") {
		t.Errorf("/usr is writable inside the buildroot")
	}
	if strings.Contains(out, "proc-sys-writable") {
		t.Errorf("/proc/sys is writable inside the buildroot: the host kernel's settings are")
	}
	// Read what the run committed back through a second run.
	read := func(name string) string {
		return mustForge(t, "run", "--store", store, "--tree", "inside", "--", "cat", "/run/osbuild/tree/"+name)
	}
	ps := strings.Fields(read("ps"))
	if len(ps) < 2 || ps[0] != "1" || ps[1] != "forge" {
		t.Errorf("ps: PID 1 is not forge: %q", ps)
	}
	for i := 0; i+1 < len(ps); i += 2 {
		if c := ps[i+1]; c != "forge" && c != "sh" && c != "ps" {
			t.Errorf("ps sees a process that is not the buildroot's: %s %s", ps[i], c)
		}
	}
	if h := strings.TrimSpace(read("hostname")); h != "forge-buildroot" {
		t.Errorf("hostname %q, want forge-buildroot", h)
	}
	allowed := map[string]bool{"/": true, "/var": true, "/tmp": true, "/run": true, "/dev": true,
		"/dev/pts": true, "/dev/shm": true, "/proc": true, "/sys": true, "/run/osbuild/tree": true,
		// Read-only binds over the host kernel's knobs, as bwrap makes.
		"/proc/sys": true, "/proc/sysrq-trigger": true, "/proc/irq": true, "/proc/bus": true}
	for _, d := range []string{"usr", "bin", "sbin", "lib", "lib32", "lib64", "libx32"} {
		if fi, err := os.Lstat("/" + d); err == nil && fi.IsDir() {
			allowed["/"+d] = true
		}
	}
	mounts := strings.Fields(read("mounts"))
	for _, m := range mounts {
		if !allowed[m] {
			t.Errorf("mount %s inside the buildroot is none of its own", m)
		}
	}
	if !contains(mounts, "/run/osbuild/tree") || !contains(mounts, "/usr") {
		t.Errorf("mounts %q lack /usr or /run/osbuild/tree", mounts)
	}
	if got := read("hello"); got != "hello\n" {
		t.Errorf("committed tree: hello = %q", got)
	}
	if left := mountsUnder(t, store); len(left) != 0 {
		t.Errorf("mounts left on the host: %q", left)
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func TestExitStatus(t *testing.T) {
	store := storeDir(t)
	// A stored tree without /usr, as a build tree.
	mustForge(t, "run", "--store", store, "--commit-ref", "nousr", "--", "true")
	tests := []struct {
		name    string
		args    []string
		code    int
		message string
	}{
		{"success", []string{"--", "true"}, 0, ""},
		{"status", []string{"--", "sh", "-c", "exit 3"}, 3, ""},
		{"killed by a signal", []string{"--", "sh", "-c", "kill -TERM $$"}, 128 + 15, ""},
		{"missing command", []string{"--", "forge-no-such-command"}, 127, `"forge-no-such-command": command not found`},
		{"missing path", []string{"--", "/nonexistent/cmd"}, 127, "command not found"},
		{"timeout", []string{"--timeout", "1s", "--", "sleep", "600"}, 124, "timed out after 1s"},
		{"build tree without usr", []string{"--root", "nousr", "--", "true"}, 1, "has no /usr directory"},
		{"usage", []string{"--chroot", "nousr", "--root", "nousr", "--", "true"}, 2, "--chroot replaces"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, errOut, code := forge(t, append([]string{"run", "--store", store}, tc.args...)...)
			if code != tc.code {
				t.Errorf("exit %d, want %d; stderr: %s", code, tc.code, errOut)
			}
			if !strings.Contains(errOut, tc.message) {
				t.Errorf("stderr %q lacks %q", errOut, tc.message)
			}
		})
	}
	if left := mountsUnder(t, store); len(left) != 0 {
		t.Errorf("mounts left on the host: %q", left)
	}
}

// startRun starts forge run with a pipe on stdin and waits for CMD to say
// "ready" on stdout.
func startRun(t *testing.T, args ...string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	return startCmd(t, forgeBin, args...)
}

func startCmd(t *testing.T, name string, args ...string) (*exec.Cmd, io.WriteCloser) {
	t.Helper()
	cmd := exec.Command(name, args...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("forge run %q: first line %q: %v", args, line, err)
	}
	return cmd, stdin
}

func TestSIGINTStopsCommand(t *testing.T) {
	store := storeDir(t)
	cmd, _ := startRun(t, "run", "--store", store, "--", "sh", "-c", "echo ready; exec sleep 600")
	cmd.Process.Signal(syscall.SIGINT)
	err := cmd.Wait()
	if cmd.ProcessState == nil || cmd.ProcessState.ExitCode() != 130 {
		t.Fatalf("forge run after SIGINT: %v, want exit 130 (sleep killed by SIGINT)", err)
	}
}

// SIGKILL of forge run mid-command: the buildroot's processes die with it,
// and the reaper has the daemon detach the run's mounts.
func TestSIGKILLLeavesNothing(t *testing.T) {
	store := storeDir(t)
	marker := fmt.Sprintf("%d.%d", os.Getpid(), 4242)
	cmd, _ := startRun(t, "run", "--store", store, "--tree", "", "--commit-ref", "never", "--",
		"sh", "-c", "sleep "+marker+" & echo ready; wait")
	if len(itest.ProcessesWith(marker)) == 0 || len(mountsUnder(t, store)) == 0 {
		t.Fatalf("before the kill: want a sleep %s and a tree mount under %s", marker, store)
	}
	cmd.Process.Kill()
	cmd.Wait()
	eventually(t, "processes of the killed run", func() (bool, string) {
		p := itest.ProcessesWith(marker)
		return len(p) == 0, fmt.Sprint(p)
	})
	eventually(t, "mounts of the killed run", func() (bool, string) {
		m := mountsUnder(t, store)
		return len(m) == 0, fmt.Sprint(m)
	})
	eventually(t, "run directories", func() (bool, string) {
		ents, _ := filepath.Glob(filepath.Join(store, "buildroots", "run-*"))
		return len(ents) == 0, fmt.Sprint(ents)
	})
	if _, _, code := forge(t, "run", "--store", store, "--tree", "never", "--", "true"); code == 0 {
		t.Errorf("the killed run committed its tree")
	}
}

// The seed's bug: under shared propagation, every buildroot's mounts
// propagated into every other's. Eight buildroots at once in a mount
// namespace whose / is rshared: its mount count grows by at most a
// constant per buildroot (the daemon's tree mount) and comes back.
func TestConcurrentUnderSharedPropagation(t *testing.T) {
	store := storeDir(t)
	// Start the daemon in the host namespace, and a tree to mount.
	mustForge(t, "run", "--store", store, "--commit-ref", "base", "--", "true")
	holder := exec.Command("unshare", "--mount", "--propagation", "shared", "sleep", "infinity")
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		holder.Process.Kill()
		holder.Wait()
	})
	nsMounts := fmt.Sprintf("/proc/%d/mountinfo", holder.Process.Pid)
	eventually(t, "unshare's namespace", func() (bool, string) {
		a, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", holder.Process.Pid))
		b, _ := os.Readlink("/proc/self/ns/mnt")
		return a != b, a
	})
	for _, m := range mountTable(t, nsMounts) {
		if m.Point == "/" && !slices.ContainsFunc(m.Optional, func(o string) bool { return strings.HasPrefix(o, "shared:") }) {
			t.Fatalf("/ is not shared in the test namespace: %+v", m)
		}
	}
	// Count the mounts below the test's own directory (the store, its runs
	// and their roots): those are what buildroots make, and what the
	// seed's bug multiplied. Other mounts on the machine come and go
	// with whatever else runs there.
	mine := filepath.Dir(store)
	count := func(table string) int { return len(mountinfo.Under(mountTable(t, table), mine)) }
	baseNS, baseHost := count(nsMounts), count(mountinfo.Self)

	const n, perRun = 8, 2
	var stdins []io.WriteCloser
	var cmds []*exec.Cmd
	for i := 0; i < n; i++ {
		cmd, stdin := startCmd(t, "nsenter", "--mount="+fmt.Sprintf("/proc/%d/ns/mnt", holder.Process.Pid), "--",
			forgeBin, "run", "--store", store, "--tree", "base", "--", "sh", "-c", "echo ready; read line; exit 0")
		cmds, stdins = append(cmds, cmd), append(stdins, stdin)
	}
	// All eight are inside their command now.
	if got := count(nsMounts); got > baseNS+n*perRun {
		t.Errorf("test namespace: %d mounts with %d buildroots running, baseline %d", got, n, baseNS)
	}
	if got := count(mountinfo.Self); got > baseHost+n*perRun {
		t.Errorf("host namespace: %d mounts with %d buildroots running, baseline %d", got, n, baseHost)
	}
	var wg sync.WaitGroup
	for i := range cmds {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			stdins[i].Close()
			if err := cmds[i].Wait(); err != nil {
				t.Errorf("buildroot %d: %v", i, err)
			}
		}(i)
	}
	wg.Wait()
	eventually(t, "mount counts back to baseline", func() (bool, string) {
		ns, host := count(nsMounts), count(mountinfo.Self)
		return ns == baseNS && host == baseHost, "ns " + strconv.Itoa(ns) + " host " + strconv.Itoa(host)
	})
}

// --chroot: the stored tree itself is the root, copy-on-write, committed.
func TestChroot(t *testing.T) {
	store := storeDir(t)
	// An image: a tree with the host's static-enough tools is too big, so
	// build one holding a static program.
	img := filepath.Join(t.TempDir(), "img")
	buildStatic(t, filepath.Join(img, "usr/bin/hello"))
	mustForge(t, "store", "import", "--store", store, "--ref", "img", img)
	out := mustForge(t, "run", "--store", store, "--chroot", "img", "--commit-ref", "img2", "--", "/usr/bin/hello", "write", "/marker")
	if !strings.Contains(out, "pid 1 forge") {
		t.Errorf("hello in the chroot: %q", out)
	}
	// The marker is in the committed image, and the build-tree form works
	// too: --root with a stored tree, /usr bound from it.
	out = mustForge(t, "run", "--store", store, "--root", "img2", "--tree", "img2", "--", "/usr/bin/hello", "cat", "/run/osbuild/tree/marker")
	if !strings.Contains(out, "marker from hello") {
		t.Errorf("--root img2 --tree img2: %q", out)
	}
}

// buildStatic builds a small static program at dst: it reports PID 1's
// name, and writes or prints a file.
func buildStatic(t *testing.T, dst string) {
	t.Helper()
	src := t.TempDir()
	prog := `package main

import (
	"fmt"
	"os"
	"strings"
)

func main() {
	comm, _ := os.ReadFile("/proc/1/comm")
	fmt.Printf("pid 1 %s\n", strings.TrimSpace(string(comm)))
	switch os.Args[1] {
	case "write":
		if err := os.WriteFile(os.Args[2], []byte("marker from hello\n"), 0o644); err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
	case "cat":
		b, err := os.ReadFile(os.Args[2])
		if err != nil {
			fmt.Println(err)
			os.Exit(1)
		}
		os.Stdout.Write(b)
	}
}
`
	if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(prog), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module hello\n\ngo 1.21\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-o", dst, ".")
	build.Dir = src
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build static program: %v\n%s", err, out)
	}
}

// With a terminal, the command gets it: an interactive shell works.
func TestTerminal(t *testing.T) {
	store := storeDir(t)
	if _, err := exec.LookPath("script"); err != nil {
		t.Skip("needs script(1) to make a terminal")
	}
	cmdline := forgeBin + " run --store " + store + " -- sh -c 'test -t 0 && test -t 1 && echo on-a-tty'"
	out, err := exec.Command("script", "-qec", cmdline, "/dev/null").CombinedOutput()
	if err != nil {
		t.Fatalf("script: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "on-a-tty") {
		t.Errorf("the command has no terminal: %q", out)
	}
}

// The network namespace is the host's by default (stages download
// packages) and a new one holding only lo with --network private.
func TestNetwork(t *testing.T) {
	store := storeDir(t)
	hostNet, err := os.ReadFile("/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	interfaces := func(dev string) []string {
		var names []string
		for _, line := range strings.Split(dev, "\n")[2:] {
			if name, _, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
				names = append(names, name)
			}
		}
		return names
	}
	shared := mustForge(t, "run", "--store", store, "--", "cat", "/proc/net/dev")
	if got, want := interfaces(shared), interfaces(string(hostNet)); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("default network: interfaces %v, want the host's %v", got, want)
	}
	private := mustForge(t, "run", "--store", store, "--network", "private", "--", "cat", "/proc/net/dev")
	if got := interfaces(private); strings.Join(got, ",") != "lo" {
		t.Errorf("--network private: interfaces %v, want only lo", got)
	}
	// lo's operstate is "unknown" up or down: read IFF_UP from its flags.
	flags := strings.TrimSpace(mustForge(t, "run", "--store", store, "--network", "private", "--", "cat", "/sys/class/net/lo/flags"))
	if v, err := strconv.ParseUint(strings.TrimPrefix(flags, "0x"), 16, 32); err != nil || v&1 == 0 {
		t.Errorf("--network private: lo flags %q, want IFF_UP", flags)
	}
}
