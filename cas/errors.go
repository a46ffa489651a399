package cas

import "errors"

// Sentinel errors, wrapped with the key or path they concern.
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
