// Package overlay mounts writable views of stored trees for build stages:
// the kernel's overlayfs, whose lower layer is the tree mounted read-only
// by package fusefs and whose upper layer is a scratch directory on the
// store's disk, and commits what the view holds back into the store.
//
// Why not a copy-on-write FUSE filesystem (fusefs.MountCopyOnWrite) for
// every stage: each create, write, chmod or rename of a stage would be a
// FUSE round trip (a dozen per file an untar creates), while overlayfs
// serves them in the kernel at the speed of the scratch filesystem. FUSE
// stays where it pays: serving the stored tree, which is read-only,
// deduplicated and cached. This is the split containerd's remote
// snapshotters (stargz, nydus) make too.
//
// A commit reads the upper layer to learn which names changed since the
// mount, reads those back through the merged view, and stores them with
// the directories above them; everything else keeps its stored hash.
package overlay
