package cas

import "github.com/forge-build/forge/cas/errdefs"

// The store's sentinel errors are errdefs' (one value each, so errors.Is
// holds across the daemon's wire); these names save callers in the store's
// own world an import.
var (
	ErrNotFound        = errdefs.ErrNotFound
	ErrCorrupt         = errdefs.ErrCorrupt
	ErrInUse           = errdefs.ErrInUse
	ErrInvalidArgument = errdefs.ErrInvalidArgument
	ErrClosed          = errdefs.ErrClosed
)
