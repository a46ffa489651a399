// Package pack reads and writes pack files: many chunks appended to one file,
// with a footer that lists them, so the index can be checked against (and
// rebuilt from) the packs. It sees only streams; naming, syncing and indexing
// packs is the store's job.
//
// Layout:
//
//	"FORGEPK1"                      8-byte header
//	blob...                         chunk bytes, back to back
//	entry...                        49 bytes each: hash, offset (u64), length (u32), raw length (u32), flags (u8)
//	count (u32) crc32c (u32) "FORGEEND"   16-byte trailer; the CRC covers the entries
//
// Integers are little-endian.
package pack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/forge-build/forge/cas/digest"
)

const (
	// HeaderSize is the length of the magic at the start of every pack.
	HeaderSize  = 8
	entrySize   = digest.Size + 8 + 4 + 4 + 1
	trailerSize = 16
	// MaxBlob bounds one blob, so a corrupt footer cannot ask for more.
	MaxBlob = 16 << 20
)

var (
	headerMagic  = [HeaderSize]byte{'F', 'O', 'R', 'G', 'E', 'P', 'K', '1'}
	trailerMagic = [8]byte{'F', 'O', 'R', 'G', 'E', 'E', 'N', 'D'}
	castagnoli   = crc32.MakeTable(crc32.Castagnoli)
)

// Flags describe what a blob is and how it is stored.
const (
	// FlagZstd marks a chunk stored zstd-compressed (package
	// cas/codec), RawLength its decoded size; its hash is of the
	// decoded bytes. Nodes are never compressed.
	FlagZstd uint8 = 1 << iota
	// FlagNode marks an encoded tree node (package node) rather than a
	// chunk of file content. Nodes live in packs beside the chunks they
	// name, so that a pack's footer says everything the index needs to
	// be rebuilt from the packs alone.
	FlagNode
)

// ErrBroken is returned by a Writer after its first error.
var ErrBroken = errors.New("pack writer failed earlier")

// InvalidError describes a pack whose structure is damaged.
type InvalidError struct{ Reason string }

func (e *InvalidError) Error() string { return "invalid pack: " + e.Reason }

// Entry locates one blob in a pack.
type Entry struct {
	Hash      digest.Hash
	Offset    int64
	Length    uint32
	RawLength uint32
	Flags     uint8
}

// Writer appends blobs to a pack stream.
type Writer struct {
	w       io.Writer
	off     int64
	entries []Entry
	err     error
}

// NewWriter writes the header to w and returns a Writer for the blobs.
func NewWriter(w io.Writer) (*Writer, error) {
	pw := &Writer{w: w}
	if _, err := w.Write(headerMagic[:]); err != nil {
		return nil, fmt.Errorf("write pack header: %w", err)
	}
	pw.off = HeaderSize
	return pw, nil
}

// Add appends one blob. rawLength is the blob's length once decoded (equal
// to len(data) unless flags say it is compressed).
func (w *Writer) Add(h digest.Hash, data []byte, rawLength int, flags uint8) (Entry, error) {
	if w.err != nil {
		return Entry{}, ErrBroken
	}
	if len(data) > MaxBlob || rawLength > MaxBlob {
		return Entry{}, fmt.Errorf("blob %s of %d bytes: larger than %d", h.Short(), len(data), MaxBlob)
	}
	if _, err := w.w.Write(data); err != nil {
		w.err = err
		return Entry{}, fmt.Errorf("write blob %s: %w", h.Short(), err)
	}
	e := Entry{Hash: h, Offset: w.off, Length: uint32(len(data)), RawLength: uint32(rawLength), Flags: flags}
	w.entries = append(w.entries, e)
	w.off += int64(len(data))
	return e, nil
}

// Size is the number of bytes written so far, without the footer.
func (w *Writer) Size() int64 { return w.off }

// Count is the number of blobs added.
func (w *Writer) Count() int { return len(w.entries) }

// Finish writes the footer. The Writer cannot be used afterwards.
func (w *Writer) Finish() ([]Entry, error) {
	if w.err != nil {
		return nil, ErrBroken
	}
	w.err = ErrBroken
	footer := make([]byte, 0, len(w.entries)*entrySize+trailerSize)
	for _, e := range w.entries {
		footer = appendEntry(footer, e)
	}
	crc := crc32.Checksum(footer, castagnoli)
	footer = binary.LittleEndian.AppendUint32(footer, uint32(len(w.entries)))
	footer = binary.LittleEndian.AppendUint32(footer, crc)
	footer = append(footer, trailerMagic[:]...)
	if _, err := w.w.Write(footer); err != nil {
		return nil, fmt.Errorf("write pack footer: %w", err)
	}
	return w.entries, nil
}

func appendEntry(b []byte, e Entry) []byte {
	b = append(b, e.Hash[:]...)
	b = binary.LittleEndian.AppendUint64(b, uint64(e.Offset))
	b = binary.LittleEndian.AppendUint32(b, e.Length)
	b = binary.LittleEndian.AppendUint32(b, e.RawLength)
	return append(b, e.Flags)
}

// ReadIndex parses the footer of the pack r of the given size and checks
// that every entry lies within the blob area.
func ReadIndex(r io.ReaderAt, size int64) ([]Entry, error) {
	if size < HeaderSize+trailerSize {
		return nil, &InvalidError{Reason: fmt.Sprintf("%d bytes is too short", size)}
	}
	var head [HeaderSize]byte
	if _, err := r.ReadAt(head[:], 0); err != nil {
		return nil, fmt.Errorf("read pack header: %w", err)
	}
	if head != headerMagic {
		return nil, &InvalidError{Reason: fmt.Sprintf("header %q", head[:])}
	}
	return ReadIndexAt(r, size)
}

// parseFooter checks the footer's entries against the trailer's CRC and
// the blob area, which ends at footerStart, and decodes them.
func parseFooter(footer []byte, trailer [trailerSize]byte, footerStart int64) ([]Entry, error) {
	count := int64(len(footer)) / entrySize
	if crc := crc32.Checksum(footer, castagnoli); crc != binary.LittleEndian.Uint32(trailer[4:]) {
		return nil, &InvalidError{Reason: "footer checksum mismatch"}
	}
	entries := make([]Entry, count)
	for i := range entries {
		b := footer[i*entrySize:]
		e := &entries[i]
		copy(e.Hash[:], b)
		e.Offset = int64(binary.LittleEndian.Uint64(b[digest.Size:]))
		e.Length = binary.LittleEndian.Uint32(b[digest.Size+8:])
		e.RawLength = binary.LittleEndian.Uint32(b[digest.Size+12:])
		e.Flags = b[digest.Size+16]
		// Offset > footerStart-Length, not Offset+Length > footerStart:
		// an offset near 2^63 must not wrap into the blob area.
		if e.Offset < HeaderSize || e.Length > MaxBlob || e.RawLength > MaxBlob || e.Offset > footerStart-int64(e.Length) {
			return nil, &InvalidError{Reason: fmt.Sprintf("entry %d (%s) at %d+%d outside the blob area", i, e.Hash.Short(), e.Offset, e.Length)}
		}
	}
	return entries, nil
}

// FooterSize is the length of the footer (entries and trailer) of a pack
// of count blobs.
func FooterSize(count int) int64 { return int64(count)*entrySize + trailerSize }

// TailError says that a tail given to ParseTail is too short to hold the
// footer, and how long a tail would.
type TailError struct{ Need int64 }

func (e *TailError) Error() string {
	return fmt.Sprintf("the pack's footer needs its last %d bytes", e.Need)
}

// ParseTail parses the footer of a pack of size bytes from tail, its last
// len(tail) bytes: what a ranged read of a remote pack's end returns. It
// checks what ReadIndex checks but the header. A tail too short for the
// footer gives a *TailError saying how much to read.
func ParseTail(tail []byte, size int64) ([]Entry, error) {
	if int64(len(tail)) > size || size < HeaderSize+trailerSize {
		return nil, &InvalidError{Reason: fmt.Sprintf("a %d-byte tail of %d bytes", len(tail), size)}
	}
	if len(tail) < trailerSize {
		return nil, &TailError{Need: trailerSize}
	}
	start := size - int64(len(tail))
	return ReadIndexAt(tailReader{tail: tail, start: start}, size)
}

// ReadIndexAt is ReadIndex without the check of the header, for a reader
// that holds only the end of the pack.
func ReadIndexAt(r io.ReaderAt, size int64) ([]Entry, error) {
	var trailer [trailerSize]byte
	if _, err := r.ReadAt(trailer[:], size-trailerSize); err != nil {
		return nil, fmt.Errorf("read pack trailer: %w", err)
	}
	if [8]byte(trailer[8:]) != trailerMagic {
		return nil, &InvalidError{Reason: "no trailer (a pack that was never finished?)"}
	}
	count := int64(binary.LittleEndian.Uint32(trailer[0:]))
	footerStart := size - trailerSize - count*entrySize
	if footerStart < HeaderSize {
		return nil, &InvalidError{Reason: fmt.Sprintf("%d entries do not fit in %d bytes", count, size)}
	}
	// A tail too short for the footer says so before anything is
	// allocated: the count comes from the pack, and a remote pack's
	// trailer is not trusted to ask for gigabytes.
	if t, ok := r.(tailReader); ok && footerStart < t.start {
		return nil, &TailError{Need: FooterSize(int(count))}
	}
	footer := make([]byte, count*entrySize)
	if _, err := r.ReadAt(footer, footerStart); err != nil {
		var te *TailError
		if errors.As(err, &te) {
			return nil, &TailError{Need: FooterSize(int(count))}
		}
		return nil, fmt.Errorf("read pack footer: %w", err)
	}
	return parseFooter(footer, trailer, footerStart)
}

// tailReader reads the end of a pack from memory; a read before it is a
// *TailError.
type tailReader struct {
	tail  []byte
	start int64
}

func (t tailReader) ReadAt(p []byte, off int64) (int, error) {
	if off < t.start {
		return 0, &TailError{}
	}
	if off-t.start+int64(len(p)) > int64(len(t.tail)) {
		return 0, io.ErrUnexpectedEOF
	}
	return copy(p, t.tail[off-t.start:]), nil
}
