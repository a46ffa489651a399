// Package cas is forge's content-addressed store: the trees that builds
// produce, deduplicated down to chunks.
//
// Vocabulary:
//   - A chunk is a piece of a file's content, cut where the content says
//     (FastCDC, package chunker) and named by its SHA-256. All-zero chunks are
//     holes and are not stored.
//   - A pack is a file under <store>/packs/ holding many chunks back to back
//     (package pack). Packs are written whole, fsynced and renamed into place
//     before the index may point into them.
//   - A node is one inode of a tree: a file with its chunk list, a symlink, a
//     device, or a directory with its entries (package node). A tree is named
//     by the hash of its root node: a Merkle tree.
//   - The index is a pebble database under <store>/index/ mapping chunk
//     hashes to pack locations, node hashes to encoded nodes, ref names to
//     tree hashes, and leases to the hashes a running build holds.
//   - A ref is a name for a tree (a stage ID, an output ID, a user's name).
//     What no ref, lease or open Writer reaches is garbage, freed by GC.
//
// One process opens a store at a time (pebble allows no more); Open says which
// process holds it.
package cas
