// Package assemblers_test runs forge's assemblers the way the builder
// does — `LIBDIR/osbuild-run LIBDIR/assemblers/NAME` of a libdir of
// cmd/forge-stages, JSON on stdin, output_dir, a loopd socket — against
// the fidelity fixture, a loopd server of the test's own and real loop
// devices, then inspects what they made with independent tools: tar,
// fsck.ext4, blkid, sfdisk, qemu-img, and the kernel's ext4 mounted
// read-only. It needs root; as anyone else every test skips.
package assemblers_test

import (
	"os"
	"testing"

	"github.com/forge-build/forge/integration/itest"
)

// libDir is forge's libdir, built for this run: osbuild-run and
// assemblers/NAME, links of cmd/forge-stages.
var libDir string

func TestMain(m *testing.M) {
	if os.Geteuid() != 0 {
		os.Exit(m.Run()) // every test skips with its reason
	}
	os.Exit(itest.RunWithLibdir(m, &libDir))
}
