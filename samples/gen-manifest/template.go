package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/forge-build/forge/internal/deb822"
)

// resolveTemplate pins the Debian packages of a format-2 manifest: every
// pipeline that starts with org.osbuild.mmdebstrap gets its packages, and
// those of each org.osbuild.apt after it, resolved against mirror. Each
// such stage gets two org.osbuild.files inputs, "packages" (the .debs)
// and "index" (their stanzas from the archive's Packages), and the
// manifest gets their sources: org.osbuild.curl items under archive (the
// URL the manifest names; mirror when empty) and org.osbuild.inline items
// for the indices. mmdebstrap's "mirror" option, the tree's apt source,
// becomes archive too. Pipelines without a source-epoch get the Release's
// Date.
func resolveTemplate(ctx context.Context, m map[string]any, mirror, archive string, log io.Writer) error {
	if v, _ := m["version"].(string); v != "2" {
		return fmt.Errorf("--resolve wants a format-2 manifest (\"version\": \"2\")")
	}
	if archive == "" {
		archive = mirror
	}
	curl := map[string]any{}
	inline := map[string]any{}
	pipelines, _ := m["pipelines"].([]any)
	var epoch *int64
	for pi, pv := range pipelines {
		p, _ := pv.(map[string]any)
		stages, _ := p["stages"].([]any)
		if len(stages) == 0 {
			continue
		}
		first, _ := stages[0].(map[string]any)
		if first["type"] != "org.osbuild.mmdebstrap" {
			continue
		}
		e, err := resolvePipeline(ctx, fmt.Sprintf("pipelines[%d]", pi), stages, mirror, archive, curl, inline, log)
		if err != nil {
			return err
		}
		if epoch == nil {
			epoch = &e
		}
	}
	if epoch == nil {
		return fmt.Errorf("no pipeline starts with org.osbuild.mmdebstrap: nothing to resolve")
	}
	for _, pv := range pipelines {
		p, _ := pv.(map[string]any)
		if _, ok := p["source-epoch"]; !ok && p != nil {
			p["source-epoch"] = *epoch
		}
	}
	sources, _ := m["sources"].(map[string]any)
	if sources == nil {
		sources = map[string]any{}
		m["sources"] = sources
	}
	for name, items := range map[string]map[string]any{"org.osbuild.curl": curl, "org.osbuild.inline": inline} {
		src, _ := sources[name].(map[string]any)
		if src == nil {
			src = map[string]any{}
			sources[name] = src
		}
		old, _ := src["items"].(map[string]any)
		if old == nil {
			old = map[string]any{}
			src["items"] = old
		}
		for k, v := range items {
			old[k] = v
		}
	}
	return nil
}

// stageOptions is what the resolver reads of the two stages' options.
type stageOptions struct {
	Suite         string   `json:"suite"`
	Variant       string   `json:"variant"`
	Components    []string `json:"components"`
	Packages      []string `json:"packages"`
	Keyrings      []string `json:"keyrings"`
	Architectures []string `json:"architectures"`
	Recommends    bool     `json:"recommends"`
}

func decodeOptions(st map[string]any) (stageOptions, error) {
	var o stageOptions
	raw, err := json.Marshal(st["options"])
	if err != nil {
		return o, err
	}
	return o, json.Unmarshal(raw, &o)
}

// resolvePipeline resolves one pipeline's mmdebstrap stage and the apt
// stages after it, and returns the archive's Release date.
func resolvePipeline(ctx context.Context, where string, stages []any, mirror, archive string, curl, inline map[string]any, log io.Writer) (int64, error) {
	first := stages[0].(map[string]any)
	o, err := decodeOptions(first)
	if err != nil {
		return 0, fmt.Errorf("%s.stages[0].options: %w", where, err)
	}
	if o.Suite == "" {
		return 0, fmt.Errorf("%s.stages[0].options.suite: required", where)
	}
	if o.Variant == "" {
		o.Variant = "minbase"
	}
	if len(o.Components) == 0 {
		o.Components = []string{"main"}
	}
	keyring := debianKeyring
	if len(o.Keyrings) > 0 {
		keyring = o.Keyrings[0]
	}
	arch := ""
	if len(o.Architectures) > 0 {
		arch = o.Architectures[0]
	}
	fmt.Fprintf(log, "gen-manifest: resolving %s %s from %s\n", o.Suite, o.Variant, mirror)
	r, err := newResolver(ctx, mirror, o.Suite, o.Components, arch, keyring, log)
	if err != nil {
		return 0, err
	}
	defer r.Close()
	epoch, err := r.releaseEpoch()
	if err != nil {
		return 0, err
	}
	ps, err := r.bootstrap(ctx, o.Variant, o.Packages)
	if err != nil {
		return 0, fmt.Errorf("%s.stages[0]: %w", where, err)
	}
	if err := setInputs(first, ps, archive, curl, inline); err != nil {
		return 0, fmt.Errorf("%s.stages[0]: %w", where, err)
	}
	first["options"].(map[string]any)["mirror"] = archive
	fmt.Fprintf(log, "gen-manifest: %s.stages[0] (org.osbuild.mmdebstrap): %d packages\n", where, len(ps))
	for i, sv := range stages[1:] {
		st, _ := sv.(map[string]any)
		if st["type"] != "org.osbuild.apt" {
			continue
		}
		path := fmt.Sprintf("%s.stages[%d]", where, i+1)
		ao, err := decodeOptions(st)
		if err != nil {
			return 0, fmt.Errorf("%s.options: %w", path, err)
		}
		args := ao.Packages
		if ao.Recommends {
			args = append([]string{"-o", "APT::Install-Recommends=true"}, args...)
		}
		ps, err := r.install(ctx, path+" (org.osbuild.apt)", args)
		if err != nil {
			return 0, err
		}
		if err := setInputs(st, ps, archive, curl, inline); err != nil {
			return 0, fmt.Errorf("%s: %w", path, err)
		}
		fmt.Fprintf(log, "gen-manifest: %s (org.osbuild.apt): %d packages\n", path, len(ps))
	}
	return epoch, nil
}

// setInputs gives a stage its "packages" and "index" inputs, and adds
// their sources.
func setInputs(st map[string]any, ps []deb822.Paragraph, archive string, curl, inline map[string]any) error {
	if len(ps) == 0 {
		return fmt.Errorf("installs no package: nothing to pin (is everything it names installed already?)")
	}
	p, err := pin(ps, archive)
	if err != nil {
		return err
	}
	refs := map[string]any{}
	for sum, url := range p.debs {
		refs[sum] = map[string]any{}
		curl[sum] = map[string]any{"url": url}
	}
	key, item := inlineItem(p.index)
	inline[key] = item
	inputs, _ := st["inputs"].(map[string]any)
	if inputs == nil {
		inputs = map[string]any{}
		st["inputs"] = inputs
	}
	inputs["packages"] = map[string]any{"type": "org.osbuild.files", "origin": "org.osbuild.source", "references": refs}
	inputs["index"] = map[string]any{"type": "org.osbuild.files", "origin": "org.osbuild.source", "references": map[string]any{key: map[string]any{}}}
	return nil
}

// retarget points the manifest's downloads of archive's files at mirror:
// the org.osbuild.curl items whose URL is under the archive URL that the
// manifest's org.osbuild.mmdebstrap stages name. The stages themselves,
// and so their IDs and trees, stay as they are: which mirror a host
// downloads from is its own business. It returns how many URLs changed.
func retarget(m map[string]any, mirror string) (int, error) {
	var archives []string
	pipelines, _ := m["pipelines"].([]any)
	for _, pv := range pipelines {
		p, _ := pv.(map[string]any)
		stages, _ := p["stages"].([]any)
		for _, sv := range stages {
			st, _ := sv.(map[string]any)
			if st["type"] != "org.osbuild.mmdebstrap" {
				continue
			}
			if opts, _ := st["options"].(map[string]any); opts != nil {
				if a, _ := opts["mirror"].(string); a != "" {
					archives = append(archives, strings.TrimSuffix(a, "/")+"/")
				}
			}
		}
	}
	sources, _ := m["sources"].(map[string]any)
	curl, _ := sources["org.osbuild.curl"].(map[string]any)
	items, _ := curl["items"].(map[string]any)
	mirror = strings.TrimSuffix(mirror, "/") + "/"
	n := 0
	for sum, v := range items {
		var url string
		switch item := v.(type) {
		case string:
			url = item
		case map[string]any:
			url, _ = item["url"].(string)
		}
		for _, a := range archives {
			if rest, ok := strings.CutPrefix(url, a); ok && a != mirror {
				switch item := v.(type) {
				case string:
					items[sum] = mirror + rest
				case map[string]any:
					item["url"] = mirror + rest
				}
				n++
				break
			}
		}
	}
	return n, nil
}
