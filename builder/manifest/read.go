package manifest

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"syscall"
)

// DefaultMaxSize is the size limit of a manifest unless the caller sets
// another: 64 MiB, far more than a manifest of thousands of stages and
// sources takes, and little enough that reading and parsing one to the
// limit fits in a few hundred MiB of memory.
const DefaultMaxSize = 64 << 20

// ErrTooLarge marks a manifest past its size limit; a *SizeError wraps it.
var ErrTooLarge = errors.New("manifest too large")

// SizeError is a manifest past its size limit.
type SizeError struct {
	Name  string // the file, as named to ReadFile or Read
	Limit int64  // in bytes
}

func (e *SizeError) Error() string {
	return fmt.Sprintf("%s is larger than the limit of %d bytes (%s)", e.Name, e.Limit, mib(e.Limit))
}

func (e *SizeError) Unwrap() error { return ErrTooLarge }

// mib writes n in MiB (or KiB, or bytes) for a message.
func mib(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.4g MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.4g KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// ReadFile reads the manifest file name, of at most limit bytes; past it
// the error is a *SizeError. A regular file larger than the limit fails
// before anything is read. Other files that can be read are read up to the
// limit: a pipe (like bash's <(...) as /dev/fd/63) or a terminal, and
// also /dev/zero, which fails at the limit. A directory fails at once.
func ReadFile(name string, limit int64) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	var size int64
	switch {
	case fi.IsDir():
		return nil, &fs.PathError{Op: "read", Path: name, Err: syscall.EISDIR}
	case fi.Mode().IsRegular():
		if fi.Size() > limit {
			return nil, &SizeError{Name: name, Limit: limit}
		}
		size = fi.Size()
	}
	return read(f, name, limit, size)
}

// Read reads a manifest from r, of at most limit bytes; past it the error
// is a *SizeError naming the manifest name.
func Read(r io.Reader, name string, limit int64) ([]byte, error) {
	return read(r, name, limit, 0)
}

// read reads r to its end, or fails as soon as it gives more than limit
// bytes. size is how long r is expected to be (a regular file's size), so
// that it is read into one buffer of its size; 0 when unknown. Input of
// unknown size is read in blocks and joined at the end: growing a single
// buffer instead would copy it again and again (for /dev/zero, more than
// five times the limit in fresh pages, seconds of page faults), and input
// past the limit is refused before the join.
func read(r io.Reader, name string, limit, size int64) ([]byte, error) {
	if limit < math.MaxInt64 {
		// One byte more than the limit tells a manifest of exactly
		// limit bytes from a longer one.
		r = io.LimitReader(r, limit+1)
	}
	var blocks [][]byte
	var total int64
	// One byte more than the expected size lets the read that meets the
	// end find it in the same buffer.
	next := max(min(size, limit)+1, 64<<10)
	for {
		block := make([]byte, next)
		n, err := io.ReadFull(r, block)
		blocks = append(blocks, block[:n])
		total += int64(n)
		if total > limit {
			return nil, &SizeError{Name: name, Limit: limit}
		}
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			break
		}
		if err != nil {
			return nil, err
		}
		next = min(2*next, 8<<20)
	}
	if len(blocks) == 1 {
		return blocks[0], nil
	}
	data := make([]byte, 0, total)
	for _, b := range blocks {
		data = append(data, b...)
	}
	return data, nil
}
