package fusefs

import (
	"context"
	"os"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// Writer is how a writable mount's changes reach the store. Both writable
// kinds commit through it: a CowMount of this package, and an overlayfs
// mount (package overlay) whose upper layer is walked. The daemon adapts
// *cas.Writer to it; fusefs itself never opens a store, so that FUSE code
// and the index stay apart.
//
// The contract, which *cas.Writer keeps and a commit relies on:
//
//   - PutFile, PutNode and Commit may be called from several goroutines at
//     once (a commit stores files on one goroutine per CPU).
//   - A node is put after everything it names: its chunks (from PutFile),
//     and for a directory, its children's nodes. The store does not check
//     this on put; a node naming what was never stored is a broken tree,
//     which fsck reports.
//   - Nothing put is visible as a tree until Commit returns nil; Commit
//     makes everything put so far durable (data, then the nodes, then the
//     refs), so a crash leaves either the old refs or the new ones.
//   - Close releases the Writer whether or not it committed. What was put
//     but not committed becomes garbage for the store's GC, never a
//     dangling reference. Until Close, what the Writer put or found
//     already stored is safe from a concurrent GC: a commit that dedups
//     against a stored chunk must not lose it before its Commit.
type Writer interface {
	// PutFile stores the first size bytes of f and returns its chunks and
	// length, as a regular file's node records them. Holes, and chunks of
	// zeros, may be returned as holes.
	PutFile(ctx context.Context, f *os.File, size int64) ([]node.Chunk, uint64, error)
	// PutNode stores n and returns its hash.
	PutNode(n *node.Node) (digest.Hash, error)
	// Commit makes what was put durable and points refs at tree.
	Commit(tree digest.Hash, refs ...string) error
	// Close releases the Writer; what was not committed is discarded.
	Close() error
}
