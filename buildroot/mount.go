package buildroot

import (
	"fmt"
	"strings"

	"golang.org/x/sys/unix"
)

// mountError is every mount failure: the operation, its source, target and
// flags, and the errno (runc's mountError habit).
type mountError struct {
	op     string
	source string
	target string
	flags  uintptr
	data   string
	err    error
}

func (e *mountError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s", e.op)
	if e.source != "" {
		fmt.Fprintf(&b, " %s", e.source)
	}
	fmt.Fprintf(&b, " on %s", e.target)
	if e.flags != 0 {
		fmt.Fprintf(&b, " (flags %s)", flagNames(e.flags))
	}
	if e.data != "" {
		fmt.Fprintf(&b, " (data %s)", e.data)
	}
	fmt.Fprintf(&b, ": %v", e.err)
	return b.String()
}

func (e *mountError) Unwrap() error { return e.err }

// mount wraps mount(2). display names the target for errors when target is
// a /proc/self/fd path.
func mount(source, target, display, fstype string, flags uintptr, data string) error {
	if err := unix.Mount(source, target, fstype, flags, data); err != nil {
		op := "mount"
		if fstype != "" {
			op = "mount " + fstype
		}
		return &mountError{op: op, source: source, target: display, flags: flags, data: data, err: err}
	}
	return nil
}

var mountFlagNames = []struct {
	flag uintptr
	name string
}{
	{unix.MS_RDONLY, "MS_RDONLY"},
	{unix.MS_NOSUID, "MS_NOSUID"},
	{unix.MS_NODEV, "MS_NODEV"},
	{unix.MS_NOEXEC, "MS_NOEXEC"},
	{unix.MS_REMOUNT, "MS_REMOUNT"},
	{unix.MS_BIND, "MS_BIND"},
	{unix.MS_REC, "MS_REC"},
	{unix.MS_PRIVATE, "MS_PRIVATE"},
	{unix.MS_SLAVE, "MS_SLAVE"},
	{unix.MS_SHARED, "MS_SHARED"},
}

func flagNames(flags uintptr) string {
	var names []string
	for _, f := range mountFlagNames {
		if flags&f.flag != 0 {
			names = append(names, f.name)
			flags &^= f.flag
		}
	}
	if flags != 0 {
		names = append(names, fmt.Sprintf("%#x", flags))
	}
	return strings.Join(names, "|")
}
