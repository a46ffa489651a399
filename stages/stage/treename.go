package stage

import (
	"fmt"
	"path"
	"slices"
	"strings"
)

// TreeName is an osbuild "filename" option as a path relative to the
// stage's tree: with or without a leading "/", as osbuild takes it; it
// must name a file, without "..". Open it through os.Root: a symbolic
// link in the tree is not checked here.
func TreeName(filename string) (string, error) {
	name := path.Clean(strings.TrimLeft(filename, "/"))
	switch {
	case name == "." || filename == "":
		return "", fmt.Errorf("%q names no file in the tree", filename)
	case strings.ContainsRune(filename, 0):
		return "", fmt.Errorf("%q contains a NUL byte", filename)
	case slices.Contains(strings.Split(filename, "/"), ".."):
		return "", fmt.Errorf("%q contains \"..\": it must name a file in the tree", filename)
	}
	return name, nil
}
