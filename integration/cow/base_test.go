package cow_test

import (
	"encoding/binary"
	"hash/fnv"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/fstree"
)

// The base tree: small, but with one of everything the operations touch.
// buildBase makes the same tree, property for property, every time: the
// CoW side mounts a stored copy of it, the ext4 side gets a fresh one per
// case.
const (
	baseText   = "line one\nline two\nline three\n"
	baseBig    = "d/big" // bigBytes of random data: room to punch holes in
	bigBytes   = 8 << 20
	baseSparse = "sparse" // sparseSize bytes; data only at sparseOff
	sparseSize = 16 << 20
	sparseData = 512 << 10
	sparseOff  = 4 << 20
	baseSec    = 1614834367 // 2021-03-04: every base time is in this second
	nobody     = 65534
	sgidGroup  = 5678 // the group of sgid/, which nobody is not in
)

func buildBase(t testing.TB, dir string) {
	t.Helper()
	b := &baseBuilder{t: t, root: dir}
	must(t, os.Mkdir(dir, 0o755))
	b.chown(".", 0, 0)
	b.chmod(".", 0o755)

	b.dir("d", 0o755)
	b.file("d/a", 0o644, []byte(baseText))
	b.file("d/b", 0o644, fstree.RandomBytes("d/b", 64<<10))
	b.file(baseBig, 0o644, fstree.RandomBytes(baseBig, bigBytes))
	b.dir("d/sub", 0o755)
	b.file("d/sub/c", 0o600, []byte("only root reads this\n"))

	// A hard-link pair owned by a user.
	b.file("hl1", 0o640, []byte("two names, one inode\n"))
	b.chown("hl1", 1000, 1000)
	b.xattr("hl1", "user.pair", []byte("yes"))
	must(t, os.Link(b.p("hl1"), b.p("hl2")))

	b.symlink("sym", "d/a")
	b.symlink("dangling", "created-through-link")
	b.symlink("dirlink", "d")

	b.dir("empty", 0o755)
	b.dir("full", 0o755)
	b.file("full/x", 0o644, []byte("x\n"))
	b.file("full/y", 0o644, []byte("y\n"))

	// Where a non-root caller may create: world-writable, and setgid to a
	// group the caller is not in.
	b.dir("pub", 0o777)
	b.dir("sgid", 0o755)
	b.chown("sgid", 0, sgidGroup)
	b.chmod("sgid", 0o2777)

	// Set-id files that others (or their owner, nobody) may write.
	b.file("suid-root", 0o644, []byte("#!/bin/sh\necho root\n"))
	b.chmod("suid-root", 0o6777)
	b.file("suid-nobody", 0o644, []byte("#!/bin/sh\necho nobody\n"))
	b.chown("suid-nobody", nobody, nobody)
	b.chmod("suid-nobody", 0o6755)
	b.file("ro", 0o444, []byte("read only\n"))

	b.file("capfile", 0o755, []byte("#!/bin/sh\necho cap\n"))
	b.xattr("capfile", "security.capability", capV2(1<<13)) // cap_net_raw+ep
	b.file("xf", 0o644, []byte("a file with xattrs\n"))
	b.xattr("xf", "user.a", []byte("1"))
	b.xattr("xf", "user.b", []byte("two"))
	b.xattr("xf", "trusted.t", []byte("trusted value"))
	// Its mask (r) equals the group bits of 0644, so the mode stays.
	b.xattr("xf", "system.posix_acl_access", fstree.EncodeACL(
		fstree.ACLEntry{Tag: fstree.ACLUserObj, Perm: 6},
		fstree.ACLEntry{Tag: fstree.ACLUser, Perm: 4, ID: 1234},
		fstree.ACLEntry{Tag: fstree.ACLGroupObj, Perm: 4},
		fstree.ACLEntry{Tag: fstree.ACLMask, Perm: 4},
		fstree.ACLEntry{Tag: fstree.ACLOther, Perm: 4},
	))
	// New entries below acldir inherit its default ACL.
	b.dir("acldir", 0o755)
	b.xattr("acldir", "system.posix_acl_default", fstree.EncodeACL(
		fstree.ACLEntry{Tag: fstree.ACLUserObj, Perm: 7},
		fstree.ACLEntry{Tag: fstree.ACLUser, Perm: 5, ID: 1234},
		fstree.ACLEntry{Tag: fstree.ACLGroupObj, Perm: 5},
		fstree.ACLEntry{Tag: fstree.ACLGroup, Perm: 7, ID: sgidGroup},
		fstree.ACLEntry{Tag: fstree.ACLMask, Perm: 7},
		fstree.ACLEntry{Tag: fstree.ACLOther, Perm: 0},
	))

	b.sparse(baseSparse)

	b.dir("dev", 0o755)
	b.mknod("dev/null", unix.S_IFCHR, 0o666, 1, 3)
	b.mknod("dev/fifo", unix.S_IFIFO, 0o644, 0, 0)

	b.times()
}

// capV2 is a VFS_CAP_REVISION_2 security.capability value with the
// effective flag and the given permitted set, as setcap writes it.
func capV2(permitted uint64) []byte {
	const revision2, effective = 0x02000000, 0x000001
	v := binary.LittleEndian.AppendUint32(nil, revision2|effective)
	v = binary.LittleEndian.AppendUint32(v, uint32(permitted))
	v = binary.LittleEndian.AppendUint32(v, 0)
	v = binary.LittleEndian.AppendUint32(v, uint32(permitted>>32))
	return binary.LittleEndian.AppendUint32(v, 0)
}

// baseBuilder creates entries below root and fails t on the first error.
type baseBuilder struct {
	t    testing.TB
	root string
}

func (b *baseBuilder) p(rel string) string { return filepath.Join(b.root, rel) }

func (b *baseBuilder) dir(rel string, mode uint32) {
	b.t.Helper()
	must(b.t, unix.Mkdir(b.p(rel), 0o700))
	b.chmod(rel, mode)
}

// chmod sets all 12 mode bits, umask aside.
func (b *baseBuilder) chmod(rel string, mode uint32) {
	b.t.Helper()
	must(b.t, unix.Chmod(b.p(rel), mode))
}

func (b *baseBuilder) chown(rel string, uid, gid int) {
	b.t.Helper()
	must(b.t, unix.Lchown(b.p(rel), uid, gid))
}

func (b *baseBuilder) file(rel string, mode uint32, content []byte) {
	b.t.Helper()
	must(b.t, os.WriteFile(b.p(rel), content, 0o600))
	b.chmod(rel, mode)
}

func (b *baseBuilder) symlink(rel, target string) {
	b.t.Helper()
	must(b.t, os.Symlink(target, b.p(rel)))
}

func (b *baseBuilder) mknod(rel string, typ, mode, major, minor uint32) {
	b.t.Helper()
	must(b.t, unix.Mknod(b.p(rel), typ|0o600, int(unix.Mkdev(major, minor))))
	b.chmod(rel, mode)
}

func (b *baseBuilder) xattr(rel, name string, value []byte) {
	b.t.Helper()
	must(b.t, unix.Lsetxattr(b.p(rel), name, value, 0))
}

// sparse makes baseSparse: holes but for sparseData bytes at sparseOff.
func (b *baseBuilder) sparse(rel string) {
	b.t.Helper()
	f, err := os.OpenFile(b.p(rel), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	must(b.t, err)
	defer f.Close()
	must(b.t, f.Truncate(sparseSize))
	_, err = f.WriteAt(fstree.RandomBytes(rel, sparseData), sparseOff)
	must(b.t, err)
	must(b.t, f.Close())
}

// times gives every entry, the root last, an atime and mtime of baseSec
// plus a nanosecond count derived from its path.
func (b *baseBuilder) times() {
	b.t.Helper()
	var rels []string
	err := filepath.WalkDir(b.root, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(b.root, p)
		rels = append(rels, rel)
		return err
	})
	must(b.t, err)
	// Children before their directory: setting a child's times does not
	// touch its parent, but the order costs nothing and reads right.
	slices.Reverse(rels)
	for _, rel := range rels {
		ts := baseTime(rel)
		must(b.t, unix.UtimesNanoAt(unix.AT_FDCWD, b.p(rel), []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW))
	}
}

func baseTime(rel string) unix.Timespec {
	h := fnv.New64a()
	h.Write([]byte(rel))
	return unix.Timespec{Sec: baseSec, Nsec: int64(h.Sum64() % 1e9)}
}
