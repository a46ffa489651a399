package daemon

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/forge-build/forge/cas"
	"github.com/forge-build/forge/daemon/client"
)

func TestCheckMountpoint(t *testing.T) {
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	for _, d := range []string{"packs", "index", "tmp", client.RunsDirName + "/run-1/tree", "../elsewhere/mnt", "../store-2"} {
		if err := os.MkdirAll(filepath.Join(store, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	link := filepath.Join(dir, "link-to-packs")
	if err := os.Symlink(filepath.Join(store, "packs"), link); err != nil {
		t.Fatal(err)
	}
	storeLink := filepath.Join(dir, "store-link")
	if err := os.Symlink(store, storeLink); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, store, mp string
		ok              bool
	}{
		{"outside", store, filepath.Join(dir, "elsewhere/mnt"), true},
		{"a sibling whose name starts like the store's", store, filepath.Join(dir, "store-2"), true},
		{"a run's mountpoint", store, filepath.Join(store, client.RunsDirName, "run-1/tree"), true},
		{"packs", store, filepath.Join(store, "packs"), false},
		{"index", store, filepath.Join(store, "index"), false},
		{"tmp", store, filepath.Join(store, "tmp"), false},
		{"the store", store, store, false},
		{"the store, unclean", store, store + "/packs/..", false},
		{"the runs directory", store, filepath.Join(store, client.RunsDirName), false},
		{"a run's directory", store, filepath.Join(store, client.RunsDirName, "run-1"), false},
		{"a symlink into the store", store, link, false},
		{"through a symlinked store", storeLink, filepath.Join(store, "index"), false},
		{"above the store", store, dir, false},
		{"the root", store, "/", false},
		{"not there yet, inside", store, filepath.Join(store, "new/deeper"), false},
		{"relative store", "relative-store-that-is-not-there", filepath.Join(dir, "elsewhere/mnt"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckMountpoint(tt.store, tt.mp)
			if tt.ok {
				if err != nil {
					t.Fatalf("CheckMountpoint(%s, %s): %v", tt.store, tt.mp, err)
				}
				return
			}
			if !errors.Is(err, cas.ErrInvalidArgument) {
				t.Fatalf("CheckMountpoint(%s, %s) = %v, want an invalid argument", tt.store, tt.mp, err)
			}
			if !strings.Contains(err.Error(), tt.mp) || !strings.Contains(err.Error(), store) {
				t.Errorf("the error %q does not name the mountpoint %s and the store %s", err, tt.mp, store)
			}
		})
	}
}
