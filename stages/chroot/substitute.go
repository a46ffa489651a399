package chroot

import (
	"errors"
	"fmt"
	"os"
	"path"
	"strings"

	"golang.org/x/sys/unix"
)

// substitution is a file Substitute put into the tree in place of
// whatever was there, which waits beside it under a hidden name.
type substitution struct {
	rel      string // as given, for messages
	dirFD    int    // the directory holding it, resolved inside the tree
	name     string
	saved    string // the name the original waits under
	original bool   // whether there was anything to save
	dev, ino uint64 // the file Substitute wrote
	// file keeps it open (read-only) until restore: an inode in use is
	// not reused, so dev and ino name it, and nothing made after its
	// removal.
	file *os.File

	substituteGone bool // restore removed it, or found it replaced
	keepCurrent    bool // a command replaced or removed it: keep that
}

// savedName is where Substitute keeps the original of name: hidden, in
// the same directory (a rename, so the original keeps its inode, type,
// owner, mode, times and xattrs).
func savedName(name string) string { return "." + name + ".forge-saved" }

// Substitute puts a file with data and mode perm at rel (relative to the
// tree, resolved as inside the chroot) until Teardown, which puts back
// whatever was there before: a file, a symlink, anything, or nothing.
// Should a command replace or remove the file meanwhile (a package that
// manages resolv.conf), Teardown keeps that change and drops the original.
// The directory holding rel must exist.
func (c *Chroot) Substitute(rel string, data []byte, perm os.FileMode) (err error) {
	dir, name := path.Split(rel)
	if rel == "" || path.IsAbs(rel) || path.Clean(rel) != rel || name == "." || name == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("chroot: substitute %q: want a clean path relative to the tree", rel)
	}
	if dir == "" {
		dir = "."
	}
	rootFD, err := openRootDir(c.root)
	if err != nil {
		return err
	}
	defer unix.Close(rootFD)
	dirFD, err := openInRoot(rootFD, dir, unix.O_PATH|unix.O_DIRECTORY, 0, 0)
	if err != nil {
		return fmt.Errorf("chroot: substitute /%s: directory /%s in %s: %w", rel, dir, c.root, err)
	}
	s := &substitution{rel: rel, dirFD: dirFD, name: name, saved: savedName(name)}
	defer func() {
		if err != nil {
			unix.Close(dirFD)
		}
	}()
	var st unix.Stat_t
	if err := unix.Fstatat(dirFD, s.saved, &st, unix.AT_SYMLINK_NOFOLLOW); err == nil {
		return fmt.Errorf("chroot: substitute /%s: /%s%s exists, left by an interrupted run; refusing to overwrite it", rel, dir, s.saved)
	}
	switch err := unix.Fstatat(dirFD, name, &st, unix.AT_SYMLINK_NOFOLLOW); {
	case err == nil:
		if err := unix.Renameat(dirFD, name, dirFD, s.saved); err != nil {
			return fmt.Errorf("chroot: substitute /%s: set the original aside: %w", rel, err)
		}
		s.original = true
	case !errors.Is(err, unix.ENOENT):
		return fmt.Errorf("chroot: substitute /%s: %w", rel, err)
	}
	if err := s.write(data, perm); err != nil {
		if s.original {
			if rerr := unix.Renameat(dirFD, s.saved, dirFD, name); rerr != nil {
				err = errors.Join(err, fmt.Errorf("put the original back: %w", rerr))
			}
		}
		return fmt.Errorf("chroot: substitute /%s: %w", rel, err)
	}
	c.substituted = append(c.substituted, s)
	return nil
}

func (s *substitution) write(data []byte, perm os.FileMode) error {
	fd, err := unix.Openat(s.dirFD, s.name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, uint32(perm.Perm()))
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), s.name)
	_, werr := f.Write(data)
	// The mode went through the umask; the caller asked for this one.
	cerr := f.Chmod(perm.Perm())
	var st unix.Stat_t
	serr := unix.Fstat(fd, &st)
	if err := errors.Join(werr, cerr, serr); err != nil {
		f.Close()
		unix.Unlinkat(s.dirFD, s.name, 0)
		return err
	}
	// Keep it open until restore, read-only: an inode in use is not
	// reused, so dev and ino name it; a writer left open would make
	// executing it (policy-rc.d) fail with ETXTBSY.
	if err := f.Close(); err != nil {
		unix.Unlinkat(s.dirFD, s.name, 0)
		return err
	}
	rfd, err := unix.Openat(s.dirFD, s.name, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		unix.Unlinkat(s.dirFD, s.name, 0)
		return err
	}
	s.dev, s.ino, s.file = st.Dev, st.Ino, os.NewFile(uintptr(rfd), s.name)
	return nil
}

// restore puts back what Substitute set aside. The note says what it
// kept instead, if anything. After an error it can be called again and
// carries on where it stopped.
func (s *substitution) restore() (note string, err error) {
	if !s.substituteGone {
		var st unix.Stat_t
		statErr := unix.Fstatat(s.dirFD, s.name, &st, unix.AT_SYMLINK_NOFOLLOW)
		switch {
		case statErr == nil && st.Dev == s.dev && st.Ino == s.ino:
			if err := unix.Unlinkat(s.dirFD, s.name, 0); err != nil {
				return "", fmt.Errorf("chroot: remove the substitute /%s: %w", s.rel, err)
			}
		case statErr != nil && !errors.Is(statErr, unix.ENOENT):
			return "", fmt.Errorf("chroot: restore /%s: %w", s.rel, statErr)
		default:
			what := "replaced"
			if statErr != nil {
				what = "removed"
			}
			note = fmt.Sprintf("chroot: /%s was %s while the stage ran; keeping that", s.rel, what)
			if s.original {
				note += ", not the original"
			}
			s.keepCurrent = true
		}
		s.substituteGone = true
		s.file.Close()
	}
	if s.original {
		if s.keepCurrent {
			err = removeAny(s.dirFD, s.saved)
		} else {
			err = unix.Renameat(s.dirFD, s.saved, s.dirFD, s.name)
		}
		if err != nil {
			return note, fmt.Errorf("chroot: restore /%s from %s: %w", s.rel, s.saved, err)
		}
		s.original = false
	}
	unix.Close(s.dirFD)
	return note, nil
}

// removeAny removes a file or an empty directory.
func removeAny(dirFD int, name string) error {
	err := unix.Unlinkat(dirFD, name, 0)
	if errors.Is(err, unix.EISDIR) {
		err = unix.Unlinkat(dirFD, name, unix.AT_REMOVEDIR)
	}
	return err
}

// restoreSubstituted undoes Substitute calls, the last first.
func (c *Chroot) restoreSubstituted() error {
	var errs []error
	var kept []*substitution
	for i := len(c.substituted) - 1; i >= 0; i-- {
		s := c.substituted[i]
		note, err := s.restore()
		if note != "" {
			fmt.Fprintln(c.log, note)
		}
		if err != nil {
			errs = append(errs, err)
			kept = append([]*substitution{s}, kept...)
		}
	}
	c.substituted = kept
	return errors.Join(errs...)
}
