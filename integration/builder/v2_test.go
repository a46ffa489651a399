package builder_test

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// imageManifest is a format-2 manifest of osbuild's shape: a tree
// pipeline, then an image pipeline that makes disk.img, an ext4 on a
// loop device over it, and copies the tree into it through an ext4 mount.
// b is the content of the tree's last file.
func imageManifest(b string) obj {
	loop := obj{"type": "org.osbuild.loopback", "options": obj{"filename": "disk.img", "lock": true}}
	return obj{
		"version": "2",
		"pipelines": []obj{
			{"name": "tree", "stages": []obj{
				{"type": "test.write", "options": obj{"path": "etc/a", "content": "A\n"}},
				{"type": "test.write", "options": obj{"path": "etc/b", "content": b}},
			}},
			{"name": "image", "stages": []obj{
				{"type": "org.osbuild.truncate", "options": obj{"filename": "disk.img", "size": "64M"}},
				{"type": "org.osbuild.mkfs.ext4", "options": obj{"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "label": "root"},
					"devices": obj{"device": loop}},
				{"type": "org.osbuild.copy",
					"inputs":  obj{"root-tree": obj{"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": []string{"name:tree"}}},
					"devices": obj{"disk": loop},
					"mounts":  []obj{{"name": "root", "type": "org.osbuild.ext4", "source": "disk", "target": "/"}},
					"options": obj{"paths": []obj{{"from": "input://root-tree/", "to": "mount://root/"}}}},
			}},
		},
	}
}

// debugfsCat reads a file of an ext4 image without mounting it.
func debugfsCat(t *testing.T, img, path string) string {
	t.Helper()
	out, err := exec.Command("debugfs", "-R", "cat "+path, img).Output()
	if err != nil {
		t.Fatalf("debugfs cat %s in %s: %v", path, img, err)
	}
	return string(out)
}

// The image test: the exported disk.img holds the tree, a rerun
// runs nothing, and a change in the tree pipeline reruns only the stages
// that depend on it.
func TestV2ImagePipeline(t *testing.T) {
	if _, err := exec.LookPath("debugfs"); err != nil {
		t.Fatal("debugfs (e2fsprogs) is needed")
	}
	store := storeDir(t)
	out := t.TempDir()
	r := mustBuild(t, store, imageManifest("B\n"), "--export", "image", "--output-directory", out)
	want := []string{"pipelines[0].stages[0]", "pipelines[0].stages[1]", "pipelines[1].stages[0]", "pipelines[1].stages[1]", "pipelines[1].stages[2]"}
	if !slices.Equal(r.ran(), want) {
		t.Fatalf("ran %v, want %v", r.ran(), want)
	}
	// The copy read its tree input as a stream from the store, not
	// through the input's mount.
	streamed := false
	for _, ev := range r.events {
		streamed = streamed || ev.Path == "pipelines[1].stages[2]" && ev.Line == "input root-tree comes as a stream from the store"
	}
	if !streamed {
		t.Errorf("org.osbuild.copy did not say it streamed its input:\n%s", r.stderr)
	}
	img := filepath.Join(out, "image", "disk.img")
	if got := debugfsCat(t, img, "/etc/a") + debugfsCat(t, img, "/etc/b"); got != "A\nB\n" {
		t.Errorf("disk.img holds %q, want the tree's files", got)
	}
	var res struct {
		Success   bool
		Pipelines map[string]string
	}
	if err := json.Unmarshal([]byte(r.stdout), &res); err != nil || !res.Success || len(res.Pipelines) != 2 {
		t.Errorf("--json: %q (%v)", r.stdout, err)
	}

	r = mustBuild(t, store, imageManifest("B\n"), "--export", "image", "--output-directory", out)
	if len(r.ran()) != 0 {
		t.Errorf("rerun ran %v, want nothing", r.ran())
	}

	r = mustBuild(t, store, imageManifest("changed\n"), "--export", "image", "--output-directory", out)
	if want := []string{"pipelines[0].stages[1]", "pipelines[1].stages[2]"}; !slices.Equal(r.ran(), want) {
		t.Errorf("after changing the tree's last file: ran %v, want %v", r.ran(), want)
	}
	if got := debugfsCat(t, img, "/etc/b"); got != "changed\n" {
		t.Errorf("disk.img's /etc/b is %q after the change", got)
	}
	if loops := itestLoops(); len(loops) > 0 {
		t.Errorf("loop devices left over the store: %v", loops)
	}
}

// filesManifest copies a source file into a tree (org.osbuild.copy from
// an org.osbuild.files input), as hostname names the tree apart.
func filesManifest(url, checksum, hostname string) obj {
	return obj{
		"version": "2",
		"sources": obj{"org.osbuild.curl": obj{"items": obj{checksum: obj{"url": url}}}},
		"pipelines": []obj{{"name": "os", "stages": []obj{
			{"type": "test.write", "options": obj{"path": "etc/hostname", "content": hostname}},
			{"type": "org.osbuild.copy",
				"inputs":  obj{"motd": obj{"type": "org.osbuild.files", "origin": "org.osbuild.source", "references": []string{checksum}}},
				"options": obj{"paths": []obj{{"from": "input://motd/" + checksum, "to": "tree:///etc/motd"}}}},
		}}},
	}
}

// A source is downloaded once per store, serves two builds, and a build
// whose sources are all stored needs no server; a download whose content
// is not what its checksum says fails, naming the URL and both hashes,
// and keeps nothing.
func TestV2Sources(t *testing.T) {
	content := []byte("welcome to forge\n")
	sum := sha256.Sum256(content)
	checksum := "sha256:" + hex.EncodeToString(sum[:])
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/bad" {
			w.Write([]byte("not what you pinned\n"))
			return
		}
		w.Write(content)
	}))
	defer srv.Close()
	store := storeDir(t)

	out := t.TempDir()
	mustBuild(t, store, filesManifest(srv.URL+"/motd", checksum, "one\n"), "--output-directory", out)
	if b, err := os.ReadFile(filepath.Join(out, "os", "etc/motd")); err != nil || string(b) != string(content) {
		t.Fatalf("exported etc/motd: %q, %v", b, err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d downloads, want 1", hits.Load())
	}
	// Another build sharing the source, with the network denied: forge
	// build in a network namespace of its own, without interfaces (the
	// store's daemon is reached through its Unix socket). The store has
	// the source.
	cmd, mon, outs := buildCmd(t, store, filesManifest(srv.URL+"/motd", checksum, "two\n"), "--output-directory", out)
	cmd.Args = append([]string{"unshare", "--net", "--", cmd.Path}, cmd.Args[1:]...)
	cmd.Path, _ = exec.LookPath("unshare")
	start := time.Now()
	r := finish(t, cmd, cmd.Run(), mon, outs, start)
	if r.code != 0 {
		t.Fatalf("a build with no network: exit %d\n%s", r.code, r.stderr)
	}
	if b, err := os.ReadFile(filepath.Join(out, "os", "etc/hostname")); err != nil || string(b) != "two\n" {
		t.Fatalf("second build's etc/hostname: %q, %v", b, err)
	}
	if hits.Load() != 1 {
		t.Errorf("%d downloads after the second build, want 1", hits.Load())
	}
	srv.Close()

	bad := httptest.NewServer(srv.Config.Handler)
	defer bad.Close()
	other := sha256.Sum256([]byte("something else"))
	otherSum := "sha256:" + hex.EncodeToString(other[:])
	r = build(t, store, filesManifest(bad.URL+"/bad", otherSum, "three\n"))
	if r.code != 1 {
		t.Fatalf("a bad checksum: exit %d, want 1\n%s", r.code, r.stderr)
	}
	gotSum := sha256.Sum256([]byte("not what you pinned\n"))
	for _, s := range []string{bad.URL + "/bad", hex.EncodeToString(other[:]), hex.EncodeToString(gotSum[:])} {
		if !strings.Contains(r.stderr+r.stdout, s) {
			t.Errorf("the error does not name %s:\n%s", s, r.stderr)
		}
	}
	refs, err := exec.Command(forgeBin, "store", "ls", "--store", store).Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(refs), otherSum) {
		t.Errorf("the store kept the bad download:\n%s", refs)
	}
}

func itestLoops() []string {
	out, _ := exec.Command("losetup", "--noheadings", "--output", "NAME,BACK-FILE").Output()
	var loops []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.Contains(l, "forge") {
			loops = append(loops, l)
		}
	}
	return loops
}

// A partitioned image as osbuild's manifests make one: a GPT from sfdisk,
// a FAT ESP and an ext4 root on loop devices over their byte ranges of
// disk.img, and one copy into both filesystems, the ESP mounted below the
// root. A build pipeline names a runner forge's libdir has never heard of:
// its generic runner answers it.
func TestV2PartitionedImage(t *testing.T) {
	for _, tool := range []string{"debugfs", "mkfs.fat", "mdir", "sfdisk"} {
		if _, err := exec.LookPath(tool); err != nil && tool != "mdir" {
			t.Fatalf("%s is needed", tool)
		}
	}
	part := func(start, size int) obj {
		return obj{"type": "org.osbuild.loopback", "options": obj{"filename": "disk.img", "start": start, "size": size, "lock": true}}
	}
	const (
		espStart, espSize   = 2048, 65536
		rootStart, rootSize = 67584, 63455
	)
	m := obj{"version": "2", "pipelines": []obj{
		{"name": "build", "runner": "org.osbuild.fedora99", "stages": []obj{{"type": "test.mkusr"}}},
		{"name": "tree", "build": "name:build", "stages": []obj{
			{"type": "test.write", "options": obj{"path": "etc/os-name", "content": "forge\n"}},
			{"type": "test.write", "options": obj{"path": "boot/efi/EFI/BOOT/test.txt", "content": "on the ESP\n"}},
		}},
		// The host is the image's build root: it has sfdisk and mkfs.
		{"name": "image", "stages": []obj{
			{"type": "org.osbuild.truncate", "options": obj{"filename": "disk.img", "size": "64M"}},
			{"type": "org.osbuild.sfdisk", "options": obj{"label": "gpt", "uuid": "d209c89e-ea5e-4fbd-b161-b461cce297e0", "partitions": []obj{
				{"start": espStart, "size": espSize, "type": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B", "uuid": "68b2905b-df3e-4fb3-80fa-49d1e773aa33"},
				{"start": rootStart, "size": rootSize, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "uuid": "6264d520-3fb9-423f-8ab8-7a0a8e3d3562"},
			}}, "devices": obj{"device": obj{"type": "org.osbuild.loopback", "options": obj{"filename": "disk.img"}}}},
			{"type": "org.osbuild.mkfs.fat", "options": obj{"volid": "7B7795E7", "label": "ESP", "fat-size": 16}, "devices": obj{"device": part(espStart, espSize)}},
			{"type": "org.osbuild.mkfs.ext4", "options": obj{"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "label": "root"}, "devices": obj{"device": part(rootStart, rootSize)}},
			{"type": "org.osbuild.copy",
				"inputs":  obj{"root-tree": obj{"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": []string{"name:tree"}}},
				"devices": obj{"esp": part(espStart, espSize), "root": part(rootStart, rootSize)},
				"mounts": []obj{
					{"name": "root", "type": "org.osbuild.ext4", "source": "root", "target": "/"},
					{"name": "esp", "type": "org.osbuild.fat", "source": "esp", "target": "/boot/efi", "options": obj{"umask": "0077", "shortname": "winnt"}},
				},
				"options": obj{"paths": []obj{{"from": "input://root-tree/", "to": "mount://root/"}}}},
		}},
	}}
	store := storeDir(t)
	out := t.TempDir()
	fs, _ := os.ReadFile("/proc/filesystems")
	if !strings.Contains(string(fs), "\tvfat\n") {
		// This kernel cannot mount FAT: the build says so, and the test
		// goes on with the root filesystem alone.
		r := build(t, store, m, "--export", "image", "--output-directory", out)
		if r.code != 1 || !strings.Contains(r.stderr, "mounts[1]: this kernel has no vfat filesystem") {
			t.Fatalf("a fat mount without vfat: exit %d\n%s", r.code, r.stderr)
		}
		t.Log("no vfat in this kernel: the ESP is made but not mounted")
		copyStage := m["pipelines"].([]obj)[2]["stages"].([]obj)[4]
		copyStage["mounts"] = copyStage["mounts"].([]obj)[:1]
	}
	mustBuild(t, store, m, "--export", "image", "--output-directory", out)
	img := filepath.Join(out, "image", "disk.img")
	table, err := exec.Command("sfdisk", "--dump", img).Output()
	if err != nil || !strings.Contains(string(table), "label: gpt") || !strings.Contains(string(table), "start=       67584") {
		t.Fatalf("sfdisk --dump %s: %v\n%s", img, err, table)
	}
	// The partitions, cut out, are the filesystems.
	cut := func(name string, start, size int) string {
		p := filepath.Join(t.TempDir(), name)
		if b, err := exec.Command("dd", "if="+img, "of="+p, "bs=512", "skip="+itoa(start), "count="+itoa(size), "status=none").CombinedOutput(); err != nil {
			t.Fatalf("dd: %v %s", err, b)
		}
		return p
	}
	root := cut("root.img", rootStart, rootSize)
	if got := debugfsCat(t, root, "/etc/os-name"); got != "forge\n" {
		t.Errorf("root filesystem's /etc/os-name: %q", got)
	}
	esp := cut("esp.img", espStart, espSize)
	if b, err := exec.Command("fsck.fat", "-n", esp).CombinedOutput(); err != nil {
		t.Errorf("fsck.fat -n of the ESP: %v\n%s", err, b)
	}
	if b, err := exec.Command("fatlabel", esp).Output(); err != nil || strings.TrimSpace(string(b)) != "ESP" {
		t.Errorf("the ESP's label: %q, %v", b, err)
	}
	if !strings.Contains(string(fs), "\tvfat\n") {
		return
	}
	// The ESP's file went to the FAT filesystem mounted at /boot/efi, not
	// into the root filesystem's /boot/efi directory.
	if out, _ := exec.Command("debugfs", "-R", "ls /boot/efi", root).Output(); strings.Contains(string(out), "EFI") {
		t.Errorf("the ESP's files landed in the root filesystem: %s", out)
	}
	if _, err := exec.LookPath("mtype"); err == nil {
		b, err := exec.Command("mtype", "-i", esp, "::/EFI/BOOT/test.txt").Output()
		if err != nil || string(b) != "on the ESP\n" {
			t.Errorf("the ESP's /EFI/BOOT/test.txt: %q, %v", b, err)
		}
	} else {
		mnt := t.TempDir()
		if b, err := exec.Command("mount", "-o", "loop,ro", esp, mnt).CombinedOutput(); err != nil {
			t.Fatalf("mount the ESP: %v %s", err, b)
		}
		defer exec.Command("umount", mnt).Run()
		if b, err := os.ReadFile(filepath.Join(mnt, "EFI/BOOT/test.txt")); err != nil || string(b) != "on the ESP\n" {
			t.Errorf("the ESP's /EFI/BOOT/test.txt: %q, %v", b, err)
		}
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// Two mkfs stages that differ only in their device have one osbuild ID;
// forge keys their trees apart, so the second build makes its own
// filesystem instead of taking the first one's from the store.
func TestV2DevicesKeyTheCache(t *testing.T) {
	mk := func(sizeSectors int) obj {
		dev := obj{"filename": "disk.img"}
		if sizeSectors > 0 {
			dev["size"] = sizeSectors
		}
		return obj{"version": "2", "pipelines": []obj{{"name": "image", "stages": []obj{
			{"type": "org.osbuild.truncate", "options": obj{"filename": "disk.img", "size": "64M"}},
			{"type": "org.osbuild.mkfs.ext4", "options": obj{"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75"},
				"devices": obj{"device": obj{"type": "org.osbuild.loopback", "options": dev}}},
		}}}}
	}
	blocks := func(img string) string {
		out, err := exec.Command("dumpe2fs", "-h", img).Output()
		if err != nil {
			t.Fatalf("dumpe2fs %s: %v", img, err)
		}
		for _, l := range strings.Split(string(out), "\n") {
			if strings.HasPrefix(l, "Block count:") {
				return strings.TrimSpace(strings.TrimPrefix(l, "Block count:"))
			}
		}
		t.Fatalf("dumpe2fs %s: no block count", img)
		return ""
	}
	store := storeDir(t)
	out1, out2 := t.TempDir(), t.TempDir()
	mustBuild(t, store, mk(0), "--output-directory", out1)
	r := mustBuild(t, store, mk(65536), "--output-directory", out2)
	if want := []string{"pipelines[0].stages[1]"}; !slices.Equal(r.ran(), want) {
		t.Errorf("the mkfs on a 32 MiB device: ran %v, want %v", r.ran(), want)
	}
	b1, b2 := blocks(filepath.Join(out1, "image", "disk.img")), blocks(filepath.Join(out2, "image", "disk.img"))
	if b1 == b2 {
		t.Errorf("both images' filesystems have %s blocks: the second took the first's tree", b1)
	}
}

// A build's stages keep osbuild's default capabilities less
// CAP_DAC_READ_SEARCH (whose open_by_handle_at reaches any file of a
// bound filesystem): no CAP_NET_ADMIN, CAP_SYS_MODULE, CAP_SYS_RAWIO...,
// in format 1 and in format 2.
func TestStageCapabilities(t *testing.T) {
	store := storeDir(t)
	out := t.TempDir()
	capBnd := func(status string) uint64 {
		for _, l := range strings.Split(status, "\n") {
			if v, ok := strings.CutPrefix(l, "CapBnd:"); ok {
				n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
				if err != nil {
					t.Fatal(err)
				}
				return n
			}
		}
		t.Fatalf("no CapBnd in %q", status)
		return 0
	}
	var want uint64
	for _, c := range []int{29 /*AUDIT_WRITE*/, 0 /*CHOWN*/, 1 /*DAC_OVERRIDE*/, 3 /*FOWNER*/, 4 /*FSETID*/, 14 /*IPC_LOCK*/, 9 /*LINUX_IMMUTABLE*/, 32 /*MAC_OVERRIDE*/, 27 /*MKNOD*/, 10 /*NET_BIND_SERVICE*/, 31 /*SETFCAP*/, 6 /*SETGID*/, 8 /*SETPCAP*/, 7 /*SETUID*/, 21 /*SYS_ADMIN*/, 18 /*SYS_CHROOT*/, 23 /*SYS_NICE*/, 24 /*SYS_RESOURCE*/} {
		want |= 1 << c
	}
	// What this machine's root may hold at all (a container's may lack
	// some).
	self, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	want &= capBnd(string(self))
	m := obj{"version": "2", "pipelines": []obj{{"name": "caps", "stages": []obj{
		{"type": "test.write", "options": obj{"path": "status", "from": "/proc/self/status"}},
	}}}}
	mustBuild(t, store, m, "--output-directory", out)
	b, err := os.ReadFile(filepath.Join(out, "caps", "status"))
	if err != nil {
		t.Fatal(err)
	}
	if got := capBnd(string(b)); got != want {
		t.Errorf("format 2: CapBnd %x, want %x", got, want)
	}
	f1 := obj{"stages": []obj{stage("test.write", obj{"path": "status", "from": "/proc/self/status"})},
		"assembler": stage("test.tar", obj{"filename": "t"})}
	mustBuild(t, store, f1, "--output-directory", out)
	tb, err := os.ReadFile(filepath.Join(out, "t"))
	if err != nil {
		t.Fatal(err)
	}
	if got := capBnd(strings.TrimPrefix(string(tb), "status=")); got != want {
		t.Errorf("format 1: CapBnd %x, want %x", got, want)
	}
}

// An org.osbuild.files input can take one file of another pipeline's tree
// ({"file": PATH}), at its path under the input, as osbuild's does.
func TestV2FilesFromAPipeline(t *testing.T) {
	m := obj{"version": "2", "pipelines": []obj{
		{"name": "src", "stages": []obj{
			{"type": "test.write", "options": obj{"path": "usr/share/forge/motd", "content": "from the src pipeline\n"}},
			{"type": "test.write", "options": obj{"path": "etc/other", "content": "not taken\n"}},
		}},
		{"name": "os", "stages": []obj{
			{"type": "test.write", "options": obj{"path": "etc/hostname", "content": "os\n"}},
			{"type": "org.osbuild.copy",
				"inputs": obj{"f": obj{"type": "org.osbuild.files", "origin": "org.osbuild.pipeline",
					"references": obj{"name:src": obj{"file": "/usr/share/forge/motd"}}}},
				"options": obj{"paths": []obj{{"from": "input://f/usr/share/forge/motd", "to": "tree:///etc/motd"}}}},
		}},
	}}
	store := storeDir(t)
	out := t.TempDir()
	mustBuild(t, store, m, "--output-directory", out)
	if b, err := os.ReadFile(filepath.Join(out, "os", "etc/motd")); err != nil || string(b) != "from the src pipeline\n" {
		t.Fatalf("etc/motd: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(out, "os", "etc/other")); err == nil {
		t.Errorf("the input held more than the file it names")
	}
}

// A whole org.osbuild.files input copied into an empty tree: forge
// streams only tree inputs, so the copy stage is refused a stream, says
// so, and reads the input's mount instead, with the same result.
func TestV2CopyWithoutAStream(t *testing.T) {
	content := []byte("an inline source\n")
	sum := sha256.Sum256(content)
	checksum := "sha256:" + hex.EncodeToString(sum[:])
	m := obj{"version": "2",
		"sources": obj{"org.osbuild.inline": obj{"items": obj{checksum: obj{"encoding": "base64", "data": base64.StdEncoding.EncodeToString(content)}}}},
		"pipelines": []obj{{"name": "files", "stages": []obj{
			{"type": "org.osbuild.copy",
				"inputs":  obj{"inline": obj{"type": "org.osbuild.files", "origin": "org.osbuild.source", "references": []string{checksum}}},
				"options": obj{"paths": []obj{{"from": "input://inline/", "to": "tree:///"}}}},
		}}},
	}
	store := storeDir(t)
	out := t.TempDir()
	r := mustBuild(t, store, m, "--output-directory", out)
	if b, err := os.ReadFile(filepath.Join(out, "files", checksum)); err != nil || string(b) != string(content) {
		t.Fatalf("the copied source: %q, %v", b, err)
	}
	fellBack := false
	for _, ev := range r.events {
		fellBack = fellBack || strings.HasPrefix(ev.Line, "input inline is read through its mount (no tree stream: the stage has no tree input")
	}
	if !fellBack {
		t.Errorf("the copy stage did not say it read its files input through the mount:\n%s", r.stderr)
	}
}

// A loop device with partscan gives the stage the partitions' nodes, and a
// mount's "partition" mounts one of them.
func TestV2Partscan(t *testing.T) {
	whole := obj{"type": "org.osbuild.loopback", "options": obj{"filename": "disk.img", "partscan": true}}
	m := obj{"version": "2", "pipelines": []obj{
		{"name": "tree", "stages": []obj{{"type": "test.write", "options": obj{"path": "etc/on-p2", "content": "partition 2\n"}}}},
		{"name": "image", "stages": []obj{
			{"type": "org.osbuild.truncate", "options": obj{"filename": "disk.img", "size": "48M"}},
			{"type": "org.osbuild.sfdisk", "options": obj{"label": "gpt", "uuid": "d209c89e-ea5e-4fbd-b161-b461cce297e0", "partitions": []obj{
				{"start": 2048, "size": 32768, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "uuid": "68b2905b-df3e-4fb3-80fa-49d1e773aa33"},
				{"start": 34816, "size": 61440, "type": "0FC63DAF-8483-4772-8E79-3D69D8477DE4", "uuid": "6264d520-3fb9-423f-8ab8-7a0a8e3d3562"},
			}}, "devices": obj{"device": obj{"type": "org.osbuild.loopback", "options": obj{"filename": "disk.img"}}}},
			{"type": "org.osbuild.mkfs.ext4", "options": obj{"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75"},
				"devices": obj{"device": obj{"type": "org.osbuild.loopback", "options": obj{"filename": "disk.img", "start": 34816, "size": 61440}}}},
			{"type": "org.osbuild.copy",
				"inputs":  obj{"t": obj{"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": []string{"name:tree"}}},
				"devices": obj{"disk": whole},
				"mounts":  []obj{{"name": "root", "type": "org.osbuild.ext4", "source": "disk", "partition": 2, "target": "/"}},
				"options": obj{"paths": []obj{{"from": "input://t/", "to": "mount://root/"}}}},
		}},
	}}
	store := storeDir(t)
	out := t.TempDir()
	mustBuild(t, store, m, "--export", "image", "--output-directory", out)
	p := filepath.Join(t.TempDir(), "p2.img")
	if b, err := exec.Command("dd", "if="+filepath.Join(out, "image", "disk.img"), "of="+p, "bs=512", "skip=34816", "count=61440", "status=none").CombinedOutput(); err != nil {
		t.Fatalf("dd: %v %s", err, b)
	}
	if got := debugfsCat(t, p, "/etc/on-p2"); got != "partition 2\n" {
		t.Errorf("partition 2's /etc/on-p2: %q", got)
	}
	if loops := itestLoops(); len(loops) > 0 {
		t.Errorf("loop devices left: %v", loops)
	}
}

// The runner's steps run once per build root and build: later stages get
// a copy of the /etc they made (Config.EtcCache). What a stage reads from
// that copy equals what it reads from an /etc made for it.
func TestEtcCacheGivesTheSameEtc(t *testing.T) {
	files := []string{"/etc/passwd", "/etc/group", "/etc/ld.so.cache", "/etc/hostname", "/etc/ssl/certs/ca-certificates.crt"}
	read := func(order []int) map[string]string {
		t.Helper()
		var stages []obj
		for _, i := range order {
			stages = append(stages, stage("test.write", obj{"path": "f" + itoa(i), "from": files[i]}))
		}
		store := storeDir(t)
		out := t.TempDir()
		mustBuild(t, store, obj{"stages": stages, "assembler": stage("test.tar", obj{"filename": "t"})}, "--output-directory", out)
		b, err := os.ReadFile(filepath.Join(out, "t"))
		if err != nil {
			t.Fatal(err)
		}
		return map[string]string{"all": string(b)}
	}
	// Each file read first (from a fresh /etc) in one build, and later
	// (from the cache) in another.
	fwd := read([]int{0, 1, 2, 3, 4})
	rev := read([]int{4, 3, 2, 1, 0})
	if fwd["all"] != rev["all"] {
		t.Errorf("the stages read other files from a cached /etc than from a fresh one:\nfresh first: %.400q\nreversed:    %.400q", fwd["all"], rev["all"])
	}
	if !strings.Contains(fwd["all"], "root:x:0:0") || !strings.Contains(fwd["all"], "BEGIN CERTIFICATE") {
		t.Errorf("the files read are not what the runner's steps make: %.300q", fwd["all"])
	}
}

// With a source-epoch, an image whose ext4 filesystems the kernel wrote
// (a root and a /boot mounted inside it) is the same bytes from two
// stores: what the kernel wrote is normalized after the stage, every
// mount unmounted first, the directory under /boot included.
func TestV2ReproducibleNestedExt4(t *testing.T) {
	const epoch = 1783764997
	part := func(start, size int) obj {
		return obj{"type": "org.osbuild.loopback", "options": obj{"filename": "disk.img", "start": start, "size": size}}
	}
	const (
		bootStart, bootSize = 2048, 32768
		rootStart, rootSize = 34816, 96256
	)
	m := obj{"version": "2", "pipelines": []obj{
		{"name": "tree", "source-epoch": epoch, "stages": []obj{
			{"type": "test.write", "options": obj{"path": "etc/os-name", "content": "forge\n"}},
			{"type": "test.write", "options": obj{"path": "boot/vmlinuz-test", "content": "a kernel\n"}},
		}},
		{"name": "image", "source-epoch": epoch, "stages": []obj{
			{"type": "org.osbuild.truncate", "options": obj{"filename": "disk.img", "size": "64M"}},
			{"type": "org.osbuild.sfdisk", "options": obj{"label": "dos", "uuid": "14fc63d2", "partitions": []obj{
				{"start": bootStart, "size": bootSize, "type": "83"},
				{"start": rootStart, "size": rootSize, "type": "83"},
			}}, "devices": obj{"device": obj{"type": "org.osbuild.loopback", "options": obj{"filename": "disk.img"}}}},
			{"type": "org.osbuild.mkfs.ext4", "options": obj{"uuid": "0a9b8c7d-1e2f-4a5b-8c6d-7e8f9a0b1c2d", "label": "boot"}, "devices": obj{"device": part(bootStart, bootSize)}},
			{"type": "org.osbuild.mkfs.ext4", "options": obj{"uuid": "6e4ff95f-f662-45ee-a82a-bdf44a2d0b75", "label": "root"}, "devices": obj{"device": part(rootStart, rootSize)}},
			{"type": "org.osbuild.copy",
				"inputs":  obj{"root-tree": obj{"type": "org.osbuild.tree", "origin": "org.osbuild.pipeline", "references": []string{"name:tree"}}},
				"devices": obj{"boot": part(bootStart, bootSize), "root": part(rootStart, rootSize)},
				"mounts": []obj{
					{"name": "root", "type": "org.osbuild.ext4", "source": "root", "target": "/"},
					{"name": "boot", "type": "org.osbuild.ext4", "source": "boot", "target": "/boot"},
				},
				"options": obj{"paths": []obj{{"from": "input://root-tree/", "to": "mount://root/"}}}},
		}},
	}}
	var sums []string
	for range 2 {
		out := t.TempDir()
		mustBuild(t, storeDir(t), m, "--export", "image", "--output-directory", out)
		img := filepath.Join(out, "image", "disk.img")
		b, err := os.ReadFile(img)
		if err != nil {
			t.Fatal(err)
		}
		sum := sha256.Sum256(b)
		sums = append(sums, hex.EncodeToString(sum[:]))
		for _, p := range []struct {
			name        string
			start, size int
		}{{"boot", bootStart, bootSize}, {"root", rootStart, rootSize}} {
			fs := filepath.Join(t.TempDir(), p.name+".img")
			if err := os.WriteFile(fs, b[p.start*512:(p.start+p.size)*512], 0o644); err != nil {
				t.Fatal(err)
			}
			if out, err := exec.Command("e2fsck", "-f", "-n", fs).CombinedOutput(); err != nil {
				t.Errorf("e2fsck -f -n of %s: %v\n%s", p.name, err, out)
			}
			if p.name == "boot" {
				if got := debugfsCat(t, fs, "/vmlinuz-test"); got != "a kernel\n" {
					t.Errorf("/boot/vmlinuz-test: %q", got)
				}
				continue
			}
			// The directory /boot is mounted on, in the root filesystem:
			// made by the buildroot at the time, normalized all the same.
			st, err := exec.Command("debugfs", "-R", "stat /boot", fs).Output()
			if err != nil {
				t.Fatal(err)
			}
			for _, field := range []string{" ctime: ", " mtime: ", "crtime: "} {
				i := strings.Index(string(st), field)
				if i < 0 || !strings.HasPrefix(string(st)[i+len(field):], "0x6a521805:00000000") {
					t.Errorf("the root filesystem's /boot %s is not the epoch:\n%s", field, st)
				}
			}
		}
	}
	if sums[0] != sums[1] {
		t.Errorf("two builds in two stores made different images: %s and %s", sums[0], sums[1])
	}
}
