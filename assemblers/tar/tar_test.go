package tar

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	tests := []struct {
		raw      string
		wantErr  string
		wantArgs string
	}{
		{`{"filename": "root.tar"}`, "",
			"--create --file /out/f --directory /tree --numeric-owner --sparse --sort=name --acls --selinux --xattrs --xattrs-include=* ."},
		{`{"filename": "root.tar.xz", "compression": "xz", "selinux": false}`, "",
			"--create --file /out/f --directory /tree --numeric-owner --sparse --sort=name --xz --acls --xattrs --xattrs-include=* ."},
		{`{"filename": "t", "acls": false, "selinux": false, "xattrs": false, "compression": "gzip"}`, "",
			"--create --file /out/f --directory /tree --numeric-owner --sparse --sort=name --gzip ."},
		{`{}`, `option "filename": required`, ""},
		{`{"filename": ""}`, `option "filename": required`, ""},
		{`{"filename": "../escape.tar"}`, `option "filename"`, ""},
		{`{"filename": "a/b.tar"}`, `option "filename": "a/b.tar" must be a plain file name`, ""},
		{`{"filename": "."}`, `option "filename"`, ""},
		{`{"filename": "t", "compression": "zstd"}`, `option "compression": "zstd" is not one of bzip2, xz, lzip, lzma, lzop, gzip`, ""},
		{`{"filename": "t", "compression": ""}`, `option "compression": "" is not one of`, ""},
		{`{"filename": "t", "compression": "--to-command=sh"}`, `option "compression"`, ""},
		{`{"filename": "t", "acls": "yes"}`, `option "acls": want bool`, ""},
		{`{"filename": "t", "level": 9}`, `unknown option "level"`, ""},
	}
	for _, test := range tests {
		o, err := ParseOptions(json.RawMessage(test.raw))
		if test.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), test.wantErr) {
				t.Errorf("%s: %v, want an error with %q", test.raw, err, test.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", test.raw, err)
			continue
		}
		if got := strings.Join(o.Args("/tree", "/out/f"), " "); got != test.wantArgs {
			t.Errorf("%s: tar %s\nwant  tar %s", test.raw, got, test.wantArgs)
		}
	}
}
