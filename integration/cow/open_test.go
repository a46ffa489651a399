package cow_test

import (
	"testing"

	"golang.org/x/sys/unix"
)

// TestOpen covers creating files and every open flag package managers use,
// on new files and on files of the base tree (the first write copies
// those up).
func TestOpen(t *testing.T) {
	runCases(t, []opCase{
		{"nothing changed", func(r *rec) {
			// An untouched mount commits and exports to the base; every
			// unmodified file reads the same.
			for _, rel := range []string{"d/a", "d/b", baseBig, baseSparse, "hl2", "xf"} {
				r.content(rel)
			}
		}},
		{"create a new file", func(r *rec) {
			fd := r.open("d/new", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o640)
			r.write(fd, []byte("new file\n"))
			r.fstat(fd)
			r.close(fd)
			r.stat("d/new")
			r.content("d/new")
			r.list("d")
		}},
		{"create with mode bits the umask clears", func(r *rec) {
			fd := r.open("new-0777", unix.O_WRONLY|unix.O_CREAT, 0o777)
			r.close(fd)
			r.stat("new-0777")
		}},
		{"create in a new directory", func(r *rec) {
			r.check("mkdir d/sub/n", unix.Mkdir(r.p("d/sub/n"), 0o750))
			fd := r.open("d/sub/n/file", unix.O_RDWR|unix.O_CREAT, 0o600)
			r.write(fd, []byte("deeper"))
			r.close(fd)
			r.stat("d/sub/n")
			r.stat("d/sub/n/file")
			r.content("d/sub/n/file")
		}},
		{"O_CREAT on an existing base file opens it", func(r *rec) {
			fd := r.open("d/a", unix.O_RDWR|unix.O_CREAT, 0o600)
			r.read(fd, 100)
			r.close(fd)
			r.stat("d/a")
		}},
		{"O_EXCL on existing names is EEXIST", func(r *rec) {
			r.open("d/a", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644, unix.EEXIST)
			r.open("d", unix.O_RDONLY|unix.O_CREAT|unix.O_EXCL, 0o644, unix.EEXIST)
			r.open("dangling", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644, unix.EEXIST)
			r.open("sym", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644, unix.EEXIST)
			// A name created in the mount, not in the base.
			fd := r.open("fresh", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
			r.close(fd)
			r.open("fresh", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644, unix.EEXIST)
			r.stat("d/a")
		}},
		{"O_CREAT through a dangling symlink creates its target", func(r *rec) {
			fd := r.open("dangling", unix.O_WRONLY|unix.O_CREAT, 0o600)
			r.write(fd, []byte("through the link\n"))
			r.close(fd)
			r.stat("dangling")
			r.stat("created-through-link")
			r.content("created-through-link")
		}},
		{"O_TRUNC empties a base file", func(r *rec) {
			fd := r.open(baseBig, unix.O_WRONLY|unix.O_TRUNC, 0)
			r.fstat(fd)
			r.write(fd, []byte("short now"))
			r.close(fd)
			r.stat(baseBig)
			r.content(baseBig)
		}},
		{"O_RDONLY|O_TRUNC truncates too", func(r *rec) {
			fd := r.open("d/b", unix.O_RDONLY|unix.O_TRUNC, 0)
			r.read(fd, 10)
			r.close(fd)
			r.stat("d/b")
		}},
		{"O_TRUNC of a 0444 file as root", func(r *rec) {
			fd := r.open("ro", unix.O_WRONLY|unix.O_TRUNC, 0)
			r.write(fd, []byte("root may\n"))
			r.close(fd)
			r.stat("ro")
			r.content("ro")
		}},
		{"O_TRUNC of a new file with data", func(r *rec) {
			fd := r.open("n", unix.O_WRONLY|unix.O_CREAT, 0o644)
			r.write(fd, []byte("first version, longer"))
			r.close(fd)
			fd = r.open("n", unix.O_WRONLY|unix.O_TRUNC, 0)
			r.write(fd, []byte("second"))
			r.close(fd)
			r.content("n")
		}},
		{"O_APPEND on a base file", func(r *rec) {
			fd := r.open("d/a", unix.O_WRONLY|unix.O_APPEND, 0)
			r.write(fd, []byte("appended\n"))
			// Linux appends with pwrite on an O_APPEND descriptor too.
			r.pwrite(fd, []byte("X"), 0)
			r.seek(fd, 0, unix.SEEK_CUR)
			r.close(fd)
			r.content("d/a")
			r.stat("d/a")
		}},
		{"O_APPEND|O_CREAT on a new file, twice", func(r *rec) {
			for _, s := range []string{"one\n", "two\n"} {
				fd := r.open("log", unix.O_WRONLY|unix.O_APPEND|unix.O_CREAT, 0o640)
				r.write(fd, []byte(s))
				r.close(fd)
			}
			r.content("log")
			r.stat("log")
		}},
		{"O_TMPFILE linked into the tree", func(r *rec) {
			fd, err := unix.Open(r.p("d"), unix.O_TMPFILE|unix.O_RDWR|unix.O_CLOEXEC, 0o640)
			r.unsupported("open O_TMPFILE", err)
			if !r.check("open d O_TMPFILE|O_RDWR", err) {
				return
			}
			r.list("d") // the file has no name yet
			r.write(fd, []byte("anonymous until linked\n"))
			r.fstat(fd)
			err = unix.Linkat(fd, "", unix.AT_FDCWD, r.p("d/linked"), unix.AT_EMPTY_PATH)
			r.unsupported("linkat AT_EMPTY_PATH of an O_TMPFILE", err)
			r.check("linkat AT_EMPTY_PATH d/linked", err)
			r.fstat(fd)
			r.close(fd)
			r.stat("d/linked")
			r.content("d/linked")
			r.list("d")
		}},
		{"O_TMPFILE|O_EXCL cannot be linked, unlinked O_TMPFILE leaves nothing", func(r *rec) {
			fd, err := unix.Open(r.p("d"), unix.O_TMPFILE|unix.O_EXCL|unix.O_WRONLY|unix.O_CLOEXEC, 0o600)
			r.unsupported("open O_TMPFILE|O_EXCL", err)
			if !r.check("open d O_TMPFILE|O_EXCL|O_WRONLY", err) {
				return
			}
			r.write(fd, []byte("never linked"))
			r.check("linkat of an O_EXCL tmpfile",
				unix.Linkat(fd, "", unix.AT_FDCWD, r.p("d/never"), unix.AT_EMPTY_PATH), unix.ENOENT)
			r.close(fd)
			r.list("d")
		}},
		{"open errors", func(r *rec) {
			r.open("d/a", unix.O_RDONLY|unix.O_DIRECTORY, 0, unix.ENOTDIR)
			r.open("sym", unix.O_RDONLY|unix.O_NOFOLLOW, 0, unix.ELOOP)
			r.open("d", unix.O_WRONLY, 0, unix.EISDIR)
			r.open("missing/file", unix.O_WRONLY|unix.O_CREAT, 0o644, unix.ENOENT)
			r.open("d/a/below-a-file", unix.O_WRONLY|unix.O_CREAT, 0o644, unix.ENOTDIR)
			r.open("gone", unix.O_RDONLY, 0, unix.ENOENT)
			fd := r.open("dirlink", unix.O_RDONLY|unix.O_DIRECTORY, 0)
			r.close(fd)
		}},
		{"open O_RDWR and close without writing changes nothing", func(r *rec) {
			fd := r.open(baseBig, unix.O_RDWR, 0)
			r.pread(fd, 64, 1<<20)
			r.close(fd)
			r.stat(baseBig)
			r.content(baseBig)
		}},
	})
}
