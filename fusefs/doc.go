// Package fusefs serves stored trees as FUSE filesystems, in two halves:
//
//   - Read-only mounts (MountReadOnly; mount.go, nodes.go, content.go,
//     cache.go): a stored tree as it is, cached by the kernel as if it were
//     local, since it can never change.
//   - Copy-on-write mounts (MountCopyOnWrite; the cow*.go files): a
//     writable view of a stored tree that reads stored files from the
//     store until they are written, keeps new and copied-up files in a
//     scratch directory (or in memory while small), and commits what
//     changed since the last commit through a Writer (writer.go): the
//     contract it shares with package overlay, whose overlayfs mounts stack
//     on a read-only mount of this package.
//
// Neither half opens a store: they read through a Source (cache.go) and
// write through a Writer, which the daemon provides.
//
// Its nouns:
//
//   - source: what a mount reads, nodes and chunks by hash (a *cas.Store).
//   - cache: a Source wrapper keeping decoded nodes and recently read chunks
//     in memory, shared by every mount made with it (NewCache).
//   - read-only mount: a tree mounted at a directory (MountReadOnly). The
//     tree is immutable, so the kernel is told to cache everything: entries,
//     attributes, negative lookups, directory listings, symlink targets and
//     file pages, for an hour, and the server answers OPEN, OPENDIR and FLUSH
//     with ENOSYS so that the kernel stops sending them at all. A warm walk
//     or read of a mounted tree costs no FUSE request.
//   - readahead: a file read from start to end has its next chunks read
//     (and verified) by background goroutines ahead of the kernel's
//     requests, and the kernel's own readahead on the mount is raised from
//     128 KiB to 4 MiB, so that cold sequential reads keep both the disk
//     and the hashing busy.
//
// Inode numbers are deterministic: the root is 1, the names of one hard-linked
// inode (same node hash and same non-zero Entry.Link) share a number derived
// from the two, and every other name gets a number derived from its parent's
// number and its name. Two mounts of one tree show the same numbers.
//
// Errors from the source (a chunk that fails verification, a node that cannot
// be read) are logged with the path and the chunk through Options.Logf, and
// the FUSE request that met them fails with EIO; the mount goes on serving.
package fusefs
