// Command gen-manifest turns a sample manifest into one ready to build on
// this machine: the mirror of every org.osbuild.mmdebstrap stage becomes
// the one the host's apt uses (or --mirror), and --hostname changes the
// org.osbuild.hostname stage. Sample manifests in the repository never
// name a mirror: which one to use is the machine's business.
//
//	go run ./samples/gen-manifest [--mirror URL] [--hostname NAME] SAMPLE > manifest.json
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"

	"github.com/forge-build/forge/internal/aptmirror"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := pflag.NewFlagSet("gen-manifest", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	mirror := fs.String("mirror", "", "Debian mirror `URL` (default: the host's apt sources' for the stage's suite)")
	hostname := fs.String("hostname", "", "set org.osbuild.hostname's hostname to `NAME`")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: gen-manifest [--mirror URL] [--hostname NAME] SAMPLE > MANIFEST\n\n%s", fs.FlagUsages())
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	out, err := generate(fs.Arg(0), *mirror, *hostname)
	if err != nil {
		fmt.Fprintf(stderr, "gen-manifest: %v\n", err)
		return 1
	}
	stdout.Write(out)
	return 0
}

func generate(sample, mirror, hostname string) ([]byte, error) {
	data, err := os.ReadFile(sample)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w", sample, err)
	}
	var found error
	walkStages(m, func(st map[string]any) {
		opts, _ := st["options"].(map[string]any)
		if opts == nil {
			return
		}
		switch st["name"] {
		case "org.osbuild.mmdebstrap":
			m := mirror
			if m == "" {
				suite, _ := opts["suite"].(string)
				var from string
				var err error
				if m, from, err = aptmirror.Find("/", suite); err != nil {
					found = err
					return
				}
				fmt.Fprintf(os.Stderr, "gen-manifest: mirror %s (from %s)\n", m, from)
			}
			opts["mirror"] = m
		case "org.osbuild.hostname":
			if hostname != "" {
				opts["hostname"] = hostname
			}
		}
	})
	if found != nil {
		return nil, found
	}
	out, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(out, '\n'), nil
}

// walkStages calls fn on every stage of a format-1 manifest, build
// pipelines included, in either of its shapes.
func walkStages(v any, fn func(map[string]any)) {
	p, _ := v.(map[string]any)
	if p == nil {
		return
	}
	if inner, ok := p["pipeline"]; ok {
		walkStages(inner, fn)
	}
	if b, ok := p["build"]; ok {
		walkStages(b, fn)
	}
	stages, _ := p["stages"].([]any)
	for _, s := range stages {
		if st, ok := s.(map[string]any); ok {
			fn(st)
		}
	}
}
