// Package errdefs holds the store's error sentinels, apart from the store,
// so that a client of the daemon can tell them apart after the wire
// (containerd's errdefs does the same) without compiling the store and its
// index. Errors are wrapped with the key, path or ID they concern; test
// them with errors.Is.
package errdefs

import "errors"

var (
	// ErrNotFound: no ref, node or chunk of that name.
	ErrNotFound = errors.New("not found")
	// ErrCorrupt: stored bytes do not match their hash or cannot be parsed.
	ErrCorrupt = errors.New("corrupt")
	// ErrInUse: another process has the store open.
	ErrInUse = errors.New("store in use")
	// ErrInvalidArgument: a bad ref name, path or option.
	ErrInvalidArgument = errors.New("invalid argument")
	// ErrClosed: the Store or Writer was closed.
	ErrClosed = errors.New("closed")
)
