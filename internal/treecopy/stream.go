package treecopy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/treestream"
)

// CopyStream writes the tree that r carries as a treestream (package
// treestream) into the directory dst, as Copy writes a tree it walks: the
// same calls on the destination in the same order, so that a filesystem
// filled from the stream comes out as one filled by walking the tree. dst
// must exist; directories already in it are merged into, anything else in
// the way is an error. A stream that ends early, or whose sender failed,
// is an error naming the entry it stopped in.
func CopyStream(ctx context.Context, r io.Reader, dst string) error {
	sr, err := treestream.NewReader(r)
	if err != nil {
		return err
	}
	dstfd, err := unix.Open(dst, openDirFlags, 0)
	if err != nil {
		return &os.PathError{Op: "open", Path: dst, Err: err}
	}
	defer unix.Close(dstfd)
	kind, err := sr.Next()
	if err != nil {
		return err
	}
	if kind != treestream.KindEntry {
		return fmt.Errorf("tree stream: starts with a %q record, not the root's entry", kind)
	}
	root, err := sr.Entry()
	if err != nil {
		return err
	}
	if root.Name != "" || root.Mode&unix.S_IFMT != unix.S_IFDIR {
		return fmt.Errorf("tree stream: the first entry (%q, mode %#o) is not the root directory", root.Name, root.Mode)
	}
	s := &streamCopier{
		copier:  copier{ctx: ctx, dstRoot: dstfd, buf: make([]byte, copyBufSize), writeback: onLoopDevice(dstfd)},
		r:       sr,
		links:   map[uint64]linkSite{},
		entries: 1,
	}
	if err := s.dir(dstfd, nil); err != nil {
		return err
	}
	if err := applyMeta(dstfd, "", entryMeta(root)); err != nil {
		return fmt.Errorf("copy to %s: %w", dst, err)
	}
	if kind, err = sr.Next(); err != nil {
		return err
	}
	if kind != treestream.KindEnd {
		return fmt.Errorf("tree stream: a %q record after the root's last entry", kind)
	}
	n, err := sr.Entries()
	if err != nil {
		return err
	}
	if n != s.entries {
		return fmt.Errorf("tree stream: it says it held %d entries, %d came", n, s.entries)
	}
	return nil
}

type streamCopier struct {
	copier
	r *treestream.Reader
	// links are where the first name of each multiply linked inode went,
	// by the stream's link number.
	links   map[uint64]linkSite
	entries uint64
	// data holds the current data record; buf stays whole for copyFile.
	data []byte
}

// dir copies the entries of a directory, up to its 'U' record, into dstfd;
// dir names it, relative to the root.
func (s *streamCopier) dir(dstfd int, dir []string) error {
	for {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		kind, err := s.r.Next()
		if err != nil {
			return &copyError{relPath(dir, "") + " (the stream)", err}
		}
		switch kind {
		case treestream.KindUp:
			return nil
		case treestream.KindEntry:
		default:
			return &copyError{relPath(dir, ""), fmt.Errorf("tree stream: a %q record where an entry or the directory's end belongs", kind)}
		}
		e, err := s.r.Entry()
		if err != nil {
			return &copyError{relPath(dir, "") + " (the stream)", err}
		}
		if e.Name == "" {
			return &copyError{relPath(dir, ""), errors.New("tree stream: an entry without a name below the root")}
		}
		s.entries++
		if err := s.entry(dstfd, dir, e); err != nil {
			var ce *copyError
			if errors.As(err, &ce) || errors.Is(err, s.ctx.Err()) {
				return err
			}
			return &copyError{relPath(dir, e.Name), err}
		}
	}
}

func (s *streamCopier) entry(dstfd int, dir []string, e *treestream.Entry) error {
	typ := e.Mode & unix.S_IFMT
	linked := typ != unix.S_IFDIR && e.Link != 0
	if linked {
		if site, ok := s.links[e.Link]; ok {
			return s.linkAgain(site, dstfd, e)
		}
	}
	switch typ {
	case unix.S_IFDIR:
		dsub, err := makeDir(dstfd, e.Name)
		if err != nil {
			return err
		}
		defer unix.Close(dsub)
		if err := s.dir(dsub, append(slices.Clip(dir), e.Name)); err != nil {
			return err
		}
	case unix.S_IFREG:
		if err := s.withNewFile(dstfd, e.Name, func(out int) error { return s.content(out, e.Size) }); err != nil {
			return err
		}
	case unix.S_IFLNK:
		if err := unix.Symlinkat(e.Target, dstfd, e.Name); err != nil {
			return fmt.Errorf("symlinkat: %w", err)
		}
	case unix.S_IFCHR, unix.S_IFBLK, unix.S_IFIFO, unix.S_IFSOCK:
		if err := unix.Mknodat(dstfd, e.Name, typ|0o600, int(e.Rdev)); err != nil {
			return fmt.Errorf("mknodat: %w", err)
		}
	default:
		return fmt.Errorf("unknown file type %#o", typ)
	}
	if err := applyMeta(dstfd, e.Name, entryMeta(e)); err != nil {
		return err
	}
	if linked {
		s.links[e.Link] = linkSite{dir: slices.Clone(dir), name: e.Name}
	}
	return nil
}

// linkAgain makes e another name of the inode first copied to site. Where
// the two are on different filesystems (a mount below the destination),
// e becomes a copy of its own, made from the first copy: the stream sends
// an inode's content once.
func (s *streamCopier) linkAgain(site linkSite, dstfd int, e *treestream.Entry) error {
	if e.Mode&unix.S_IFMT == unix.S_IFREG {
		if err := s.content(-1, 0); err != nil {
			return err
		}
	}
	done, err := s.link(site, dstfd, e.Name)
	if err != nil || done {
		return err
	}
	switch e.Mode & unix.S_IFMT {
	case unix.S_IFREG:
		parent, err := s.openDstDir(site.dir)
		if err != nil {
			return fmt.Errorf("open the directory of its first name %s: %w", relPath(site.dir, site.name), err)
		}
		defer unix.Close(parent)
		var st unix.Stat_t
		if err := unix.Fstatat(parent, site.name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("stat its first name %s: %w", relPath(site.dir, site.name), err)
		}
		if err := s.copyFile(parent, site.name, dstfd, e.Name, &st); err != nil {
			return err
		}
	case unix.S_IFLNK:
		if err := unix.Symlinkat(e.Target, dstfd, e.Name); err != nil {
			return fmt.Errorf("symlinkat: %w", err)
		}
	default:
		if err := unix.Mknodat(dstfd, e.Name, e.Mode&unix.S_IFMT|0o600, int(e.Rdev)); err != nil {
			return fmt.Errorf("mknodat: %w", err)
		}
	}
	return applyMeta(dstfd, e.Name, entryMeta(e))
}

// content writes the current file's data records to out, up to its 'F'
// record, leaving blocks of zeros unwritten, then gives out its size. With
// out -1 the file must have no data records (a further name of an inode).
func (s *streamCopier) content(out int, size uint64) error {
	var end uint64
	for {
		if err := s.ctx.Err(); err != nil {
			return err
		}
		kind, err := s.r.Next()
		if err != nil {
			return err
		}
		switch kind {
		case treestream.KindFile:
			if out < 0 {
				return nil
			}
			if err := unix.Ftruncate(out, int64(size)); err != nil {
				return fmt.Errorf("ftruncate %d: %w", size, err)
			}
			return nil
		case treestream.KindData:
		default:
			return fmt.Errorf("tree stream: a %q record in a file's data", kind)
		}
		var off uint64
		off, s.data, err = s.r.Data(s.data)
		if err != nil {
			return err
		}
		switch {
		case out < 0:
			return errors.New("tree stream: data for a further name of an inode already written")
		case off < end || off+uint64(len(s.data)) > size:
			return fmt.Errorf("tree stream: data at %d–%d of a file of %d bytes, after data up to %d", off, off+uint64(len(s.data)), size, end)
		}
		if err := writeNonZero(out, s.data, int64(off)); err != nil {
			return err
		}
		end = off + uint64(len(s.data))
	}
}

// entryMeta is the metadata an entry gives its copy. A stored tree keeps
// no atime: the copy's is the mtime, as the tree's mount shows it.
func entryMeta(e *treestream.Entry) meta {
	t := unix.Timespec{Sec: e.MtimeSec, Nsec: int64(e.MtimeNsec)}
	return meta{uid: e.UID, gid: e.GID, mode: e.Mode, atime: t, mtime: t, xattrs: e.Xattrs}
}
