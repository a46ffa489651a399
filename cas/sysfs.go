package cas

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The store works on directory file descriptors and names rather than
// paths, so trees deeper than PATH_MAX import and export, and a rename in
// the tree cannot redirect a write. Xattr calls have no *at form before
// Linux 6.13; /proc/self/fd/DIRFD/NAME gives them one.

func fdPath(dirfd int, name string) string {
	return "/proc/self/fd/" + strconv.Itoa(dirfd) + "/" + name
}

func selfFdPath(fd int) string { return "/proc/self/fd/" + strconv.Itoa(fd) }

// QuotePath writes a path for people: as is when it is printable UTF-8
// without quotes or backslashes, else C-quoted in double quotes (git's
// core.quotePath style), so that every path is one line.
func QuotePath(p string) string {
	needs := false
	for i := 0; i < len(p); {
		r, size := utf8DecodeRune(p[i:])
		if r == 0xFFFD && size <= 1 || r < ' ' || r == 0x7f || r == '"' || r == '\\' {
			needs = true
			break
		}
		i += size
	}
	if !needs {
		return p
	}
	var b strings.Builder
	b.WriteByte('"')
	for i := 0; i < len(p); {
		r, size := utf8DecodeRune(p[i:])
		switch {
		case r == 0xFFFD && size <= 1:
			fmt.Fprintf(&b, "\\%03o", p[i])
		case r == '"' || r == '\\':
			b.WriteByte('\\')
			b.WriteRune(r)
		case r == '\n':
			b.WriteString(`\n`)
		case r == '\t':
			b.WriteString(`\t`)
		case r < ' ' || r == 0x7f:
			fmt.Fprintf(&b, "\\%03o", byte(r))
		default:
			b.WriteString(p[i : i+size])
		}
		i += size
	}
	b.WriteByte('"')
	return b.String()
}

func utf8DecodeRune(s string) (rune, int) { return utf8.DecodeRuneInString(s) }
