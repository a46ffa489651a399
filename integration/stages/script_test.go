package stages_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// scriptTree is an account tree with a shell and sleep, and a marker
// file that only a process chrooted into the tree sees at /etc.
func scriptTree(t *testing.T) string {
	t.Helper()
	tree := accountTree(t)
	installHostBinaries(t, tree, "sh", "sleep")
	writeFiles(t, tree, map[string]string{"etc/forge-marker": "in the tree\n"})
	// As debootstrap makes it: dash gives background jobs /dev/null.
	must(t, os.Mkdir(filepath.Join(tree, "dev"), 0o755))
	must(t, unix.Mknod(filepath.Join(tree, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	return tree
}

// sleepMarker is the argument of a sleep the script leaves running;
// nothing else on the machine sleeps that long.
const sleepMarker = "987654"

func TestScript(t *testing.T) {
	tree := scriptTree(t)
	// Should the stage leave the sleep running, the test ends it.
	t.Cleanup(func() {
		for _, pid := range sleepers() {
			if n, err := strconv.Atoi(pid); err == nil {
				unix.Kill(n, unix.SIGKILL)
			}
		}
	})
	out := mustRun(t, "org.osbuild.script", tree, `{"script": "#!/bin/sh\nset -e\n[ -f /etc/forge-marker ]\necho chrooted > /result\necho to-stdout\necho to-stderr >&2\n/usr/bin/sleep `+sleepMarker+` >/dev/null 2>&1 &\nkill -0 $!\necho $! > /sleep.pid\n"}`)
	if got := read(t, filepath.Join(tree, "result")); got != "chrooted\n" {
		t.Errorf("/result = %q: the script did not run chrooted into the tree", got)
	}
	if !strings.Contains(out, "to-stdout") || !strings.Contains(out, "to-stderr") {
		t.Errorf("the script's output is not the stage's: %q", out)
	}
	if _, err := os.Lstat(filepath.Join(tree, "osbuild-script")); !os.IsNotExist(err) {
		t.Errorf("/osbuild-script was not removed (%v)", err)
	}
	// The sleep it left behind (kill -0 checked it ran) is killed with
	// the script's process group.
	if pid := strings.TrimSpace(read(t, filepath.Join(tree, "sleep.pid"))); pid == "" {
		t.Fatal("the script did not start its background sleep")
	}
	deadline := time.Now().Add(30 * time.Second)
	for pids := sleepers(); len(pids) > 0; pids = sleepers() {
		if time.Now().After(deadline) {
			t.Fatalf("the script's background sleep still runs: PIDs %v", pids)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// sleepers are the PIDs of processes sleeping sleepMarker seconds.
func sleepers() []string {
	var pids []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Equal(bytes.TrimRight(b, "\x00"), []byte("/usr/bin/sleep\x00"+sleepMarker)) {
			pids = append(pids, e.Name())
		}
	}
	return pids
}

func TestScriptWithoutShebang(t *testing.T) {
	tree := scriptTree(t)
	mustRun(t, "org.osbuild.script", tree, `{"script": "echo plain sh > /result\n"}`)
	if got := read(t, filepath.Join(tree, "result")); got != "plain sh\n" {
		t.Errorf("/result = %q", got)
	}
}

func TestScriptFails(t *testing.T) {
	tree := scriptTree(t)
	mustFail(t, "org.osbuild.script", tree, `{"script": "#!/bin/sh\necho failing\nexit 3\n"}`, "script failed with exit status 3")
	if _, err := os.Lstat(filepath.Join(tree, "osbuild-script")); !os.IsNotExist(err) {
		t.Errorf("/osbuild-script was not removed after a failure (%v)", err)
	}
	// An interpreter the tree lacks.
	mustFail(t, "org.osbuild.script", tree, `{"script": "#!/usr/bin/python3\nprint(1)\n"}`, "no such file or directory")
	mustFail(t, "org.osbuild.script", tree, `{"script": 1}`, `option "script": want string`)
}
