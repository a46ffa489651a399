// Package aptmirror finds the Debian mirror the host's apt uses, so that
// forge's tests and sample builds download from wherever this machine is
// configured to (its mirror or proxy), without a host name in the repo.
package aptmirror

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Find returns the first URI the apt sources under root ("/" for the
// host) give for suite, and the file that says so: deb822 .sources files
// first, then one-line .list files.
func Find(root, suite string) (uri, from string, err error) {
	sources, _ := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d/*.sources"))
	for _, f := range sources {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if uri := Deb822(string(b), suite); uri != "" {
			return uri, f, nil
		}
	}
	lists, _ := filepath.Glob(filepath.Join(root, "etc/apt/sources.list.d/*.list"))
	for _, f := range append([]string{filepath.Join(root, "etc/apt/sources.list")}, lists...) {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if uri := OneLine(string(b), suite); uri != "" {
			return uri, f, nil
		}
	}
	return "", "", fmt.Errorf("the apt configuration (%s, %s) names no mirror for suite %s; give one explicitly",
		filepath.Join(root, "etc/apt/sources.list.d/*.sources"), filepath.Join(root, "etc/apt/sources.list"), suite)
}

// Deb822 reads a deb822 sources file: the first URI of the first enabled
// "deb" stanza whose Suites include suite.
func Deb822(text, suite string) string {
	for _, stanza := range stanzas(text) {
		if strings.EqualFold(stanza["enabled"], "no") ||
			!slices.Contains(strings.Fields(stanza["types"]), "deb") ||
			!slices.Contains(strings.Fields(stanza["suites"]), suite) {
			continue
		}
		if uris := strings.Fields(stanza["uris"]); len(uris) > 0 {
			return uris[0]
		}
	}
	return ""
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

// OneLine reads a one-line sources file: the URI of the first
// "deb [options] URI SUITE ..." line for suite.
func OneLine(text, suite string) string {
	for _, line := range strings.Split(text, "\n") {
		line, _, _ = strings.Cut(line, "#")
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "deb" {
			continue
		}
		f = f[1:]
		if strings.HasPrefix(f[0], "[") {
			for len(f) > 0 && !strings.HasSuffix(f[0], "]") {
				f = f[1:]
			}
			if len(f) > 0 {
				f = f[1:]
			}
		}
		if len(f) >= 2 && f[1] == suite {
			return f[0]
		}
	}
	return ""
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
