// Package cas is forge's content-addressed store: the trees that builds
// produce, deduplicated down to chunks.
//
// Vocabulary:
//   - A chunk is a piece of a file's content, cut where the content says
//     (FastCDC, package chunker) and named by its SHA-256. All-zero chunks are
//     holes and are not stored.
//   - A pack is a file under <store>/packs/ holding many blobs back to back
//     (package pack): chunks, and the encoded nodes of trees, listed in the
//     pack's footer. Packs are written whole, fsynced and renamed into place
//     before the index may point into them.
//   - A node is one inode of a tree: a file with its chunk list, a symlink, a
//     device, or a directory with its entries (package node). A tree is named
//     by the hash of its root node: a Merkle tree.
//   - A ref is a name for a tree (a stage ID, an output ID, a user's name),
//     kept in the ref log (<store>/refs.log): append-only, checksummed,
//     fsynced records. What no ref, pin or open Writer reaches is garbage,
//     freed by GC.
//   - The index is a pebble database under <store>/index/ mapping chunk and
//     node hashes to where they are in the packs, plus caches (last use of
//     refs, the import stat cache). It is a cache of the packs and the ref
//     log: rebuildIndex makes it anew from them, and nothing lives only in
//     it.
//
// One process opens a store at a time (pebble allows no more); Open says which
// process holds it.
package cas
