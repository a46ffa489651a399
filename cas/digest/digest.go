// Package digest names content in the store: a SHA-256 over bytes, the same
// digest OCI and fs-verity use.
package digest

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
)

// Size is the length of a Hash in bytes.
const Size = sha256.Size

// Hash is the SHA-256 of a chunk's content or of a node's canonical encoding.
type Hash [Size]byte

// Zero is the hash with every byte zero; it never names stored content.
var Zero Hash

// ErrInvalid is returned by Parse for text that is not 64 hex digits.
var ErrInvalid = errors.New("not a hash: want 64 hex digits")

// Sum hashes b.
func Sum(b []byte) Hash { return sha256.Sum256(b) }

// Parse reads a hash from its 64-digit lowercase or uppercase hex form.
func Parse(s string) (Hash, error) {
	var h Hash
	if len(s) != 2*Size {
		return h, fmt.Errorf("%q: %w", s, ErrInvalid)
	}
	if _, err := hex.Decode(h[:], []byte(s)); err != nil {
		return h, fmt.Errorf("%q: %w", s, ErrInvalid)
	}
	return h, nil
}

// FromBytes copies a 32-byte slice into a Hash.
func FromBytes(b []byte) (Hash, error) {
	var h Hash
	if len(b) != Size {
		return h, fmt.Errorf("hash of %d bytes: %w", len(b), ErrInvalid)
	}
	copy(h[:], b)
	return h, nil
}

// String is the 64-digit lowercase hex form.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// Short is the first 12 hex digits, for messages meant for people.
func (h Hash) Short() string { return hex.EncodeToString(h[:6]) }

// IsZero reports whether h is the zero hash.
func (h Hash) IsZero() bool { return h == Zero }
