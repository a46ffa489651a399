package cow_test

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/fstree"
)

// utimens sets the times of rel (without following a symlink when
// nofollow) and writes down the outcome.
func (r *rec) utimens(rel string, atime, mtime unix.Timespec, nofollow bool, want ...unix.Errno) {
	r.t.Helper()
	flags := 0
	if nofollow {
		flags = unix.AT_SYMLINK_NOFOLLOW
	}
	err := unix.UtimesNanoAt(unix.AT_FDCWD, r.p(rel), []unix.Timespec{atime, mtime}, flags)
	r.check(fmt.Sprintf("utimensat %s %s %s", rel, tsName(atime), tsName(mtime)), err, want...)
}

// futimens is futimens(3): utimensat(fd, NULL, times, 0), which x/sys
// does not offer.
func futimens(fd int, atime, mtime unix.Timespec) error {
	ts := [2]unix.Timespec{atime, mtime}
	_, _, e := unix.Syscall6(unix.SYS_UTIMENSAT, uintptr(fd), 0, uintptr(unsafe.Pointer(&ts[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

var (
	utimeNow  = unix.Timespec{Nsec: unix.UTIME_NOW}
	utimeOmit = unix.Timespec{Nsec: unix.UTIME_OMIT}
)

func tsName(ts unix.Timespec) string {
	switch ts.Nsec {
	case unix.UTIME_NOW:
		return "UTIME_NOW"
	case unix.UTIME_OMIT:
		return "UTIME_OMIT"
	}
	return fmt.Sprintf("%d.%09d", ts.Sec, ts.Nsec)
}

// TestChmodChownUtimens covers metadata changes of base entries: no data
// changes, and the commit must carry them.
func TestChmodChownUtimens(t *testing.T) {
	runCases(t, []opCase{
		{"chmod a base file and directories", func(r *rec) {
			r.check("chmod d/a 0600", unix.Chmod(r.p("d/a"), 0o600))
			r.check("chmod d/sub/c 0644", unix.Chmod(r.p("d/sub/c"), 0o644))
			r.check("chmod d 0700", unix.Chmod(r.p("d"), 0o700))
			r.check("chmod . 0711", unix.Chmod(r.p("."), 0o711))
			r.stat("d/a")
			r.stat("d/sub/c")
			r.stat("d")
			r.stat(".")
		}},
		{"chmod set-id and sticky bits", func(r *rec) {
			r.check("chmod d/a 04755", unix.Chmod(r.p("d/a"), 0o4755))
			r.check("chmod d/b 02755", unix.Chmod(r.p("d/b"), 0o2755))
			r.check("chmod d/big 01644", unix.Chmod(r.p(baseBig), 0o1644))
			r.check("chmod empty 01777", unix.Chmod(r.p("empty"), 0o1777))
			r.check("chmod full 02775", unix.Chmod(r.p("full"), 0o2775))
			r.check("chmod ro 07777", unix.Chmod(r.p("ro"), 0o7777))
			for _, rel := range []string{"d/a", "d/b", baseBig, "empty", "full", "ro"} {
				r.stat(rel)
			}
		}},
		{"fchmod an open file", func(r *rec) {
			fd := r.open("d/b", unix.O_RDONLY, 0)
			r.check("fchmod 0400", unix.Fchmod(fd, 0o400))
			r.fstat(fd)
			r.close(fd)
			r.stat("d/b")
		}},
		{"chown base entries", func(r *rec) {
			r.check("chown d/a 1234:5678", unix.Chown(r.p("d/a"), 1234, 5678))
			r.check("chown d/b -1:99", unix.Chown(r.p("d/b"), -1, 99))
			r.check("chown d/big 77:-1", unix.Chown(r.p(baseBig), 77, -1))
			r.check("chown d 4321:8765", unix.Chown(r.p("d"), 4321, 8765))
			r.check("chown dev/fifo 5:6", unix.Chown(r.p("dev/fifo"), 5, 6))
			r.check("chown largest id", unix.Chown(r.p("ro"), 4294967294, 4294967294))
			for _, rel := range []string{"d/a", "d/b", baseBig, "d", "dev/fifo", "ro"} {
				r.stat(rel)
			}
		}},
		{"chown clears set-id bits of files, not of directories", func(r *rec) {
			r.check("chown suid-root 0:0", unix.Chown(r.p("suid-root"), 0, 0))
			r.check("chown suid-nobody 1000:1000", unix.Chown(r.p("suid-nobody"), 1000, 1000))
			r.check("chown sgid 0:0", unix.Chown(r.p("sgid"), 0, 0))
			r.stat("suid-root")
			r.stat("suid-nobody")
			r.stat("sgid")
		}},
		{"chown drops security.capability", func(r *rec) {
			r.check("chown capfile 1234:1234", unix.Chown(r.p("capfile"), 1234, 1234))
			r.xattrs("capfile")
			r.stat("capfile")
		}},
		{"lchown a symlink, not its target", func(r *rec) {
			r.check("lchown sym 2222:3333", unix.Lchown(r.p("sym"), 2222, 3333))
			r.stat("sym")
			r.stat("d/a")
			r.check("chown through sym 1:1", unix.Chown(r.p("sym"), 1, 1))
			r.stat("sym")
			r.stat("d/a")
		}},
		{"chown one name of a base pair", func(r *rec) {
			r.check("chown hl1 3:4", unix.Chown(r.p("hl1"), 3, 4))
			r.stat("hl2")
		}},
		{"utimensat with explicit times", func(r *rec) {
			a, m := unix.Timespec{Sec: 1500000000, Nsec: 111111111}, unix.Timespec{Sec: 1600000000, Nsec: 222222222}
			r.utimens("d/a", a, m, false)
			r.utimens("d", a, m, false)
			r.utimens("sym", a, m, true)
			r.utimens("dev/null", a, m, false)
			r.utimens("d/b", unix.Timespec{Sec: -1000000000, Nsec: 999999999}, unix.Timespec{Sec: 13569465600, Nsec: 42}, false)
			for _, rel := range []string{"d/a", "d", "sym", "dev/null", "d/b"} {
				r.times(rel)
			}
		}},
		{"utimensat UTIME_NOW", func(r *rec) {
			r.utimens("d/a", utimeNow, utimeNow, false)
			r.utimens("sym", utimeNow, utimeNow, true)
			r.times("d/a")
			r.times("sym")
		}},
		{"utimensat UTIME_OMIT", func(r *rec) {
			a, m := unix.Timespec{Sec: 1500000000, Nsec: 1}, unix.Timespec{Sec: 1600000000, Nsec: 2}
			r.utimens("d/a", a, m, false)
			r.times("d/a")
			r.utimens("d/a", utimeOmit, unix.Timespec{Sec: 1700000000, Nsec: 3}, false)
			r.times("d/a") // atime stays
			r.utimens("d/a", unix.Timespec{Sec: 1400000000, Nsec: 4}, utimeOmit, false)
			r.times("d/a") // mtime stays
			// The store keeps no atime, so only times set here are
			// compared.
			r.utimens("d/b", unix.Timespec{Sec: 1300000000, Nsec: 5}, unix.Timespec{Sec: 1300000001, Nsec: 6}, false)
			r.utimens("d/b", utimeOmit, utimeOmit, false)
			r.times("d/b")
		}},
		{"utimensat UTIME_NOW for one, UTIME_OMIT for the other", func(r *rec) {
			r.utimens("d/a", unix.Timespec{Sec: 1500000000, Nsec: 5}, unix.Timespec{Sec: 1500000000, Nsec: 6}, false)
			r.utimens("d/a", utimeNow, utimeOmit, false)
			r.times("d/a")
			r.utimens("d/b", unix.Timespec{Sec: 1500000000, Nsec: 7}, unix.Timespec{Sec: 1500000000, Nsec: 8}, false)
			r.utimens("d/b", utimeOmit, utimeNow, false)
			r.times("d/b")
		}},
		{"futimens on an open descriptor", func(r *rec) {
			fd := r.open("d/b", unix.O_RDONLY, 0)
			r.check("futimens explicit", futimens(fd, unix.Timespec{Sec: 1234567890, Nsec: 123}, unix.Timespec{Sec: 1234567891, Nsec: 456}))
			r.close(fd)
			r.times("d/b")
		}},
		{"utimensat by a non-owner with write permission", func(r *rec) {
			// suid-root is 06777: nobody may write it, so may set the
			// times to now, but not to chosen values.
			r.child(nobody, nobody, "utimens", "suid-root", "now")
			r.child(nobody, nobody, "utimens", "suid-root", "explicit")
			r.child(nobody, nobody, "utimens", "d/a", "now")
			r.stat("suid-root")
		}},
		{"metadata only, on every kind of base entry", func(r *rec) {
			r.check("chmod d/big 0600", unix.Chmod(r.p(baseBig), 0o600))
			r.check("chown sparse 10:20", unix.Chown(r.p(baseSparse), 10, 20))
			r.utimens("d", unix.Timespec{Sec: 1000, Nsec: 1}, unix.Timespec{Sec: 2000, Nsec: 2}, false)
			r.check("setxattr hl1 user.meta", unix.Setxattr(r.p("hl1"), "user.meta", []byte("only"), 0))
			r.check("lchown dangling 7:7", unix.Lchown(r.p("dangling"), 7, 7))
			r.check("chmod dev/null 0600", unix.Chmod(r.p("dev/null"), 0o600))
			r.check("chown dev/fifo 8:8", unix.Chown(r.p("dev/fifo"), 8, 8))
			r.check("chmod empty 0500", unix.Chmod(r.p("empty"), 0o500))
			r.content(baseBig)
			r.content(baseSparse)
		}},
	})
}

// TestXattrs covers setxattr, getxattr, listxattr and removexattr in the
// user.*, trusted.* and security.* namespaces, on base and new entries.
func TestXattrs(t *testing.T) {
	runCases(t, []opCase{
		{"set, get, list and remove user.* on a base file", func(r *rec) {
			p := r.p("d/a")
			r.check("setxattr user.new", unix.Setxattr(p, "user.new", []byte("v"), 0))
			r.check("setxattr user.new XATTR_CREATE", unix.Setxattr(p, "user.new", []byte("w"), unix.XATTR_CREATE), unix.EEXIST)
			r.check("setxattr user.new XATTR_REPLACE", unix.Setxattr(p, "user.new", []byte("v2"), unix.XATTR_REPLACE))
			r.check("setxattr user.missing XATTR_REPLACE", unix.Setxattr(p, "user.missing", []byte("x"), unix.XATTR_REPLACE), unix.ENODATA)
			_, err := unix.Getxattr(p, "user.missing", make([]byte, 10))
			r.check("getxattr user.missing", err, unix.ENODATA)
			r.xattrs("d/a")
			r.check("removexattr user.new", unix.Removexattr(p, "user.new"))
			r.check("removexattr user.new again", unix.Removexattr(p, "user.new"), unix.ENODATA)
			r.xattrs("d/a")
		}},
		{"change the xattrs of a base file", func(r *rec) {
			p := r.p("xf")
			r.xattrs("xf")
			r.check("removexattr user.a", unix.Removexattr(p, "user.a"))
			r.check("setxattr user.b", unix.Setxattr(p, "user.b", []byte("three"), 0))
			r.check("setxattr user.c", unix.Setxattr(p, "user.c", nil, 0))
			r.check("setxattr trusted.t", unix.Setxattr(p, "trusted.t", []byte("changed"), 0))
			r.xattrs("xf")
			r.content("xf")
		}},
		{"size queries and ERANGE", func(r *rec) {
			p := r.p("xf")
			n, err := unix.Getxattr(p, "user.b", nil)
			r.check(fmt.Sprintf("getxattr user.b size query -> %d", n), err)
			_, err = unix.Getxattr(p, "user.b", make([]byte, 1))
			r.check("getxattr user.b into 1 byte", err, unix.ERANGE)
			n, err = unix.Listxattr(p, nil)
			r.check(fmt.Sprintf("listxattr size query -> %d", n), err)
			_, err = unix.Listxattr(p, make([]byte, 3))
			r.check("listxattr into 3 bytes", err, unix.ERANGE)
		}},
		{"trusted.* on a file, a directory and a symlink", func(r *rec) {
			r.check("setxattr d/a trusted.x", unix.Setxattr(r.p("d/a"), "trusted.x", []byte("file"), 0))
			r.check("setxattr d trusted.x", unix.Setxattr(r.p("d"), "trusted.x", []byte("dir"), 0))
			r.check("lsetxattr sym trusted.x", unix.Lsetxattr(r.p("sym"), "trusted.x", []byte("link"), 0))
			r.check("lsetxattr dev/fifo trusted.x", unix.Lsetxattr(r.p("dev/fifo"), "trusted.x", []byte("fifo"), 0))
			for _, rel := range []string{"d/a", "d", "sym", "dev/fifo"} {
				r.xattrs(rel)
			}
		}},
		{"user.* is refused on symlinks and special files", func(r *rec) {
			r.check("lsetxattr sym user.x", unix.Lsetxattr(r.p("sym"), "user.x", []byte("x"), 0), unix.EPERM)
			r.check("lsetxattr dev/null user.x", unix.Lsetxattr(r.p("dev/null"), "user.x", []byte("x"), 0), unix.EPERM)
			r.check("lsetxattr dev/fifo user.x", unix.Lsetxattr(r.p("dev/fifo"), "user.x", []byte("x"), 0), unix.EPERM)
			r.xattrs("sym")
		}},
		{"security.capability, raw and with setcap", func(r *rec) {
			r.check("setxattr d/b security.capability", unix.Setxattr(r.p("d/b"), "security.capability", capV2(1<<12), 0))
			r.run("setcap", "cap_net_bind_service+ep", r.p(baseBig))
			r.run("getcap", r.p(baseBig))
			r.run("getcap", r.p("capfile"))
			r.xattrs("d/b")
			r.xattrs(baseBig)
		}},
		{"a write drops security.capability", func(r *rec) {
			fd := r.open("capfile", unix.O_WRONLY|unix.O_APPEND, 0)
			r.write(fd, []byte("# changed\n"))
			r.close(fd)
			r.xattrs("capfile")
			r.stat("capfile")
		}},
		{"security.selinux-style labels on new entries", func(r *rec) {
			fd := r.open("n", unix.O_WRONLY|unix.O_CREAT, 0o644)
			r.close(fd)
			r.check("setxattr n security.selinux", unix.Setxattr(r.p("n"), "security.selinux", []byte("system_u:object_r:bin_t:s0\x00"), 0))
			r.check("mkdir nd", unix.Mkdir(r.p("nd"), 0o755))
			r.check("setxattr nd security.test", unix.Setxattr(r.p("nd"), "security.test", []byte("t"), 0))
			r.xattrs("n")
			r.xattrs("nd")
		}},
		{"big, binary and many xattrs", func(r *rec) {
			p := r.p("d/b")
			r.check("setxattr user.big 3000", unix.Setxattr(p, "user.big", fstree.RandomBytes("user.big", 3000), 0))
			r.check("setxattr user.bin", unix.Setxattr(p, "user.bin", []byte{0, 1, 2, 0, 255}, 0))
			for i := range 20 {
				r.check(fmt.Sprintf("setxattr user.n%02d", i), unix.Setxattr(p, fmt.Sprintf("user.n%02d", i), []byte{byte(i)}, 0))
			}
			r.xattrs("d/b")
		}},
		{"xattrs follow the file through a rename and a hard link", func(r *rec) {
			r.check("setxattr d/a user.moving", unix.Setxattr(r.p("d/a"), "user.moving", []byte("m"), 0))
			r.rename("d/a", "moved", 0)
			r.check("link moved moved2", unix.Link(r.p("moved"), r.p("moved2")))
			r.xattrs("moved2")
			r.xattrs("hl2")
		}},
	})
}

// run runs a command-line tool on paths of this side and writes down its
// exit status and output, with the side's root replaced by <root>.
func (r *rec) run(name string, args ...string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = "/"
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		r.t.Fatalf("%s %s: no answer within a minute", name, strings.Join(args, " "))
	}
	var exit *exec.ExitError
	status := 0
	switch {
	case err == nil:
	case errors.As(err, &exit):
		status = exit.ExitCode()
	default:
		r.t.Fatalf("run %s: %v", name, err)
	}
	shown := strings.ReplaceAll(strings.Join(args, " "), r.root, "<root>")
	r.note("$ %s %s -> exit %d\n%s", name, shown, status, strings.ReplaceAll(string(out), r.root, "<root>"))
}

// TestACLs covers POSIX ACLs as setfacl and getfacl use them: access ACLs
// and their mask against the mode, removal, and default ACLs inherited by
// new entries (the umask does not apply under a default ACL).
func TestACLs(t *testing.T) {
	getfacl := func(r *rec, rel string) {
		r.run("getfacl", "--omit-header", "--numeric", "--absolute-names", r.p(rel))
	}
	runCases(t, []opCase{
		{"setfacl -m on a base file", func(r *rec) {
			r.run("setfacl", "-m", "u:1234:rwx,g:5678:r", r.p("d/a"))
			getfacl(r, "d/a")
			r.stat("d/a")
		}},
		{"setfacl -b removes a base ACL", func(r *rec) {
			getfacl(r, "xf")
			r.run("setfacl", "-b", r.p("xf"))
			getfacl(r, "xf")
			r.stat("xf")
			r.xattrs("xf")
		}},
		{"chmod of a file with an ACL sets its mask", func(r *rec) {
			r.check("chmod xf 0600", unix.Chmod(r.p("xf"), 0o600))
			getfacl(r, "xf")
			r.check("chmod xf 0674", unix.Chmod(r.p("xf"), 0o674))
			getfacl(r, "xf")
		}},
		{"a base default ACL is inherited by new files and directories", func(r *rec) {
			fd := r.open("acldir/f", unix.O_WRONLY|unix.O_CREAT, 0o666)
			r.close(fd)
			r.check("mkdir acldir/sub 0777", unix.Mkdir(r.p("acldir/sub"), 0o777))
			fd = r.open("acldir/sub/g", unix.O_WRONLY|unix.O_CREAT, 0o640)
			r.close(fd)
			for _, rel := range []string{"acldir/f", "acldir/sub", "acldir/sub/g"} {
				getfacl(r, rel)
				r.stat(rel)
			}
		}},
		{"setfacl -d on a new directory, then create in it", func(r *rec) {
			r.check("mkdir nd", unix.Mkdir(r.p("nd"), 0o755))
			r.run("setfacl", "-d", "-m", "u:1234:rw,g::r,o::-", r.p("nd"))
			fd := r.open("nd/f", unix.O_WRONLY|unix.O_CREAT, 0o666)
			r.close(fd)
			getfacl(r, "nd")
			getfacl(r, "nd/f")
			r.stat("nd/f")
		}},
		{"ACL grants a non-root user what the mode does not", func(r *rec) {
			r.run("setfacl", "-m", "u:65534:rw", r.p("d/sub/c"))
			r.run("setfacl", "-m", "u:65534:x", r.p("d/sub"))
			r.child(nobody, nobody, "read", "d/sub/c")
			r.child(nobody, nobody, "append", "d/sub/c", "by nobody via the ACL\n")
			r.content("d/sub/c")
		}},
	})
}

// TestSetIDClearedOnWrite follows the kernel: a write or truncate by a
// caller without CAP_FSETID clears S_ISUID, and S_ISGID when group-exec is
// set; root's writes keep them.
func TestSetIDClearedOnWrite(t *testing.T) {
	runCases(t, []opCase{
		{"a non-root writer clears setuid and setgid", func(r *rec) {
			r.child(nobody, nobody, "write", "suid-root", "X")
			r.stat("suid-root")
			r.content("suid-root")
		}},
		{"the non-root owner's write clears them too", func(r *rec) {
			r.child(nobody, nobody, "write", "suid-nobody", "X")
			r.stat("suid-nobody")
		}},
		{"a non-root append clears them", func(r *rec) {
			r.child(nobody, nobody, "append", "suid-root", "echo appended\n")
			r.stat("suid-root")
			r.content("suid-root")
		}},
		{"a non-root truncate clears them", func(r *rec) {
			r.child(nobody, nobody, "truncate", "suid-root", "5")
			r.stat("suid-root")
		}},
		{"root's write keeps them", func(r *rec) {
			fd := r.open("suid-root", unix.O_WRONLY|unix.O_APPEND, 0)
			r.write(fd, []byte("echo by root\n"))
			r.close(fd)
			r.check("truncate by root", unix.Truncate(r.p("suid-nobody"), 3))
			r.stat("suid-root")
			r.stat("suid-nobody")
		}},
		{"setgid without group-exec stays", func(r *rec) {
			r.check("chmod d/a 02666", unix.Chmod(r.p("d/a"), 0o2666))
			r.child(nobody, nobody, "write", "d/a", "x")
			r.stat("d/a")
		}},
		{"on a set-id file created in the mount", func(r *rec) {
			fd := r.open("n", unix.O_WRONLY|unix.O_CREAT, 0o644)
			r.write(fd, []byte("#!/bin/sh\n"))
			r.close(fd)
			r.check("chmod n 06777", unix.Chmod(r.p("n"), 0o6777))
			r.stat("n")
			r.child(nobody, nobody, "append", "n", "true\n")
			r.stat("n")
		}},
		{"a non-root write drops security.capability", func(r *rec) {
			r.check("chmod capfile 0777", unix.Chmod(r.p("capfile"), 0o777))
			r.child(nobody, nobody, "append", "capfile", "# by nobody\n")
			r.xattrs("capfile")
		}},
	})
}

// TestCallerOwnsWhatItCreates: entries created by a caller belong to the
// caller's uid and gid (the directory's gid under a setgid directory), and
// the modes refuse what they refuse on ext4.
func TestCallerOwnsWhatItCreates(t *testing.T) {
	runCases(t, []opCase{
		{"nobody creates in a world-writable directory", func(r *rec) {
			r.child(nobody, nobody, "create", "pub/f", "0644")
			r.child(nobody, nobody, "mkdir", "pub/dir", "0777")
			r.child(nobody, nobody, "symlink", "pub/sl", "f")
			r.child(nobody, nobody, "mkfifo", "pub/fifo", "0666")
			r.child(nobody, nobody, "create", "pub/dir/inner", "0600")
			for _, rel := range []string{"pub/f", "pub/dir", "pub/sl", "pub/fifo", "pub/dir/inner"} {
				r.stat(rel)
			}
			r.content("pub/f")
		}},
		{"nobody creates in a setgid directory", func(r *rec) {
			r.child(nobody, nobody, "create", "sgid/f", "0664")
			r.child(nobody, nobody, "mkdir", "sgid/dir", "0775")
			r.stat("sgid/f")
			r.stat("sgid/dir")
		}},
		{"root creates in a setgid directory", func(r *rec) {
			fd := r.open("sgid/rootf", unix.O_WRONLY|unix.O_CREAT, 0o755)
			r.close(fd)
			r.check("mkdir sgid/rootdir", unix.Mkdir(r.p("sgid/rootdir"), 0o755))
			r.stat("sgid/rootf")
			r.stat("sgid/rootdir")
		}},
		{"root creates as another fsuid", func(r *rec) {
			// What maintainer scripts run by root under `su` or
			// setpriv do: a process of uid 1000 creates, as itself.
			r.child(1000, 1000, "create", "pub/by-1000", "0640")
			r.stat("pub/by-1000")
		}},
		{"what the modes refuse a non-root caller", func(r *rec) {
			r.child(nobody, nobody, "create", "d/f", "0644")
			r.child(nobody, nobody, "read", "d/sub/c")
			r.child(nobody, nobody, "read", "d/a")
			r.child(nobody, nobody, "write", "ro", "x")
			r.child(nobody, nobody, "chmod", "d/a", "0777")
			r.child(nobody, nobody, "unlink", "d/a")
			r.child(nobody, nobody, "mkdir", "d/sub/x", "0755")
			r.list("d")
		}},
		{"a file chowned to nobody is nobody's to write", func(r *rec) {
			r.check("chown d/a 65534:65534", unix.Chown(r.p("d/a"), nobody, nobody))
			r.child(nobody, nobody, "append", "d/a", "mine now\n")
			r.child(nobody, nobody, "chmod", "d/a", "0600")
			r.stat("d/a")
			r.content("d/a")
		}},
	})
}
