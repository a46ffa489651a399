package xattr

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// file makes a file with the user.* xattrs attrs, or skips t where the
// temporary directory's filesystem has none.
func file(t *testing.T, attrs map[string][]byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for name, value := range attrs {
		if err := unix.Setxattr(p, name, value, 0); errors.Is(err, unix.ENOTSUP) {
			t.Skipf("needs user.* xattrs in %s: %v", filepath.Dir(p), err)
		} else if err != nil {
			t.Fatal(err)
		}
	}
	return p
}

func TestListAndGet(t *testing.T) {
	many := map[string][]byte{}
	for i := range 60 {
		// 60 names of about 40 bytes: more than List's first buffer.
		many[fmt.Sprintf("user.%s-%02d", strings.Repeat("n", 32), i)] = []byte{byte(i)}
	}
	tests := []struct {
		name  string
		attrs map[string][]byte
	}{
		{"none", nil},
		{"one", map[string][]byte{"user.a": []byte("value")}},
		{"empty value", map[string][]byte{"user.empty": {}}},
		{"large value", map[string][]byte{"user.big": bytes.Repeat([]byte("x"), 3000)}},
		{"many names", many},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := file(t, tt.attrs)
			names, err := List(func(buf []byte) (int, error) { return unix.Llistxattr(p, buf) })
			if err != nil {
				t.Fatal(err)
			}
			var user []string
			for _, n := range names {
				if strings.HasPrefix(n, "user.") {
					user = append(user, n)
				}
			}
			slices.Sort(user)
			var want []string
			for n := range tt.attrs {
				want = append(want, n)
			}
			slices.Sort(want)
			if !slices.Equal(user, want) {
				t.Fatalf("List: %q, want %q", user, want)
			}
			for _, n := range want {
				v, err := Get(func(buf []byte) (int, error) { return unix.Lgetxattr(p, n, buf) })
				if err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(v, tt.attrs[n]) {
					t.Errorf("Get(%s): %d bytes, want %d", n, len(v), len(tt.attrs[n]))
				}
			}
		})
	}
}

// A short value, as nearly every file of a labelled tree has, costs one
// getxattr call: Get is on the import's hot path.
func TestGetShortValueIsOneCall(t *testing.T) {
	p := file(t, map[string][]byte{"user.label": []byte("system_u:object_r:bin_t:s0")})
	calls := 0
	v, err := Get(func(buf []byte) (int, error) { calls++; return unix.Lgetxattr(p, "user.label", buf) })
	if err != nil {
		t.Fatal(err)
	}
	if string(v) != "system_u:object_r:bin_t:s0" || calls != 1 {
		t.Fatalf("Get: %q in %d calls, want the label in 1", v, calls)
	}
}

func TestErrors(t *testing.T) {
	p := file(t, nil)
	if _, err := Get(func(buf []byte) (int, error) { return unix.Lgetxattr(p, "user.missing", buf) }); !errors.Is(err, unix.ENODATA) {
		t.Errorf("Get of a missing xattr: %v, want ENODATA", err)
	}
	missing := filepath.Join(filepath.Dir(p), "missing")
	if _, err := List(func(buf []byte) (int, error) { return unix.Llistxattr(missing, buf) }); !errors.Is(err, unix.ENOENT) {
		t.Errorf("List of a missing file: %v, want ENOENT", err)
	}
	// A filesystem without xattrs answers ENOTSUP: no names, no error.
	names, err := List(func([]byte) (int, error) { return 0, unix.ENOTSUP })
	if names != nil || err != nil {
		t.Errorf("List on ENOTSUP: %q, %v; want none and no error", names, err)
	}
}
