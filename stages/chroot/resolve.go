package chroot

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// resolveRoot makes root absolute and symlink-free, the form mountinfo
// and /proc/PID/root use, and refuses "/" (a chroot of the host would
// mount over the host's /proc and /dev).
func resolveRoot(root string) (string, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return "", fmt.Errorf("tree %s: %w", root, err)
	}
	resolved, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", fmt.Errorf("tree %s: %w", root, err)
	}
	st, err := os.Stat(resolved)
	if err != nil {
		return "", fmt.Errorf("tree %s: %w", root, err)
	}
	if !st.IsDir() {
		return "", fmt.Errorf("tree %s: not a directory", root)
	}
	if resolved == "/" {
		return "", fmt.Errorf("tree %s: is the root directory; refusing to set up a chroot of it", root)
	}
	return resolved, nil
}

// openInRoot opens rel below the directory rootFD as a chroot there would
// resolve it: ".." and absolute symlinks stay inside. resolve adds
// RESOLVE_* flags (RESOLVE_NO_SYMLINKS for mountpoints).
func openInRoot(rootFD int, rel string, flags int, mode uint32, resolve uint64) (int, error) {
	how := unix.OpenHow{
		Flags:   uint64(flags | unix.O_CLOEXEC),
		Mode:    uint64(mode),
		Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | resolve,
	}
	for try := 0; ; try++ {
		fd, err := unix.Openat2(rootFD, rel, &how)
		// EAGAIN: a rename raced with the lookup; the kernel asks to retry.
		if (errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR)) && try < 16 {
			continue
		}
		return fd, err
	}
}

// openRootDir opens root itself, to resolve paths below it.
func openRootDir(root string) (int, error) {
	fd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1, &os.PathError{Op: "open", Path: root, Err: err}
	}
	return fd, nil
}

// fdPath names an open file descriptor as a path the kernel resolves to
// exactly that file: mount(2) on it cannot be redirected by a symlink
// swapped in after the check.
func fdPath(fd int) string {
	return fmt.Sprintf("/proc/self/fd/%d", fd)
}
