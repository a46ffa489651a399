package assemblers_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/forge-build/forge/internal/fstree"
	"golang.org/x/sys/unix"
)

// TestTar: the archive lists every entry of the fixture but its socket
// (tar has no socket type), and, extracted with GNU tar, equals the
// fixture in every property; the paths beyond PATH_MAX, which GNU tar
// archives but cannot extract, are checked in the archive itself.
func TestTar(t *testing.T) {
	e := newEnv(t)
	fixture, tree := e.fixture(t)
	wantNames := treeNames(t, fixture)
	for _, compression := range []string{"", "gzip"} {
		t.Run("compression="+compression, func(t *testing.T) {
			out := e.mkdir(t, "out-tar"+compression)
			opts := map[string]any{"filename": "root.tar"}
			if compression != "" {
				opts["compression"] = compression
			}
			e.mustRun(t, "org.osbuild.tar", tree, out, opts)
			if files := outputFiles(t, out); !slices.Equal(files, []string{"root.tar"}) {
				t.Fatalf("output directory holds %q, want root.tar only", files)
			}
			archive := filepath.Join(out, "root.tar")

			headers := readTar(t, archive, compression == "gzip")
			var names []string
			for _, h := range headers {
				names = append(names, strings.TrimSuffix(strings.TrimPrefix(h.Name, "./"), "/"))
			}
			wantInArchive := slices.DeleteFunc(slices.Clone(wantNames), func(n string) bool { return n == "special/socket" })
			if !slices.Equal(names, wantInArchive) {
				t.Errorf("archive members (sorted by name, as --sort=name makes them):\n%q\nwant:\n%q", names, wantInArchive)
			}
			// tar -t also lists the root, "./", which headers leaves out.
			if n := strings.Count(sh(t, "tar", "-tf", archive), "\n"); n != len(headers)+1 {
				t.Errorf("tar -t lists %d members, the archive has %d and the root", n, len(headers))
			}
			checkDeepMembers(t, headers)

			dst := e.mkdir(t, "extracted"+compression)
			sh(t, "tar", "--extract", "--file", archive, "--directory", dst, "--preserve-permissions",
				"--numeric-owner", "--acls", "--selinux", "--xattrs", "--xattrs-include=*", "--exclude=./deep")
			expectDiffs(t, fixture, dst, "deep: missing", "special/socket: missing")
		})
	}
}

// treeNames lists every path below root, sorted bytewise (the order of tar
// --sort=name), walking by file descriptor so that depth does not matter.
func treeNames(t *testing.T, root string) []string {
	t.Helper()
	var names []string
	var walk func(dir *os.File, prefix string)
	walk = func(dir *os.File, prefix string) {
		entries, err := dir.ReadDir(-1)
		if err != nil {
			t.Fatal(err)
		}
		slices.SortFunc(entries, func(a, b os.DirEntry) int { return strings.Compare(a.Name(), b.Name()) })
		for _, ent := range entries {
			names = append(names, prefix+ent.Name())
			if !ent.IsDir() {
				continue
			}
			fd, err := unix.Openat(int(dir.Fd()), ent.Name(), unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
			if err != nil {
				t.Fatal(err)
			}
			sub := os.NewFile(uintptr(fd), ent.Name())
			walk(sub, prefix+ent.Name()+"/")
			sub.Close()
		}
	}
	f, err := os.Open(root)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	walk(f, "")
	return names
}

func readTar(t *testing.T, path string, gzipped bool) []*tar.Header {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	if gzipped {
		z, err := gzip.NewReader(f)
		if err != nil {
			t.Fatalf("%s is not gzip: %v", path, err)
		}
		r = z
	}
	tr := tar.NewReader(r)
	var headers []*tar.Header
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("read %s: %v", path, err)
		}
		if strings.TrimSuffix(h.Name, "/") == "." {
			continue
		}
		headers = append(headers, h)
	}
	return headers
}

// checkDeepMembers: the file at the bottom of the fixture's deep directory
// is archived whole, with its mode, xattr and its hard link near the top.
func checkDeepMembers(t *testing.T, headers []*tar.Header) {
	t.Helper()
	bottom := "./" + fstree.FixtureDeepFile()
	var file, link *tar.Header
	for _, h := range headers {
		switch h.Name {
		case bottom:
			file = h
		case "./" + fstree.FixtureDeep + "/hardlink-to-bottom":
			link = h
		}
	}
	if file == nil || link == nil {
		t.Fatalf("the deep file or its hard link is not in the archive (file %v, link %v)", file != nil, link != nil)
	}
	if file.Typeflag != tar.TypeReg || file.Size != 100<<10 || file.Mode&0o7777 != 0o640 || file.PAXRecords["SCHILY.xattr.user.deep"] != "below PATH_MAX" {
		t.Errorf("deep file: type %c, size %d, mode %o, xattr %q", file.Typeflag, file.Size, file.Mode, file.PAXRecords["SCHILY.xattr.user.deep"])
	}
	if link.Typeflag != tar.TypeLink || link.Linkname != bottom {
		t.Errorf("deep hard link: type %c to %q", link.Typeflag, link.Linkname)
	}
}

// TestRawfs: a sparse ext4 image of the size asked, with the UUID asked,
// fsck-clean, holding the fixture in every property (ext4 adds
// lost+found).
func TestRawfs(t *testing.T) {
	e := newEnv(t)
	fixture, tree := e.fixture(t)
	out := e.mkdir(t, "out")
	const size = 512 * mib
	e.mustRun(t, "org.osbuild.rawfs", tree, out, map[string]any{"filename": "root.ext4", "root_fs_uuid": rootUUID, "size": size})
	if files := outputFiles(t, out); !slices.Equal(files, []string{"root.ext4"}) {
		t.Fatalf("output directory holds %q, want root.ext4 only", files)
	}
	img := filepath.Join(out, "root.ext4")
	fi, err := os.Stat(img)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != size {
		t.Errorf("image size %d, want %d", fi.Size(), size)
	}
	if a := allocated(t, img); a > 128*mib {
		t.Errorf("image allocates %d bytes: not sparse", a)
	}
	if id := blkidExport(t, img, 0); id["UUID"] != rootUUID || id["TYPE"] != "ext4" {
		t.Errorf("blkid: %v, want ext4 with UUID %s", id, rootUUID)
	}
	node := e.attachReadOnly(t, img, 0, size)
	fsckClean(t, node)
	mp := e.mountReadOnly(t, node, "mnt")
	expectDiffs(t, fixture, mp, "lost+found: extra")
}

// TestQemu: a disk with the MBR asked (identifier, one bootable Linux
// partition from 1 MiB to the end), ext4 with the UUID asked holding the
// fixture, GRUB's boot.img in sector 0 before the intact partition table
// and core.img from sector 1; qcow2 holds the same disk.
func TestQemu(t *testing.T) {
	e := newEnv(t)
	fixture, tree := e.fixture(t)
	const size = 512 * mib
	for _, format := range []string{"raw", "qcow2"} {
		t.Run(format, func(t *testing.T) {
			out := e.mkdir(t, "out-"+format)
			name := "disk." + format
			e.mustRun(t, "org.osbuild.qemu", tree, out, map[string]any{
				"format": format, "filename": name, "ptuuid": ptuuid, "root_fs_uuid": rootUUID, "size": size,
			})
			if files := outputFiles(t, out); !slices.Equal(files, []string{name}) {
				t.Fatalf("output directory holds %q, want %s only", files, name)
			}
			disk := filepath.Join(out, name)
			var info struct {
				Format      string `json:"format"`
				VirtualSize int64  `json:"virtual-size"`
			}
			if err := json.Unmarshal([]byte(sh(t, "qemu-img", "info", "--output=json", disk)), &info); err != nil {
				t.Fatal(err)
			}
			if info.Format != format || info.VirtualSize != size {
				t.Errorf("qemu-img info: %+v, want format %s, size %d", info, format, size)
			}
			if format != "raw" {
				raw := filepath.Join(e.dir, "converted-"+format+".raw")
				sh(t, "qemu-img", "convert", "-O", "raw", disk, raw)
				disk = raw
			} else if a := allocated(t, disk); a > 128*mib {
				t.Errorf("raw disk allocates %d bytes: not sparse", a)
			}
			checkDisk(t, e, disk, size, fixture)
		})
	}
}

// checkDisk inspects a raw disk made by org.osbuild.qemu from the fixture.
func checkDisk(t *testing.T, e *env, disk string, size int64, fixture string) {
	t.Helper()
	var table struct {
		PartitionTable struct {
			Label      string `json:"label"`
			ID         string `json:"id"`
			Partitions []struct {
				Start    int64  `json:"start"`
				Size     int64  `json:"size"`
				Type     string `json:"type"`
				Bootable bool   `json:"bootable"`
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(sh(t, "sfdisk", "--json", disk)), &table); err != nil {
		t.Fatal(err)
	}
	pt := table.PartitionTable
	if pt.Label != "dos" || pt.ID != ptuuid || len(pt.Partitions) != 1 {
		t.Fatalf("partition table %+v, want dos %s with one partition", pt, ptuuid)
	}
	p := pt.Partitions[0]
	if p.Start != 2048 || p.Size != size/512-2048 || p.Type != "83" || !p.Bootable {
		t.Errorf("partition %+v, want bootable type 83 from sector 2048 to the end", p)
	}
	if id := blkidExport(t, disk, 0); id["PTUUID"] != strings.TrimPrefix(ptuuid, "0x") || id["PTTYPE"] != "dos" {
		t.Errorf("blkid of the disk: %v", id)
	}
	if id := blkidExport(t, disk, p.Start*512); id["UUID"] != rootUUID || id["TYPE"] != "ext4" {
		t.Errorf("blkid of the partition: %v, want ext4 with UUID %s", id, rootUUID)
	}
	checkGRUB(t, disk)

	node := e.attachReadOnly(t, disk, p.Start*512, p.Size*512)
	fsckClean(t, node)
	mp := e.mountReadOnly(t, node, "mnt-"+filepath.Base(disk))
	expectDiffs(t, fixture, mp, "lost+found: extra")
}

// checkGRUB checks sector 0 and the core image after it against the build
// root's GRUB files, field by field.
func checkGRUB(t *testing.T, disk string) {
	t.Helper()
	const grubDir = "/usr/lib/grub/i386-pc"
	bootImg, err := os.ReadFile(filepath.Join(grubDir, "boot.img"))
	if err != nil {
		t.Fatal(err)
	}
	diskboot, err := os.ReadFile(filepath.Join(grubDir, "diskboot.img"))
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(disk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	head := make([]byte, 2048*512)
	if _, err := f.ReadAt(head, 0); err != nil {
		t.Fatal(err)
	}
	mbr := head[:512]
	if mbr[510] != 0x55 || mbr[511] != 0xaa {
		t.Errorf("sector 0 ends with % x, want 55 aa", mbr[510:])
	}
	// boot.img's code, but for the two fields installing sets.
	for i := range 440 {
		switch {
		case i >= 0x5c && i < 0x64, i == 0x66 || i == 0x67:
			continue
		case mbr[i] != bootImg[i]:
			t.Fatalf("sector 0 differs from boot.img at %#x: %#02x, want %#02x", i, mbr[i], bootImg[i])
		}
	}
	if ks := binary.LittleEndian.Uint64(mbr[0x5c:]); ks != 1 {
		t.Errorf("boot.img's kernel sector is %d, want 1", ks)
	}
	if !bytes.Equal(mbr[0x66:0x68], []byte{0x90, 0x90}) {
		t.Errorf("boot.img's drive check is % x, want two NOPs (hard disk)", mbr[0x66:0x68])
	}
	if binary.LittleEndian.Uint32(mbr[0x1b8:]) != 0x14fc63d2 {
		t.Errorf("disk identifier % x", mbr[0x1b8:0x1bc])
	}

	core := head[512:]
	if !bytes.Equal(core[:0x1f4], diskboot[:0x1f4]) {
		t.Error("sector 1 does not start with GRUB's diskboot.img")
	}
	start := binary.LittleEndian.Uint64(core[0x1f4:])
	sectors := binary.LittleEndian.Uint16(core[0x1fc:])
	segment := binary.LittleEndian.Uint16(core[0x1fe:])
	if start != 2 || sectors == 0 || segment != 0x820 {
		t.Errorf("core.img's blocklist: start %d, %d sectors, segment %#x; want start 2, segment 0x820", start, sectors, segment)
	}
	if 1+1+int(sectors) > 2048 {
		t.Errorf("core.img spans %d sectors, past the partition's start", 1+int(sectors))
	}
	// The last sector the blocklist names holds core.img, the next ones
	// nothing: the size it names is the size written.
	last := core[int(sectors)*512 : (int(sectors)+1)*512]
	if bytes.Equal(last, make([]byte, 512)) {
		t.Errorf("the last sector of core.img's blocklist (%d) is empty", 1+sectors)
	}
}

// TestQemuFormats: each other output format holds the same disk, the
// partition table and filesystem asked, as qemu-img (or xz) reads it back.
func TestQemuFormats(t *testing.T) {
	e := newEnv(t)
	tree := e.mkdir(t, "small-tree")
	if err := os.MkdirAll(filepath.Join(tree, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(tree, "etc/hostname"), []byte("forge\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const size = 64 * mib
	tests := []struct {
		format, extraKey, extraValue, qemuFormat string
		extraFiles                               []string // besides the output
	}{
		{"vdi", "", "", "vdi", nil},
		{"vmdk", "", "", "vmdk", nil},
		{"vmdk", "vmdk_subformat", "streamOptimized", "vmdk", nil},
		// Two files, named after the output: both must come out.
		{"vmdk", "vmdk_subformat", "twoGbMaxExtentFlat", "vmdk", []string{"disk-f001.vmdk"}},
		// A fixed VHD is raw data and a footer; qemu-img does not probe it
		// as vpc, so it is told.
		{"vpc", "", "", "vpc", nil},
		{"vhdx", "", "", "vhdx", nil},
		{"qcow2", "qcow2_compat", "0.10", "qcow2", nil},
		{"raw.xz", "", "", "", nil},
	}
	for _, test := range tests {
		t.Run(test.format+test.extraValue, func(t *testing.T) {
			out := e.mkdir(t, "out-"+test.format+test.extraValue)
			name := "disk." + test.format
			opts := map[string]any{"format": test.format, "filename": name, "ptuuid": ptuuid, "root_fs_uuid": rootUUID, "size": size}
			if test.extraKey != "" {
				opts[test.extraKey] = test.extraValue
			}
			e.mustRun(t, "org.osbuild.qemu", tree, out, opts)
			wantFiles := append([]string{name}, test.extraFiles...)
			slices.Sort(wantFiles)
			if files := outputFiles(t, out); !slices.Equal(files, wantFiles) {
				t.Fatalf("output directory holds %q, want %q", files, wantFiles)
			}
			disk := filepath.Join(out, name)
			raw := filepath.Join(e.dir, "back-"+test.format+test.extraValue+".raw")
			if test.format == "raw.xz" {
				f, err := os.Create(raw)
				if err != nil {
					t.Fatal(err)
				}
				f.WriteString(sh(t, "xz", "--decompress", "--stdout", disk))
				f.Close()
			} else {
				var info struct {
					Format string `json:"format"`
				}
				var force []string
				if test.format == "vpc" {
					checkVHDFooter(t, disk)
					force = []string{"-f", "vpc"}
				}
				if err := json.Unmarshal([]byte(sh(t, "qemu-img", append(append([]string{"info", "--output=json"}, force...), disk)...)), &info); err != nil {
					t.Fatal(err)
				}
				if info.Format != test.qemuFormat {
					t.Errorf("qemu-img info: format %q, want %q", info.Format, test.qemuFormat)
				}
				sh(t, "qemu-img", append(append([]string{"convert"}, force...), "-O", "raw", disk, raw)...)
			}
			fi, err := os.Stat(raw)
			if err != nil {
				t.Fatal(err)
			}
			// vpc's fixed subformat rounds the size up to its geometry.
			if fi.Size() < size {
				t.Errorf("disk read back has %d bytes, want %d", fi.Size(), size)
			}
			if id := blkidExport(t, raw, 0); id["PTUUID"] != strings.TrimPrefix(ptuuid, "0x") {
				t.Errorf("blkid of the disk: %v", id)
			}
			if id := blkidExport(t, raw, mib); id["UUID"] != rootUUID {
				t.Errorf("blkid of the partition: %v", id)
			}
		})
	}
}

// checkVHDFooter checks that the file ends with a fixed VHD's footer.
func checkVHDFooter(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		t.Fatal(err)
	}
	footer := make([]byte, 512)
	if _, err := f.ReadAt(footer, fi.Size()-512); err != nil {
		t.Fatal(err)
	}
	// The cookie, then the disk type at 60: 2 is fixed.
	if string(footer[:8]) != "conectix" || binary.BigEndian.Uint32(footer[60:]) != 2 {
		t.Errorf("no fixed VHD footer: cookie %q, disk type %d", footer[:8], binary.BigEndian.Uint32(footer[60:]))
	}
}

// TestFailures: an assembler that fails says why, naming the option when
// an option is at fault, and leaves no output, no mount and no loop
// device (run checks the last two).
func TestFailures(t *testing.T) {
	e := newEnv(t)
	fixture := filepath.Join(e.dir, "fixture")
	fstree.MustBuildFixture(t, fixture)
	tests := []struct {
		name, assembler string
		options         map[string]any
		want            string
	}{
		{"tar filename", "org.osbuild.tar", map[string]any{"filename": "../root.tar"}, `org.osbuild.tar: option "filename"`},
		{"tar compression", "org.osbuild.tar", map[string]any{"filename": "t", "compression": "zstd"}, `option "compression"`},
		{"rawfs uuid", "org.osbuild.rawfs", map[string]any{"filename": "f", "root_fs_uuid": "x", "size": 64 * mib}, `option "root_fs_uuid"`},
		{"qemu gpt", "org.osbuild.qemu", map[string]any{"format": "raw", "filename": "d", "ptuuid": ptuuid, "root_fs_uuid": rootUUID, "size": 64 * mib, "pttype": "gpt"}, `option "pttype"`},
		// The fixture's 15 MB do not fit: the copy fails midway, with
		// mounts and loop devices to release.
		{"rawfs full", "org.osbuild.rawfs", map[string]any{"filename": "f", "root_fs_uuid": rootUUID, "size": 8 * mib}, "no space left on device"},
		{"qemu full", "org.osbuild.qemu", map[string]any{"format": "qcow2", "filename": "d", "ptuuid": ptuuid, "root_fs_uuid": rootUUID, "size": 8 * mib}, "no space left on device"},
		{"qemu disk too small", "org.osbuild.qemu", map[string]any{"format": "raw", "filename": "d", "ptuuid": ptuuid, "root_fs_uuid": rootUUID, "size": 1 * mib}, `option "size": 1048576 bytes is too small`},
	}
	for i, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			out := e.mkdir(t, "out"+string(rune('a'+i)))
			output, err := e.run(t, test.assembler, fixture, out, test.options)
			var exit *exec.ExitError
			if !errors.As(err, &exit) || exit.ExitCode() != 1 {
				t.Fatalf("%s: %v, want exit status 1\n%s", test.assembler, err, output)
			}
			if !strings.Contains(output, test.want) {
				t.Errorf("output does not say %q:\n%s", test.want, output)
			}
			if files := outputFiles(t, out); len(files) > 0 {
				t.Errorf("a failed assembler left %q in the output directory", files)
			}
		})
	}
}

// TestQemuPartitions: with a partitions layout, /boot on a partition of
// its own and the root on another, each filesystem holds its part of the
// tree; GRUB's core is built from the tree's own i386-pc directory (as the
// grub2 stage leaves it) and still fits the gap. A hard link between the
// two filesystems cannot be one: both names are there, as copies.
func TestQemuPartitions(t *testing.T) {
	e := newEnv(t)
	src := e.mkdir(t, "tree")
	sh(t, "mkdir", "-p", filepath.Join(src, "boot/grub"), filepath.Join(src, "etc"))
	sh(t, "cp", "-a", "/usr/lib/grub/i386-pc", filepath.Join(src, "boot/grub/"))
	if err := os.WriteFile(filepath.Join(src, "boot/grub/grub.cfg"), []byte("set timeout=0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "etc/hostname"), []byte("forge\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(filepath.Join(src, "etc/hostname"), filepath.Join(src, "boot/hostname")); err != nil {
		t.Fatal(err)
	}
	tree := e.readOnly(t, src)

	const bootUUID = "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75"
	const size = 128 * mib
	out := e.mkdir(t, "out")
	e.mustRun(t, "org.osbuild.qemu", tree, out, map[string]any{
		"format": "raw", "filename": "disk.img", "ptuuid": ptuuid, "size": size, "pttype": "mbr",
		"partitions": []any{
			map[string]any{"size": 32 * mib / 512, "type": "83", "bootable": true,
				"filesystem": map[string]any{"type": "ext4", "uuid": bootUUID, "mountpoint": "/boot", "label": "boot"}},
			map[string]any{"type": "83",
				"filesystem": map[string]any{"type": "ext4", "uuid": rootUUID, "mountpoint": "/"}},
		},
	})
	disk := filepath.Join(out, "disk.img")
	var table struct {
		PartitionTable struct {
			Partitions []struct {
				Start, Size int64
				Bootable    bool
			} `json:"partitions"`
		} `json:"partitiontable"`
	}
	if err := json.Unmarshal([]byte(sh(t, "sfdisk", "--json", disk)), &table); err != nil {
		t.Fatal(err)
	}
	parts := table.PartitionTable.Partitions
	if len(parts) != 2 || parts[0].Start != 2048 || parts[0].Size != 32*mib/512 || !parts[0].Bootable ||
		parts[1].Start != 2048+32*mib/512 || parts[1].Start+parts[1].Size != size/512 || parts[1].Bootable {
		t.Fatalf("partitions %+v", parts)
	}
	if id := blkidExport(t, disk, parts[0].Start*512); id["UUID"] != bootUUID || id["LABEL"] != "boot" {
		t.Errorf("blkid of /boot: %v", id)
	}
	if id := blkidExport(t, disk, parts[1].Start*512); id["UUID"] != rootUUID {
		t.Errorf("blkid of /: %v", id)
	}
	checkGRUB(t, disk)

	rootNode := e.attachReadOnly(t, disk, parts[1].Start*512, parts[1].Size*512)
	bootNode := e.attachReadOnly(t, disk, parts[0].Start*512, parts[0].Size*512)
	fsckClean(t, rootNode)
	fsckClean(t, bootNode)
	mp := e.mountReadOnly(t, rootNode, "mnt")
	if err := unix.Mount(bootNode, filepath.Join(mp, "boot"), "ext4", unix.MS_RDONLY, ""); err != nil {
		t.Fatalf("mount /boot: %v", err)
	}
	t.Cleanup(func() { unmount(t, filepath.Join(mp, "boot")) })
	expectDiffs(t, src, mp, "boot/lost+found: extra", "lost+found: extra",
		"boot/hostname: hard links", "etc/hostname: hard links")
}

// The same tree gives nearly the same image, so that an image differing
// in one file costs the store little more than that file: only the inode
// tables (each inode's ctime is the copy's time) may differ. Small files
// matter most: ext4 places them in per-CPU groups, so a copy that moved
// between CPUs laid them out differently every time.
func TestQemuReproducible(t *testing.T) {
	e := newEnv(t)
	src := e.mkdir(t, "many-small-files")
	const files = 4000
	for i := range files {
		dir := filepath.Join(src, fmt.Sprintf("d%02d", i%40))
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		data := bytes.Repeat([]byte{byte(i), byte(i >> 8), 'x'}, 30+i%1000)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%04d", i)), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tree := e.readOnly(t, src)
	var disks [2]string
	for i := range disks {
		out := e.mkdir(t, fmt.Sprintf("repro-%d", i))
		e.mustRun(t, "org.osbuild.qemu", tree, out, map[string]any{
			"format": "raw", "filename": "disk.raw", "ptuuid": ptuuid, "root_fs_uuid": rootUUID, "size": 256 * mib,
		})
		disks[i] = filepath.Join(out, "disk.raw")
	}
	a, err := os.ReadFile(disks[0])
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(disks[1])
	if err != nil {
		t.Fatal(err)
	}
	const block = 4096
	differ := 0
	for off := 0; off+block <= len(a) && off+block <= len(b); off += block {
		if !bytes.Equal(a[off:off+block], b[off:off+block]) {
			differ++
		}
	}
	// 16 inodes of 256 bytes per block, and a few blocks of superblock,
	// group descriptors and bitmaps.
	if limit := files/16 + 64; differ > limit {
		t.Errorf("two images of one tree differ in %d blocks of 4 KiB; want at most %d (the inode tables)", differ, limit)
	}
	t.Logf("two images of one tree of %d small files differ in %d blocks of 4 KiB", files, differ)
}
