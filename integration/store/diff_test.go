package store_test

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/forge-build/forge/internal/fstree"
)

// TestDiff compares two trees that differ by an added file, a removed
// directory with children, a chmod, a content change and names that need
// quoting. Every change is at the top level, so no directory's own
// metadata changes: the expected lines are exactly the changed paths.
//
// Choices the contract leaves to this test, stated so they can be checked:
//   - a removed directory gives a D line for itself and one for each path
//     below it ("one line per changed path");
//   - lines are compared as a set (the contract fixes no order);
//   - quoted names follow git's quote_c_style: \a \b \t \n \v \f \r \" \\
//     by name, other control bytes and invalid UTF-8 bytes as three-digit
//     octal, valid UTF-8 as is;
//   - diff exits 0, with or without differences.
func TestDiff(t *testing.T) {
	forgeBin(t)
	tmp := fstree.DiskTempDir(t)
	s := newStore(t, tmp)
	common := map[string][]byte{
		"keep.txt":    []byte("unchanged\n"),
		"ünï kept":    []byte("unchanged too\n"),
		"dir/kept":    []byte("in a directory that stays\n"),
		"change.txt":  []byte("old content\n"),
		"chmod.txt":   []byte("mode changes\n"),
		"new\nline":   []byte("old\n"),
		"tab\there":   []byte("mode changes\n"),
		"back\\slash": []byte("removed\n"),
	}
	a := filepath.Join(tmp, "a")
	aFiles := clone(common)
	aFiles["olddir/f3"] = []byte("3\n")
	aFiles["olddir/sub/f1"] = []byte("1\n")
	aFiles["olddir/sub/f2"] = []byte("2\n")
	writeTree(t, a, aFiles)

	b := filepath.Join(tmp, "b")
	bFiles := clone(common)
	delete(bFiles, "back\\slash")
	bFiles["change.txt"] = []byte("new content\n")
	bFiles["new\nline"] = []byte("new\n")
	bFiles["added.txt"] = []byte("added\n")
	bFiles[`quote"d`] = []byte("added\n")
	bFiles["\xff-bad"] = []byte("added\n")
	bFiles["\x01ctl"] = []byte("added\n")
	bFiles["ünï space"] = []byte("added\n")
	writeTree(t, b, bFiles)
	for _, name := range []string{"chmod.txt", "tab\there"} {
		if err := os.Chmod(filepath.Join(b, name), 0o600); err != nil {
			t.Fatal(err)
		}
	}

	ha := s.importTree(a, "a")
	hb := s.importTree(b, "b")
	want := []string{
		"A added.txt",
		`A "quote\"d"`,
		`A "\377-bad"`,
		`A "\001ctl"`,
		"A ünï space",
		`D "back\\slash"`,
		"D olddir",
		"D olddir/f3",
		"D olddir/sub",
		"D olddir/sub/f1",
		"D olddir/sub/f2",
		"M change.txt",
		"M chmod.txt",
		`M "new\nline"`,
		`M "tab\there"`,
	}
	slices.Sort(want)
	for _, args := range [][2]string{{"a", "b"}, {ha, hb}} {
		got := diffLines(t, s, args[0], args[1])
		if !slices.Equal(got, want) {
			t.Errorf("diff %s %s:\n%s\nwant:\n%s", args[0], args[1], strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
	// The other way round, every A is a D and the other way round.
	var reverse []string
	for _, l := range want {
		switch l[0] {
		case 'A':
			l = "D" + l[1:]
		case 'D':
			l = "A" + l[1:]
		}
		reverse = append(reverse, l)
	}
	slices.Sort(reverse)
	if got := diffLines(t, s, "b", "a"); !slices.Equal(got, reverse) {
		t.Errorf("diff b a:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(reverse, "\n"))
	}
	if got := diffLines(t, s, "a", ha); len(got) != 0 {
		t.Errorf("diff of a tree with itself:\n%s", strings.Join(got, "\n"))
	}
}

// diffLines runs `forge store diff` and returns its lines, sorted.
func diffLines(t *testing.T, s *testStore, a, b string) []string {
	t.Helper()
	r := s.ok("diff", a, b)
	var lines []string
	for _, l := range strings.Split(r.stdout, "\n") {
		if l != "" {
			lines = append(lines, l)
		}
	}
	slices.Sort(lines)
	return lines
}

func clone(m map[string][]byte) map[string][]byte {
	c := make(map[string][]byte, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
