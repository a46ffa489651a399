package rawfs

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestParseOptions(t *testing.T) {
	const uuid = "9c6ae55b-cf88-45b8-84e8-64990759f39d"
	tests := []struct {
		raw     string
		wantErr string
	}{
		{`{"filename": "root.ext4", "root_fs_uuid": "` + uuid + `", "size": 1073741824}`, ""},
		{`{"filename": "root.ext4", "root_fs_uuid": "` + uuid + `", "size": 1000000000, "fs_type": "ext4"}`, ""},
		{`{"root_fs_uuid": "` + uuid + `", "size": 1073741824}`, `option "filename": required`},
		{`{"filename": "a/b", "root_fs_uuid": "` + uuid + `", "size": 1073741824}`, `option "filename"`},
		{`{"filename": "..", "root_fs_uuid": "` + uuid + `", "size": 1073741824}`, `option "filename"`},
		{`{"filename": "f", "size": 1073741824}`, `option "root_fs_uuid": required`},
		{`{"filename": "f", "root_fs_uuid": "9c6ae55b-cf88-45b8-84e8-64990759f39z", "size": 1073741824}`, `option "root_fs_uuid": "9c6ae55b-cf88-45b8-84e8-64990759f39z" is not a UUID`},
		{`{"filename": "f", "root_fs_uuid": "` + uuid + `"}`, `option "size": required`},
		{`{"filename": "f", "root_fs_uuid": "` + uuid + `", "size": 4096}`, `option "size": 4096 bytes is too small`},
		{`{"filename": "f", "root_fs_uuid": "` + uuid + `", "size": -1}`, `option "size"`},
		{`{"filename": "f", "root_fs_uuid": "` + uuid + `", "size": 1.5e9}`, `option "size": want integer`},
		{`{"filename": "f", "root_fs_uuid": "` + uuid + `", "size": 1073741824, "fs_type": "xfs"}`, `option "fs_type": "xfs" is not supported`},
		{`{"filename": "f", "root_fs_uuid": "` + uuid + `", "size": 1073741824, "label": "x"}`, `unknown option "label"`},
		{`[]`, `options: want an object`},
	}
	for _, test := range tests {
		o, err := ParseOptions(json.RawMessage(test.raw))
		if test.wantErr == "" {
			if err != nil {
				t.Errorf("%s: %v", test.raw, err)
			} else if o.FSType != "ext4" {
				t.Errorf("%s: fs_type %q, want the default ext4", test.raw, o.FSType)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), test.wantErr) {
			t.Errorf("%s: %v, want an error with %q", test.raw, err, test.wantErr)
		}
	}
}
