package copy

import (
	"errors"
	"os"
	"path"
)

// canCopyContents reports whether internal/treecopy may copy src's content
// into dst in cp's stead: dst is an empty directory, or holds only a
// lost+found that src has no entry for (a fresh ext4). Merging into
// existing files is cp's business: treecopy refuses a file in its way,
// where cp writes through it.
func canCopyContents(src, dst string) bool {
	names, err := readNames(dst)
	if err != nil {
		return false
	}
	switch {
	case len(names) == 0:
		return true
	case len(names) == 1 && names[0] == "lost+found":
		_, err := os.Lstat(path.Join(src, "lost+found"))
		return errors.Is(err, os.ErrNotExist)
	}
	return false
}

func readNames(dir string) ([]string, error) {
	f, err := os.Open(dir)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return f.Readdirnames(-1)
}
