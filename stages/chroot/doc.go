// Package chroot runs programs inside a tree, the way stages that install
// packages need to, and cleans up after them whatever happened.
//
//   - Setup mounts a fresh /proc, a read-only bind of /sys and a small /dev
//     (a tmpfs holding binds of null, zero, full, random, urandom and tty,
//     a new devpts instance, the usual symlinks and a shm directory) into
//     the tree. Watch mounts nothing: it only remembers what is mounted
//     below the tree, for a tool (mmdebstrap, debootstrap) that mounts and
//     chroots by itself.
//   - Run runs a command chrooted into the tree in its own process group,
//     killed (the whole group) when the context ends.
//   - Teardown kills every process whose root is the tree, restores what
//     Substitute replaced, unmounts everything mounted below the tree
//     since Setup or Watch — its own mounts and any a package's scripts
//     made — deepest first, removes the mountpoints it had to create, and
//     reports what it could not undo. It is safe to call again.
//   - Substitute puts a file into the tree until Teardown (policy-rc.d,
//     resolv.conf), which puts back whatever was there before: a file, a
//     symlink, or nothing.
//
// Paths inside the tree are resolved as the chroot would resolve them
// (openat2 RESOLVE_IN_ROOT), so a tree's symlinks never lead a write or a
// mount out of the tree.
package chroot
