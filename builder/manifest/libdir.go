package manifest

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
)

// CheckLibdir checks that every stage of the manifest, build pipelines
// included, is an executable file <libdir>/stages/<name>, and every
// assembler <libdir>/assemblers/<name>: a manifest naming a stage forge
// does not have fails before anything runs. It reports every missing one,
// build pipelines first, as an Errors whose paths are the names' JSON
// paths.
func (m *Manifest) CheckLibdir(libdir string) error {
	var pr problems
	for _, p := range m.Pipelines() {
		for _, s := range p.Stages {
			key := "name"
			if m.Version == Version2 {
				key = "type"
			}
			pr.checkModule(libdir, "stages", "stage", s, key)
		}
		if p.Assembler != nil {
			pr.checkModule(libdir, "assemblers", "assembler", p.Assembler, "name")
		}
	}
	return pr.err()
}

func (pr *problems) checkModule(libdir, dir, what string, s *Stage, key string) {
	path := join(s.Path, key)
	file := filepath.Join(libdir, dir, s.Name)
	fi, err := os.Stat(file)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		pr.add(path, err, "no %s %q: %s does not exist", what, s.Name, file)
	case err != nil:
		pr.add(path, err, "%s %q: %v", what, s.Name, err)
	case !fi.Mode().IsRegular():
		pr.add(path, nil, "%s %q: %s is not a regular file", what, s.Name, file)
	case fi.Mode().Perm()&0o111 == 0:
		pr.add(path, nil, "%s %q: %s is not executable", what, s.Name, file)
	}
}
