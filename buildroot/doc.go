// Package buildroot runs a command in a buildroot: private mount, PID, IPC
// and UTS namespaces (and network, on request) whose root is a fresh tmpfs
// holding /usr and friends bound read-only from a build tree, a generated
// /etc, scratch /var, /tmp and /run, a minimal /dev, /proc, a read-only
// /sys, and the binds the caller asks for under /run/osbuild.
//
// Nouns:
//   - build tree: the directory whose /usr the command runs from — the
//     host's / or a stored tree mounted by the store daemon.
//   - chroot: a variant where the build tree itself is the whole root
//     (a copy-on-write view of an image), like systemd-nspawn -D.
//   - init: forge itself, re-executed with InitArg as the PID namespace's
//     PID 1. It receives its Config as JSON over a pipe, builds the root in
//     named, ordered phases, starts the command, forwards signals, reaps
//     every process, and kills everything left when the command exits.
//
// Every mount happens inside the new mount namespace, after "/" was made
// MS_PRIVATE recursively, so nothing propagates to the host, and all of it
// disappears with the namespace, whatever happens to forge.
package buildroot
