package fusefs

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Scratch files hold the content of files that are not small, or not new:
// <scratch>/<ino>, passed through to the kernel where they can be
// (cowfile.go). A new file starts in memory (cowmem.go) when it comes in a
// burst of creates (untar, package unpacking: many small files, where a
// scratch file's inode would cost more than everything else), and in a
// scratch file when it comes alone: its first handle is passed through
// then, which is what a large file written by one handle needs (dd, a
// download, an image), since a handle cannot switch to passthrough later.

// createQuiet is how long after the previous create a new file counts as
// coming alone (cowFS.createQuiet, which tests change).
const createQuiet = 50 * time.Millisecond

// wantScratch reports whether a file created now should start in a
// scratch file, and notes the create. fsys.mu is held.
func (fsys *cowFS) wantScratch(now time.Time) bool {
	alone := now.Sub(fsys.lastCreate) >= fsys.createQuiet
	fsys.lastCreate = now
	return alone
}

// scratchFD makes n's scratch file, empty, and returns it open. fsys.mu is
// held.
func (n *cowNode) scratchFD() (int, error) {
	path := n.scratchName()
	fd, err := unix.Open(path, unix.O_RDWR|unix.O_CREAT|unix.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: path, Err: err}
	}
	return fd, nil
}

// startInScratch gives new regular file n an empty scratch file, open for
// the handle about to be opened on it, instead of memory. fsys.mu is held.
func (n *cowNode) startInScratch() error {
	fd, err := n.scratchFD()
	if err != nil {
		return err
	}
	n.file.inMem, n.file.fd = false, fd
	return nil
}

// discardScratchFD undoes scratchFD after a failure.
func (n *cowNode) discardScratchFD(fd int) {
	unix.Close(fd)
	os.Remove(n.scratchName())
}

// adoptScratch makes fd (from scratchFD, filled) n's content, kept open
// while handles are. fsys.mu is held.
func (n *cowNode) adoptScratch(fd int) {
	f := n.file
	f.copied, f.inMem, f.content = true, false, nil
	if f.opens > 0 {
		f.fd = fd
	} else {
		unix.Close(fd)
		f.fd = -1
	}
}

// dropScratch removes n's scratch file. fsys.mu is held.
func (n *cowNode) dropScratch() {
	f := n.file
	if f.fd >= 0 {
		unix.Close(f.fd)
		f.fd = -1
	}
	if err := os.Remove(n.scratchName()); err != nil && !os.IsNotExist(err) {
		n.fsys.logf("%s: removing scratch file of %s: %v", n.fsys.name, n.path(), err)
	}
}
