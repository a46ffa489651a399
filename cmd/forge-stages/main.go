// Command forge-stages is every stage and assembler forge ships, and its
// osbuild-run, in one static binary: `make` hard-links it into the libdir
// under each name (bin/libexec/forge), and it runs as the name it was
// started under. See package stage for the protocol.
package main

import (
	"github.com/forge-build/forge/assemblers/qemu"
	"github.com/forge-build/forge/assemblers/rawfs"
	"github.com/forge-build/forge/assemblers/tar"
	"github.com/forge-build/forge/stages/apt"
	"github.com/forge-build/forge/stages/fstab"
	"github.com/forge-build/forge/stages/grub2"
	"github.com/forge-build/forge/stages/hostname"
	"github.com/forge-build/forge/stages/locale"
	"github.com/forge-build/forge/stages/mmdebstrap"
	"github.com/forge-build/forge/stages/noop"
	"github.com/forge-build/forge/stages/script"
	"github.com/forge-build/forge/stages/stage"
	"github.com/forge-build/forge/stages/systemd"
	"github.com/forge-build/forge/stages/timezone"
	"github.com/forge-build/forge/stages/users"
)

func main() {
	stage.Main([]stage.Stage{
		{Name: "org.osbuild.apt", Kind: stage.KindStage, Run: apt.Run},
		{Name: "org.osbuild.fstab", Kind: stage.KindStage, Run: fstab.Run},
		{Name: "org.osbuild.grub2", Kind: stage.KindStage, Run: grub2.Run},
		{Name: "org.osbuild.hostname", Kind: stage.KindStage, Run: hostname.Run},
		{Name: "org.osbuild.locale", Kind: stage.KindStage, Run: locale.Run},
		{Name: "org.osbuild.mmdebstrap", Kind: stage.KindStage, Run: mmdebstrap.Run},
		{Name: "org.osbuild.noop", Kind: stage.KindStage, Run: noop.Run},
		{Name: "org.osbuild.script", Kind: stage.KindStage, Run: script.Run},
		{Name: "org.osbuild.systemd", Kind: stage.KindStage, Run: systemd.Run},
		{Name: "org.osbuild.timezone", Kind: stage.KindStage, Run: timezone.Run},
		{Name: "org.osbuild.users", Kind: stage.KindStage, Run: users.Run},

		{Name: "org.osbuild.qemu", Kind: stage.KindAssembler, Run: qemu.Run},
		{Name: "org.osbuild.rawfs", Kind: stage.KindAssembler, Run: rawfs.Run},
		{Name: "org.osbuild.tar", Kind: stage.KindAssembler, Run: tar.Run},
	})
}
