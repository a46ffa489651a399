package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	"github.com/forge-build/forge/internal/deb822"
)

// The resolver pins a Debian tree's packages: which .debs
// org.osbuild.mmdebstrap and each org.osbuild.apt after it install, by
// SHA256, with the archive's own Packages stanzas for them.
//
// It asks apt itself, in a scratch directory that stands in for the tree:
// apt-get update there checks the archive's InRelease signature against
// the keyring and each index against the Release's hashes, and apt-get -s
// install, once per step, says what that step would install on the dpkg
// status the steps before it leave. The steps are mmdebstrap's own: its
// essential set on an empty status, then its variant's priorities and
// the included packages, then each apt stage's packages. Measured on
// bookworm minbase plus a kernel (samples/DEBIAN-PINNED.md), this gives
// exactly the packages and hashes of a real install.

// debianKeyring is what the archive's InRelease is checked against.
const debianKeyring = "/usr/share/keyrings/debian-archive-keyring.gpg"

// pkgKey names one binary package in the archive.
type pkgKey struct{ name, version, arch string }

// resolver is one archive state in a scratch apt directory.
type resolver struct {
	mirror     string // where apt downloads the indices from
	suite      string
	components []string
	arch       string
	keyring    string
	dir        string
	log        io.Writer

	stanzas map[pkgKey]deb822.Paragraph // the archive's Packages, as verified by apt
	date    string                      // the Release's Date field
}

// newResolver makes the scratch directory and runs apt-get update in it.
func newResolver(ctx context.Context, mirror, suite string, components []string, arch, keyring string, log io.Writer) (*resolver, error) {
	if arch == "" {
		out, err := exec.CommandContext(ctx, "dpkg", "--print-architecture").Output()
		if err != nil {
			return nil, fmt.Errorf("dpkg --print-architecture: %w", err)
		}
		arch = strings.TrimSpace(string(out))
	}
	dir, err := os.MkdirTemp("", "gen-manifest-apt-")
	if err != nil {
		return nil, err
	}
	r := &resolver{mirror: strings.TrimSuffix(mirror, "/"), suite: suite, components: components, arch: arch, keyring: keyring, dir: dir, log: log}
	if err := r.setup(); err != nil {
		r.Close()
		return nil, err
	}
	if err := r.apt(ctx, nil, "update", "--error-on=any"); err != nil {
		r.Close()
		return nil, fmt.Errorf("apt-get update from %s (suite %s): %w", mirror, suite, err)
	}
	if err := r.readLists(); err != nil {
		r.Close()
		return nil, err
	}
	return r, nil
}

// Close removes the scratch directory.
func (r *resolver) Close() error { return os.RemoveAll(r.dir) }

// setup writes the scratch directory's apt configuration: only this
// archive, only the native architecture, and mmdebstrap's settings (no
// recommends, no translations, no package forced essential). apt still
// reads the host's apt.conf.d first, so its proxy settings apply.
func (r *resolver) setup() error {
	for _, d := range []string{"etc/apt/apt.conf.d", "etc/apt/preferences.d", "etc/apt/sources.list.d", "etc/apt/trusted.gpg.d",
		"var/lib/apt/lists/partial", "var/cache/apt/archives/partial", "var/lib/dpkg", "var/log/apt"} {
		if err := os.MkdirAll(filepath.Join(r.dir, d), 0o755); err != nil {
			return err
		}
	}
	if err := os.WriteFile(r.path("var/lib/dpkg/status"), nil, 0o644); err != nil {
		return err
	}
	conf := fmt.Sprintf(`Dir "%[1]s/";
Dir::State "var/lib/apt/";
Dir::State::status "%[1]s/var/lib/dpkg/status";
Dir::Cache "var/cache/apt/";
Dir::Log "var/log/apt/";
Dir::Etc "etc/apt/";
Dir::Etc::SourceList "%[1]s/etc/apt/sources.list";
Dir::Etc::SourceParts "%[1]s/etc/apt/sources.list.d";
Dir::Etc::Preferences "%[1]s/etc/apt/preferences";
Dir::Etc::PreferencesParts "%[1]s/etc/apt/preferences.d";
Dir::Etc::Trusted "%[1]s/etc/apt/trusted.gpg";
Dir::Etc::TrustedParts "%[1]s/etc/apt/trusted.gpg.d";
Debug::NoLocking "true";
APT::Architecture "%[2]s";
APT::Architectures { "%[2]s"; };
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
Acquire::GzipIndexes "false";
APT::Sandbox::User "root";
pkgCacheGen::ForceEssential ",";
`, r.dir, r.arch)
	if err := os.WriteFile(r.path("apt.conf"), []byte(conf), 0o644); err != nil {
		return err
	}
	src := fmt.Sprintf("deb [signed-by=%s arch=%s] %s %s %s\n", r.keyring, r.arch, r.mirror, r.suite, strings.Join(r.components, " "))
	return os.WriteFile(r.path("etc/apt/sources.list"), []byte(src), 0o644)
}

func (r *resolver) path(rel string) string { return filepath.Join(r.dir, rel) }

// apt runs apt-get with the scratch configuration; stdout goes to out
// (the log when nil), stderr to the log.
func (r *resolver) apt(ctx context.Context, out io.Writer, args ...string) error {
	cmd := exec.CommandContext(ctx, "apt-get", args...)
	cmd.Env = append(os.Environ(), "APT_CONFIG="+r.path("apt.conf"), "LC_ALL=C")
	cmd.Stdout, cmd.Stderr = r.log, r.log
	if out != nil {
		cmd.Stdout = out
	}
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("apt-get %s: %w", strings.Join(args, " "), err)
	}
	return nil
}

// readLists reads the indices apt verified: every Packages stanza, and
// the Release's Date.
func (r *resolver) readLists() error {
	lists := r.path("var/lib/apt/lists")
	pkgs, err := filepath.Glob(filepath.Join(lists, "*_Packages"))
	if err != nil {
		return err
	}
	if len(pkgs) == 0 {
		return fmt.Errorf("apt-get update from %s left no Packages index for %s/%s", r.mirror, r.suite, r.arch)
	}
	r.stanzas = make(map[pkgKey]deb822.Paragraph)
	for _, f := range pkgs {
		data, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		ps, err := deb822.Parse(data)
		if err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		for _, p := range ps {
			k := pkgKey{p.Value("Package"), p.Value("Version"), p.Value("Architecture")}
			r.stanzas[k] = p
		}
	}
	rel, err := filepath.Glob(filepath.Join(lists, "*_InRelease"))
	if err != nil || len(rel) != 1 {
		return fmt.Errorf("apt-get update from %s: want one InRelease, found %d", r.mirror, len(rel))
	}
	data, err := os.ReadFile(rel[0])
	if err != nil {
		return err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "Date:"); ok {
			r.date = strings.TrimSpace(v)
			break
		}
	}
	if r.date == "" {
		return fmt.Errorf("%s has no Date", rel[0])
	}
	return nil
}

// releaseEpoch is the Release's Date in seconds since 1970: the
// source-epoch of a tree made from this archive state. Every file the
// archive ships is older, so clamping to it changes only what the build
// wrote.
func (r *resolver) releaseEpoch() (int64, error) {
	t, err := mail.ParseDate(r.date)
	if err != nil {
		return 0, fmt.Errorf("the Release's Date %q: %w", r.date, err)
	}
	return t.Unix(), nil
}

// instRE is a line of apt-get -s install: "Inst NAME [OLD] (VERSION
// ORIGINS [ARCH])".
var instRE = regexp.MustCompile(`^Inst (\S+) (?:\[\S+\] )?\((\S+) .*\[(\S+)\]\)`)

// install simulates apt-get install of args on the scratch status and
// records what it would install as installed: the next step sees it.
// It returns the packages' stanzas, sorted by name.
func (r *resolver) install(ctx context.Context, step string, args []string) ([]deb822.Paragraph, error) {
	var out bytes.Buffer
	cmdArgs := append([]string{"-s", "-q", "install"}, args...)
	if err := r.apt(ctx, &out, cmdArgs...); err != nil {
		io.Copy(r.log, &out)
		return nil, fmt.Errorf("%s: %w", step, err)
	}
	var ps []deb822.Paragraph
	for _, line := range strings.Split(out.String(), "\n") {
		if strings.HasPrefix(line, "Remv ") {
			return nil, fmt.Errorf("%s: apt would remove a package: %s", step, line)
		}
		if !strings.HasPrefix(line, "Inst ") {
			continue
		}
		m := instRE.FindStringSubmatch(line)
		if m == nil {
			return nil, fmt.Errorf("%s: cannot read apt's line %q", step, line)
		}
		name, _, _ := strings.Cut(m[1], ":")
		k := pkgKey{name, m[2], m[3]}
		p, ok := r.stanzas[k]
		if !ok {
			return nil, fmt.Errorf("%s: apt chose %s %s (%s), which the archive's Packages index does not list", step, k.name, k.version, k.arch)
		}
		ps = append(ps, p)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i].Value("Package") < ps[j].Value("Package") })
	// Record them as installed, as dpkg would after the step.
	status, err := os.OpenFile(r.path("var/lib/dpkg/status"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		return nil, err
	}
	defer status.Close()
	for _, p := range ps {
		q := deb822.Paragraph{Fields: slices.Clone(p.Fields)}
		q.Set("Status", "install ok installed")
		if _, err := status.Write(append(q.AppendTo(nil), '\n')); err != nil {
			return nil, err
		}
	}
	return ps, nil
}

// narrow is mmdebstrap's pattern for the suite's packages of the native
// architecture that match cond.
func (r *resolver) narrow(cond string) string {
	return fmt.Sprintf("?narrow(?or(?archive(^%s$),?codename(^%s$)),?architecture(%s),%s)", r.suite, r.suite, r.arch, cond)
}

// variantPriorities are mmdebstrap's second-step patterns per variant:
// the priorities it installs on top of the essential set.
var variantPriorities = map[string]string{
	"essential": "",
	"minbase":   "?and(?priority(required),?not(?essential))",
	"required":  "?and(?priority(required),?not(?essential))",
	"buildd":    "?and(?priority(required),?not(?essential))",
	"important": "?and(?or(?priority(required),?priority(important)),?not(?essential))",
	"standard":  "?and(?or(~prequired,~pimportant,~pstandard),?not(?essential))",
}

// bootstrap resolves an org.osbuild.mmdebstrap stage: its essential step,
// then its variant's and included packages.
func (r *resolver) bootstrap(ctx context.Context, variant string, include []string) ([]deb822.Paragraph, error) {
	prio, ok := variantPriorities[variant]
	if !ok {
		return nil, fmt.Errorf("variant %q: the resolver knows mmdebstrap's essential, minbase, required, buildd, important and standard", variant)
	}
	essential, err := r.install(ctx, "essential packages", []string{r.narrow("?essential")})
	if err != nil {
		return nil, err
	}
	second := slices.Clone(include)
	if variant == "buildd" {
		second = append(second, "build-essential")
	}
	if prio != "" {
		second = append(second, r.narrow(prio))
	}
	if len(second) == 0 {
		return essential, nil
	}
	rest, err := r.install(ctx, "variant "+variant, second)
	if err != nil {
		return nil, err
	}
	all := append(essential, rest...)
	sort.Slice(all, func(i, j int) bool { return all[i].Value("Package") < all[j].Value("Package") })
	return all, nil
}

// pinned is what a stage installs, as the manifest pins it.
type pinned struct {
	// index is the stanzas, as the archive has them: the local
	// repository's Packages.
	index []byte
	// debs maps each .deb's "sha256:HEX" to its URL.
	debs map[string]string
}

// pin turns the stanzas into the stage's index and its .debs' URLs under
// archive (the URL the manifest downloads from). A URL is the archive's
// Filename as it is: apt's Filenames need no quoting (no "%" in bookworm),
// and quoting them again would break the ones apt already encoded.
func pin(ps []deb822.Paragraph, archive string) (pinned, error) {
	p := pinned{debs: make(map[string]string)}
	archive = strings.TrimSuffix(archive, "/")
	for _, st := range ps {
		sum, fn := strings.ToLower(st.Value("SHA256")), st.Value("Filename")
		if len(sum) != 64 || strings.Trim(sum, "0123456789abcdef") != "" {
			return p, fmt.Errorf("package %s: SHA256 %q is not a SHA-256", st.Value("Package"), sum)
		}
		if fn == "" || strings.HasPrefix(fn, "/") || slices.Contains(strings.Split(fn, "/"), "..") || strings.ContainsAny(fn, " \t\n?#") {
			return p, fmt.Errorf("package %s: Filename %q is not a path in the archive", st.Value("Package"), fn)
		}
		p.debs["sha256:"+sum] = archive + "/" + fn
	}
	p.index = deb822.Format(ps)
	return p, nil
}

// inlineItem is an org.osbuild.inline item holding data, and its key.
func inlineItem(data []byte) (string, map[string]any) {
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:]), map[string]any{
		"encoding": "base64",
		"data":     base64.StdEncoding.EncodeToString(data),
	}
}
