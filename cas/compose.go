package cas

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// ComposeEntry is one name of a composed tree: the node at Path inside the
// stored tree Tree, placed at Name.
type ComposeEntry struct {
	// Name is a relative slash path in the new tree ("a", "dir/file"):
	// no leading or trailing "/", no empty, "." or ".." part. Directories
	// above it that no entry names are made (0755, root:root, mtime 0).
	Name string
	// Tree is a ref name or a tree hash, as Resolve takes.
	Tree string
	// Path is where the node is in Tree: "" or "/" for its root, else a
	// slash path, with or without a leading "/". Symlinks on the way are
	// not followed.
	Path string
}

// composeDir is a directory of the tree Compose builds: either made
// (children) or taken whole from a stored tree (entry >= 0).
type composeDir struct {
	children map[string]*composeDir
	entry    int // index of the entry placed here, -1 for a made directory
}

// Compose builds a new tree whose entries are nodes of stored trees,
// without copying any content: only the directories above the entries,
// and, for a file taken from among its hard links, a node that counts one
// name, are new. The new tree has no ref; it is pinned, and release ends
// the pin (GC then frees it). A missing tree or path is ErrNotFound, a bad,
// repeated or clashing name ErrInvalidArgument; either error names the
// entry.
//
// Hard links inside a directory taken whole stay hard links. Names of one
// inode are entries with the same node and link number, tree-wide (see
// package node): a hard-linked file met twice, in one subtree taken under
// two names or in two trees that share it, is then one inode of all those
// names. Files and directories taken as entries never join a group.
func (s *Store) Compose(ctx context.Context, entries []ComposeEntry) (h digest.Hash, release func(), err error) {
	root, err := composeLayout(entries)
	if err != nil {
		return h, nil, err
	}
	// Pin every tree we take from until the new tree is pinned: the
	// nodes we name must not go in between.
	var pins []func()
	defer func() {
		for _, p := range pins {
			p()
		}
	}()
	trees := map[string]digest.Hash{}
	for _, e := range entries {
		if _, ok := trees[e.Tree]; ok {
			continue
		}
		t, err := s.Resolve(e.Tree)
		if err != nil {
			return h, nil, fmt.Errorf("compose entry %q: %w", e.Name, err)
		}
		p, err := s.Pin(t)
		if err != nil {
			return h, nil, fmt.Errorf("compose entry %q: %w", e.Name, err)
		}
		pins = append(pins, p)
		trees[e.Tree] = t
	}
	w, err := s.NewWriter()
	if err != nil {
		return h, nil, err
	}
	defer w.Close()
	c := composer{s: s, w: w, ctx: ctx, entries: entries, trees: trees, dirs: map[digest.Hash]*node.Node{}}
	if h, err = c.dir(root); err != nil {
		return h, nil, err
	}
	// Into the index (no ref), then pinned before the Writer, which
	// holds it from GC meanwhile, lets go.
	if err := w.Commit(h); err != nil {
		return h, nil, fmt.Errorf("compose: %w", err)
	}
	if release, err = s.Pin(h); err != nil {
		return h, nil, fmt.Errorf("compose: %w", err)
	}
	return h, release, nil
}

// composeLayout checks the entries' names and arranges them as the
// directories of the new tree.
func composeLayout(entries []ComposeEntry) (*composeDir, error) {
	root := &composeDir{entry: -1}
	for i, e := range entries {
		parts, err := composeName(e.Name)
		if err != nil {
			return nil, err
		}
		d := root
		for j, p := range parts {
			if d.entry >= 0 {
				return nil, fmt.Errorf("compose entry %q: %w: it is inside entry %q, which is taken whole from tree %q",
					e.Name, ErrInvalidArgument, entries[d.entry].Name, entries[d.entry].Tree)
			}
			c := d.children[p]
			last := j == len(parts)-1
			switch {
			case c == nil:
				c = &composeDir{entry: -1}
				if d.children == nil {
					d.children = map[string]*composeDir{}
				}
				d.children[p] = c
				if last {
					c.entry = i
				}
			case last && c.entry >= 0:
				return nil, fmt.Errorf("compose entry %q: %w: named twice", e.Name, ErrInvalidArgument)
			case last:
				return nil, fmt.Errorf("compose entry %q: %w: other entries are inside it (%q)",
					e.Name, ErrInvalidArgument, entries[c.anyEntry()].Name)
			}
			d = c
		}
	}
	return root, nil
}

// anyEntry is the first entry (by name) inside a made directory.
func (d *composeDir) anyEntry() int {
	names := make([]string, 0, len(d.children))
	for n := range d.children {
		names = append(names, n)
	}
	sort.Strings(names)
	c := d.children[names[0]]
	if c.entry >= 0 {
		return c.entry
	}
	return c.anyEntry()
}

// composeName splits an entry's name into its parts.
func composeName(name string) ([]string, error) {
	if name == "" {
		return nil, fmt.Errorf("compose entry %q: %w: empty name", name, ErrInvalidArgument)
	}
	if strings.HasPrefix(name, "/") {
		return nil, fmt.Errorf("compose entry %q: %w: the name must be relative", name, ErrInvalidArgument)
	}
	parts := strings.Split(name, "/")
	for _, p := range parts {
		if !node.ValidName(p) {
			return nil, fmt.Errorf("compose entry %q: %w: %q cannot be a file name (no empty, \".\" or \"..\" part, at most %d bytes, no NUL)",
				name, ErrInvalidArgument, p, node.MaxNameLen)
		}
	}
	return parts, nil
}

// composer stores the directories of a composed tree.
type composer struct {
	s       *Store
	w       *Writer
	ctx     context.Context
	entries []ComposeEntry
	trees   map[string]digest.Hash
	dirs    map[digest.Hash]*node.Node // directories read on the way to entries
}

// dir stores a made directory, its made subdirectories first.
func (c *composer) dir(d *composeDir) (digest.Hash, error) {
	if err := c.ctx.Err(); err != nil {
		return digest.Hash{}, err
	}
	n := &node.Node{Type: node.TypeDir, Perm: 0o755, Entries: make([]node.Entry, 0, len(d.children))}
	for name, child := range d.children {
		var h digest.Hash
		var err error
		if child.entry >= 0 {
			h, err = c.take(c.entries[child.entry])
		} else {
			h, err = c.dir(child)
		}
		if err != nil {
			return h, err
		}
		n.Entries = append(n.Entries, node.Entry{Name: name, Hash: h})
	}
	n.Sort()
	return c.w.PutNode(n)
}

// take finds an entry's node, and makes a node of one name for a file
// that has hard links where it was taken from.
func (c *composer) take(e ComposeEntry) (digest.Hash, error) {
	h := c.trees[e.Tree]
	where := strings.TrimLeft(e.Path, "/")
	if where != "" {
		walked := "/"
		for _, p := range strings.Split(where, "/") {
			if !node.ValidName(p) {
				return h, fmt.Errorf("compose entry %q: %w: path %q: %q cannot be a file name", e.Name, ErrInvalidArgument, e.Path, p)
			}
			d, err := c.node(h)
			if err != nil {
				return h, fmt.Errorf("compose entry %q: %w", e.Name, err)
			}
			if d.Type != node.TypeDir {
				return h, fmt.Errorf("compose entry %q: path %q in tree %q: %w: %s is a %s, not a directory", e.Name, e.Path, e.Tree, ErrNotFound, walked, d.Type)
			}
			i, ok := d.Lookup(p)
			if !ok {
				return h, fmt.Errorf("compose entry %q: path %q in tree %q: %w", e.Name, e.Path, e.Tree, ErrNotFound)
			}
			h = d.Entries[i].Hash
			walked = path.Join(walked, p)
		}
	}
	n, err := c.node(h)
	if err != nil {
		return h, fmt.Errorf("compose entry %q: %w", e.Name, err)
	}
	if n.Type == node.TypeDir || n.Nlink <= 1 {
		return h, nil
	}
	one := *n
	one.Nlink = 1
	return c.w.PutNode(&one)
}

// node reads a node, directories once.
func (c *composer) node(h digest.Hash) (*node.Node, error) {
	if n, ok := c.dirs[h]; ok {
		return n, nil
	}
	n, err := c.s.Node(h)
	if err != nil {
		return nil, err
	}
	if n.Type == node.TypeDir {
		c.dirs[h] = n
	}
	return n, nil
}
