// Package sources fetches what an osbuild manifest's "sources" provide, the
// files its stages' org.osbuild.files inputs name by checksum, into forge's
// store, and says how to mount them.
//
// Vocabulary:
//   - A source is one entry of a manifest's "sources" object:
//     org.osbuild.curl (files downloaded from URLs) or org.osbuild.inline
//     (files whose bytes are in the manifest). osbuild's other sources
//     (ostree, skopeo, skopeo-index, containers-storage, librepo) give no
//     plain files and are not supported: Parse names them.
//   - An item is one file a source provides, named by its checksum
//     ("sha256:" and the lowercase hex digest of its content; md5, sha1,
//     sha384 and sha512 too).
//   - A stored item is a tree of the store holding one file, 0644
//     root:root, mtime 0, named by the checksum, in a directory 0755
//     root:root, mtime 0 (so the same file makes the same tree in every
//     store), under the ref RefName(checksum): "source/sha256:…". The ref
//     is what keeps it from GC; forge store ls lists it, and gc --max-size
//     may drop it like any other least-recently-used ref.
//
// Fetch makes sure that the items a build wants are stored: it downloads
// (in parallel, with retries) or decodes the others, verifies each checksum
// while it writes the file, and imports it through the store's daemon,
// as many items in one import as are ready.
//
// A manifest is not trusted: forge runs as root. Fetch downloads http and
// https URLs only (file URLs would read the host's files;
// Options.AllowFileURLs is for manifests the caller trusts), bounds each
// download's size and time and each inline item's decoded size
// (Options.MaxItemSize, ItemTimeout, MaxInlineSize), and removes what a
// fetch that was killed left on disk (Options.TempDir).
// ComposeEntry gives, for an item, the entry of a composed mount
// (client.MountRequest.Compose) that puts it where osbuild's
// org.osbuild.files input puts it: at the top of the input's directory,
// named by its checksum.
package sources
