// Package assemblers_test runs forge's assemblers as real executables, the
// way the builder does (JSON on stdin, output_dir, a loopd socket), against
// the fidelity fixture, a loopd server of the test's own and real loop
// devices, then inspects what they made with independent tools: tar,
// fsck.ext4, blkid, sfdisk, qemu-img, and the kernel's ext4 mounted
// read-only. It needs root; as anyone else every test skips.
package assemblers_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// assemblersBin is a multi-call binary of the assemblers, built for this
// run from mainSource; it runs as the name in its argv[0].
var assemblersBin string

// mainSource is the binary's main: the table cmd/forge-stages will have.
const mainSource = `package main

import (
	"github.com/forge-build/forge/assemblers/qemu"
	"github.com/forge-build/forge/assemblers/rawfs"
	"github.com/forge-build/forge/assemblers/tar"
	"github.com/forge-build/forge/stages/stage"
)

func main() {
	stage.Main([]stage.Stage{
		{Name: "org.osbuild.qemu", Kind: stage.KindAssembler, Run: qemu.Run},
		{Name: "org.osbuild.rawfs", Kind: stage.KindAssembler, Run: rawfs.Run},
		{Name: "org.osbuild.tar", Kind: stage.KindAssembler, Run: tar.Run},
	})
}
`

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run() // every test skips with its reason
	}
	dir, err := os.MkdirTemp("", "forge-assemblers-itest-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	src := filepath.Join(dir, "main.go")
	if err := os.WriteFile(src, []byte(mainSource), 0o644); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	assemblersBin = filepath.Join(dir, "forge-assemblers")
	// Built from inside the module (the test's working directory), static
	// like cmd/forge-stages.
	build := exec.Command("go", "build", "-o", assemblersBin, src)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building the assemblers: %v\n%s", err, out)
		return 1
	}
	return m.Run()
}
