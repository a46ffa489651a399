// Package daemon is forge's store daemon: one per store, it owns the index
// and the packs (pebble lets one process open them) and serves every FUSE
// mount of the store. forge commands are its clients (package
// daemon/client), over HTTP/JSON on the Unix socket <store>/forge.sock.
//
// Every call is a POST to /v1/<op> with a JSON body. The answer is a stream
// of JSON lines (events): any number of progress or item events, then one
// result or one error. Streaming the answer lets long calls (import, fsck)
// report progress, and lets the daemon notice a client that went away: its
// request's context ends, and the work stops.
package daemon

// mountsName is the file of a store where the daemon records its mounts,
// so that the next daemon can detach them after a crash.
const mountsName = "mounts.json"
