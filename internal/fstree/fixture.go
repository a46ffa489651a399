package fstree

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"math/rand/v2"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// Paths inside the fixture that tests refer to by name.
const (
	// FixtureRandom5M is 5 MiB of random bytes: many chunks.
	FixtureRandom5M = "files/random-5MiB"
	// FixtureInserted5M is FixtureRandom5M's content with one byte inserted
	// at the start: a content-defined chunker shares almost all its chunks.
	FixtureInserted5M = "files/random-5MiB-inserted"
	// FixtureSparse is a 1 GiB file holding FixtureSparseData bytes of data;
	// the rest is holes.
	FixtureSparse = "sparse/1GiB"
	// FixtureSparseSize is the apparent size of FixtureSparse.
	FixtureSparseSize = 1 << 30
	// FixtureSparseData is how many bytes of FixtureSparse are data.
	FixtureSparseData = 4 * sparseRegion
	// FixtureDeep is the directory whose descendants have paths longer than
	// PATH_MAX.
	FixtureDeep = "deep"
	// FixtureDeepLevels is how many directories nest below FixtureDeep.
	FixtureDeepLevels = 24
)

// FixtureDeepFile returns the path of the file at the bottom of
// FixtureDeep, longer than PATH_MAX; FixtureDeep+"/hardlink-to-bottom" is
// another name of it.
func FixtureDeepFile() string {
	p := FixtureDeep
	for i := range FixtureDeepLevels {
		p += "/" + deepDirName(i)
	}
	return p + "/" + deepFileName
}

func deepDirName(level int) string {
	return fmt.Sprintf("%03d-", level) + strings.Repeat("d", deepNameLen-4)
}

var deepFileName = strings.Repeat("b", 255)

const (
	sparseRegion = 512 << 10
	// deepNameLen makes FixtureDeepLevels levels exceed PATH_MAX (4096).
	deepNameLen = 200
)

// fixtureBase is the default mtime (2021-03-04T05:06:07Z); every entry
// without a chosen time gets it plus a per-path number of nanoseconds, so
// every timestamp in the fixture has a nanosecond part.
const fixtureBase = 1614834367

// BuildFixture creates the fidelity fixture in dir, which must not exist or
// be an empty directory. It needs root. The fixture is deterministic: two
// builds compare equal, property for property.
func BuildFixture(dir string) error {
	if err := prepareDir(dir); err != nil {
		return err
	}
	rootfd, err := unix.Open(dir, openDirFlags, 0)
	if err != nil {
		return fmt.Errorf("fixture %s: open: %w", dir, err)
	}
	defer unix.Close(rootfd)
	b := &fixtureBuilder{rootfd: rootfd, mtimes: map[string]unix.Timespec{}}
	steps := []struct {
		name string
		fn   func()
	}{
		{"regular files", b.regularFiles},
		{"sparse files", b.sparseFiles},
		{"symlinks", b.symlinks},
		{"hard links", b.hardLinks},
		{"special files", b.specialFiles},
		{"mode bits", b.modeBits},
		{"owners", b.owners},
		{"timestamps", b.timestamps},
		{"xattrs", b.xattrs},
		{"names", b.names},
		{"deep nesting", b.deep},
		{"directories", b.directories},
		{"mtimes", b.applyMtimes},
	}
	for _, s := range steps {
		s.fn()
		if b.err != nil {
			return fmt.Errorf("fixture %s: %s: %w", dir, s.name, b.err)
		}
	}
	return nil
}

// prepareDir makes dir an empty directory with mode 0755 owned by root, or
// refuses a directory that has entries.
func prepareDir(dir string) error {
	err := os.Mkdir(dir, 0o755)
	if os.IsExist(err) {
		entries, rerr := os.ReadDir(dir)
		if rerr != nil {
			return fmt.Errorf("fixture %s: %w", dir, rerr)
		}
		if len(entries) > 0 {
			return fmt.Errorf("fixture %s: directory is not empty", dir)
		}
	} else if err != nil {
		return fmt.Errorf("fixture %s: %w", dir, err)
	}
	if err := os.Chown(dir, 0, 0); err != nil {
		return fmt.Errorf("fixture %s: %w", dir, err)
	}
	if err := unix.Chmod(dir, 0o755); err != nil {
		return fmt.Errorf("fixture %s: chmod: %w", dir, err)
	}
	return nil
}

// fixtureBuilder creates entries relative to rootfd. It keeps its first
// error and does nothing after it, so the building steps read as a list.
type fixtureBuilder struct {
	rootfd int
	err    error
	// mtimes holds chosen mtimes by tree path; applyMtimes gives every other
	// entry a default one. Times go on last: creating children changes a
	// directory's mtime.
	mtimes map[string]unix.Timespec
	// lastModes are directory modes applied after their children exist
	// (a 0500 directory is built as 0755 first).
	lastModes []pathMode
}

type pathMode struct {
	rel  string
	mode uint32
}

func (b *fixtureBuilder) fail(rel string, err error) {
	if b.err == nil && err != nil {
		b.err = fmt.Errorf("%s: %w", QuotePath(rel), err)
	}
}

func (b *fixtureBuilder) mkdir(rel string, mode uint32) {
	if b.err != nil {
		return
	}
	if err := unix.Mkdirat(b.rootfd, rel, 0o700); err != nil {
		b.fail(rel, fmt.Errorf("mkdir: %w", err))
		return
	}
	b.chmod(rel, mode)
}

// chmod sets all 12 permission bits exactly (umask and inheritance aside).
func (b *fixtureBuilder) chmod(rel string, mode uint32) {
	if b.err != nil {
		return
	}
	if err := unix.Fchmodat(b.rootfd, rel, mode, 0); err != nil {
		b.fail(rel, fmt.Errorf("chmod %#o: %w", mode, err))
	}
}

func (b *fixtureBuilder) file(rel string, mode uint32, content []byte) {
	if b.err != nil {
		return
	}
	fd, err := unix.Openat(b.rootfd, rel, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		b.fail(rel, fmt.Errorf("create: %w", err))
		return
	}
	f := os.NewFile(uintptr(fd), rel)
	_, err = f.Write(content)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		b.fail(rel, fmt.Errorf("write: %w", err))
		return
	}
	b.chmod(rel, mode)
}

// sparse creates a file of the given size whose only data are random
// regions of sparseRegion bytes at offsets; the rest stays holes.
func (b *fixtureBuilder) sparse(rel string, size int64, offsets ...int64) {
	if b.err != nil {
		return
	}
	f, err := os.OpenFile(b.abs(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		b.fail(rel, err)
		return
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		b.fail(rel, err)
		return
	}
	for _, off := range offsets {
		if _, err := f.WriteAt(RandomBytes(fmt.Sprintf("%s@%d", rel, off), sparseRegion), off); err != nil {
			b.fail(rel, err)
			return
		}
	}
	b.fail(rel, f.Close())
	b.chmod(rel, 0o644)
}

// abs names rel through the root's file descriptor, for the calls that
// take only a path; rel is short everywhere but under FixtureDeep.
func (b *fixtureBuilder) abs(rel string) string { return procPath(b.rootfd, rel) }

func (b *fixtureBuilder) symlink(rel, target string) {
	if b.err != nil {
		return
	}
	if err := unix.Symlinkat(target, b.rootfd, rel); err != nil {
		b.fail(rel, fmt.Errorf("symlink: %w", err))
	}
}

func (b *fixtureBuilder) link(oldRel, newRel string) {
	if b.err != nil {
		return
	}
	if err := unix.Linkat(b.rootfd, oldRel, b.rootfd, newRel, 0); err != nil {
		b.fail(newRel, fmt.Errorf("link to %s: %w", QuotePath(oldRel), err))
	}
}

func (b *fixtureBuilder) mknod(rel string, typ, mode uint32, major, minor uint32) {
	if b.err != nil {
		return
	}
	if err := unix.Mknodat(b.rootfd, rel, typ|0o600, int(unix.Mkdev(major, minor))); err != nil {
		b.fail(rel, fmt.Errorf("mknod: %w", err))
		return
	}
	b.chmod(rel, mode)
}

// socket binds a unix socket at rel and closes it: the inode stays, as it
// does after any server that does not unlink its socket.
func (b *fixtureBuilder) socket(rel string, mode uint32) {
	if b.err != nil {
		return
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		b.fail(rel, fmt.Errorf("socket: %w", err))
		return
	}
	defer unix.Close(fd)
	// The /proc/self/fd path keeps sun_path under its 108-byte limit
	// wherever the fixture lives.
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: b.abs(rel)}); err != nil {
		b.fail(rel, fmt.Errorf("bind: %w", err))
		return
	}
	b.chmod(rel, mode)
}

// chown changes the owner of rel without following a symlink, and puts
// back the setuid/setgid bits that chown clears.
func (b *fixtureBuilder) chown(rel string, uid, gid int) {
	if b.err != nil {
		return
	}
	var st unix.Stat_t
	if err := unix.Fstatat(b.rootfd, rel, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		b.fail(rel, fmt.Errorf("stat: %w", err))
		return
	}
	if err := unix.Fchownat(b.rootfd, rel, uid, gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		b.fail(rel, fmt.Errorf("chown %d:%d: %w", uid, gid, err))
		return
	}
	if st.Mode&unix.S_IFMT != unix.S_IFLNK {
		b.chmod(rel, st.Mode&0o7777)
	}
}

func (b *fixtureBuilder) xattr(rel, name string, value []byte) {
	if b.err != nil {
		return
	}
	b.fail(rel, setXattr(b.rootfd, rel, name, value))
}

func (b *fixtureBuilder) mtime(rel string, sec, nsec int64) {
	b.mtimes[rel] = unix.Timespec{Sec: sec, Nsec: nsec}
}

func (b *fixtureBuilder) regularFiles() {
	b.mkdir("files", 0o755)
	b.file("files/empty", 0o644, nil)
	b.file("files/one", 0o644, []byte("x"))
	b.file("files/hundred", 0o644, RandomBytes("files/hundred", 100))
	// Around the chunker's 16 KiB minimum: a file shorter than it is one
	// chunk.
	b.file("files/16KiB-1", 0o644, RandomBytes("files/16KiB-1", 16<<10-1))
	b.file("files/16KiB", 0o644, RandomBytes("files/16KiB", 16<<10))
	b.file("files/300KiB", 0o600, RandomBytes("files/300KiB", 300<<10))
	random := RandomBytes(FixtureRandom5M, 5<<20)
	b.file(FixtureRandom5M, 0o644, random)
	b.file(FixtureInserted5M, 0o644, append([]byte{0x5a}, random...))
	// Written zeros, allocated on disk: equal content to a hole, so a copy
	// may store them sparse.
	b.file("files/zeros-300KiB", 0o644, make([]byte, 300<<10))
	b.file("files/text.txt", 0o644, []byte("plain text\nwith two lines\n"))
}

func (b *fixtureBuilder) sparseFiles() {
	b.mkdir("sparse", 0o755)
	// Data at the start, at odd 4 KiB-aligned places in the middle, and at
	// the very end.
	b.sparse(FixtureSparse, FixtureSparseSize,
		0, 300<<20+12<<10, 700<<20+40<<10, FixtureSparseSize-sparseRegion)
	// A hole at the end: the size must come from the metadata, not the data.
	b.sparse("sparse/hole-at-end", 10<<20, 1<<20)
	// A hole at the start.
	b.sparse("sparse/hole-at-start", 4<<20, 4<<20-sparseRegion)
	// All hole.
	b.sparse("sparse/all-hole", 64<<20)
}

func (b *fixtureBuilder) symlinks() {
	b.mkdir("links", 0o755)
	b.symlink("links/relative", "../files/one")
	b.symlink("links/absolute", "/etc/os-release")
	b.symlink("links/dangling", "../does/not/exist")
	b.symlink("links/to-dir", "../files")
	b.symlink("links/self-loop", "self-loop")
	// The longest target Linux allows: PATH_MAX-1 bytes.
	b.symlink("links/long-target", strings.Repeat("abcdefg/", 511)+"abcdefg")
}

func (b *fixtureBuilder) hardLinks() {
	b.mkdir("hardlinks", 0o755)
	b.mkdir("hardlinks/a", 0o755)
	b.mkdir("hardlinks/b", 0o755)
	// Three names across two directories.
	b.file("hardlinks/a/trio-1", 0o640, []byte("three names, one inode\n"))
	b.xattr("hardlinks/a/trio-1", "user.trio", []byte("1"))
	b.link("hardlinks/a/trio-1", "hardlinks/b/trio-2")
	b.link("hardlinks/a/trio-1", "hardlinks/b/trio-3")
	// Two groups whose inodes are identical in content and metadata: only
	// the link structure tells them apart.
	for _, g := range []string{"x", "y"} {
		first := "hardlinks/twin-" + g + "-1"
		b.file(first, 0o604, []byte("twin content\n"))
		b.chown(first, 1000, 1000)
		b.xattr(first, "user.twin", []byte("same"))
		b.link(first, "hardlinks/twin-"+g+"-2")
		b.mtime(first, 1500000000, 123456789)
		b.mtime("hardlinks/twin-"+g+"-2", 1500000000, 123456789)
	}
	// A file with one name next to them, identical too.
	b.file("hardlinks/twin-single", 0o604, []byte("twin content\n"))
	b.chown("hardlinks/twin-single", 1000, 1000)
	b.xattr("hardlinks/twin-single", "user.twin", []byte("same"))
	b.mtime("hardlinks/twin-single", 1500000000, 123456789)
}

func (b *fixtureBuilder) specialFiles() {
	b.mkdir("special", 0o755)
	b.mknod("special/fifo", unix.S_IFIFO, 0o644, 0, 0)
	b.socket("special/socket", 0o755)
	b.mknod("special/char-1-3", unix.S_IFCHR, 0o666, 1, 3)
	b.mknod("special/block-7-200", unix.S_IFBLK, 0o660, 7, 200)
	// A device number that needs more than 16 bits.
	b.mknod("special/char-big", unix.S_IFCHR, 0o600, 4095, 1048575)
}

func (b *fixtureBuilder) modeBits() {
	b.mkdir("modes", 0o755)
	b.file("modes/setuid", 0o4755, []byte("#!/bin/sh\n"))
	b.file("modes/setgid", 0o2755, []byte("#!/bin/sh\n"))
	b.file("modes/sticky", 0o1644, []byte("sticky\n"))
	b.file("modes/all-bits", 0o7777, []byte("all\n"))
	b.file("modes/no-bits", 0o000, []byte("none\n"))
	b.mkdir("modes/sticky-dir", 0o1777)
	b.file("modes/sticky-dir/inside", 0o644, []byte("in a sticky dir\n"))
	b.mkdir("modes/setgid-dir", 0o2775)
	b.chown("modes/setgid-dir", 0, 5678)
	// Created after the chown: inherits gid 5678 and, for the directory,
	// the setgid bit, as on a real system.
	b.file("modes/setgid-dir/inherits-gid", 0o644, []byte("gid from parent\n"))
	b.mkdir("modes/setgid-dir/sub", 0o2755)
}

func (b *fixtureBuilder) owners() {
	b.mkdir("owners", 0o755)
	b.file("owners/u1234-g5678", 0o644, []byte("1234:5678\n"))
	b.chown("owners/u1234-g5678", 1234, 5678)
	b.file("owners/u65534-g0", 0o644, []byte("65534:0\n"))
	b.chown("owners/u65534-g0", 65534, 0)
	// The largest valid id: (uid_t)-1 means "unchanged".
	b.file("owners/u-max", 0o644, []byte("4294967294\n"))
	b.chown("owners/u-max", 4294967294, 4294967294)
	b.mkdir("owners/dir-4321-8765", 0o750)
	b.file("owners/dir-4321-8765/file", 0o640, []byte("in an owned dir\n"))
	b.chown("owners/dir-4321-8765/file", 4321, 8765)
	b.chown("owners/dir-4321-8765", 4321, 8765)
	b.symlink("owners/symlink-2222-3333", "u1234-g5678")
	b.chown("owners/symlink-2222-3333", 2222, 3333)
	b.mknod("owners/fifo-77-88", unix.S_IFIFO, 0o600, 0, 0)
	b.chown("owners/fifo-77-88", 77, 88)
	b.file("owners/setuid-1234", 0o4750, []byte("setuid and owned\n"))
	b.chown("owners/setuid-1234", 1234, 1234)
}

func (b *fixtureBuilder) timestamps() {
	b.mkdir("times", 0o755)
	stamps := []struct {
		name      string
		sec, nsec int64
	}{
		{"epoch-1s-1ns", 1, 1},
		{"epoch-zero", 0, 0},
		{"just-before-epoch", -1, 500000000},
		{"year-1960", -315619200, 123456789},
		{"year-1938", -1000000000, 999999999},
		{"year-2100", 4102444800, 1},
		{"year-2400", 13569465600, 42},
	}
	for _, s := range stamps {
		rel := "times/" + s.name
		b.file(rel, 0o644, []byte(s.name+"\n"))
		b.mtime(rel, s.sec, s.nsec)
	}
	b.symlink("times/symlink-2100", "year-2100")
	b.mtime("times/symlink-2100", 4102444801, 999999999)
	b.symlink("times/symlink-1960", "year-1960")
	b.mtime("times/symlink-1960", -315619201, 7)
	b.mkdir("times/dir-1965", 0o755)
	b.file("times/dir-1965/child", 0o644, []byte("child\n"))
	b.mtime("times/dir-1965", -157766400, 555555555)
	b.mkdir("times/dir-2200", 0o755)
	b.mtime("times/dir-2200", 7258118400, 1)
}

// Capability and ACL blobs as the kernel stores them.
var (
	// capNetRawEP is what `setcap cap_net_raw+ep` writes: a
	// VFS_CAP_REVISION_2 header with the effective flag, then permitted and
	// inheritable sets in two 32-bit halves.
	capNetRawEP = capV2(1<<13, 0)
	// capNetAdminBindEP is cap_net_admin,cap_net_bind_service+ep.
	capNetAdminBindEP = capV2(1<<12|1<<10, 0)
)

func capV2(permitted, inheritable uint64) []byte {
	const revision2, effective = 0x02000000, 0x000001
	b := binary.LittleEndian.AppendUint32(nil, revision2|effective)
	b = binary.LittleEndian.AppendUint32(b, uint32(permitted))
	b = binary.LittleEndian.AppendUint32(b, uint32(inheritable))
	b = binary.LittleEndian.AppendUint32(b, uint32(permitted>>32))
	return binary.LittleEndian.AppendUint32(b, uint32(inheritable>>32))
}

// ACLEntry is one entry of a POSIX ACL xattr.
type ACLEntry struct {
	Tag  uint16 // ACLUserObj, ACLUser, ...
	Perm uint16 // rwx bits: 4, 2, 1
	ID   uint32 // uid or gid for ACLUser and ACLGroup
}

// POSIX ACL entry tags, as in <linux/posix_acl.h>.
const (
	ACLUserObj  uint16 = 0x01
	ACLUser     uint16 = 0x02
	ACLGroupObj uint16 = 0x04
	ACLGroup    uint16 = 0x08
	ACLMask     uint16 = 0x10
	ACLOther    uint16 = 0x20
)

// EncodeACL returns the system.posix_acl_access or system.posix_acl_default
// value for entries, which must be sorted by tag, then id, as the kernel
// requires.
func EncodeACL(entries ...ACLEntry) []byte {
	const version = 2
	b := binary.LittleEndian.AppendUint32(nil, version)
	for _, e := range entries {
		id := e.ID
		if e.Tag != ACLUser && e.Tag != ACLGroup {
			id = 0xffffffff
		}
		b = binary.LittleEndian.AppendUint16(b, e.Tag)
		b = binary.LittleEndian.AppendUint16(b, e.Perm)
		b = binary.LittleEndian.AppendUint32(b, id)
	}
	return b
}

func (b *fixtureBuilder) xattrs() {
	b.mkdir("xattrs", 0o755)
	const f = "xattrs/file"
	b.file(f, 0o640, []byte("a file with every kind of xattr\n"))
	b.xattr(f, "user.plain", []byte("hello"))
	binaryValue := make([]byte, 256)
	for i := range binaryValue {
		binaryValue[i] = byte(i)
	}
	b.xattr(f, "user.binary", binaryValue)
	b.xattr(f, "user.empty", nil)
	b.xattr(f, "user.big", RandomBytes("xattrs/file user.big", 2000))
	b.xattr(f, "trusted.overlay.opaque", []byte("y"))
	b.xattr(f, "trusted.t", []byte("trusted value"))
	b.xattr(f, "security.selinux", []byte("system_u:object_r:bin_t:s0\x00"))
	b.xattr(f, "security.capability", capNetRawEP)
	// Its mask (r) equals the group bits of 0640, so the mode stays.
	b.xattr(f, "system.posix_acl_access", EncodeACL(
		ACLEntry{Tag: ACLUserObj, Perm: 6},
		ACLEntry{Tag: ACLUser, Perm: 4, ID: 1234},
		ACLEntry{Tag: ACLGroupObj, Perm: 4},
		ACLEntry{Tag: ACLGroup, Perm: 4, ID: 5678},
		ACLEntry{Tag: ACLMask, Perm: 4},
		ACLEntry{Tag: ACLOther, Perm: 0},
	))

	const d = "xattrs/dir"
	b.mkdir(d, 0o755)
	b.xattr(d, "user.dir", []byte("d"))
	b.xattr(d, "trusted.dir", []byte("td"))
	b.xattr(d, "security.selinux", []byte("system_u:object_r:etc_t:s0\x00"))
	b.xattr(d, "system.posix_acl_access", EncodeACL(
		ACLEntry{Tag: ACLUserObj, Perm: 7},
		ACLEntry{Tag: ACLUser, Perm: 7, ID: 1234},
		ACLEntry{Tag: ACLGroupObj, Perm: 5},
		ACLEntry{Tag: ACLMask, Perm: 5},
		ACLEntry{Tag: ACLOther, Perm: 5},
	))
	b.xattr(d, "system.posix_acl_default", EncodeACL(
		ACLEntry{Tag: ACLUserObj, Perm: 7},
		ACLEntry{Tag: ACLUser, Perm: 5, ID: 1234},
		ACLEntry{Tag: ACLGroupObj, Perm: 5},
		ACLEntry{Tag: ACLGroup, Perm: 7, ID: 5678},
		ACLEntry{Tag: ACLMask, Perm: 7},
		ACLEntry{Tag: ACLOther, Perm: 0},
	))
	// Created under the default ACL: the kernel gives it an access ACL.
	b.file(d+"/inherits-acl", 0o666, []byte("inherited ACL\n"))

	// Symlinks take trusted.* and security.*, not user.* nor ACLs.
	const l = "xattrs/symlink"
	b.symlink(l, "file")
	b.xattr(l, "trusted.link", []byte("on the link itself"))
	b.xattr(l, "security.selinux", []byte("system_u:object_r:bin_t:s0\x00"))

	b.mknod("xattrs/fifo", unix.S_IFIFO, 0o644, 0, 0)
	b.xattr("xattrs/fifo", "trusted.fifo", []byte("f"))
	b.mknod("xattrs/char-1-5", unix.S_IFCHR, 0o666, 1, 5)
	b.xattr("xattrs/char-1-5", "security.selinux", []byte("system_u:object_r:zero_device_t:s0\x00"))

	// Another capability set, on a setuid-free executable owned by a user.
	b.file("xattrs/cap-bind", 0o750, []byte("#!/bin/sh\n"))
	b.chown("xattrs/cap-bind", 1234, 1234)
	b.xattr("xattrs/cap-bind", "security.capability", capNetAdminBindEP)
}

func (b *fixtureBuilder) names() {
	b.mkdir("names", 0o755)
	names := []string{
		"with space",
		" leading space",
		"trailing space ",
		"new\nline",
		"tab\there",
		"\x01control",
		"\xff\xfe not utf-8 \x80",
		"back\\slash",
		`quote"d`,
		"-leading-dash",
		"ünïcödé ñame",
		"*?[glob]",
		strings.Repeat("n", 255),
		// 255 bytes that are not all ASCII.
		strings.Repeat("é", 127) + "x",
	}
	for i, n := range names {
		b.file("names/"+n, 0o644, []byte(fmt.Sprintf("name %d\n", i)))
	}
	b.mkdir("names/dir\nwith newline", 0o755)
	b.file("names/dir\nwith newline/\xc3\x28 invalid", 0o644, []byte("nested\n"))
}

// deep nests FixtureDeepLevels directories with long names below
// FixtureDeep, going down by file descriptor since the paths outgrow
// PATH_MAX, and hard-links the bottom file to a name near the top.
func (b *fixtureBuilder) deep() {
	b.mkdir(FixtureDeep, 0o755)
	if b.err != nil {
		return
	}
	top, err := openDirAt(b.rootfd, FixtureDeep)
	if err != nil {
		b.fail(FixtureDeep, err)
		return
	}
	defer unix.Close(top)
	fd, err := unix.Dup(top)
	if err != nil {
		b.fail(FixtureDeep, err)
		return
	}
	defer func() { unix.Close(fd) }()
	rel := FixtureDeep
	for i := range FixtureDeepLevels {
		name := deepDirName(i)
		rel += "/" + name
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			b.fail(rel, fmt.Errorf("mkdir: %w", err))
			return
		}
		if err := unix.Fchmodat(fd, name, 0o755, 0); err != nil {
			b.fail(rel, fmt.Errorf("chmod: %w", err))
			return
		}
		next, err := openDirAt(fd, name)
		if err != nil {
			b.fail(rel, err)
			return
		}
		unix.Close(fd)
		fd = next
	}
	bottom := deepFileName
	ffd, err := unix.Openat(fd, bottom, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, 0o644)
	if err != nil {
		b.fail(rel+"/"+bottom, fmt.Errorf("create: %w", err))
		return
	}
	_, err = unix.Write(ffd, RandomBytes("deep bottom", 100<<10))
	if err == nil {
		err = unix.Fchmod(ffd, 0o640)
	}
	unix.Close(ffd)
	if err == nil {
		err = setXattr(fd, bottom, "user.deep", []byte("below PATH_MAX"))
	}
	if err == nil {
		err = unix.Symlinkat(bottom, fd, "link-to-bottom")
	}
	if err == nil {
		err = unix.Linkat(fd, bottom, top, "hardlink-to-bottom", 0)
	}
	b.fail(rel+"/"+bottom, err)
}

func (b *fixtureBuilder) directories() {
	b.mkdir("empty-dir", 0o755)
	b.mkdir("readonly-dir", 0o755)
	b.file("readonly-dir/a", 0o644, []byte("a\n"))
	b.file("readonly-dir/b", 0o600, []byte("b\n"))
	b.lastModes = append(b.lastModes, pathMode{"readonly-dir", 0o500})
	b.mkdir("empty-dir-0700", 0o700)
	b.mtime(".", 1700000000, 987654321)
}

// applyMtimes sets the last modes and then every mtime, children before
// their directory, walking by file descriptor.
func (b *fixtureBuilder) applyMtimes() {
	for _, pm := range b.lastModes {
		b.chmod(pm.rel, pm.mode)
	}
	if b.err != nil {
		return
	}
	b.setTimesBelow(b.rootfd, ".")
	if b.err != nil {
		return
	}
	if err := unix.UtimesNanoAt(b.rootfd, ".", b.times("."), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		b.fail(".", fmt.Errorf("utimensat: %w", err))
	}
}

func (b *fixtureBuilder) setTimesBelow(dirfd int, dir string) {
	names, err := readDirNames(dirfd)
	if err != nil {
		b.fail(dir, err)
		return
	}
	for _, name := range names {
		rel := joinPath(dir, name)
		var st unix.Stat_t
		if err := unix.Fstatat(dirfd, name, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			b.fail(rel, fmt.Errorf("stat: %w", err))
			return
		}
		if st.Mode&unix.S_IFMT == unix.S_IFDIR {
			sub, err := openDirAt(dirfd, name)
			if err != nil {
				b.fail(rel, err)
				return
			}
			b.setTimesBelow(sub, rel)
			unix.Close(sub)
			if b.err != nil {
				return
			}
		}
		if err := unix.UtimesNanoAt(dirfd, name, b.times(rel), unix.AT_SYMLINK_NOFOLLOW); err != nil {
			b.fail(rel, fmt.Errorf("utimensat: %w", err))
			return
		}
	}
}

// times returns atime and mtime for rel: its chosen mtime, or the base time
// plus a nanosecond count derived from the path.
func (b *fixtureBuilder) times(rel string) []unix.Timespec {
	t, ok := b.mtimes[rel]
	if !ok {
		h := fnv.New64a()
		h.Write([]byte(rel))
		t = unix.Timespec{Sec: fixtureBase, Nsec: int64(h.Sum64() % 1e9)}
	}
	return []unix.Timespec{t, t}
}

// RandomBytes returns n pseudo-random bytes determined by seed: the same
// seed gives the same bytes on every run and machine (ChaCha8).
func RandomBytes(seed string, n int) []byte {
	r := rand.NewChaCha8(sha256.Sum256([]byte(seed)))
	buf := make([]byte, n)
	_, _ = r.Read(buf) // ChaCha8.Read never fails.
	return buf
}
