package remote

import (
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/forge-build/forge/remote/objstore"
)

// ConfigFile is where, in a store's directory, its remotes are kept. It
// holds where each bucket is, never credentials.
const ConfigFile = "remotes.json"

// Config is a named remote: a bucket and how to reach it.
type Config struct {
	Name string `json:"name"`
	// URL is s3://BUCKET[/PREFIX].
	URL      string `json:"url"`
	Endpoint string `json:"endpoint,omitempty"`
	Region   string `json:"region,omitempty"`
	CACert   string `json:"ca_cert,omitempty"`
}

// Location is where the remote's objects are.
func (c Config) Location() objstore.Location {
	bucket, prefix, _ := parseS3URL(c.URL)
	return objstore.Location{Endpoint: c.Endpoint, Region: c.Region, Bucket: bucket, Prefix: prefix, CACert: c.CACert}
}

var remoteName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// bucketName is S3's rule for new buckets: 3 to 63 lowercase letters,
// digits, dots and hyphens, starting and ending with a letter or digit.
var bucketName = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$`)

// Validate checks every field, so that a remote that was added can be
// used.
func (c Config) Validate() error {
	if !remoteName.MatchString(c.Name) {
		return fmt.Errorf("remote name %q: want 1 to 64 letters, digits, '.', '_' or '-', starting with a letter or digit", c.Name)
	}
	if _, _, err := parseS3URL(c.URL); err != nil {
		return err
	}
	if c.Endpoint != "" {
		u, err := url.Parse(c.Endpoint)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil {
			return fmt.Errorf("endpoint %q: want http://HOST[:PORT] or https://HOST[:PORT], without a path or credentials", c.Endpoint)
		}
	}
	if c.CACert != "" {
		if !filepath.IsAbs(c.CACert) {
			return fmt.Errorf("CA certificate %q: want an absolute path", c.CACert)
		}
		pem, err := os.ReadFile(c.CACert)
		if err != nil {
			return fmt.Errorf("CA certificate: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("CA certificate %s: no PEM certificate in it", c.CACert)
		}
	}
	return nil
}

// parseS3URL splits s3://BUCKET[/PREFIX].
func parseS3URL(s string) (bucket, prefix string, err error) {
	rest, ok := strings.CutPrefix(s, "s3://")
	if !ok {
		return "", "", fmt.Errorf("remote URL %q: want s3://BUCKET[/PREFIX]", s)
	}
	bucket, prefix, _ = strings.Cut(rest, "/")
	if !bucketName.MatchString(bucket) || strings.Contains(bucket, "..") {
		return "", "", fmt.Errorf("remote URL %q: bucket %q: want 3 to 63 lowercase letters, digits, '.' or '-'", s, bucket)
	}
	prefix = strings.TrimSuffix(prefix, "/")
	if prefix != "" {
		for _, part := range strings.Split(prefix, "/") {
			if part == "" || part == "." || part == ".." || strings.ContainsFunc(part, func(r rune) bool { return r < ' ' || r == 0x7f }) {
				return "", "", fmt.Errorf("remote URL %q: prefix %q: want plain path components", s, prefix)
			}
		}
	}
	return bucket, prefix, nil
}

// Configs are a store's remotes.
type Configs struct {
	Remotes []Config `json:"remotes"`
}

// LoadConfigs reads the remotes of the store in dir; none is not an error.
func LoadConfigs(dir string) (Configs, error) {
	var cs Configs
	b, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if errors.Is(err, os.ErrNotExist) {
		return cs, nil
	}
	if err != nil {
		return cs, err
	}
	if err := json.Unmarshal(b, &cs); err != nil {
		return cs, fmt.Errorf("%s: %w", filepath.Join(dir, ConfigFile), err)
	}
	return cs, nil
}

// Save writes the remotes whole or not at all.
func (cs Configs) Save(dir string) error {
	sort.Slice(cs.Remotes, func(i, j int) bool { return cs.Remotes[i].Name < cs.Remotes[j].Name })
	b, err := json.MarshalIndent(cs, "", "  ")
	if err != nil {
		return err
	}
	path := filepath.Join(dir, ConfigFile)
	tmp, err := os.CreateTemp(dir, ConfigFile+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o644); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// Find returns the remote named name, or, with name "", the only one.
func (cs Configs) Find(name string) (Config, error) {
	if name == "" {
		switch len(cs.Remotes) {
		case 0:
			return Config{}, errors.New("no remote: add one with 'forge store remote add NAME s3://BUCKET --endpoint URL'")
		case 1:
			return cs.Remotes[0], nil
		}
		names := make([]string, len(cs.Remotes))
		for i, r := range cs.Remotes {
			names[i] = r.Name
		}
		return Config{}, fmt.Errorf("several remotes (%s): say which with --remote NAME", strings.Join(names, ", "))
	}
	for _, r := range cs.Remotes {
		if r.Name == name {
			return r, nil
		}
	}
	return Config{}, fmt.Errorf("no remote named %q ('forge store remote ls' lists them)", name)
}
