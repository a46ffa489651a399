// Package debrepo makes a flat apt repository of a stage's inputs, so
// that org.osbuild.mmdebstrap and org.osbuild.apt install exactly the
// pinned .debs and never touch the network.
//
// The stage has two org.osbuild.files inputs: "packages", the .debs, each
// named "sha256:HEX" by the source that fetched and verified it, and
// "index", one file of the archive's own Packages stanzas for them (the
// archive's, not stanzas made from the .debs: its Priority overrides
// differ from the .debs' control files, and mmdebstrap picks packages by
// priority). The repository is that index with each Filename pointing at
// its .deb, "files/sha256:HEX", and a Release naming the suite: without a
// Release whose Suite or Codename is the suite, mmdebstrap's essential
// step finds nothing and installs an empty tree without an error.
//
// apt reads it as "deb [trusted=yes] copy://DIR ./" or file:// (see
// SourcesLine): trusted, because every .deb was verified against its pin
// when it was fetched (and apt checks the stanza's SHA256 again before
// dpkg gets it).
package debrepo

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/forge-build/forge/internal/deb822"
	"github.com/forge-build/forge/stages/stage"
)

// The inputs' names.
const (
	PackagesInput = "packages"
	IndexInput    = "index"
)

// FilesDir is the repository's directory of .debs, relative to it.
const FilesDir = "files"

// maxIndex bounds the index file: a whole suite's Packages is ~50 MB.
const maxIndex = 256 << 20

// Inputs are a stage's package inputs, read and checked.
type Inputs struct {
	// Dir is the directory of the .debs (the "packages" input's).
	Dir string
	// Stanzas are the index's stanzas, one per .deb, Filename pointing
	// at FilesDir.
	Stanzas []deb822.Paragraph
}

// FromArgs reads a stage's package inputs. ok is false when the stage
// has neither (it then installs from its mirror, as in format 1); one
// without the other is an error.
func FromArgs(a stage.Args) (in Inputs, ok bool, err error) {
	pkgs, hasPkgs := a.Inputs[PackagesInput]
	index, hasIndex := a.Inputs[IndexInput]
	switch {
	case !hasPkgs && !hasIndex:
		return in, false, nil
	case !hasPkgs:
		return in, false, fmt.Errorf("input %q without input %q: the index lists .debs the stage is not given", IndexInput, PackagesInput)
	case !hasIndex:
		return in, false, fmt.Errorf("input %q without input %q: the .debs need the archive's stanzas for them", PackagesInput, IndexInput)
	}
	if len(index.Data.Files) != 1 {
		return in, false, fmt.Errorf("input %q has %d files, want exactly one (the archive's Packages stanzas)", IndexInput, len(index.Data.Files))
	}
	var indexName string
	for n := range index.Data.Files {
		indexName = n
	}
	data, err := readFile(filepath.Join(index.Path, indexName), maxIndex)
	if err != nil {
		return in, false, fmt.Errorf("input %q: %w", IndexInput, err)
	}
	stanzas, err := deb822.Parse(data)
	if err != nil {
		return in, false, fmt.Errorf("input %q (%s): %w", IndexInput, indexName, err)
	}
	stanzas, err = Check(stanzas, pkgs.Path, pkgs.Data.Files)
	if err != nil {
		return in, false, err
	}
	return Inputs{Dir: pkgs.Path, Stanzas: stanzas}, true, nil
}

// Check matches the stanzas with the .debs in dir (files are the
// input's names): every stanza's SHA256 names a .deb of that size, and
// every .deb has a stanza. It returns the stanzas with Filename pointing
// at FilesDir, sorted by package name.
func Check(stanzas []deb822.Paragraph, dir string, files map[string]json.RawMessage) ([]deb822.Paragraph, error) {
	seen := make(map[string]string, len(stanzas))
	out := make([]deb822.Paragraph, 0, len(stanzas))
	for i, st := range stanzas {
		pkg := st.Value("Package")
		if pkg == "" {
			return nil, fmt.Errorf("input %q: stanza %d has no Package", IndexInput, i+1)
		}
		sum := strings.ToLower(st.Value("SHA256"))
		if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
			return nil, fmt.Errorf("input %q: package %s has no SHA256 (%q)", IndexInput, pkg, sum)
		}
		name := "sha256:" + sum
		if other, dup := seen[name]; dup {
			return nil, fmt.Errorf("input %q: packages %s and %s have one SHA256, %s", IndexInput, other, pkg, sum)
		}
		seen[name] = pkg
		if _, ok := files[name]; !ok {
			return nil, fmt.Errorf("package %s %s: its .deb, %s, is not in input %q", pkg, st.Value("Version"), name, PackagesInput)
		}
		fi, err := os.Lstat(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("package %s: %w", pkg, err)
		}
		if !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("package %s: %s is not a regular file", pkg, filepath.Join(dir, name))
		}
		if size := st.Value("Size"); size != "" && size != fmt.Sprint(fi.Size()) {
			return nil, fmt.Errorf("package %s: %s has %d bytes, the index says %s", pkg, name, fi.Size(), size)
		}
		q := deb822.Paragraph{Fields: slices.Clone(st.Fields)}
		q.Set("Filename", FilesDir+"/"+name)
		out = append(out, q)
	}
	for name := range files {
		if _, ok := seen[name]; !ok {
			return nil, fmt.Errorf("input %q has %s, which no stanza of input %q names", PackagesInput, name, IndexInput)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Value("Package") < out[j].Value("Package") })
	return out, nil
}

// Write writes the repository's Packages and Release into dir, for
// suite (the Release's Suite and Codename). The caller makes dir/files
// the .debs' directory.
func (in Inputs) Write(dir, suite string) error {
	packages := deb822.Format(in.Stanzas)
	sum := sha256.Sum256(packages)
	var archs []string
	for _, st := range in.Stanzas {
		if a := st.Value("Architecture"); a != "" && a != "all" && !slices.Contains(archs, a) {
			archs = append(archs, a)
		}
	}
	sort.Strings(archs)
	if len(archs) == 0 {
		archs = []string{"all"}
	}
	// No Date: it would make the tree's apt record depend on when the
	// stage ran, and apt needs none from a trusted repository.
	release := fmt.Sprintf("Origin: forge\nLabel: forge pinned packages\nSuite: %s\nCodename: %s\nArchitectures: %s\nComponents: main\nDescription: the stage's pinned packages\nSHA256:\n %s %d Packages\n",
		suite, suite, strings.Join(archs, " "), hex.EncodeToString(sum[:]), len(packages))
	if err := os.WriteFile(filepath.Join(dir, "Packages"), packages, 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "Release"), []byte(release), 0o644)
}

// SourcesLine is the apt source for a repository at dir: apt copies the
// .debs out of it (copy://, for mmdebstrap, whose dpkg runs in the tree
// where the repository is not), or has dpkg read them in place (file://,
// for apt in a tree that sees the repository).
func SourcesLine(scheme, dir string) string {
	return "deb [trusted=yes] " + scheme + "://" + dir + " ./"
}

// readFile reads at most limit bytes of a regular file.
func readFile(path string, limit int64) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file", path)
	}
	if fi.Size() > limit {
		return nil, fmt.Errorf("%s has %d bytes, more than the %d an index may have", path, fi.Size(), limit)
	}
	data := make([]byte, fi.Size())
	if _, err := f.ReadAt(data, 0); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return data, nil
}
