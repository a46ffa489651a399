package qemu

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/stages/stage"
)

func TestParse(t *testing.T) {
	tests := []struct {
		raw, wantName, wantArgs, wantErr string
	}{
		// osbuild's test manifests.
		{`{"filename": "disk.qcow2", "format": {"type": "qcow2", "compat": "1.1"}}`, "disk.qcow2", "convert -f raw -O qcow2 -c -o compat=1.1", ""},
		{`{"filename": "qemu.qcow2", "format": {"type": "qcow2", "compat": "1.1", "compression": false}}`, "qemu.qcow2", "convert -f raw -O qcow2 -o compat=1.1", ""},
		{`{"filename": "disk.vmdk", "format": {"type": "vmdk"}}`, "disk.vmdk", "convert -f raw -O vmdk -c", ""},
		{`{"filename": "/images/disk.vhd", "format": {"type": "vpc", "subformat": "dynamic"}}`, "images/disk.vhd", "convert -f raw -O vpc -o subformat=dynamic,force_size", ""},

		{`{"format": {"type": "qcow2"}}`, "", "", `option "filename": is required`},
		{`{"filename": "d"}`, "", "", `option "format": is required`},
		{`{"filename": "d", "format": "qcow2"}`, "", "", `option "format": want object, got string`},
		{`{"filename": "../d", "format": {"type": "qcow2"}}`, "", "", `option "filename": "../d" contains ".."`},
		{`{"filename": "", "format": {"type": "qcow2"}}`, "", "", `option "filename": "" names no file`},
		{`{"filename": "d", "format": {"type": "raw"}}`, "", "", `option "format.type": "raw" is not one of qcow2, vdi, vmdk, vpc, vhdx`},
		{`{"filename": "d", "format": {"type": "qcow2", "compat": "2.0"}}`, "", "", `option "format.compat": "2.0" is not one of 0.10, 1.1, v2, v3`},
		{`{"filename": "d", "format": {"type": "vdi", "compat": "1.1"}}`, "", "", `option "format.compat": not an option of type "vdi"`},
		{`{"filename": "d", "format": {"type": "vmdk", "subformat": "twoGbMaxExtentFlat", "compression": true}}`, "", "", `option "format.compression": a twoGbMaxExtentFlat VMDK`},
		{`{"filename": "d", "format": {"type": "qcow2", "preallocation": "full"}}`, "", "", `unknown option "preallocation"`},
		{`{"filename": "d", "format": {"type": "qcow2"}, "size": 1}`, "", "", `unknown option "size"`},
	}
	for _, tt := range tests {
		t.Run(tt.raw, func(t *testing.T) {
			p, err := parse([]byte(tt.raw))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if p.name != tt.wantName {
				t.Errorf("name %q, want %q", p.name, tt.wantName)
			}
			if got := strings.Join(p.format.ConvertArgs("raw"), " "); got != tt.wantArgs {
				t.Errorf("args %q, want %q", got, tt.wantArgs)
			}
		})
	}
}

func TestCheckInfo(t *testing.T) {
	tests := []struct {
		info, want, wantErr string
	}{
		{`{"virtual-size": 67108864, "filename": "disk.img", "format": "raw", "actual-size": 4096, "dirty-flag": false}`, "raw", ""},
		{`{"format": "qcow2", "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "compression-type": "zlib"}}}`, "qcow2", ""},
		{`{"format": "vhdx"}`, "vhdx", ""},
		{`{"format": "qcow2", "backing-filename": "/etc/shadow", "backing-filename-format": "raw"}`, "", `backing file "/etc/shadow"`},
		{`{"format": "qcow2", "format-specific": {"type": "qcow2", "data": {"compat": "1.1", "data-file": "/dev/sda"}}}`, "", `external data file "/dev/sda"`},
		{`{"format": "vmdk"}`, "", `a "vmdk" image: forge converts raw, qcow2, vdi, vpc, vhdx images`},
		{`not json`, "", "qemu-img info"},
	}
	for _, tt := range tests {
		got, err := checkInfo([]byte(tt.info))
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%s: %q, %v; want an error with %q", tt.info, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: %q, %v; want %q", tt.info, got, err, tt.want)
		}
	}
}

func haveQemuImg(t *testing.T) {
	t.Helper()
	if _, err := exec.LookPath("qemu-img"); err != nil {
		t.Fatalf("%v (install qemu-utils)", err)
	}
}

// setup makes a tree and an input holding a sparse raw disk image with
// some data, and returns stage arguments with the input.
func setup(t *testing.T) (stage.Args, string) {
	t.Helper()
	dir := t.TempDir()
	tree, in := filepath.Join(dir, "tree"), filepath.Join(dir, "input")
	for _, d := range []string{tree, in} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	img := filepath.Join(in, "disk.img")
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(16 << 20); err != nil {
		t.Fatal(err)
	}
	for _, off := range []int64{0, 3 << 20, 9<<20 + 512} {
		if _, err := f.WriteAt(bytes.Repeat([]byte("forge disk "), 30000), off); err != nil {
			t.Fatal(err)
		}
	}
	a := stage.Args{Tree: tree, Format: 2, Meta: stage.Meta{ID: "x"},
		Inputs: map[string]stage.Input{"image": {Path: in, Data: stage.InputData{Files: map[string]json.RawMessage{"disk.img": json.RawMessage("{}")}}}}}
	return a, img
}

func runWith(a stage.Args, options string) error {
	a.Options = json.RawMessage(options)
	return Run(context.Background(), a)
}

func compare(t *testing.T, raw, out, format string) {
	t.Helper()
	if b, err := exec.Command("qemu-img", "compare", "-f", "raw", "-F", format, raw, out).CombinedOutput(); err != nil {
		t.Errorf("qemu-img compare %s %s: %v\n%s", raw, out, err, b)
	}
}

func treeFiles(t *testing.T, tree string) []string {
	t.Helper()
	var names []string
	filepath.WalkDir(tree, func(p string, d os.DirEntry, err error) error {
		if p != tree {
			rel, _ := filepath.Rel(tree, p)
			names = append(names, rel)
		}
		return nil
	})
	slices.Sort(names)
	return names
}

func TestRun(t *testing.T) {
	haveQemuImg(t)
	a, raw := setup(t)
	out := filepath.Join(a.Tree, "disk.qcow2")
	if err := runWith(a, `{"filename": "disk.qcow2", "format": {"type": "qcow2", "compression": false}}`); err != nil {
		t.Fatal(err)
	}
	compare(t, raw, out, "qcow2")
	first, _ := os.ReadFile(out)
	// Again, over the first: the same bytes.
	if err := runWith(a, `{"filename": "/disk.qcow2", "format": {"type": "qcow2", "compression": false}}`); err != nil {
		t.Fatal(err)
	}
	if second, _ := os.ReadFile(out); !bytes.Equal(first, second) {
		t.Error("two conversions of the same image differ")
	}
	if got := treeFiles(t, a.Tree); !slices.Equal(got, []string{"disk.qcow2"}) {
		t.Errorf("the tree holds %q", got)
	}

	// A split VMDK: every file lands beside the output, in a directory.
	os.Mkdir(filepath.Join(a.Tree, "images"), 0o755)
	if err := runWith(a, `{"filename": "images/disk.vmdk", "format": {"type": "vmdk", "subformat": "twoGbMaxExtentFlat"}}`); err != nil {
		t.Fatal(err)
	}
	if got := treeFiles(t, a.Tree); !slices.Equal(got, []string{"disk.qcow2", "images", "images/disk-f001.vmdk", "images/disk.vmdk"}) {
		t.Errorf("the tree holds %q", got)
	}
	compare(t, raw, filepath.Join(a.Tree, "images/disk.vmdk"), "vmdk")
}

func TestRunRefuses(t *testing.T) {
	haveQemuImg(t)
	a, raw := setup(t)
	outside := t.TempDir()
	os.Symlink(outside, filepath.Join(a.Tree, "out"))
	os.Symlink("../../"+filepath.Base(outside), filepath.Join(a.Tree, "rel"))
	qcow2 := `{"filename": "%s", "format": {"type": "qcow2", "compression": false}}`
	tests := []struct {
		name, filename, wantErr string
		args                    func(a stage.Args) stage.Args
	}{
		{"directory out of the tree", "out/disk.qcow2", `option "filename": /out/disk.qcow2: its directory /out`, nil},
		{"relative link out of the tree", "rel/disk.qcow2", `option "filename": /rel/disk.qcow2: its directory /rel`, nil},
		{"missing directory", "images/disk.qcow2", `its directory /images: no such file`, nil},
		{"no input", "disk.qcow2", `the stage needs an input "image"`, func(a stage.Args) stage.Args { a.Inputs = nil; return a }},
		{"format 1", "disk.qcow2", `inputs exist in manifest format 2 only`, func(a stage.Args) stage.Args { a.Inputs, a.Format = nil, 1; return a }},
		{"two files", "disk.qcow2", `input "image" holds 2 files (a.img, disk.img), want exactly one`, func(a stage.Args) stage.Args {
			a.Inputs["image"].Data.Files["a.img"] = json.RawMessage("{}")
			return a
		}},
		{"file out of the input", "disk.qcow2", `input "image"`, func(a stage.Args) stage.Args {
			in := a.Inputs["image"]
			in.Data.Files = map[string]json.RawMessage{"../input/disk.img": json.RawMessage("{}")}
			a.Inputs = map[string]stage.Input{"image": in}
			return a
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := a
			b.Inputs = map[string]stage.Input{"image": {Path: a.Inputs["image"].Path,
				Data: stage.InputData{Files: map[string]json.RawMessage{"disk.img": json.RawMessage("{}")}}}}
			if tt.args != nil {
				b = tt.args(b)
			}
			err := runWith(b, strings.Replace(qcow2, "%s", tt.filename, 1))
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("%v, want %q", err, tt.wantErr)
			}
		})
	}
	if names, _ := os.ReadDir(outside); len(names) != 0 {
		t.Errorf("written outside the tree: %v", names)
	}

	// An input that names another file: a qcow2 over a backing file.
	backed := filepath.Join(filepath.Dir(raw), "backed.qcow2")
	if b, err := exec.Command("qemu-img", "create", "-f", "qcow2", "-F", "raw", "-b", raw, backed).CombinedOutput(); err != nil {
		t.Fatalf("qemu-img create: %v\n%s", err, b)
	}
	a.Inputs["image"].Data.Files["backed.qcow2"] = json.RawMessage("{}")
	delete(a.Inputs["image"].Data.Files, "disk.img")
	if err := runWith(a, strings.Replace(qcow2, "%s", "disk.qcow2", 1)); err == nil || !strings.Contains(err.Error(), "with the backing file") {
		t.Errorf("a backing file: %v", err)
	}
	if got := treeFiles(t, a.Tree); !slices.Equal(got, []string{"out", "rel"}) {
		t.Errorf("the tree holds %q after the refusals", got)
	}
}

// TestCanonicalHoles: two files with the same bytes, one written in full
// and one with holes where the other has zeros, end with the same holes.
func TestCanonicalHoles(t *testing.T) {
	const block = holeBlock
	content := make([]byte, 64*block)
	for _, b := range []int{0, 1, 7, 20, 21, 63} {
		for i := range block {
			content[b*block+i] = byte(b + 1)
		}
	}
	content[40*block+5] = 9 // a block with one byte set is data
	dir := t.TempDir()
	full, sparse := filepath.Join(dir, "full"), filepath.Join(dir, "sparse")
	if err := os.WriteFile(full, content, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(sparse)
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range []int{0, 1, 7, 20, 21, 40, 63} {
		if _, err := f.WriteAt(content[b*block:(b+1)*block], int64(b*block)); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	layout := func(name string) []int64 {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		var ext []int64
		for off := int64(0); off < int64(len(content)); {
			d, err := unix.Seek(int(f.Fd()), off, unix.SEEK_DATA)
			if err != nil {
				break
			}
			h, _ := unix.Seek(int(f.Fd()), d, unix.SEEK_HOLE)
			ext = append(ext, d, h)
			off = h
		}
		return ext
	}
	if slices.Equal(layout(full), layout(sparse)) {
		t.Skip("this filesystem reports no holes: nothing to show")
	}
	for _, name := range []string{full, sparse} {
		if err := canonicalHoles(name); err != nil {
			t.Fatal(err)
		}
		got, _ := os.ReadFile(name)
		if !bytes.Equal(got, content) {
			t.Fatalf("%s: canonicalHoles changed the bytes", name)
		}
	}
	if a, b := layout(full), layout(sparse); !slices.Equal(a, b) {
		t.Errorf("the same bytes, other holes: %v and %v", a, b)
	}
}
