package cas

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/cockroachdb/pebble/v2"

	"github.com/forge-build/forge/cas/digest"
)

// Ref is a name for a stored tree.
type Ref struct {
	Name     string
	Tree     digest.Hash
	LastUsed time.Time // last import, export or mount through this name
}

// MaxRefNameLen bounds ref names.
const MaxRefNameLen = 255

// ValidRefName checks that name can name a ref: printable UTF-8, no
// whitespace, at most 255 bytes.
func ValidRefName(name string) error {
	bad := name == "" || len(name) > MaxRefNameLen || !utf8.ValidString(name) ||
		strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f })
	if bad {
		return fmt.Errorf("ref name %q: %w: want 1 to %d printable characters without spaces", name, ErrInvalidArgument, MaxRefNameLen)
	}
	return nil
}

func encodeTime(ns int64) []byte { return binary.BigEndian.AppendUint64(nil, uint64(ns)) }

func decodeTime(b []byte) time.Time {
	if len(b) != 8 {
		return time.Time{}
	}
	return time.Unix(0, int64(binary.BigEndian.Uint64(b)))
}

// Ref returns the tree a ref names.
func (s *Store) Ref(name string) (digest.Hash, error) {
	b, err := s.get(nameKey(prefixRef, name))
	if err != nil {
		return digest.Hash{}, fmt.Errorf("ref %q: %w", name, err)
	}
	h, err := digest.FromBytes(b)
	if err != nil {
		return h, fmt.Errorf("ref %q: %w", name, ErrCorrupt)
	}
	return h, nil
}

// Refs lists every ref, sorted by name.
func (s *Store) Refs() ([]Ref, error) { return s.refsIn(s.db) }

// refsIn lists the refs r (the index, or a snapshot of it) holds.
func (s *Store) refsIn(r pebble.Reader) ([]Ref, error) {
	used := map[string]time.Time{}
	if err := s.scanIn(r, prefixUsed, func(k, v []byte) error {
		used[string(k)] = decodeTime(v)
		return nil
	}); err != nil {
		return nil, err
	}
	var refs []Ref
	err := s.scanIn(r, prefixRef, func(k, v []byte) error {
		h, err := digest.FromBytes(v)
		if err != nil {
			return fmt.Errorf("ref %q: %w", k, ErrCorrupt)
		}
		refs = append(refs, Ref{Name: string(k), Tree: h, LastUsed: used[string(k)]})
		return nil
	})
	return refs, err
}

// SetRef points name at tree, which must be stored, durably.
func (s *Store) SetRef(name string, tree digest.Hash) error {
	if err := ValidRefName(name); err != nil {
		return err
	}
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	ok, err := s.HasNode(tree)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("ref %q to tree %s: %w", name, tree, ErrNotFound)
	}
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(nameKey(prefixRef, name), tree[:], nil)
	b.Set(nameKey(prefixUsed, name), encodeTime(s.opts.Now().UnixNano()), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store %s: set ref %q: %w", s.dir, name, err)
	}
	return nil
}

// DeleteRefs drops refs. It drops none unless all exist.
func (s *Store) DeleteRefs(names ...string) error {
	b := s.db.NewBatch()
	defer b.Close()
	for _, name := range names {
		if _, err := s.Ref(name); err != nil {
			return err
		}
		b.Delete(nameKey(prefixRef, name), nil)
		b.Delete(nameKey(prefixUsed, name), nil)
	}
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("store %s: delete refs: %w", s.dir, err)
	}
	return nil
}

// Touch records that a ref was used now, for gc --max-size's LRU order.
// Losing a touch in a crash is harmless, so it does not sync.
func (s *Store) Touch(name string) error {
	if err := s.db.Set(nameKey(prefixUsed, name), encodeTime(s.opts.Now().UnixNano()), pebble.NoSync); err != nil {
		return fmt.Errorf("store %s: touch ref %q: %w", s.dir, name, err)
	}
	return nil
}

// Resolve turns a ref name or a 64-digit tree hash into a stored tree's
// hash. A ref of that name wins over a hash (stage IDs are refs that look
// like hashes); using a ref counts as a use of it.
func (s *Store) Resolve(refOrHash string) (digest.Hash, error) {
	h, err := s.Ref(refOrHash)
	if err == nil {
		return h, s.Touch(refOrHash)
	}
	if !errors.Is(err, ErrNotFound) {
		return h, err
	}
	h, perr := digest.Parse(refOrHash)
	if perr != nil {
		return h, fmt.Errorf("%q: %w: no such ref, and not a tree hash", refOrHash, ErrNotFound)
	}
	ok, err := s.HasNode(h)
	if err != nil {
		return h, err
	}
	if !ok {
		return h, fmt.Errorf("tree %s: %w", h, ErrNotFound)
	}
	return h, nil
}

// PutLease records that a running build holds hashes (trees, nodes or
// chunks): GC keeps them and what they reach until DeleteLease.
func (s *Store) PutLease(id string, hashes []digest.Hash) error {
	if id == "" {
		return fmt.Errorf("lease ID: %w", ErrInvalidArgument)
	}
	if err := s.db.Set(nameKey(prefixLease, id), encodeHashes(hashes), pebble.Sync); err != nil {
		return fmt.Errorf("store %s: lease %q: %w", s.dir, id, err)
	}
	return nil
}

// DeleteLease drops a lease.
func (s *Store) DeleteLease(id string) error {
	if err := s.db.Delete(nameKey(prefixLease, id), pebble.Sync); err != nil {
		return fmt.Errorf("store %s: lease %q: %w", s.dir, id, err)
	}
	return nil
}

// scan calls fn for every key of one keyspace (without the prefix byte) and
// its value. The slices are valid only during the call.
func (s *Store) scan(prefix byte, fn func(k, v []byte) error) error {
	return s.scanIn(s.db, prefix, fn)
}

// scanIn is scan over r: the index, or a snapshot of it.
func (s *Store) scanIn(r pebble.Reader, prefix byte, fn func(k, v []byte) error) error {
	lo, hi := prefixBounds(prefix)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return fmt.Errorf("store %s: read index: %w", s.dir, err)
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return fmt.Errorf("store %s: read index: %w", s.dir, err)
		}
		if err := fn(it.Key()[1:], v); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return fmt.Errorf("store %s: read index: %w", s.dir, err)
	}
	return nil
}
