package cow_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// helperEnv, when set, makes the test binary run one helper command (see
// runHelper) instead of the tests: the second process of a lock conflict,
// or a caller that is not root.
const helperEnv = "FORGE_COW_TEST_HELPER"

// child runs a helper command as uid:gid in a new process and adds what it
// reports to the transcript. rel is the path the command works on; args
// follow it.
func (r *rec) child(uid, gid int, cmd, rel string, args ...string) {
	r.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		r.t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	full := append([]string{strconv.Itoa(uid), strconv.Itoa(gid), cmd, r.p(rel)}, args...)
	c := exec.CommandContext(ctx, exe, full...)
	c.Env = append(os.Environ(), helperEnv+"=1")
	// Nothing of the child (its working directory above all) points into
	// a mount; see go-fuse's notes on processes that hold their own mount.
	c.Dir = "/"
	var stdout, stderr bytes.Buffer
	c.Stdout, c.Stderr = &stdout, &stderr
	if err := c.Run(); err != nil {
		r.t.Fatalf("helper %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(full, " "), err, stdout.String(), stderr.String())
	}
	for _, line := range strings.Split(strings.TrimSpace(stdout.String()), "\n") {
		r.note("child %d:%d %s %s %q: %s", uid, gid, cmd, rel, args, line)
	}
}

// runHelper runs `UID GID COMMAND PATH ARGS...`: it drops to uid:gid (no
// supplementary groups) and does COMMAND on PATH, printing one line per
// step with the step's outcome as an errno name. It returns the exit code:
// 0 whatever the steps returned, 2 when it could not run them.
func runHelper(args []string) int {
	if len(args) < 4 {
		fmt.Fprintln(os.Stderr, "helper: want UID GID COMMAND PATH [ARGS...]")
		return 2
	}
	uid, err1 := strconv.Atoi(args[0])
	gid, err2 := strconv.Atoi(args[1])
	if err := errors.Join(err1, err2); err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		return 2
	}
	unix.Umask(0o022)
	if uid != 0 || gid != 0 {
		// syscall's set*id calls change every thread of the process.
		if err := errors.Join(syscall.Setgroups(nil), syscall.Setgid(gid), syscall.Setuid(uid)); err != nil {
			fmt.Fprintln(os.Stderr, "helper: drop to", uid, gid, ":", err)
			return 2
		}
	}
	cmd, path, rest := args[2], args[3], args[4:]
	arg := func(i int) string {
		if i < len(rest) {
			return rest[i]
		}
		return ""
	}
	num := func(i int) int64 {
		n, _ := strconv.ParseInt(arg(i), 0, 64)
		return n
	}
	say := func(step string, err error) bool {
		fmt.Printf("%s: %s\n", step, helperErrName(err))
		return err == nil
	}
	switch cmd {
	case "write", "append":
		flags := unix.O_WRONLY
		if cmd == "append" {
			flags |= unix.O_APPEND
		}
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if !say("open", err) {
			return 0
		}
		_, err = unix.Write(fd, []byte(arg(0)))
		say("write", err)
		say("close", unix.Close(fd))
	case "truncate":
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if !say("open", err) {
			return 0
		}
		say("ftruncate", unix.Ftruncate(fd, num(0)))
		say("close", unix.Close(fd))
	case "create":
		fd, err := unix.Open(path, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_CLOEXEC, uint32(num(0)))
		if !say("create", err) {
			return 0
		}
		_, err = unix.Write(fd, []byte("written by the child\n"))
		say("write", err)
		say("close", unix.Close(fd))
	case "mkdir":
		say("mkdir", unix.Mkdir(path, uint32(num(0))))
	case "symlink":
		say("symlink", unix.Symlink(arg(0), path))
	case "mkfifo":
		say("mkfifo", unix.Mkfifo(path, uint32(num(0))))
	case "read":
		b, err := os.ReadFile(path)
		say(fmt.Sprintf("read %s", summary(b)), err)
	case "chmod":
		say("chmod", unix.Chmod(path, uint32(num(0))))
	case "utimens":
		// utimens PATH now|explicit
		ts := []unix.Timespec{{Nsec: unix.UTIME_NOW}, {Nsec: unix.UTIME_NOW}}
		if arg(0) == "explicit" {
			ts = []unix.Timespec{{Sec: 1000000000}, {Sec: 1000000001}}
		}
		say("utimensat "+arg(0), unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, 0))
	case "unlink":
		say("unlink", unix.Unlink(path))
	case "lock":
		// lock PATH r|w START LEN: what F_GETLK says of a lock of that
		// kind, then whether F_SETLK gets it.
		typ, flags := int16(unix.F_WRLCK), unix.O_RDWR
		if arg(0) == "r" {
			typ, flags = unix.F_RDLCK, unix.O_RDONLY
		}
		fd, err := unix.Open(path, flags|unix.O_CLOEXEC, 0)
		if !say("open", err) {
			return 0
		}
		lk := unix.Flock_t{Type: typ, Whence: 0, Start: num(1), Len: num(2)}
		err = unix.FcntlFlock(uintptr(fd), unix.F_GETLK, &lk)
		say("F_GETLK "+describeLock(&lk), err)
		lk = unix.Flock_t{Type: typ, Whence: 0, Start: num(1), Len: num(2)}
		say("F_SETLK", unix.FcntlFlock(uintptr(fd), unix.F_SETLK, &lk))
		say("close", unix.Close(fd))
	case "flock":
		how := unix.LOCK_EX
		if arg(0) == "sh" {
			how = unix.LOCK_SH
		}
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if !say("open", err) {
			return 0
		}
		say("flock "+arg(0)+" nonblocking", unix.Flock(fd, how|unix.LOCK_NB))
		say("close", unix.Close(fd))
	default:
		fmt.Fprintln(os.Stderr, "helper: unknown command", cmd)
		return 2
	}
	return 0
}

// describeLock says what F_GETLK found: no conflict, or the conflicting
// lock and whether its holder is this process's parent (the test).
func describeLock(lk *unix.Flock_t) string {
	switch lk.Type {
	case unix.F_UNLCK:
		return "no conflict"
	case unix.F_RDLCK, unix.F_WRLCK:
		kind := map[int16]string{unix.F_RDLCK: "read", unix.F_WRLCK: "write"}[lk.Type]
		holder := "another process"
		if int(lk.Pid) == os.Getppid() {
			holder = "the parent"
		}
		return fmt.Sprintf("%s lock %d+%d held by %s", kind, lk.Start, lk.Len, holder)
	}
	return fmt.Sprintf("lock type %d", lk.Type)
}

func helperErrName(err error) string {
	if err == nil {
		return "ok"
	}
	var e unix.Errno
	if errors.As(err, &e) {
		return errnoName(e)
	}
	return "error"
}
