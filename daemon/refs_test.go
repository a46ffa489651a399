package daemon

import (
	"testing"

	"github.com/forge-build/forge/daemon/client"
)

// TestRefsNamesOnly: the names-only listing a build asks for names the same
// refs and trees as the full one, without the sizes that cost a walk of
// every tree; a request without the field (an older client) gets the sizes.
func TestRefsNamesOnly(t *testing.T) {
	d := testDaemon(t)
	storeFiles(t, d, "b", map[string]string{"f": "content of b\n"})
	storeFiles(t, d, "a", map[string]string{"f": "content of a, longer\n", "g": "x"})

	full, err := call[[]client.RefInfo](t, d.refs, client.RefsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	names, err := call[[]client.RefInfo](t, d.refs, client.RefsRequest{NamesOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if len(full) != 2 || len(names) != 2 {
		t.Fatalf("got %d refs with sizes and %d names only, want 2 and 2", len(full), len(names))
	}
	for i := range full {
		f, n := full[i], names[i]
		if f.Name != n.Name || f.Tree != n.Tree || f.Tree == "" {
			t.Errorf("ref %d: %s → %s with sizes, %s → %s names only", i, f.Name, f.Tree, n.Name, n.Tree)
		}
		if f.LogicalBytes == 0 {
			t.Errorf("ref %s: no logical size in the full listing", f.Name)
		}
		if n.LogicalBytes != 0 || n.UniqueBytes != 0 {
			t.Errorf("ref %s: names-only listing has sizes %d/%d", n.Name, n.LogicalBytes, n.UniqueBytes)
		}
		if n.LastUsed.IsZero() {
			t.Errorf("ref %s: names-only listing has no last use", n.Name)
		}
	}
	if full[0].Name != "a" {
		t.Errorf("refs not sorted by name: %s first", full[0].Name)
	}
	// An unknown field is refused, as for every request.
	if _, err := call[[]client.RefInfo](t, d.refs, map[string]bool{"names_onyl": true}); err == nil {
		t.Error("a misspelt field was accepted")
	}
}
