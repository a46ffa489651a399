package fstree

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"
)

// ErrUnsupported is wrapped by CheckFilesystem's errors.
var ErrUnsupported = errors.New("filesystem cannot hold the fixture")

// CheckFilesystem reports whether the filesystem holding dir keeps
// everything the fixture relies on: user.*, trusted.* and security.* xattrs
// (trusted.* and security.* on symlinks too), POSIX ACLs, device nodes,
// holes, and nanosecond mtimes before 1970 and after 2038. tmpfs, for one,
// fails it. It needs root and leaves nothing behind.
func CheckFilesystem(dir string) error {
	probe, err := os.MkdirTemp(dir, ".fstree-probe-")
	if err != nil {
		return fmt.Errorf("check filesystem of %s: %w", dir, err)
	}
	defer os.RemoveAll(probe)

	fail := func(what string, err error) error {
		return fmt.Errorf("check filesystem of %s: %s: %w: %w", dir, what, err, ErrUnsupported)
	}
	file := filepath.Join(probe, "file")
	f, err := os.Create(file)
	if err != nil {
		return fail("create", err)
	}
	// A hole between two written blocks must stay unallocated.
	const size = 8 << 20
	_, err = f.WriteAt([]byte("start"), 0)
	if err == nil {
		_, err = f.WriteAt([]byte("end"), size-3)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fail("write", err)
	}
	var st unix.Stat_t
	if err := unix.Stat(file, &st); err != nil {
		return fail("stat", err)
	}
	if st.Blocks*512 >= size/2 {
		return fail("holes", fmt.Errorf("a file with two written bytes allocates %d bytes", st.Blocks*512))
	}

	link := filepath.Join(probe, "link")
	if err := os.Symlink("file", link); err != nil {
		return fail("symlink", err)
	}
	xattrs := []struct{ path, name string }{
		{file, "user.probe"},
		{file, "trusted.probe"},
		{file, "security.selinux"},
		{link, "trusted.probe"},
		{link, "security.selinux"},
	}
	for _, x := range xattrs {
		if err := unix.Lsetxattr(x.path, x.name, []byte("v"), 0); err != nil {
			return fail("xattr "+x.name+" on "+filepath.Base(x.path), err)
		}
	}
	acl := EncodeACL(
		ACLEntry{Tag: ACLUserObj, Perm: 6},
		ACLEntry{Tag: ACLUser, Perm: 4, ID: 1234},
		ACLEntry{Tag: ACLGroupObj, Perm: 4},
		ACLEntry{Tag: ACLMask, Perm: 4},
		ACLEntry{Tag: ACLOther, Perm: 4},
	)
	if err := unix.Lsetxattr(file, "system.posix_acl_access", acl, 0); err != nil {
		return fail("POSIX ACL", err)
	}
	if err := unix.Mknod(filepath.Join(probe, "dev"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 3))); err != nil {
		return fail("device node", err)
	}
	for _, ts := range []unix.Timespec{{Sec: -315619200, Nsec: 123456789}, {Sec: 13569465600, Nsec: 42}} {
		if err := unix.UtimesNanoAt(unix.AT_FDCWD, link, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fail("mtime", err)
		}
		if err := unix.Lstat(link, &st); err != nil {
			return fail("stat", err)
		}
		if st.Mtim != ts {
			return fail("mtime", fmt.Errorf("set %s, read back %s", formatTime(ts), formatTime(st.Mtim)))
		}
	}
	return nil
}
