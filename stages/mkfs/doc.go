// Package mkfs is org.osbuild.mkfs.ext4 and org.osbuild.mkfs.fat: each
// makes a filesystem on the stage's device "device" (manifest format 2:
// the builder opens it, usually a loop device over part of the image
// file) with the build root's mkfs.ext4 or mkfs.fat, with osbuild's
// options and command lines.
//
// For a reproducible image, mkfs.ext4 gets E2FSPROGS_FAKE_TIME set to the
// pipeline's source epoch, when it has one: e2fsprogs then writes that
// time, not the clock's, into the superblock and the first inodes; the
// directory hash seed is the UUID, and inode tables and journal are
// zeroed by mkfs rather than lazily by the kernel. What the kernel writes
// into the filesystem later is made reproducible by the builder (see
// buildroot.Config.ReproducibleExt4).
// mkfs.fat (dosfstools 4.2) has no such knob; with "volid" given, only
// the label's directory entry carries a time.
package mkfs
