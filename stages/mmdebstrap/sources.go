package mmdebstrap

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"

	"github.com/forge-build/forge/internal/aptmirror"
)

// sourceURIs lists the archive URIs of a tree's apt sources.
func sourceURIs(tree string) ([]string, error) {
	srcs, err := aptmirror.ReadSources(tree)
	if err != nil {
		return nil, err
	}
	var uris []string
	for _, s := range srcs {
		uris = append(uris, s.URIs...)
	}
	return uris, nil
}

// sameURI compares archive URIs as apt does: a trailing slash does not
// matter.
func sameURI(a, b string) bool {
	return strings.TrimRight(a, "/") == strings.TrimRight(b, "/")
}

// checkSources makes sure the tree's own apt sources name the mirror, so
// that org.osbuild.apt, which uses them, installs from the same archive.
func checkSources(tree, mirror string) error {
	uris, err := sourceURIs(tree)
	if err != nil {
		return fmt.Errorf("read the tree's apt sources: %w", err)
	}
	if slices.ContainsFunc(uris, func(u string) bool { return sameURI(u, mirror) }) {
		return nil
	}
	return fmt.Errorf("the tree's apt sources (%s) do not name the mirror %s (they name %q)",
		filepath.Join(tree, "etc/apt/sources.list*"), mirror, uris)
}
