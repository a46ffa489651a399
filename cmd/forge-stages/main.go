// Command forge-stages is every stage and assembler forge ships, and its
// runners (osbuild-run for format 1, runners/org.osbuild.linux for
// format 2), in one static binary: `make` hard-links it into the libdir
// under each name (bin/libexec/forge), with each stage's NAME.meta.json
// beside it, and it runs as the name it was started under. See package
// stage for the protocol.
package main

import (
	"github.com/forge-build/forge/assemblers/qemu"
	"github.com/forge-build/forge/assemblers/rawfs"
	"github.com/forge-build/forge/assemblers/tar"
	"github.com/forge-build/forge/stages/apt"
	"github.com/forge-build/forge/stages/copy"
	"github.com/forge-build/forge/stages/fstab"
	"github.com/forge-build/forge/stages/grub2"
	"github.com/forge-build/forge/stages/grub2inst"
	"github.com/forge-build/forge/stages/hostname"
	"github.com/forge-build/forge/stages/locale"
	"github.com/forge-build/forge/stages/mkdir"
	"github.com/forge-build/forge/stages/mkfs"
	"github.com/forge-build/forge/stages/mmdebstrap"
	"github.com/forge-build/forge/stages/noop"
	qemustage "github.com/forge-build/forge/stages/qemu"
	"github.com/forge-build/forge/stages/script"
	"github.com/forge-build/forge/stages/sfdisk"
	"github.com/forge-build/forge/stages/stage"
	"github.com/forge-build/forge/stages/systemd"
	"github.com/forge-build/forge/stages/timezone"
	"github.com/forge-build/forge/stages/truncate"
	"github.com/forge-build/forge/stages/users"
)

// stages are the libdir's stages and assemblers.
func stages() []stage.Stage {
	return []stage.Stage{
		{Name: "org.osbuild.apt", Kind: stage.KindStage, Run: apt.Run, MetaJSON: apt.Meta},
		{Name: "org.osbuild.copy", Kind: stage.KindStage, Run: copy.Run, MetaJSON: copy.Meta},
		{Name: "org.osbuild.fstab", Kind: stage.KindStage, Run: fstab.Run, MetaJSON: fstab.Meta},
		{Name: "org.osbuild.grub2", Kind: stage.KindStage, Run: grub2.Run, MetaJSON: grub2.Meta},
		{Name: "org.osbuild.grub2.inst", Kind: stage.KindStage, Run: grub2inst.Run, MetaJSON: grub2inst.Meta},
		{Name: "org.osbuild.hostname", Kind: stage.KindStage, Run: hostname.Run, MetaJSON: hostname.Meta},
		{Name: "org.osbuild.locale", Kind: stage.KindStage, Run: locale.Run, MetaJSON: locale.Meta},
		{Name: "org.osbuild.mkdir", Kind: stage.KindStage, Run: mkdir.Run, MetaJSON: mkdir.Meta},
		{Name: "org.osbuild.mkfs.ext4", Kind: stage.KindStage, Run: mkfs.RunExt4, MetaJSON: mkfs.MetaExt4},
		{Name: "org.osbuild.mkfs.fat", Kind: stage.KindStage, Run: mkfs.RunFAT, MetaJSON: mkfs.MetaFAT},
		{Name: "org.osbuild.mmdebstrap", Kind: stage.KindStage, Run: mmdebstrap.Run, MetaJSON: mmdebstrap.Meta},
		{Name: "org.osbuild.noop", Kind: stage.KindStage, Run: noop.Run, MetaJSON: noop.Meta},
		// The format-2 stage; the format-1 assembler of that name is below.
		{Name: "org.osbuild.qemu", Kind: stage.KindStage, Run: qemustage.Run, MetaJSON: qemustage.Meta},
		{Name: "org.osbuild.script", Kind: stage.KindStage, Run: script.Run, MetaJSON: script.Meta},
		{Name: "org.osbuild.sfdisk", Kind: stage.KindStage, Run: sfdisk.Run, MetaJSON: sfdisk.Meta},
		{Name: "org.osbuild.systemd", Kind: stage.KindStage, Run: systemd.Run, MetaJSON: systemd.Meta},
		{Name: "org.osbuild.timezone", Kind: stage.KindStage, Run: timezone.Run, MetaJSON: timezone.Meta},
		{Name: "org.osbuild.truncate", Kind: stage.KindStage, Run: truncate.Run, MetaJSON: truncate.Meta},
		{Name: "org.osbuild.users", Kind: stage.KindStage, Run: users.Run, MetaJSON: users.Meta},

		{Name: "org.osbuild.qemu", Kind: stage.KindAssembler, Run: qemu.Run, MetaJSON: qemu.Meta},
		{Name: "org.osbuild.rawfs", Kind: stage.KindAssembler, Run: rawfs.Run, MetaJSON: rawfs.Meta},
		{Name: "org.osbuild.tar", Kind: stage.KindAssembler, Run: tar.Run, MetaJSON: tar.Meta},
	}
}

func main() {
	stage.Main(stages())
}
