// Command gen-manifest makes sample manifests, in two ways.
//
// With --resolve it pins a format-2 template's Debian packages: it asks
// the archive (through apt, in a scratch directory, with the archive's
// signature checked) which .debs each org.osbuild.mmdebstrap and
// org.osbuild.apt stage installs, and writes them into the manifest as
// org.osbuild.curl sources keyed by their SHA256, with the archive's own
// Packages stanzas as org.osbuild.inline sources; the stages take both as
// inputs and never touch the network (see resolve.go):
//
//	go run ./samples/gen-manifest --resolve --archive-url http://deb.debian.org/debian TEMPLATE > SAMPLE
//
// Without it, it makes a sample ready to build on this machine: the
// downloads of a pinned format-2 sample come from the host's mirror (or
// --mirror) instead of the archive URL it names, which stays in the
// stages (so their IDs do not depend on the host); a format-1 sample's
// org.osbuild.mmdebstrap stages get the mirror as their own. --hostname
// changes the org.osbuild.hostname stage. Which mirror to use is the
// machine's business: it is read from the host's apt sources.
//
//	go run ./samples/gen-manifest [--mirror URL] [--hostname NAME] SAMPLE > manifest.json
package main

import (
	"bytes"
	"context"
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
	resolve := fs.Bool("resolve", false, "pin the Debian packages of a format-2 TEMPLATE (see the package doc)")
	archive := fs.String("archive-url", "", "with --resolve: the archive `URL` the manifest downloads from and the trees' apt sources name (default: the mirror)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, `Usage: gen-manifest [--mirror URL] [--hostname NAME] SAMPLE > MANIFEST
       gen-manifest --resolve [--mirror URL] [--archive-url URL] TEMPLATE > SAMPLE

The first form makes a sample ready to build here: its packages come from
the host's Debian mirror. The second pins a template's packages by hash.

Examples:
  gen-manifest samples/debian-bookworm.json > manifest.json
  gen-manifest --resolve --archive-url http://deb.debian.org/debian \
      samples/debian-bookworm.in.json > samples/debian-bookworm.json

%s`, fs.FlagUsages())
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
	if *archive != "" && !*resolve {
		fmt.Fprintln(stderr, "gen-manifest: --archive-url goes with --resolve")
		return 2
	}
	out, err := generate(context.Background(), fs.Arg(0), *mirror, *hostname, *archive, *resolve, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "gen-manifest: %v\n", err)
		return 1
	}
	stdout.Write(out)
	return 0
}

func generate(ctx context.Context, sample, mirror, hostname, archive string, resolve bool, log io.Writer) ([]byte, error) {
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
	if v, _ := m["version"].(string); v == "2" {
		if err := generateV2(ctx, m, mirror, archive, resolve, log); err != nil {
			return nil, fmt.Errorf("%s: %w", sample, err)
		}
	} else if resolve {
		return nil, fmt.Errorf("%s: --resolve wants a format-2 manifest (\"version\": \"2\")", sample)
	}
	var found error
	walkStages(m, func(st map[string]any) {
		opts, _ := st["options"].(map[string]any)
		if opts == nil {
			return
		}
		name := st["name"]
		if name == nil {
			name = st["type"]
		}
		switch name {
		case "org.osbuild.mmdebstrap":
			if m["version"] == "2" {
				return // generateV2's
			}
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

// generateV2 resolves a template, or points a pinned manifest's
// downloads at the mirror.
func generateV2(ctx context.Context, m map[string]any, mirror, archive string, resolve bool, log io.Writer) error {
	if mirror == "" {
		suite := firstSuite(m)
		if suite == "" {
			return fmt.Errorf("no org.osbuild.mmdebstrap stage names a suite")
		}
		var from string
		var err error
		if mirror, from, err = aptmirror.Find("/", suite); err != nil {
			return err
		}
		fmt.Fprintf(log, "gen-manifest: mirror %s (from %s)\n", mirror, from)
	}
	if resolve {
		return resolveTemplate(ctx, m, mirror, archive, log)
	}
	n, err := retarget(m, mirror)
	if err != nil {
		return err
	}
	fmt.Fprintf(log, "gen-manifest: %d downloads from %s\n", n, mirror)
	return nil
}

// firstSuite is the suite of the manifest's first org.osbuild.mmdebstrap
// stage.
func firstSuite(m map[string]any) string {
	suite := ""
	walkStages(m, func(st map[string]any) {
		if opts, _ := st["options"].(map[string]any); suite == "" && st["type"] == "org.osbuild.mmdebstrap" && opts != nil {
			suite, _ = opts["suite"].(string)
		}
	})
	return suite
}

// walkStages calls fn on every stage of a manifest: of a format-1
// manifest, build pipelines included, in either of its shapes; of a
// format-2 one, every pipeline's.
func walkStages(v any, fn func(map[string]any)) {
	p, _ := v.(map[string]any)
	if p == nil {
		return
	}
	if ps, ok := p["pipelines"].([]any); ok {
		for _, q := range ps {
			walkStages(q, fn)
		}
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
