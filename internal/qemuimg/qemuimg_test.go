package qemuimg

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func parse(t *testing.T, s string) Format {
	t.Helper()
	var f Format
	dec := json.NewDecoder(strings.NewReader(s))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return f
}

// formatTests are formats osbuild's schema accepts, with the qemu-img
// arguments osbuild's stage (f6b23dbc) gives them, or forge's refusal.
var formatTests = []struct {
	format   string
	wantArgs string
	wantErr  string
}{
	{`{"type": "qcow2"}`, "convert -O qcow2 -c", ""},
	{`{"type": "qcow2", "compression": false}`, "convert -O qcow2", ""},
	{`{"type": "qcow2", "compression": true, "compat": "0.10"}`, "convert -O qcow2 -c -o compat=0.10", ""},
	{`{"type": "qcow2", "compression": false, "compat": "1.1"}`, "convert -O qcow2 -o compat=1.1", ""},
	{`{"type": "qcow2", "compat": "v3"}`, "convert -O qcow2 -c -o compat=v3", ""},
	{`{"type": "vdi"}`, "convert -O vdi", ""},
	{`{"type": "vhdx"}`, "convert -O vhdx", ""},
	{`{"type": "vmdk"}`, "convert -O vmdk -c", ""},
	{`{"type": "vmdk", "compression": false}`, "convert -O vmdk", ""},
	{`{"type": "vmdk", "adapter_type": "lsilogic", "compat6": true, "subformat": "monolithicSparse"}`,
		"convert -O vmdk -c -o adapter_type=lsilogic,compat6,subformat=monolithicSparse", ""},
	{`{"type": "vmdk", "adapter_type": "legacyESX"}`, "convert -O vmdk -c -o adapter_type=legacyESX", ""},
	{`{"type": "vmdk", "compat6": false, "subformat": "streamOptimized"}`, "convert -O vmdk -c -o subformat=streamOptimized", ""},
	{`{"type": "vmdk", "subformat": "twoGbMaxExtentSparse"}`, "convert -O vmdk -c -o subformat=twoGbMaxExtentSparse", ""},
	// osbuild passes -c here too, and qemu-img fails ("invalid cluster
	// size"); forge leaves it out unless asked.
	{`{"type": "vmdk", "subformat": "monolithicFlat"}`, "convert -O vmdk -o subformat=monolithicFlat", ""},
	{`{"type": "vmdk", "subformat": "twoGbMaxExtentFlat", "compression": false}`, "convert -O vmdk -o subformat=twoGbMaxExtentFlat", ""},
	{`{"type": "vmdk", "subformat": "monolithicFlat", "compression": true}`, "", "compression: a monolithicFlat VMDK holds raw data"},
	{`{"type": "vpc"}`, "convert -O vpc -o subformat=fixed,force_size", ""},
	{`{"type": "vpc", "subformat": "dynamic"}`, "convert -O vpc -o subformat=dynamic,force_size", ""},
	{`{"type": "vpc", "subformat": "fixed", "force_size": false}`, "convert -O vpc -o subformat=fixed", ""},
	// Refused: by osbuild's schema too.
	{`{"type": "raw"}`, "", `type: "raw" is not one of qcow2, vdi, vmdk, vpc, vhdx`},
	{`{}`, "", `type: "" is not one of`},
	{`{"type": "vdi", "compression": true}`, "", `compression: not an option of type "vdi" (it takes none)`},
	{`{"type": "qcow2", "subformat": "fixed"}`, "", `subformat: not an option of type "qcow2" (it takes compression, compat)`},
	{`{"type": "vpc", "compression": false}`, "", `compression: not an option of type "vpc"`},
	{`{"type": "vmdk", "force_size": true}`, "", `force_size: not an option of type "vmdk"`},
	{`{"type": "vmdk", "subformat": "fixed"}`, "", `subformat: "fixed" is not one of monolithicSparse`},
	{`{"type": "vmdk", "adapter_type": "scsi"}`, "", `adapter_type: "scsi" is not one of ide, lsilogic, buslogic, legacyESX`},
	{`{"type": "vpc", "subformat": "monolithicSparse"}`, "", `subformat: "monolithicSparse" is not one of fixed, dynamic`},
	// Accepted by osbuild's schema (any string), refused by qemu-img.
	{`{"type": "qcow2", "compat": "2"}`, "", `compat: "2" is not one of 0.10, 1.1, v2, v3`},
}

func TestFormat(t *testing.T) {
	for _, tt := range formatTests {
		t.Run(tt.format, func(t *testing.T) {
			f := parse(t, tt.format)
			err := f.Check()
			if tt.wantErr != "" {
				var fe *FieldError
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) || !errors.As(err, &fe) {
					t.Fatalf("Check: %v, want a FieldError with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("Check: %v", err)
			}
			if got := strings.Join(f.ConvertArgs(""), " "); got != tt.wantArgs {
				t.Errorf("ConvertArgs: %q, want %q", got, tt.wantArgs)
			}
		})
	}
	if got := strings.Join(Format{Type: "vdi"}.ConvertArgs("raw"), " "); got != "convert -f raw -O vdi" {
		t.Errorf("with a source format: %q", got)
	}
}

// testImage is a small sparse raw disk with some data in it.
func testImage(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.raw")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(8 << 20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 1 << 20, 5<<20 + 4096} {
		if _, err := f.WriteAt(bytes.Repeat([]byte("forge "), 20000), off); err != nil {
			t.Fatal(err)
		}
	}
	return p
}

// TestQemuImgTakesThem runs the qemu-img installed here with the
// arguments of every accepted format: each converts, and what comes out
// reads back as the same disk.
func TestQemuImgTakesThem(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("%v (install qemu-utils)", err)
	}
	src := testImage(t)
	for _, tt := range formatTests {
		if tt.wantErr != "" {
			continue
		}
		t.Run(tt.format, func(t *testing.T) {
			f := parse(t, tt.format)
			out := filepath.Join(t.TempDir(), "disk."+f.Type)
			args := append(f.ConvertArgs("raw"), src, out)
			if b, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
				t.Fatalf("qemu-img %s: %v\n%s", strings.Join(args, " "), err, b)
			}
			// A fixed VHD is not probed as vpc: say what it is.
			if b, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", f.Type, src, out).CombinedOutput(); err != nil {
				t.Errorf("qemu-img compare: %v\n%s", err, b)
			}
		})
	}
}

// TestQCOW2Reproducible: the same input gives the same qcow2 bytes,
// compressed or not.
func TestQCOW2Reproducible(t *testing.T) {
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("%v (install qemu-utils)", err)
	}
	src := testImage(t)
	for _, format := range []string{`{"type": "qcow2"}`, `{"type": "qcow2", "compression": false}`} {
		var outs [][]byte
		for i := range 2 {
			out := filepath.Join(t.TempDir(), "disk.qcow2")
			args := append(parse(t, format).ConvertArgs("raw"), src, out)
			if b, err := exec.Command("qemu-img", args...).CombinedOutput(); err != nil {
				t.Fatalf("run %d: qemu-img: %v\n%s", i, err, b)
			}
			b, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			outs = append(outs, b)
		}
		if !bytes.Equal(outs[0], outs[1]) {
			t.Errorf("%s: two conversions of the same disk differ", format)
		}
	}
}
