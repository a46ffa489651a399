package sources

import (
	"context"

	"github.com/forge-build/forge/daemon/client"
)

// RefPrefix starts the ref of every stored item.
const RefPrefix = "source/"

// RefName is the ref of the stored item of a checksum: "source/sha256:…".
func RefName(checksum string) string { return RefPrefix + checksum }

// ComposeEntry is the entry of a composed mount (client.MountRequest's
// Compose) that puts the stored item of checksum where osbuild's
// org.osbuild.files input puts a source's file: at the top of the input's
// directory, named by its checksum.
func ComposeEntry(checksum string) client.ComposeEntry {
	return client.ComposeEntry{Name: client.Path(checksum), Tree: RefName(checksum), Path: client.Path(checksum)}
}

// ComposeEntries is ComposeEntry of each checksum.
func ComposeEntries(checksums []string) []client.ComposeEntry {
	out := make([]client.ComposeEntry, len(checksums))
	for i, c := range checksums {
		out[i] = ComposeEntry(c)
	}
	return out
}

// Store is what Fetch needs of a store's daemon; *client.Client is one.
type Store interface {
	// Ping says where the store is: downloads go to its tmp/.
	Ping(ctx context.Context) (client.PingResult, error)
	// RefNames lists the refs, to find the items already stored.
	RefNames(ctx context.Context) ([]client.RefInfo, error)
	// Import stores a downloaded item under its ref.
	Import(ctx context.Context, req client.ImportRequest, progress func(client.Progress)) (client.ImportResult, error)
}

var _ Store = (*client.Client)(nil)
