// Command teststage is a set of stages for the builder's tests, one
// static binary run under several names (like forge-stages), in format 1
// (arguments on stdin) and format 2 (/run/osbuild/api/arguments):
//
//	test.write {"path": P, "content": C}  writes C to TREE/P (dirs made);
//	           {"path": P, "from": F}     or the build root's file F
//	test.mkusr {}                         makes TREE/usr/bin: enough of a
//	                                      build root for static stages
//	test.sleep {"seconds": N, "marker": M}  writes TREE/M, then sleeps
//	test.fail {"status": N, "message": M}   prints M, exits N
//	test.tar (assembler) {"filename": F}  a plain list of the tree's
//	                                      files and contents in OUTPUT/F
package main

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

type args struct {
	Tree      string          `json:"tree"`
	Options   json.RawMessage `json:"options"`
	OutputDir string          `json:"output_dir"`
}

func main() {
	var a args
	// Format 2 (osbuild's stage API of today): the arguments file; format
	// 1: stdin.
	in := os.Stdin
	if f, err := os.Open("/run/osbuild/api/arguments"); err == nil {
		in = f
	}
	if err := json.NewDecoder(in).Decode(&a); err != nil {
		fail(2, "arguments: %v", err)
	}
	var o struct {
		Path, Content, From, Message, Marker, Filename string
		Status, Seconds                                int
	}
	if err := json.Unmarshal(a.Options, &o); err != nil {
		fail(2, "options: %v", err)
	}
	name := filepath.Base(os.Args[0])
	fmt.Printf("%s: running on %s\n", name, a.Tree)
	switch name {
	case "test.write":
		p := filepath.Join(a.Tree, o.Path)
		check(os.MkdirAll(filepath.Dir(p), 0o755))
		content := []byte(o.Content)
		if o.From != "" {
			var err error
			content, err = os.ReadFile(o.From)
			check(err)
		}
		check(os.WriteFile(p, content, 0o644))
	case "test.mkusr":
		check(os.MkdirAll(filepath.Join(a.Tree, "usr/bin"), 0o755))
	case "test.sleep":
		check(os.WriteFile(filepath.Join(a.Tree, o.Marker), []byte("started\n"), 0o644))
		time.Sleep(time.Duration(o.Seconds) * time.Second)
	case "test.fail":
		fmt.Println(o.Message)
		os.Exit(o.Status)
	case "test.tar":
		var lines []string
		check(filepath.WalkDir(a.Tree, func(p string, d fs.DirEntry, err error) error {
			if err != nil || !d.Type().IsRegular() {
				return err
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(a.Tree, p)
			lines = append(lines, rel+"="+string(b))
			return nil
		}))
		sort.Strings(lines)
		check(os.WriteFile(filepath.Join(a.OutputDir, o.Filename), []byte(strings.Join(lines, "\n")+"\n"), 0o644))
	default:
		fail(2, "unknown test stage %q", name)
	}
}

func check(err error) {
	if err != nil {
		fail(1, "%v", err)
	}
}

func fail(code int, format string, a ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", a...)
	os.Exit(code)
}
