package overlay

import "testing"

// TestLowerOf: where in the base tree the lower side of an upper entry
// is, from what overlayfs recorded (Documentation/filesystems/overlayfs.rst:
// redirects are absolute from the layer's root, or a name in the parent's
// lower directory; an opaque directory has no lower side).
func TestLowerOf(t *testing.T) {
	for _, tc := range []struct {
		name       string
		e          upperEntry
		parentPath string
		entry      string
		want       string
		wantOK     bool
	}{
		{"same name below the root", upperEntry{}, "", "etc", "etc", true},
		{"same name below a directory", upperEntry{}, "usr/lib", "x", "usr/lib/x", true},
		{"opaque", upperEntry{opaque: true}, "usr", "x", "", false},
		{"opaque wins over a redirect", upperEntry{opaque: true, redirect: "/a"}, "usr", "x", "", false},
		{"absolute redirect", upperEntry{redirect: "/a/b"}, "usr", "x", "a/b", true},
		{"relative redirect: renamed in its directory", upperEntry{redirect: "old"}, "usr", "new", "usr/old", true},
		{"relative redirect below the root", upperEntry{redirect: "old"}, "", "new", "old", true},
		{"parent without a lower side", upperEntry{}, noLower, "x", "", false},
		{"relative redirect, parent without a lower side", upperEntry{redirect: "old"}, noLower, "x", "", false},
		{"absolute redirect, parent without a lower side", upperEntry{redirect: "/a"}, noLower, "x", "a", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := lowerOf(&tc.e, tc.parentPath, tc.entry)
			if got != tc.want || ok != tc.wantOK {
				t.Errorf("lowerOf(%+v, %q, %q) = %q, %v; want %q, %v", tc.e, tc.parentPath, tc.entry, got, ok, tc.want, tc.wantOK)
			}
		})
	}
}
