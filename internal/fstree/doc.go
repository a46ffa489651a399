// Package fstree builds file trees that exercise every property a Linux
// filesystem can give an inode, and compares two trees property by property.
//
// Its nouns:
//
//   - fixture: the fidelity tree that BuildFixture creates. It holds every
//     kind of inode, size, link structure, mode bit, owner, timestamp, xattr
//     namespace and awkward name that the store must round-trip.
//   - difference: one property of one path that two trees do not agree on;
//     Compare returns them.
//   - random tree: bulk data of mixed file sizes for tests that need volume
//     rather than variety (RandomTree).
//
// Everything walks directories through file descriptors (openat, fstatat,
// /proc/self/fd/N/NAME for xattrs), so paths longer than PATH_MAX work, and
// nothing follows a symlink inside a tree. Building the fixture needs root
// (chown, mknod, trusted.* xattrs) and a disk filesystem such as ext4
// (holes, security.* xattrs, POSIX ACLs); CheckFilesystem says whether a
// directory is on one.
package fstree
