package daemon

import (
	"testing"

	"github.com/forge-build/forge/cas/node"
)

// TestClampWriter stores nodes through a clampWriter and reads them back:
// no stored mtime is later than the epoch, earlier ones are untouched, and
// the hash returned is the stored (clamped) node's.
func TestClampWriter(t *testing.T) {
	const epoch = 1783764997
	tests := []struct {
		name     string
		sec      int64
		nsec     uint32
		wantSec  int64
		wantNsec uint32
	}{
		{"later", epoch + 86400, 5, epoch, 0},
		{"epoch with nanoseconds", epoch, 1, epoch, 0},
		{"exactly the epoch", epoch, 0, epoch, 0},
		{"earlier", epoch - 1, 999999999, epoch - 1, 999999999},
		{"before 1970", -10, 0, -10, 0},
	}
	d := testDaemon(t)
	cw, err := d.store.NewWriter()
	if err != nil {
		t.Fatal(err)
	}
	defer cw.Close()
	w := clampWriter{casWriter{cw}, epoch}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := &node.Node{Type: node.TypeSymlink, Perm: 0o777, Nlink: 1, Target: "x", MtimeSec: tt.sec, MtimeNsec: tt.nsec}
			h, err := w.PutNode(n)
			if err != nil {
				t.Fatal(err)
			}
			if n.MtimeSec != tt.sec || n.MtimeNsec != tt.nsec {
				t.Errorf("PutNode changed its argument's mtime to %d.%09d", n.MtimeSec, n.MtimeNsec)
			}
			if err := cw.Commit(h); err != nil {
				t.Fatal(err)
			}
			got, err := d.store.Node(h)
			if err != nil {
				t.Fatal(err)
			}
			if got.MtimeSec != tt.wantSec || got.MtimeNsec != tt.wantNsec {
				t.Errorf("stored mtime %d.%09d, want %d.%09d", got.MtimeSec, got.MtimeNsec, tt.wantSec, tt.wantNsec)
			}
		})
	}
}
