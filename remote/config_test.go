package remote

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	tests := []struct {
		c    Config
		want string // "" valid, else part of the error
	}{
		{Config{Name: "shared", URL: "s3://forge-cache"}, ""},
		{Config{Name: "shared", URL: "s3://forge-cache/builds/x86_64/", Endpoint: "https://s3.example.net:8333"}, ""},
		{Config{Name: "a.b_c-1", URL: "s3://b.c-d", Endpoint: "http://127.0.0.1:9000/"}, ""},
		{Config{Name: "", URL: "s3://forge-cache"}, "remote name"},
		{Config{Name: "-x", URL: "s3://forge-cache"}, "remote name"},
		{Config{Name: "a/b", URL: "s3://forge-cache"}, "remote name"},
		{Config{Name: "x", URL: "forge-cache"}, "want s3://BUCKET"},
		{Config{Name: "x", URL: "https://forge-cache"}, "want s3://BUCKET"},
		{Config{Name: "x", URL: "s3://Forge"}, "bucket"},
		{Config{Name: "x", URL: "s3://ab"}, "bucket"},
		{Config{Name: "x", URL: "s3://a..b"}, "bucket"},
		{Config{Name: "x", URL: "s3://bucket/../up"}, "prefix"},
		{Config{Name: "x", URL: "s3://bucket/a//b"}, "prefix"},
		{Config{Name: "x", URL: "s3://bucket/a\nb"}, "prefix"},
		{Config{Name: "x", URL: "s3://bucket", Endpoint: "127.0.0.1:9000"}, "endpoint"},
		{Config{Name: "x", URL: "s3://bucket", Endpoint: "ftp://host"}, "endpoint"},
		{Config{Name: "x", URL: "s3://bucket", Endpoint: "https://user:pw@host"}, "endpoint"},
		{Config{Name: "x", URL: "s3://bucket", Endpoint: "https://host/path"}, "endpoint"},
		{Config{Name: "x", URL: "s3://bucket", CACert: "relative.pem"}, "absolute"},
		{Config{Name: "x", URL: "s3://bucket", CACert: "/nonexistent/ca.pem"}, "CA certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.c.Name+" "+tt.c.URL+" "+tt.c.Endpoint, func(t *testing.T) {
			err := tt.c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("refused: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("err %v, want one saying %q", err, tt.want)
			}
		})
	}
	loc := Config{Name: "x", URL: "s3://bucket/a/b/", Endpoint: "http://e:1", Region: "r"}.Location()
	if loc.Bucket != "bucket" || loc.Prefix != "a/b" || loc.Endpoint != "http://e:1" || loc.Region != "r" {
		t.Errorf("Location() = %+v", loc)
	}
}

func TestConfigsSaveFind(t *testing.T) {
	dir := t.TempDir()
	cs, err := LoadConfigs(dir)
	if err != nil || len(cs.Remotes) != 0 {
		t.Fatalf("a store without remotes: %+v, %v", cs, err)
	}
	if _, err := cs.Find(""); err == nil || !strings.Contains(err.Error(), "remote add") {
		t.Errorf("Find with no remotes: %v", err)
	}
	cs.Remotes = []Config{{Name: "b", URL: "s3://bbb"}, {Name: "a", URL: "s3://aaa"}}
	if err := cs.Save(dir); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, ConfigFile))
	if err != nil || fi.Mode().Perm() != 0o644 {
		t.Fatalf("saved file: %v, %v", fi, err)
	}
	cs, err = LoadConfigs(dir)
	if err != nil || len(cs.Remotes) != 2 || cs.Remotes[0].Name != "a" {
		t.Fatalf("loaded %+v, %v", cs, err)
	}
	if c, err := cs.Find("b"); err != nil || c.URL != "s3://bbb" {
		t.Errorf("Find(b) = %+v, %v", c, err)
	}
	if _, err := cs.Find(""); err == nil || !strings.Contains(err.Error(), "--remote") {
		t.Errorf("Find(\"\") with two remotes: %v", err)
	}
	if _, err := cs.Find("c"); err == nil {
		t.Errorf("Find(c) found a remote")
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("Save left %d files, want 1", len(entries))
	}
}
