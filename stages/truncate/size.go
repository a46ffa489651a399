package truncate

import (
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
)

// Size is a size as truncate(1) --size takes it, which is what osbuild's
// stage passes its "size" option to: a number, perhaps with a unit, and
// perhaps a modifier saying how it applies to the file's current size.
//
//	N        N bytes
//	+N, -N   the current size plus or minus N (not below 0)
//	<N, >N   at most N, at least N
//	/N, %N   rounded down, up, to a multiple of N
//
// Units: K, M, G, T, P, E (k, m, g, t too) are powers of 1024, also as
// KiB, MiB...; KB, MB... (or KD, MD...) are powers of 1000. A unit alone
// is one of it ("M" is 1 MiB). Blanks may come before the modifier and
// before the number, nowhere else. This is coreutils 9.1's parsing
// (xdectoimax with the suffixes "EgGkKmMPtTYZ0"), pinned by the tests.
type Size struct {
	Mode Mode
	N    int64
}

// Mode says how a Size applies to the current size.
type Mode byte

const (
	Absolute  Mode = 0
	Relative  Mode = '+' // N may be negative
	AtMost    Mode = '<'
	AtLeast   Mode = '>'
	RoundDown Mode = '/'
	RoundUp   Mode = '%'
)

// isSpace is C's isspace in the C locale.
func isSpace(c byte) bool { return c == ' ' || c >= '\t' && c <= '\r' }

func trimSpace(s string) string {
	for s != "" && isSpace(s[0]) {
		s = s[1:]
	}
	return s
}

var (
	errInvalid  = errors.New("not a size truncate(1) understands (like 1073741824, 10G, 512MiB, 10GB, +1M)")
	errTooLarge = errors.New("too large")
)

// ParseSize parses s as truncate --size does.
func ParseSize(s string) (Size, error) {
	var sz Size
	rest := trimSpace(s)
	if rest != "" {
		switch m := Mode(rest[0]); m {
		case AtMost, AtLeast, RoundDown, RoundUp:
			sz.Mode = m
			rest = trimSpace(rest[1:])
		}
	}
	if rest != "" && (rest[0] == '+' || rest[0] == '-') {
		if sz.Mode != Absolute {
			return Size{}, fmt.Errorf("%q: more than one modifier", s)
		}
		sz.Mode = Relative
	}
	n, err := parseNumber(rest)
	if err != nil {
		return Size{}, fmt.Errorf("%q: %w", s, err)
	}
	if n == 0 && (sz.Mode == RoundDown || sz.Mode == RoundUp) {
		return Size{}, fmt.Errorf("%q: rounds to a multiple of 0", s)
	}
	sz.N = n
	return sz, nil
}

// parseNumber is xdectoimax: a decimal integer with an optional sign and
// an optional unit; a unit without a number counts once.
func parseNumber(s string) (int64, error) {
	i := 0
	if i < len(s) && (s[i] == '+' || s[i] == '-') {
		i++
	}
	j := i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	var n int64 = 1
	switch {
	case j > i:
		v, err := strconv.ParseInt(s[:j], 10, 64)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && errors.Is(ne.Err, strconv.ErrRange) {
				return 0, errTooLarge
			}
			return 0, errInvalid
		}
		n = v
	case i > 0 || j == len(s):
		// A sign, or nothing, without digits.
		return 0, errInvalid
	}
	suffix := s[j:]
	if suffix == "" {
		return n, nil
	}
	power := strings.IndexByte("kmgtpezy", lower(suffix[0])) + 1
	if power == 0 || !strings.ContainsRune("EgGkKmMPtTYZ", rune(suffix[0])) {
		return 0, errInvalid
	}
	base, used := int64(1024), 1
	if len(suffix) > 1 {
		switch {
		case suffix[1] == 'i' && len(suffix) > 2 && suffix[2] == 'B':
			used = 3
		case suffix[1] == 'B' || suffix[1] == 'D':
			base, used = 1000, 2
		}
	}
	if used != len(suffix) {
		return 0, errInvalid
	}
	for range power {
		if n > math.MaxInt64/base || n < math.MinInt64/base {
			return 0, errTooLarge
		}
		n *= base
	}
	return n, nil
}

func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// Apply is the new size of a file of size cur, as truncate computes it.
func (sz Size) Apply(cur int64) (int64, error) {
	var n int64
	switch sz.Mode {
	case Absolute:
		n = sz.N
	case Relative:
		if sz.N > 0 && cur > math.MaxInt64-sz.N {
			return 0, fmt.Errorf("%d bytes and %+d overflow", cur, sz.N)
		}
		n = cur + sz.N
	case AtMost:
		n = min(cur, sz.N)
	case AtLeast:
		n = max(cur, sz.N)
	case RoundDown:
		n = cur / sz.N * sz.N
	case RoundUp:
		n = cur
		if r := cur % sz.N; r != 0 {
			if cur-r > math.MaxInt64-sz.N {
				return 0, fmt.Errorf("%d bytes rounded up to a multiple of %d overflow", cur, sz.N)
			}
			n = cur - r + sz.N
		}
	default:
		return 0, fmt.Errorf("unknown size mode %q", rune(sz.Mode))
	}
	return max(n, 0), nil
}
