// Package loopd_test runs the loopd binary against real loop devices, real
// sockets, real partition tables made by sfdisk, and real clients: the Go
// client, a Python client speaking like osbuild's assemblers, and clients
// running as nobody. It needs root; as anyone else every test skips.
package loopd_test

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/integration/itest"
)

var (
	// loopdBin is the loopd binary built for this run.
	loopdBin string
	// suiteDir holds every file this suite creates, so that the final check
	// can tell the loop devices this suite attached from everyone else's.
	suiteDir string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run() // every test skips with its reason
	}
	dir, err := os.MkdirTemp("", "forge-loopd-itest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	// Clients running as nobody must reach the sockets under it.
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	suiteDir = dir
	loopdBin = filepath.Join(dir, "loopd")
	if err := itest.GoBuild(loopdBin, "./cmd/loopd", false); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	if err := os.WriteFile(filepath.Join(dir, "client.py"), []byte(pythonClient), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	code := m.Run()
	if leaked := losetupUnder(suiteDir); len(leaked) > 0 {
		fmt.Fprintf(os.Stderr, "FAIL: after the suite, losetup -a still shows devices this suite attached:\n%s\n", strings.Join(leaked, "\n"))
		code = 1
		// They are ours (backed by files under suiteDir): detach them so a
		// failed run leaves the machine clean.
		for _, line := range leaked {
			dev, _, _ := strings.Cut(line, ":")
			exec.Command("losetup", "-d", dev).Run()
		}
	}
	return code
}

// losetupUnder returns the lines of `losetup -a` whose backing file is under
// dir: the devices this suite attached and did not get detached.
func losetupUnder(dir string) []string {
	out, err := exec.Command("losetup", "-a").Output()
	if err != nil {
		return []string{"losetup -a: " + err.Error()}
	}
	var lines []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		// /dev/loop3: [65024]:1234 (/tmp/forge-loopd-itest-123/x/img)
		if strings.Contains(sc.Text(), "("+dir+"/") {
			lines = append(lines, sc.Text())
		}
	}
	return lines
}
