package cas

import (
	"context"
	"path"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// Change is one path that differs between two trees.
type Change struct {
	Op   byte   // 'A' added, 'D' deleted, 'M' modified
	Path string // relative to the tree root, '/'-separated
}

// Diff calls fn for every path that differs between trees a and b, in path
// order. Subtrees with equal hashes are skipped without being read, so the
// cost grows with the difference, not with the trees. A directory is 'M'
// when its own metadata changed; an added or deleted directory is listed
// with everything below it. A path whose type changed is 'D' then 'A'.
func (s *Store) Diff(ctx context.Context, a, b digest.Hash, fn func(Change) error) error {
	if a == b {
		return nil
	}
	na, err := s.Node(a)
	if err != nil {
		return err
	}
	nb, err := s.Node(b)
	if err != nil {
		return err
	}
	return s.diffNodes(ctx, "", na, nb, fn)
}

func (s *Store) diffNodes(ctx context.Context, p string, a, b *node.Node, fn func(Change) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if a.Type != node.TypeDir || b.Type != node.TypeDir {
		if a.Type == b.Type {
			return fn(Change{'M', p})
		}
		if err := s.all(ctx, 'D', p, a, fn); err != nil {
			return err
		}
		return s.all(ctx, 'A', p, b, fn)
	}
	if p != "" && !sameMeta(a, b) {
		if err := fn(Change{'M', p}); err != nil {
			return err
		}
	}
	i, j := 0, 0
	for i < len(a.Entries) || j < len(b.Entries) {
		switch {
		case j == len(b.Entries) || i < len(a.Entries) && a.Entries[i].Name < b.Entries[j].Name:
			if err := s.allHash(ctx, 'D', path.Join(p, a.Entries[i].Name), a.Entries[i].Hash, fn); err != nil {
				return err
			}
			i++
		case i == len(a.Entries) || b.Entries[j].Name < a.Entries[i].Name:
			if err := s.allHash(ctx, 'A', path.Join(p, b.Entries[j].Name), b.Entries[j].Hash, fn); err != nil {
				return err
			}
			j++
		default:
			ea, eb := a.Entries[i], b.Entries[j]
			i++
			j++
			if ea.Hash == eb.Hash {
				if (ea.Link == 0) != (eb.Link == 0) {
					// Same inode content, but a hard link was made or broken.
					if err := fn(Change{'M', path.Join(p, ea.Name)}); err != nil {
						return err
					}
				}
				continue
			}
			ca, err := s.Node(ea.Hash)
			if err != nil {
				return err
			}
			cb, err := s.Node(eb.Hash)
			if err != nil {
				return err
			}
			if err := s.diffNodes(ctx, path.Join(p, ea.Name), ca, cb, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

// sameMeta compares two directories' own metadata, not their entries.
func sameMeta(a, b *node.Node) bool {
	ca, cb := *a, *b
	ca.Entries, cb.Entries = nil, nil
	return node.Equal(&ca, &cb)
}

func (s *Store) allHash(ctx context.Context, op byte, p string, h digest.Hash, fn func(Change) error) error {
	n, err := s.Node(h)
	if err != nil {
		return err
	}
	return s.all(ctx, op, p, n, fn)
}

// all reports p and, for a directory, everything below it.
func (s *Store) all(ctx context.Context, op byte, p string, n *node.Node, fn func(Change) error) error {
	if err := fn(Change{op, p}); err != nil {
		return err
	}
	for _, e := range n.Entries {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := s.allHash(ctx, op, path.Join(p, e.Name), e.Hash, fn); err != nil {
			return err
		}
	}
	return nil
}
