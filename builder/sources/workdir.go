package sources

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// A Fetch writes under a directory of its own in the temporary directory,
// "sources-" and a random suffix, and holds an exclusive flock on it (on
// an fd of the directory itself) from just after creating it until it
// has removed it. The kernel drops the lock when the process dies, however
// it dies: a sources-* directory whose flock can be taken belongs to no
// live fetch, and the next Fetch's sweep removes it.
//
// The sweep takes a directory's lock before it removes it and keeps it
// until the directory is gone; a fetch checks, once it holds the lock,
// that the path still names the directory it locked. So a sweep and a new
// fetch racing for the same new directory cannot both have it: either
// the fetch gets the lock first and the sweep leaves the directory alone,
// or the sweep does and the fetch makes another directory.

// workPrefix starts the name of every Fetch's directory.
const workPrefix = "sources-"

// errLocked and errGone are why lockDir did not lock a directory.
var (
	errLocked = errors.New("locked by a live fetch")
	errGone   = errors.New("removed")
)

// lockDir opens the directory at path and takes an exclusive flock on it
// without waiting. The lock lasts until the file returned is closed. It
// fails with errLocked when another open file holds a lock on it, and with
// errGone when path no longer names the directory locked.
func lockDir(path string) (*os.File, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil, errGone
		}
		return nil, &os.PathError{Op: "open", Path: path, Err: err}
	}
	d := os.NewFile(uintptr(fd), path)
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		d.Close()
		if errors.Is(err, unix.EWOULDBLOCK) {
			return nil, errLocked
		}
		return nil, &os.PathError{Op: "flock LOCK_EX|LOCK_NB", Path: path, Err: err}
	}
	// Removed (and perhaps made again) between the open and the lock?
	var locked, now unix.Stat_t
	if err := unix.Fstat(fd, &locked); err != nil {
		d.Close()
		return nil, &os.PathError{Op: "fstat", Path: path, Err: err}
	}
	if err := unix.Lstat(path, &now); err != nil || now.Dev != locked.Dev || now.Ino != locked.Ino {
		d.Close()
		return nil, errGone
	}
	return d, nil
}

// newWorkDir makes a new fetch directory under tmp and locks it. The
// directory is the caller's to remove before it closes the lock.
func newWorkDir(tmp string) (string, *os.File, error) {
	for range 10 {
		dir, err := os.MkdirTemp(tmp, workPrefix)
		if err != nil {
			return "", nil, err
		}
		lock, err := lockDir(dir)
		switch {
		case err == nil:
			return dir, lock, nil
		case errors.Is(err, errLocked), errors.Is(err, errGone):
			// A sweep took it in the instant between: it removes it.
			continue
		default:
			os.Remove(dir)
			return "", nil, err
		}
	}
	return "", nil, fmt.Errorf("make a directory under %s: each new one was swept at once", tmp)
}

// sweep removes the fetch directories under tmp that no live fetch holds:
// what fetches killed before they could remove their own left. It never
// fails a Fetch; what it cannot remove it logs.
func sweep(tmp string, logf func(string, ...any)) {
	if logf == nil {
		logf = func(string, ...any) {}
	}
	entries, err := os.ReadDir(tmp)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			logf("look for what killed fetches left in %s: %v", tmp, err)
		}
		return
	}
	for _, e := range entries {
		if !e.IsDir() || !strings.HasPrefix(e.Name(), workPrefix) {
			continue
		}
		path := filepath.Join(tmp, e.Name())
		lock, err := lockDir(path)
		if errors.Is(err, errLocked) || errors.Is(err, errGone) {
			continue
		}
		if err != nil {
			logf("remove %s, left by a killed fetch: %v", path, err)
			continue
		}
		// Removed while locked: a new fetch cannot take it meanwhile.
		if err := os.RemoveAll(path); err != nil {
			logf("remove %s, left by a killed fetch: %v", path, err)
		} else {
			logf("removed %s, left by a killed fetch", path)
		}
		lock.Close()
	}
}
