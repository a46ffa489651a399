package stage

import (
	"fmt"
	"os"
	"path"
)

// WriteFile replaces name (relative to root, the stage's tree) with data:
// it writes a temporary file beside it and renames it over name, so the
// tree holds either the old file or the whole new one. Going through root
// keeps a symlink in the tree from redirecting the write outside it.
// Missing parent directories are made (0755).
func WriteFile(root *os.Root, name string, data []byte, perm os.FileMode) error {
	return WriteFileOwned(root, name, data, perm, -1, -1)
}

// WriteFileOwned is WriteFile with the new file owned by uid:gid (-1
// keeps the caller's).
func WriteFileOwned(root *os.Root, name string, data []byte, perm os.FileMode, uid, gid int) error {
	dir := path.Dir(name)
	if err := root.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create /%s: %w", dir, err)
	}
	tmp := path.Join(dir, "."+path.Base(name)+".forge-tmp")
	root.Remove(tmp)
	f, err := root.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return fmt.Errorf("write /%s: %w", name, err)
	}
	_, err = f.Write(data)
	if err == nil && (uid >= 0 || gid >= 0) {
		err = f.Chown(uid, gid)
	}
	if err == nil {
		// Chmod, because the umask may have cleared bits of perm (and
		// chown cleared setuid bits).
		err = f.Chmod(perm)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = root.Rename(tmp, name)
	}
	if err != nil {
		root.Remove(tmp)
		return fmt.Errorf("write /%s: %w", name, err)
	}
	return nil
}
