package loopdev

import (
	"errors"
	"strings"
)

// ErrUnsuitable marks a file descriptor loopd refuses to use: a backing fd
// that is not a readable regular file or block device (or is read-only
// while a writable device was asked for), or a directory fd that is not a
// directory the client may write to.
var ErrUnsuitable = errors.New("unsuitable file descriptor")

// OpError is a failed system call or ioctl: which operation, on which
// device, for which file, with which parameters. Unwrap yields the errno, so
// errors.Is(err, unix.EBUSY) works through it.
type OpError struct {
	Op     string // "LOOP_CONFIGURE", "mknodat", "BLKPG_ADD_PARTITION", …
	Device string // "/dev/loop3", or "" when no device is involved yet
	Path   string // the backing file, node name or sysfs file concerned
	Detail string // parameters worth seeing in a log: offsets, flags
	Err    error
}

func (e *OpError) Error() string {
	var b strings.Builder
	b.WriteString("loopdev: ")
	b.WriteString(e.Op)
	if e.Device != "" {
		b.WriteString(" ")
		b.WriteString(e.Device)
	}
	if e.Path != "" {
		b.WriteString(" ")
		b.WriteString(e.Path)
	}
	if e.Detail != "" {
		b.WriteString(" (")
		b.WriteString(e.Detail)
		b.WriteString(")")
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *OpError) Unwrap() error { return e.Err }
