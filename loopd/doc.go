// Package loopd is the host's loop-device daemon: a server that attaches
// loop devices for processes that cannot (assemblers in a build root with a
// private /dev and no /dev/loop-control), and the client to ask it.
//
// The protocol is osbuild's remoteloop, so osbuild's own clients work
// unchanged. A request is one message: a JSON object (Request) and one
// SCM_RIGHTS control message carrying two fds, the backing file and a
// directory. loopd binds a free loop device to the file (autoclear set),
// creates the node loopN — and with "partscan" loopNp1, … — in that
// directory, and answers {"devname": "loopN"}; or {"error": "…"}, so that a
// client never waits for an answer that will not come.
//
// Two sockets carry it, answered by the same handler:
//   - SOCK_SEQPACKET (today's osbuild, jsoncomm): a client is a connection,
//     and its devices are detached when the connection closes;
//   - SOCK_DGRAM (the seed-era client): a client is a process, identified by
//     SCM_CREDENTIALS, answered at its autobound address, and its devices
//     are detached when the process exits (watched through a pidfd).
//     Autobound addresses are abstract, and abstract addresses belong to a
//     network namespace: a datagram client must share the network namespace
//     of loopd's socket, or its reply cannot reach it. SEQPACKET has no such
//     limit.
//
// Security: a peer must be root or in an allowed group; the backing fd must
// be a regular file or block device open for writing unless read_only; the
// directory must be owned by a non-root client; messages carry at most
// MaxFDs fds and MaxMessageSize bytes; every fd received is closed once the
// request is handled, whatever its outcome; a client holds at most
// Config.MaxPerClient devices, and the clients of one uid other than root
// Config.MaxPerUID together. loopd never opens a path a client names.
//
// A SEQPACKET peer is checked when its connection is accepted: anyone who
// may not use loopd is answered and closed at once. Connections of users
// other than root are capped per uid and together, root's apart, so that
// no one can use up root's; one that holds no device and sends nothing for
// Config.IdleTimeout is closed.
//
// Releasing a device (its client gone) revokes the nodes loopd made for it
// before the device is detached: each node is held from its creation by an
// O_PATH handle on its inode, which becomes root's, mode 0000, so that no
// name a client gave it (a hard link, a rename) and no O_PATH fd it kept
// opens the device once the next client has it. The node's name is then
// removed from the directory, through a handle on the directory held with
// the device (it pins the directory's mount while the device is held, as
// the backing file pins its own). A device whose node could not be revoked
// stays bound to its client's file until loopd exits.
//
// The loop ioctls are in package loopdev, the partition table parser in
// package ptable.
package loopd
