package cas

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sort"
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

// ValidRefName checks that name can name a ref: 1 to 255 bytes of
// printable UTF-8 without whitespace, and, where it has slashes, a relative
// path of plain components: no leading or trailing "/", no empty, "." or
// ".." component. Refs are not files today, but names that could climb out
// of a directory are refused before anything (an export of refs to files,
// an S3 key) comes to trust them.
func ValidRefName(name string) error {
	bad := name == "" || len(name) > MaxRefNameLen || !utf8.ValidString(name) ||
		strings.ContainsFunc(name, func(r rune) bool { return r <= ' ' || r == 0x7f || (r >= 0x80 && r <= 0x9f) })
	if bad {
		return fmt.Errorf("ref name %q: %w: want 1 to %d printable characters without spaces", name, ErrInvalidArgument, MaxRefNameLen)
	}
	for _, c := range strings.Split(name, "/") {
		if c == "" || c == "." || c == ".." {
			return fmt.Errorf("ref name %q: %w: no leading or trailing \"/\", and no empty, \".\" or \"..\" part between slashes", name, ErrInvalidArgument)
		}
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
	s.refMu.Lock()
	defer s.refMu.Unlock()
	if s.refs.f == nil {
		return digest.Hash{}, ErrClosed
	}
	e, ok := s.refs.refs[name]
	if !ok {
		return digest.Hash{}, fmt.Errorf("ref %q: %w", name, ErrNotFound)
	}
	return e.Tree, nil
}

// Refs lists every ref, sorted by name, with its last use: the index's
// record of it, or when the ref log set it if the index has none.
func (s *Store) Refs() ([]Ref, error) {
	s.refMu.Lock()
	refs := make([]Ref, 0, len(s.refs.refs))
	for name, e := range s.refs.refs {
		refs = append(refs, Ref{Name: name, Tree: e.Tree, LastUsed: time.Unix(0, e.Set)})
	}
	s.refMu.Unlock()
	sort.Slice(refs, func(i, j int) bool { return refs[i].Name < refs[j].Name })
	// Last-use times are a cache: one that cannot be read is not an error.
	for i := range refs {
		if b, err := s.get(nameKey(prefixUsed, refs[i].Name)); err == nil {
			if t := decodeTime(b); t.After(refs[i].LastUsed) {
				refs[i].LastUsed = t
			}
		}
	}
	return refs, nil
}

// setRefs records changes in the ref log (durably) and then, as a cache,
// the last use of the refs it sets. The caller holds gcMu shared and has
// made the trees durable in packs and the index first.
func (s *Store) setRefs(changes []refChange) error {
	now := s.opts.Now().UnixNano()
	s.refMu.Lock()
	err := s.refs.append(now, changes)
	s.refMu.Unlock()
	if err != nil {
		return fmt.Errorf("store %s: %w", s.dir, err)
	}
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return nil
	}
	b := s.db.NewBatch()
	defer b.Close()
	for _, c := range changes {
		if c.Delete {
			b.Delete(nameKey(prefixUsed, c.Name), nil)
		} else {
			b.Set(nameKey(prefixUsed, c.Name), encodeTime(now), nil)
		}
	}
	// The ref log has the change; a lost last-use time costs nothing.
	if err := b.Commit(pebble.NoSync); err != nil {
		s.opts.Logf("store %s: record last use: %v", s.dir, s.indexError(err))
	}
	return nil
}

// DeleteRefs drops refs. It drops none unless all exist.
func (s *Store) DeleteRefs(names ...string) error {
	changes := make([]refChange, 0, len(names))
	for _, name := range names {
		if err := ValidRefName(name); err != nil {
			return err
		}
		if _, err := s.Ref(name); err != nil {
			return err
		}
		changes = append(changes, refChange{Name: name, Delete: true})
	}
	// Under gcMu so that GC sees the refs either before or after.
	s.gcMu.RLock()
	defer s.gcMu.RUnlock()
	return s.setRefs(changes)
}

// Touch records that a ref was used now, for gc --max-size's LRU order.
// Losing a touch in a crash is harmless, so it does not sync.
func (s *Store) Touch(name string) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	if err := s.db.Set(nameKey(prefixUsed, name), encodeTime(s.opts.Now().UnixNano()), pebble.NoSync); err != nil {
		return fmt.Errorf("touch ref %q: %w", name, s.indexError(err))
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

// scan calls fn for every key of one keyspace of the index (without the
// prefix byte) and its value. The slices are valid only during the call.
func (s *Store) scan(prefix byte, fn func(k, v []byte) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	if s.db == nil {
		return ErrClosed
	}
	return s.scanIn(s.db, prefix, fn)
}

// scanIn is scan over r: the index, or a snapshot of it.
func (s *Store) scanIn(r pebble.Reader, prefix byte, fn func(k, v []byte) error) error {
	lo, hi := prefixBounds(prefix)
	it, err := r.NewIter(&pebble.IterOptions{LowerBound: lo, UpperBound: hi})
	if err != nil {
		return s.indexError(err)
	}
	for it.First(); it.Valid(); it.Next() {
		v, err := it.ValueAndErr()
		if err != nil {
			it.Close()
			return s.indexError(err)
		}
		if err := fn(it.Key()[1:], v); err != nil {
			it.Close()
			return err
		}
	}
	if err := it.Close(); err != nil {
		return s.indexError(err)
	}
	return nil
}
