package cas

import (
	"context"
	"fmt"
	"io"
	"path"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/node"
	"github.com/forge-build/forge/internal/treestream"
)

// StreamTree writes the tree named h to w as a treestream (package
// treestream): every entry depth first in name order with its metadata,
// and each file's chunks, verified as they are read, with holes left out.
// The copy stage fills a new filesystem from it (treecopy.CopyStream),
// which reads the tree without a round trip through FUSE per file.
//
// An error before anything is written is returned alone; one after that
// also ends the stream with an error record, so that the reader reports
// why it stopped (a damaged chunk, say) rather than a stream cut short.
func (s *Store) StreamTree(ctx context.Context, h digest.Hash, w io.Writer) error {
	root, err := s.Node(h)
	if err != nil {
		return err
	}
	if root.Type != node.TypeDir {
		return fmt.Errorf("stream %s: %w: not a directory tree", h, ErrInvalidArgument)
	}
	st := &streamer{s: s, ctx: ctx, w: treestream.NewWriter(w), links: map[linkKey]uint64{}}
	err = st.entry("", root, 0)
	if err == nil {
		err = st.w.End(st.entries)
	}
	if err != nil && ctx.Err() == nil {
		st.w.Fail(err)
	}
	return err
}

type streamer struct {
	s       *Store
	ctx     context.Context
	w       *treestream.Writer
	links   map[linkKey]uint64 // link numbers of the stream by the tree's
	buf     []byte
	entries uint64
}

// entry writes n, named name in its directory (the root's name is empty),
// with what it holds; rel is its path, for errors.
func (st *streamer) entry(rel string, n *node.Node, link uint64) error {
	if err := st.ctx.Err(); err != nil {
		return err
	}
	st.entries++
	if err := st.w.Entry(streamEntry(rel, n, link)); err != nil {
		return err
	}
	switch n.Type {
	case node.TypeDir:
		for _, c := range n.Entries {
			if err := st.child(path.Join(rel, c.Name), c); err != nil {
				return err
			}
		}
		return st.w.EndDir()
	case node.TypeRegular:
		if err := st.content(rel, n); err != nil {
			return err
		}
		return st.w.EndFile()
	}
	return nil
}

// child writes a directory's entry c: a further name of an inode already
// written carries its link number, and no content.
func (st *streamer) child(rel string, c node.Entry) error {
	n, err := st.s.Node(c.Hash)
	if err != nil {
		return fmt.Errorf("stream %s: %w", QuotePath(rel), err)
	}
	var link uint64
	if c.Link != 0 && n.Type != node.TypeDir {
		key := linkKey{c.Hash, c.Link}
		if l, ok := st.links[key]; ok {
			return st.again(rel, n, l)
		}
		link = uint64(len(st.links) + 1)
		st.links[key] = link
	}
	return st.entry(rel, n, link)
}

// again writes a further name of the inode with link number link.
func (st *streamer) again(rel string, n *node.Node, link uint64) error {
	st.entries++
	if err := st.w.Entry(streamEntry(rel, n, link)); err != nil {
		return err
	}
	if n.Type == node.TypeRegular {
		return st.w.EndFile()
	}
	return nil
}

// content writes a file's chunks, holes left out.
func (st *streamer) content(rel string, n *node.Node) error {
	var off uint64
	for _, c := range n.Chunks {
		if !c.IsHole() {
			var err error
			if st.buf, err = st.s.ReadChunk(c.Hash, st.buf[:0]); err != nil {
				return fmt.Errorf("stream %s: %w", QuotePath(rel), err)
			}
			if err := st.w.Data(off, st.buf); err != nil {
				return err
			}
		}
		off += c.Size
	}
	return nil
}

// streamEntry is the entry of n at rel (the root's name is empty).
func streamEntry(rel string, n *node.Node, link uint64) *treestream.Entry {
	e := &treestream.Entry{
		Mode: n.Mode(), UID: n.UID, GID: n.GID, Rdev: n.Rdev, Link: link,
		Size: n.Size, MtimeSec: n.MtimeSec, MtimeNsec: n.MtimeNsec, Target: n.Target,
	}
	if rel != "" {
		e.Name = path.Base(rel)
	}
	for _, x := range n.Xattrs {
		e.Xattrs = append(e.Xattrs, treestream.Xattr{Name: x.Name, Value: x.Value})
	}
	return e
}
