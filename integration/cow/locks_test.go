package cow_test

import (
	"fmt"
	"testing"

	"golang.org/x/sys/unix"
)

// setlk takes (or with F_UNLCK drops) a POSIX record lock on fd.
func (r *rec) setlk(fd int, typ int16, start, length int64, want ...unix.Errno) {
	r.t.Helper()
	lk := unix.Flock_t{Type: typ, Whence: 0, Start: start, Len: length}
	name := map[int16]string{unix.F_RDLCK: "F_RDLCK", unix.F_WRLCK: "F_WRLCK", unix.F_UNLCK: "F_UNLCK"}[typ]
	r.check(fmt.Sprintf("F_SETLK %s %d+%d", name, start, length), unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk), want...)
}

// TestPOSIXLocks covers fcntl record locks between this process and a
// child: conflicts, shared read locks, unlock, locks that survive the copy
// up of their file, and POSIX's rule that closing any descriptor of a file
// drops the process's locks on it.
func TestPOSIXLocks(t *testing.T) {
	runCases(t, []opCase{
		{"a write lock conflicts with another process", func(r *rec) {
			fd := r.open("d/a", unix.O_RDWR, 0)
			r.setlk(fd, unix.F_WRLCK, 0, 10)
			r.child(0, 0, "lock", "d/a", "w", "0", "10")
			r.child(0, 0, "lock", "d/a", "r", "5", "1")
			r.child(0, 0, "lock", "d/a", "w", "20", "10") // no overlap
			r.setlk(fd, unix.F_UNLCK, 0, 10)
			r.child(0, 0, "lock", "d/a", "w", "0", "10")
			r.close(fd)
		}},
		{"read locks are shared, a write lock is not", func(r *rec) {
			fd := r.open("d/b", unix.O_RDONLY, 0)
			r.setlk(fd, unix.F_RDLCK, 0, 0) // the whole file
			r.child(0, 0, "lock", "d/b", "r", "0", "0")
			r.child(0, 0, "lock", "d/b", "w", "100", "1")
			r.close(fd)
		}},
		{"a lock survives the copy up of its file", func(r *rec) {
			fd := r.open(baseBig, unix.O_RDWR, 0)
			r.setlk(fd, unix.F_WRLCK, 0, 0)
			r.pwrite(fd, []byte("copied up while locked"), 4096)
			r.child(0, 0, "lock", baseBig, "w", "0", "1")
			r.pwrite(fd, []byte("still locked"), 8192)
			r.child(0, 0, "lock", baseBig, "r", "1000000", "1")
			r.close(fd)
			r.child(0, 0, "lock", baseBig, "w", "0", "1")
		}},
		{"locks on a new file", func(r *rec) {
			fd := r.open("n", unix.O_RDWR|unix.O_CREAT, 0o644)
			r.write(fd, []byte("0123456789"))
			r.setlk(fd, unix.F_WRLCK, 2, 3)
			r.child(0, 0, "lock", "n", "w", "0", "2")
			r.child(0, 0, "lock", "n", "w", "4", "1")
			r.close(fd)
		}},
		{"closing another descriptor of the file drops the locks", func(r *rec) {
			fd := r.open("d/a", unix.O_RDWR, 0)
			r.setlk(fd, unix.F_WRLCK, 0, 0)
			r.child(0, 0, "lock", "d/a", "w", "0", "1")
			other := r.open("d/a", unix.O_RDONLY, 0)
			r.close(other)
			r.child(0, 0, "lock", "d/a", "w", "0", "1")
			r.close(fd)
		}},
		{"a lock on one name of a hard-link pair holds for the other", func(r *rec) {
			fd := r.open("hl1", unix.O_RDWR, 0)
			r.setlk(fd, unix.F_WRLCK, 0, 0)
			r.child(0, 0, "lock", "hl2", "w", "0", "1")
			r.close(fd)
		}},
	})
}

// TestFlock covers flock(2) between this process and a child, and that
// flock and POSIX locks do not see each other.
func TestFlock(t *testing.T) {
	runCases(t, []opCase{
		{"an exclusive flock excludes", func(r *rec) {
			fd := r.open("d/a", unix.O_RDONLY, 0)
			r.check("flock LOCK_EX", unix.Flock(fd, unix.LOCK_EX))
			r.child(0, 0, "flock", "d/a", "ex")
			r.child(0, 0, "flock", "d/a", "sh")
			r.check("flock LOCK_UN", unix.Flock(fd, unix.LOCK_UN))
			r.child(0, 0, "flock", "d/a", "ex")
			r.close(fd)
		}},
		{"shared flocks share", func(r *rec) {
			fd := r.open(baseBig, unix.O_RDONLY, 0)
			r.check("flock LOCK_SH", unix.Flock(fd, unix.LOCK_SH))
			r.child(0, 0, "flock", baseBig, "sh")
			r.child(0, 0, "flock", baseBig, "ex")
			r.close(fd)
			r.child(0, 0, "flock", baseBig, "ex")
		}},
		{"a flock survives a write that copies the file up", func(r *rec) {
			fd := r.open("d/b", unix.O_RDWR, 0)
			r.check("flock LOCK_EX", unix.Flock(fd, unix.LOCK_EX))
			r.pwrite(fd, []byte("while flocked"), 0)
			r.child(0, 0, "flock", "d/b", "ex")
			r.close(fd)
		}},
		{"flock and POSIX locks are independent", func(r *rec) {
			fd := r.open("d/a", unix.O_RDWR, 0)
			r.check("flock LOCK_EX", unix.Flock(fd, unix.LOCK_EX))
			r.child(0, 0, "lock", "d/a", "w", "0", "0")
			r.check("flock LOCK_UN", unix.Flock(fd, unix.LOCK_UN))
			r.setlk(fd, unix.F_WRLCK, 0, 0)
			r.child(0, 0, "flock", "d/a", "ex")
			r.close(fd)
		}},
		{"flock on a new file", func(r *rec) {
			fd := r.open("lockfile", unix.O_RDWR|unix.O_CREAT, 0o644)
			r.check("flock LOCK_EX|LOCK_NB", unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB))
			r.child(0, 0, "flock", "lockfile", "ex")
			r.close(fd)
		}},
	})
}
