package cow_test

import (
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func (r *rec) rename(from, to string, flags uint, want ...unix.Errno) {
	r.t.Helper()
	step := "rename " + from + " -> " + to
	switch flags {
	case unix.RENAME_NOREPLACE:
		step += " RENAME_NOREPLACE"
	case unix.RENAME_EXCHANGE:
		step += " RENAME_EXCHANGE"
	}
	r.check(step, unix.Renameat2(unix.AT_FDCWD, r.p(from), unix.AT_FDCWD, r.p(to), flags), want...)
}

// TestRename covers rename(2) and renameat2(2) over base and new entries.
func TestRename(t *testing.T) {
	runCases(t, []opCase{
		{"rename a base file", func(r *rec) {
			r.rename("d/a", "d/a-renamed", 0)
			r.stat("d/a", unix.ENOENT)
			r.stat("d/a-renamed")
			r.content("d/a-renamed")
			r.list("d")
		}},
		{"rename a base file to another directory", func(r *rec) {
			r.rename("d/b", "full/b", 0)
			r.list("d")
			r.list("full")
			r.content("full/b")
		}},
		{"rename a base directory with its children", func(r *rec) {
			r.rename("d", "moved", 0)
			r.list("moved")
			r.content("moved/sub/c")
			r.content("moved/big")
			r.stat("d", unix.ENOENT)
			// The old name is free again, and new.
			r.check("mkdir d", unix.Mkdir(r.p("d"), 0o755))
			r.list("d")
			r.content("sym", unix.ENOENT) // sym points at d/a
		}},
		{"rename over an existing base file", func(r *rec) {
			r.rename("d/a", "d/b", 0)
			r.content("d/b")
			r.stat("d/b")
			r.stat("d/a", unix.ENOENT)
		}},
		{"rename a new file over a base file (dpkg's pattern)", func(r *rec) {
			fd := r.open("d/big.dpkg-new", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o755)
			r.write(fd, []byte("new version\n"))
			r.check("fsync", unix.Fsync(fd))
			r.close(fd)
			r.check("link d/big d/big.dpkg-tmp", unix.Link(r.p(baseBig), r.p("d/big.dpkg-tmp")))
			r.rename("d/big.dpkg-new", baseBig, 0)
			r.check("unlink d/big.dpkg-tmp", unix.Unlink(r.p("d/big.dpkg-tmp")))
			r.stat(baseBig)
			r.content(baseBig)
			r.list("d")
		}},
		{"rename a file over one of its own hard links does nothing", func(r *rec) {
			r.rename("hl1", "hl2", 0)
			r.stat("hl1")
			r.stat("hl2")
		}},
		{"rename a base hard link keeps the pair", func(r *rec) {
			r.rename("hl1", "d/hl1-moved", 0)
			r.stat("d/hl1-moved")
			r.stat("hl2")
			fd := r.open("d/hl1-moved", unix.O_WRONLY|unix.O_APPEND, 0)
			r.write(fd, []byte("via the moved name\n"))
			r.close(fd)
			r.content("hl2")
		}},
		{"rename a directory over an empty directory", func(r *rec) {
			r.rename("full", "empty", 0)
			r.list("empty")
			r.stat("full", unix.ENOENT)
		}},
		{"rename a new directory over an empty base directory", func(r *rec) {
			r.check("mkdir newdir", unix.Mkdir(r.p("newdir"), 0o700))
			r.check("mknod newdir/f", unix.Mknod(r.p("newdir/f"), unix.S_IFREG|0o600, 0))
			r.rename("newdir", "empty", 0)
			r.list("empty")
			r.stat("empty")
		}},
		{"rename over directories: what must fail", func(r *rec) {
			r.rename("d/a", "empty", 0, unix.EISDIR)
			r.rename("empty", "d/a", 0, unix.ENOTDIR)
			r.rename("empty", "full", 0, unix.ENOTEMPTY)
			r.rename("d", "d/sub/inside", 0, unix.EINVAL)
			r.rename("missing", "x", 0, unix.ENOENT)
			r.list(".")
		}},
		{"rename over a directory emptied in the mount", func(r *rec) {
			r.check("unlink full/x", unix.Unlink(r.p("full/x")))
			r.check("unlink full/y", unix.Unlink(r.p("full/y")))
			r.rename("d/sub", "full", 0)
			r.list("full")
			r.content("full/c")
		}},
		{"RENAME_NOREPLACE", func(r *rec) {
			r.rename("d/a", "d/b", unix.RENAME_NOREPLACE, unix.EEXIST)
			r.rename("d/a", "sym", unix.RENAME_NOREPLACE, unix.EEXIST)
			r.rename("d/a", "empty", unix.RENAME_NOREPLACE, unix.EEXIST)
			r.rename("d/a", "d/c", unix.RENAME_NOREPLACE)
			r.content("d/b")
			r.content("d/c")
			r.list("d")
		}},
		{"RENAME_EXCHANGE of a file and a directory", func(r *rec) {
			r.rename("d/a", "d/sub", unix.RENAME_EXCHANGE)
			r.stat("d/a")
			r.stat("d/sub")
			r.list("d/a")
			r.content("d/a/c")
			r.content("d/sub")
		}},
		{"RENAME_EXCHANGE of two base files and of new and base", func(r *rec) {
			r.rename("d/a", "d/b", unix.RENAME_EXCHANGE)
			r.content("d/a")
			r.content("d/b")
			fd := r.open("n", unix.O_WRONLY|unix.O_CREAT, 0o600)
			r.write(fd, []byte("new"))
			r.close(fd)
			r.rename("n", "ro", unix.RENAME_EXCHANGE)
			r.stat("n")
			r.stat("ro")
			r.content("ro")
			r.rename("d/a", "missing", unix.RENAME_EXCHANGE, unix.ENOENT)
			r.rename("d/a", "d/b", unix.RENAME_EXCHANGE|unix.RENAME_NOREPLACE, unix.EINVAL)
		}},
		{"rename a symlink and a device", func(r *rec) {
			r.rename("sym", "d/sym", 0)
			r.readlink("d/sym")
			r.rename("dev/null", "d/null", 0)
			r.stat("d/null")
		}},
	})
}

// TestLinkUnlink covers link(2), including links to base files that are
// then written through one name, and unlink(2), including of a file that
// is still open.
func TestLinkUnlink(t *testing.T) {
	runCases(t, []opCase{
		{"link a base file, write through the new name", func(r *rec) {
			r.check("link d/a d/a-link", unix.Link(r.p("d/a"), r.p("d/a-link")))
			r.stat("d/a")
			r.stat("d/a-link")
			fd := r.open("d/a-link", unix.O_WRONLY|unix.O_APPEND, 0)
			r.write(fd, []byte("through the link\n"))
			r.close(fd)
			r.content("d/a")
		}},
		{"write through one name of a base hard-link pair", func(r *rec) {
			fd := r.open("hl1", unix.O_WRONLY, 0)
			r.pwrite(fd, []byte("TWO"), 0)
			r.close(fd)
			r.content("hl2")
			r.stat("hl1")
			r.stat("hl2")
		}},
		{"chmod through one name of a base hard-link pair", func(r *rec) {
			r.check("chmod hl2 0600", unix.Chmod(r.p("hl2"), 0o600))
			r.check("setxattr hl2 user.more", unix.Setxattr(r.p("hl2"), "user.more", []byte("m"), 0))
			r.stat("hl1")
			r.xattrs("hl1")
		}},
		{"a third name for a base pair", func(r *rec) {
			r.check("link hl1 d/hl3", unix.Link(r.p("hl1"), r.p("d/hl3")))
			fd := r.open("d/hl3", unix.O_WRONLY|unix.O_TRUNC, 0)
			r.write(fd, []byte("three\n"))
			r.close(fd)
			r.content("hl1")
			r.content("hl2")
			r.stat("hl2")
		}},
		{"link a new file, a symlink and a device", func(r *rec) {
			fd := r.open("n", unix.O_WRONLY|unix.O_CREAT, 0o644)
			r.write(fd, []byte("n"))
			r.close(fd)
			r.check("link n n2", unix.Link(r.p("n"), r.p("n2")))
			r.check("linkat sym (not followed)", unix.Linkat(unix.AT_FDCWD, r.p("sym"), unix.AT_FDCWD, r.p("sym2"), 0))
			r.check("link dev/null dev/null2", unix.Link(r.p("dev/null"), r.p("dev/null2")))
			r.stat("n2")
			r.stat("sym2")
			r.stat("dev/null2")
		}},
		{"link errors", func(r *rec) {
			r.check("link d/a d/b", unix.Link(r.p("d/a"), r.p("d/b")), unix.EEXIST)
			r.check("link d d2", unix.Link(r.p("d"), r.p("d2")), unix.EPERM)
			r.check("link missing", unix.Link(r.p("missing"), r.p("m2")), unix.ENOENT)
		}},
		{"unlink a base file that is open: it stays readable until closed", func(r *rec) {
			fd := r.open(baseBig, unix.O_RDWR, 0)
			r.check("unlink d/big", unix.Unlink(r.p(baseBig)))
			r.stat(baseBig, unix.ENOENT)
			r.fstat(fd)
			r.pread(fd, 4096, 5<<20)
			r.pwrite(fd, []byte("after unlink"), 100)
			r.pread(fd, 12, 100)
			r.list("d")
			r.close(fd)
			r.list("d")
		}},
		{"unlink a new file that is open", func(r *rec) {
			fd := r.open("n", unix.O_RDWR|unix.O_CREAT, 0o644)
			r.write(fd, []byte("short-lived"))
			r.check("unlink n", unix.Unlink(r.p("n")))
			r.fstat(fd)
			r.pread(fd, 100, 0)
			r.close(fd)
			r.list(".")
		}},
		{"unlink one name of a base pair", func(r *rec) {
			r.check("unlink hl2", unix.Unlink(r.p("hl2")))
			r.stat("hl1")
			r.content("hl1")
		}},
		{"unlink then create the same name", func(r *rec) {
			r.check("unlink d/a", unix.Unlink(r.p("d/a")))
			fd := r.open("d/a", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o600)
			r.write(fd, []byte("reborn\n"))
			r.close(fd)
			r.stat("d/a")
			r.content("d/a")
			r.xattrs("d/a")
		}},
		{"unlink a base file with xattrs, then create it again", func(r *rec) {
			r.check("unlink xf", unix.Unlink(r.p("xf")))
			fd := r.open("xf", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
			r.close(fd)
			r.xattrs("xf") // none of the old ones
		}},
		{"unlink errors", func(r *rec) {
			r.check("unlink d", unix.Unlink(r.p("d")), unix.EISDIR)
			r.check("unlink missing", unix.Unlink(r.p("missing")), unix.ENOENT)
			r.check("unlink a symlink, not its target", unix.Unlink(r.p("sym")))
			r.content("d/a")
		}},
	})
}

// TestDirectories covers mkdir, rmdir and readdir over base and new
// directories: a base directory emptied in the mount can be removed, and a
// directory made again under its name is empty.
func TestDirectories(t *testing.T) {
	runCases(t, []opCase{
		{"mkdir", func(r *rec) {
			r.check("mkdir new 0750", unix.Mkdir(r.p("new"), 0o750))
			r.check("mkdir new/deeper 0777", unix.Mkdir(r.p("new/deeper"), 0o777))
			r.stat("new")
			r.stat("new/deeper")
			r.list("new")
			r.list(".")
		}},
		{"mkdir errors", func(r *rec) {
			r.check("mkdir d", unix.Mkdir(r.p("d"), 0o755), unix.EEXIST)
			r.check("mkdir d/a", unix.Mkdir(r.p("d/a"), 0o755), unix.EEXIST)
			r.check("mkdir dangling", unix.Mkdir(r.p("dangling"), 0o755), unix.EEXIST)
			r.check("mkdir missing/x", unix.Mkdir(r.p("missing/x"), 0o755), unix.ENOENT)
		}},
		{"rmdir", func(r *rec) {
			r.check("rmdir empty", unix.Rmdir(r.p("empty")))
			r.check("rmdir full", unix.Rmdir(r.p("full")), unix.ENOTEMPTY)
			r.check("rmdir d/a", unix.Rmdir(r.p("d/a")), unix.ENOTDIR)
			r.check("rmdir missing", unix.Rmdir(r.p("missing")), unix.ENOENT)
			r.check("rmdir dirlink", unix.Rmdir(r.p("dirlink")), unix.ENOTDIR)
			r.list(".")
		}},
		{"empty a base directory, remove it, make it again", func(r *rec) {
			r.check("unlink full/x", unix.Unlink(r.p("full/x")))
			r.check("rmdir full (one entry left)", unix.Rmdir(r.p("full")), unix.ENOTEMPTY)
			r.check("unlink full/y", unix.Unlink(r.p("full/y")))
			r.list("full")
			r.check("rmdir full", unix.Rmdir(r.p("full")))
			r.check("mkdir full", unix.Mkdir(r.p("full"), 0o700))
			r.list("full")
			r.stat("full")
			fd := r.open("full/x", unix.O_RDONLY, 0, unix.ENOENT)
			r.close(fd)
		}},
		{"remove a base tree bottom up", func(r *rec) {
			for _, rel := range []string{"d/sub/c", "d/a", "d/b", baseBig} {
				r.check("unlink "+rel, unix.Unlink(r.p(rel)))
			}
			r.check("rmdir d/sub", unix.Rmdir(r.p("d/sub")))
			r.check("rmdir d", unix.Rmdir(r.p("d")))
			r.list(".")
			r.content("sym", unix.ENOENT)
		}},
		{"readdir after adding and removing entries", func(r *rec) {
			fd := r.open("d/zz", unix.O_WRONLY|unix.O_CREAT, 0o644)
			r.close(fd)
			r.check("unlink d/b", unix.Unlink(r.p("d/b")))
			r.check("mkdir d/aa", unix.Mkdir(r.p("d/aa"), 0o755))
			r.rename("d/a", "d/a2", 0)
			r.list("d")
		}},
		{"a directory with many new entries", func(r *rec) {
			r.check("mkdir many", unix.Mkdir(r.p("many"), 0o755))
			for i := range 500 {
				name := "many/entry-" + strings.Repeat("x", i%40) + string(rune('a'+i%26)) + "-" + strconv.Itoa(i)
				fd := r.open(name, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
				r.close(fd)
			}
			r.list("many")
		}},
		{"names at the length limit", func(r *rec) {
			long := strings.Repeat("n", 255)
			fd := r.open("d/"+long, unix.O_WRONLY|unix.O_CREAT, 0o644)
			r.close(fd)
			r.open("d/"+long+"x", unix.O_WRONLY|unix.O_CREAT, 0o644, unix.ENAMETOOLONG)
			r.check("mkdir 256-byte name", unix.Mkdir(r.p("d/"+long+"y"), 0o755), unix.ENAMETOOLONG)
			r.list("d")
		}},
	})
}

// TestSymlinksAndSpecialFiles covers symlink(2) and mknod(2) of character
// and block devices, FIFOs and sockets (by mknod and by bind).
func TestSymlinksAndSpecialFiles(t *testing.T) {
	runCases(t, []opCase{
		{"symlink", func(r *rec) {
			r.check("symlink d/newlink", unix.Symlink("../xf", r.p("d/newlink")))
			r.readlink("d/newlink")
			r.stat("d/newlink")
			r.content("d/newlink")
			r.check("symlink over a name", unix.Symlink("x", r.p("d/a")), unix.EEXIST)
			r.readlink("sym")
		}},
		{"symlink with the longest target", func(r *rec) {
			target := strings.Repeat("abcdefg/", 511) + "abcdefg"
			r.check("symlink 4095-byte target", unix.Symlink(target, r.p("long")))
			r.readlink("long")
			r.stat("long")
			r.check("symlink 4096-byte target", unix.Symlink(target+"h", r.p("longer")), unix.ENAMETOOLONG)
		}},
		{"replace a base symlink", func(r *rec) {
			r.check("unlink sym", unix.Unlink(r.p("sym")))
			r.check("symlink sym", unix.Symlink("d/b", r.p("sym")))
			r.readlink("sym")
			r.content("sym")
		}},
		{"mknod devices", func(r *rec) {
			r.check("mknod char 1:3", unix.Mknod(r.p("dev/null2"), unix.S_IFCHR|0o620, int(unix.Mkdev(1, 3))))
			r.check("mknod block 7:200", unix.Mknod(r.p("dev/loop200"), unix.S_IFBLK|0o660, int(unix.Mkdev(7, 200))))
			r.check("mknod char 4095:1048575", unix.Mknod(r.p("dev/big"), unix.S_IFCHR|0o600, int(unix.Mkdev(4095, 1048575))))
			r.stat("dev/null2")
			r.stat("dev/loop200")
			r.stat("dev/big")
			// A device node in the mount opens the device.
			fd := r.open("dev/null2", unix.O_WRONLY, 0)
			r.write(fd, []byte("into /dev/null"))
			r.close(fd)
			r.check("mknod over a name", unix.Mknod(r.p("dev/null"), unix.S_IFCHR|0o600, int(unix.Mkdev(1, 5))), unix.EEXIST)
		}},
		{"mknod a FIFO and use it", func(r *rec) {
			r.check("mkfifo", unix.Mkfifo(r.p("fifo2"), 0o640))
			r.stat("fifo2")
			fd := r.open("fifo2", unix.O_RDWR, 0) // no blocking for a peer
			r.write(fd, []byte("through the pipe"))
			r.read(fd, 100)
			r.close(fd)
			r.stat("fifo2")
		}},
		{"mknod a socket and bind one", func(r *rec) {
			r.check("mknod S_IFSOCK", unix.Mknod(r.p("sock1"), unix.S_IFSOCK|0o755, 0))
			r.stat("sock1")
			s, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if !r.check("socket", err) {
				return
			}
			r.check("bind sock2", unix.Bind(s, &unix.SockaddrUnix{Name: r.p("sock2")}))
			r.check("listen", unix.Listen(s, 1))
			c, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
			if r.check("socket", err) {
				r.check("connect sock2", unix.Connect(c, &unix.SockaddrUnix{Name: r.p("sock2")}))
				unix.Close(c)
			}
			unix.Close(s)
			r.stat("sock2")
			r.check("bind over an existing name", func() error {
				s, _ := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
				defer unix.Close(s)
				return unix.Bind(s, &unix.SockaddrUnix{Name: r.p("sock2")})
			}(), unix.EADDRINUSE)
		}},
		{"mknod a regular file", func(r *rec) {
			r.check("mknod S_IFREG", unix.Mknod(r.p("plain"), unix.S_IFREG|0o604, 0))
			r.stat("plain")
			r.content("plain")
		}},
	})
}
