package overlay

// Why a commit resolves hard links. A stored tree records a hard link in
// its directories: every name of one inode is an entry with the inode's
// node hash and the same link number (node.Entry.Link), and the node counts
// the names (Nlink). overlayfs copies up one name of an inode at a time,
// and a commit reads back only the names the upper layer has; but a change
// made through one name (data, metadata, a name added or dropped) changes
// the node every name of the inode must carry, and the names the upper
// layer never saw would keep the old one. So a commit marks the base's
// hard-linked inodes the upper layer touches (touch), finds every name they
// have (baseLinks, findMembers) and reads each of them again through the
// merged view; counts the names of each inode it reads (group, addName);
// and numbers each hard-linked inode apart from the base's hard links it
// keeps as they are (keptLinks, linkNumber).

import (
	"context"
	"fmt"
	"path"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
)

// linkKey names one hard-linked inode of a stored tree.
type linkKey struct {
	hash digest.Hash
	link uint32
}

// group is one inode of the merged view (not a directory), with all its
// names in the tree.
type group struct {
	key    fileKey
	names  uint32
	size   uint64
	chunks []node.Chunk

	built bool
	hash  digest.Hash
	link  uint32
}

// touch marks the base's hard-linked inodes that upper entry e, called
// name in a directory whose lower side is lower (at lowerPath), changes:
// the one below its name, which it replaces or hides, and the one a
// metacopy file was renamed from (its redirect), whose data it keeps.
func (c *committer) touch(e *upperEntry, lower *node.Node, lowerPath, name string) error {
	if lower != nil {
		if be := findEntry(lower, name); be != nil && be.Link != 0 {
			c.touched[linkKey{be.Hash, be.Link}] = true
		}
	}
	if e.metacopy && e.redirect != "" {
		if p, ok := lowerOf(e, lowerPath, name); ok {
			if be, err := c.m.baseEntry(p); err != nil {
				return err
			} else if be != nil && be.Link != 0 {
				c.touched[linkKey{be.Hash, be.Link}] = true
			}
		}
	}
	return nil
}

// findMembers lists the directories that hold a name of a touched inode.
func (c *committer) findMembers() error {
	links, err := c.m.baseLinks(c.ctx)
	if err != nil {
		return err
	}
	c.memberDirs = map[string]bool{"": true}
	for key := range c.touched {
		for _, p := range links[key] {
			for d := path.Dir(p); d != "." && !c.memberDirs[d]; d = path.Dir(d) {
				c.memberDirs[d] = true
			}
		}
	}
	return nil
}

// addName counts a name of the merged view's inode st (not a directory)
// and returns its group; first is true for the inode's first name, through
// which the commit reads its content.
func (c *committer) addName(st *unix.Stat_t) (g *group, first bool) {
	key := fileKey{st.Dev, st.Ino}
	c.mu.Lock()
	defer c.mu.Unlock()
	g = c.groups[key]
	first = g == nil
	if first {
		g = &group{key: key}
		if st.Nlink > 1 {
			c.groups[key] = g
		}
	}
	g.names++
	return g, first
}

// linkNumber numbers a hard-linked inode of the merged view whose node is
// h: the smallest number no other inode with this node has in the tree,
// neither the base's hard links this commit keeps nor the ones it numbered
// before, in name order. The same changes to the same base give the same
// tree, whatever the inode numbers.
func (c *committer) linkNumber(h digest.Hash) (uint32, error) {
	kept, err := c.keptLinks()
	if err != nil {
		return 0, err
	}
	link := uint32(1)
	for c.used[linkKey{h, link}] || kept[linkKey{h, link}] {
		link++
	}
	c.used[linkKey{h, link}] = true
	return link, nil
}

// keptLinks are the base's hard-linked inodes the commit keeps as they
// are: all but the touched ones, whose names it reads again.
func (c *committer) keptLinks() (map[linkKey]bool, error) {
	if c.kept != nil {
		return c.kept, nil
	}
	c.kept = map[linkKey]bool{}
	if c.m.base.IsZero() {
		return c.kept, nil
	}
	links, err := c.m.baseLinks(c.ctx)
	if err != nil {
		return nil, err
	}
	for k := range links {
		if !c.touched[k] {
			c.kept[k] = true
		}
	}
	return c.kept, nil
}

// baseLinks lists every name of every hard-linked inode of the base tree.
// It reads the whole tree once per mount, and only when a commit finds a
// hard-linked file changed.
func (m *Mount) baseLinks(ctx context.Context) (map[linkKey][]string, error) {
	if m.links != nil {
		return m.links, nil
	}
	links := map[linkKey][]string{}
	var walk func(h digest.Hash, p string) error
	walk = func(h digest.Hash, p string) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := m.cache.Node(h)
		if err != nil {
			return fmt.Errorf("base %s: %w", show(p), err)
		}
		for _, e := range n.Entries {
			cp := join(p, e.Name)
			if e.Link != 0 {
				k := linkKey{e.Hash, e.Link}
				links[k] = append(links[k], cp)
				continue
			}
			child, err := m.cache.Node(e.Hash)
			if err != nil {
				return fmt.Errorf("base %s: %w", show(cp), err)
			}
			if child.Type == node.TypeDir {
				if err := walk(e.Hash, cp); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(m.base, ""); err != nil {
		return nil, err
	}
	m.links = links
	return links, nil
}
