// Package aptmirror reads apt's sources: the Debian mirror the host's apt
// uses, so that forge's tests and sample builds download from wherever
// this machine is configured to (its mirror or proxy) without a host name
// in the repository, and the archives a built tree's apt will use.
package aptmirror

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Source is one archive entry of apt's sources: a deb822 stanza, or a
// line of the one-line format.
type Source struct {
	Types  []string // deb, deb-src
	URIs   []string
	Suites []string
	File   string // where it was read
}

// ReadSources reads the sources under root ("/" for the host): one-line
// etc/apt/sources.list and sources.list.d/*.list, then deb822
// sources.list.d/*.sources; disabled deb822 stanzas are left out.
func ReadSources(root string) ([]Source, error) {
	dir := filepath.Join(root, "etc/apt")
	var out []Source
	lists, _ := filepath.Glob(filepath.Join(dir, "sources.list.d/*.list"))
	for _, f := range append([]string{filepath.Join(dir, "sources.list")}, lists...) {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, withFile(parseOneLine(string(b)), f)...)
	}
	deb822, _ := filepath.Glob(filepath.Join(dir, "sources.list.d/*.sources"))
	for _, f := range deb822 {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		out = append(out, withFile(parseDeb822(string(b)), f)...)
	}
	return out, nil
}

func withFile(srcs []Source, f string) []Source {
	for i := range srcs {
		srcs[i].File = f
	}
	return srcs
}

// Find returns the first URI the apt sources under root ("/" for the
// host) give for binary packages of suite, and the file that says so:
// deb822 .sources files first (today's Debian), then one-line files.
func Find(root, suite string) (uri, from string, err error) {
	srcs, err := ReadSources(root)
	if err != nil {
		return "", "", err
	}
	// deb822 first.
	slices.SortStableFunc(srcs, func(a, b Source) int {
		return boolCmp(!strings.HasSuffix(a.File, ".sources"), !strings.HasSuffix(b.File, ".sources"))
	})
	for _, s := range srcs {
		if uri := s.mirrorFor(suite); uri != "" {
			return uri, s.File, nil
		}
	}
	return "", "", fmt.Errorf("the apt configuration (%s, %s) names no mirror for suite %s; give one explicitly",
		filepath.Join(root, "etc/apt/sources.list.d/*.sources"), filepath.Join(root, "etc/apt/sources.list"), suite)
}

func boolCmp(a, b bool) int {
	switch {
	case a == b:
		return 0
	case !a:
		return -1
	}
	return 1
}

func (s Source) mirrorFor(suite string) string {
	if slices.Contains(s.Types, "deb") && slices.Contains(s.Suites, suite) && len(s.URIs) > 0 {
		return s.URIs[0]
	}
	return ""
}

// Deb822 reads a deb822 sources file: the first URI of the first enabled
// "deb" stanza whose Suites include suite.
func Deb822(text, suite string) string {
	for _, s := range parseDeb822(text) {
		if uri := s.mirrorFor(suite); uri != "" {
			return uri
		}
	}
	return ""
}

// OneLine reads a one-line sources file: the URI of the first
// "deb [options] URI SUITE ..." line for suite.
func OneLine(text, suite string) string {
	for _, s := range parseOneLine(text) {
		if uri := s.mirrorFor(suite); uri != "" {
			return uri
		}
	}
	return ""
}

func parseDeb822(text string) []Source {
	var out []Source
	for _, st := range stanzas(text) {
		if strings.EqualFold(st["enabled"], "no") {
			continue
		}
		out = append(out, Source{Types: strings.Fields(st["types"]), URIs: strings.Fields(st["uris"]), Suites: strings.Fields(st["suites"])})
	}
	return out
}

// stanzas splits a deb822 file into stanzas of lower-cased field names
// and values; comment lines are dropped, continuation lines joined.
func stanzas(text string) []map[string]string {
	var out []map[string]string
	cur := map[string]string{}
	last := ""
	flush := func() {
		if len(cur) > 0 {
			out = append(out, cur)
		}
		cur, last = map[string]string{}, ""
	}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "#"):
		case strings.TrimSpace(line) == "":
			flush()
		case line[0] == ' ' || line[0] == '\t':
			if last != "" {
				cur[last] += " " + strings.TrimSpace(line)
			}
		default:
			k, v, ok := strings.Cut(line, ":")
			if ok {
				last = strings.ToLower(strings.TrimSpace(k))
				cur[last] = strings.TrimSpace(v)
			}
		}
	}
	flush()
	return out
}

// parseOneLine reads "deb|deb-src [options] URI SUITE COMPONENTS..."
// lines.
func parseOneLine(text string) []Source {
	var out []Source
	for _, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 3 || (f[0] != "deb" && f[0] != "deb-src") {
			continue
		}
		typ := f[0]
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			// Options: up to the word that closes the bracket.
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 {
			out = append(out, Source{Types: []string{typ}, URIs: []string{f[0]}, Suites: []string{f[1]}})
		}
	}
	return out
}

// Check fetches the suite's Release file from mirror: an error says the
// mirror cannot serve the suite.
func Check(ctx context.Context, mirror, suite string) error {
	url := strings.TrimSuffix(mirror, "/") + "/dists/" + suite + "/Release"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("mirror %s: %w", mirror, err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("mirror %s: %s: %s", mirror, url, resp.Status)
	}
	return nil
}
