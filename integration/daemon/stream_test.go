package daemon_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/forge-build/forge/cas/errdefs"
	"github.com/forge-build/forge/daemon/client"
	"github.com/forge-build/forge/internal/fstree"
	"github.com/forge-build/forge/internal/treecopy"
)

// TestTreeStream: the daemon streams a stored tree to root, and what
// treecopy.CopyStream writes from it is the tree; a tree it lacks is an
// error of its kind before any stream, not a stream cut short.
func TestTreeStream(t *testing.T) {
	store := storeDir(t)
	work := fstree.DiskTempDir(t)
	src := filepath.Join(work, "src")
	fstree.MustBuildFixture(t, src)
	importTree(t, store, src, "fixture")

	c := client.NewClient(store)
	defer c.Close()
	r, err := c.StreamTree(context.Background(), "fixture")
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(work, "dst")
	must(t, os.Mkdir(dst, 0o700))
	err = treecopy.CopyStream(context.Background(), r, dst)
	r.Close()
	if err != nil {
		t.Fatal(err)
	}
	fstree.AssertSame(t, src, dst, fstree.Options{CompareRootMeta: true, CheckSparse: true})

	if _, err := c.StreamTree(context.Background(), "no-such-ref"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Fatalf("a stream of a ref the store lacks: %v; want not found", err)
	}
}
