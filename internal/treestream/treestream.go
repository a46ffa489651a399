// Package treestream is the wire form in which forge hands a stored tree to
// a stage that copies it: one stream of records, depth first in name order,
// carrying every property a copy keeps (type, permission bits, owner,
// nanosecond mtime, xattrs, device numbers, symlink targets, hard links,
// and content with its holes).
//
// It exists because reading a tree through its FUSE mount costs a round
// trip to the store's daemon per lookup, per listxattr and per read: the
// Debian sample's 16,000 entries took 6–8 s that way, where the daemon
// walks and reads the same tree in well under a second. A stream also lets
// the reader create the inodes in exactly the order a walk of the tree in
// name order would, so the filesystem it fills comes out the same as if it
// had walked the tree itself.
//
// The stream is a header line, then records. Each record starts with a
// kind byte:
//
//	'E' an entry: name, mode, uid, gid, rdev, link, size, mtime, xattrs,
//	    symlink target. A regular file's entry is followed by its 'D'
//	    records and one 'F'; a directory's by its entries and one 'U'.
//	'D' data of the current file: offset and length (uvarints), then the
//	    bytes. Offsets grow; what no record covers is a hole.
//	'F' the end of the current file's data.
//	'U' the end of the current directory.
//	'Z' the end of the stream: the number of entries, the root included.
//	'X' the writer failed: a message, and nothing follows.
//
// The first entry is the root directory, with an empty name. Link is 0 for
// an inode with one name and otherwise a number shared by its names; the
// first name carries the content, the others none. Integers are uvarints
// (signed ones zig-zag varints), strings and byte strings a uvarint length
// and the bytes.
package treestream

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
)

// Magic is the stream's first line; a reader refuses anything else.
const Magic = "forge-treestream 1\n"

// Limits a Reader holds the stream to. A name is one path component of
// Linux (NAME_MAX); xattr names and values are as large as Linux takes
// them; a data record is at most what a writer sends at once.
const (
	MaxName       = 255
	MaxTarget     = 4095 // PATH_MAX less the NUL
	MaxXattrName  = 255
	MaxXattrValue = 64 << 10
	MaxXattrs     = 1024
	MaxXattrBytes = 1 << 20 // names and values of one entry together
	MaxData       = 8 << 20
	maxMessage    = 64 << 10
)

// Kinds of record.
const (
	KindEntry byte = 'E'
	KindData  byte = 'D'
	KindFile  byte = 'F' // end of a file's data
	KindUp    byte = 'U' // end of a directory
	KindEnd   byte = 'Z'
	KindError byte = 'X'
)

// Xattr is one extended attribute.
type Xattr struct {
	Name  string
	Value []byte
}

// Entry is one inode's name and metadata.
type Entry struct {
	Name      string
	Mode      uint32 // st_mode: type and the 12 permission bits
	UID, GID  uint32
	Rdev      uint64
	Link      uint64 // 0: one name; otherwise shared by the inode's names
	Size      uint64 // regular files
	MtimeSec  int64
	MtimeNsec uint32
	Xattrs    []Xattr
	Target    string // symlinks
}

// Writer writes a stream. Its methods return the first error of the
// underlying writer from then on.
type Writer struct {
	w   *bufio.Writer
	buf []byte
	err error
}

// NewWriter starts a stream on w with its header.
func NewWriter(w io.Writer) *Writer {
	sw := &Writer{w: bufio.NewWriterSize(w, 256<<10)}
	_, sw.err = sw.w.WriteString(Magic)
	return sw
}

func (w *Writer) uvarint(v uint64) { w.buf = binary.AppendUvarint(w.buf, v) }
func (w *Writer) varint(v int64)   { w.buf = binary.AppendVarint(w.buf, v) }
func (w *Writer) bytes(b []byte)   { w.uvarint(uint64(len(b))); w.buf = append(w.buf, b...) }
func (w *Writer) str(s string)     { w.uvarint(uint64(len(s))); w.buf = append(w.buf, s...) }

func (w *Writer) flushRecord() error {
	if w.err == nil {
		_, w.err = w.w.Write(w.buf)
	}
	w.buf = w.buf[:0]
	return w.err
}

// Entry writes an entry record.
func (w *Writer) Entry(e *Entry) error {
	w.buf = append(w.buf[:0], KindEntry)
	w.str(e.Name)
	w.uvarint(uint64(e.Mode))
	w.uvarint(uint64(e.UID))
	w.uvarint(uint64(e.GID))
	w.uvarint(e.Rdev)
	w.uvarint(e.Link)
	w.uvarint(e.Size)
	w.varint(e.MtimeSec)
	w.uvarint(uint64(e.MtimeNsec))
	w.uvarint(uint64(len(e.Xattrs)))
	for _, x := range e.Xattrs {
		w.str(x.Name)
		w.bytes(x.Value)
	}
	w.str(e.Target)
	return w.flushRecord()
}

// Data writes b as the current file's content at off, in records of at
// most MaxData bytes.
func (w *Writer) Data(off uint64, b []byte) error {
	for len(b) > 0 && w.err == nil {
		n := min(len(b), MaxData)
		w.buf = append(w.buf[:0], KindData)
		w.uvarint(off)
		w.uvarint(uint64(n))
		if w.flushRecord() == nil {
			_, w.err = w.w.Write(b[:n])
		}
		off, b = off+uint64(n), b[n:]
	}
	return w.err
}

// EndFile ends the current file's data.
func (w *Writer) EndFile() error { return w.mark(KindFile) }

// EndDir ends the current directory.
func (w *Writer) EndDir() error { return w.mark(KindUp) }

func (w *Writer) mark(kind byte) error {
	w.buf = append(w.buf[:0], kind)
	return w.flushRecord()
}

// End ends the stream, saying how many entries it held, and flushes it.
func (w *Writer) End(entries uint64) error {
	w.buf = append(w.buf[:0], KindEnd)
	w.uvarint(entries)
	if w.flushRecord() == nil {
		w.err = w.w.Flush()
	}
	return w.err
}

// Fail ends the stream with the writer's error, for the reader to report,
// and flushes it.
func (w *Writer) Fail(cause error) error {
	msg := cause.Error()
	if len(msg) > maxMessage {
		msg = msg[:maxMessage]
	}
	w.buf = append(w.buf[:0], KindError)
	w.str(msg)
	if w.flushRecord() == nil {
		w.err = w.w.Flush()
	}
	return w.err
}

// Reader reads a stream.
type Reader struct {
	r   *bufio.Reader
	err error
}

// ErrTruncated is a stream that ended before its 'Z' record.
var ErrTruncated = errors.New("the tree stream ended early")

// WriterError is the failure a stream's writer reported in an 'X' record.
type WriterError struct{ Message string }

func (e *WriterError) Error() string { return "the tree's sender failed: " + e.Message }

// NewReader checks the stream's header and returns a reader of its records.
func NewReader(r io.Reader) (*Reader, error) {
	br := bufio.NewReaderSize(r, 256<<10)
	head := make([]byte, len(Magic))
	if _, err := io.ReadFull(br, head); err != nil {
		return nil, fmt.Errorf("tree stream header: %w", eofIsTruncated(err))
	}
	if string(head) != Magic {
		return nil, fmt.Errorf("not a tree stream (header %q, want %q)", head, Magic)
	}
	return &Reader{r: br}, nil
}

func eofIsTruncated(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return ErrTruncated
	}
	return err
}

// Next reads the next record's kind. After an 'E' record, read the entry
// with Entry; after 'D', the data with Data; after 'Z', the count with
// Entries. An 'X' record is returned as a *WriterError.
func (r *Reader) Next() (byte, error) {
	if r.err != nil {
		return 0, r.err
	}
	kind, err := r.r.ReadByte()
	if err != nil {
		return 0, r.fail(eofIsTruncated(err))
	}
	switch kind {
	case KindEntry, KindData, KindFile, KindUp, KindEnd:
		return kind, nil
	case KindError:
		msg, err := r.str(maxMessage, "error message")
		if err != nil {
			return 0, err
		}
		return 0, r.fail(&WriterError{Message: msg})
	}
	return 0, r.fail(fmt.Errorf("tree stream: unknown record kind %#x", kind))
}

func (r *Reader) fail(err error) error {
	if r.err == nil {
		r.err = err
	}
	return r.err
}

func (r *Reader) uvarint(what string) (uint64, error) {
	v, err := binary.ReadUvarint(r.r)
	if err != nil {
		return 0, r.fail(fmt.Errorf("tree stream: %s: %w", what, eofIsTruncated(err)))
	}
	return v, nil
}

func (r *Reader) bounded(max uint64, what string) (uint64, error) {
	v, err := r.uvarint(what)
	if err == nil && v > max {
		err = r.fail(fmt.Errorf("tree stream: %s %d is more than %d", what, v, max))
	}
	return v, err
}

func (r *Reader) bytes(max uint64, what string) ([]byte, error) {
	n, err := r.bounded(max, what+" length")
	if err != nil {
		return nil, err
	}
	b := make([]byte, n)
	if _, err := io.ReadFull(r.r, b); err != nil {
		return nil, r.fail(fmt.Errorf("tree stream: %s: %w", what, eofIsTruncated(err)))
	}
	return b, nil
}

func (r *Reader) str(max uint64, what string) (string, error) {
	b, err := r.bytes(max, what)
	return string(b), err
}

// Entry reads an entry record's body. Names are single path components:
// not ".", "..", nor containing "/" or NUL; only the root's is empty.
func (r *Reader) Entry() (*Entry, error) {
	var e Entry
	var err error
	if e.Name, err = r.str(MaxName, "name"); err != nil {
		return nil, err
	}
	if e.Name == "." || e.Name == ".." || strings.ContainsAny(e.Name, "/\x00") {
		return nil, r.fail(fmt.Errorf("tree stream: %q is not a name of a directory entry", e.Name))
	}
	var v [4]uint64
	for i, what := range []string{"mode", "uid", "gid"} {
		if v[i], err = r.bounded(1<<32-1, what); err != nil {
			return nil, err
		}
	}
	e.Mode, e.UID, e.GID = uint32(v[0]), uint32(v[1]), uint32(v[2])
	if e.Rdev, err = r.uvarint("rdev"); err != nil {
		return nil, err
	}
	if e.Link, err = r.uvarint("link"); err != nil {
		return nil, err
	}
	if e.Size, err = r.bounded(1<<63-1, "size"); err != nil {
		return nil, err
	}
	if e.MtimeSec, err = binary.ReadVarint(r.r); err != nil {
		return nil, r.fail(fmt.Errorf("tree stream: mtime: %w", eofIsTruncated(err)))
	}
	if v[3], err = r.bounded(999_999_999, "mtime nanoseconds"); err != nil {
		return nil, err
	}
	e.MtimeNsec = uint32(v[3])
	n, err := r.bounded(MaxXattrs, "xattr count")
	if err != nil {
		return nil, err
	}
	total := 0
	for range n {
		var x Xattr
		if x.Name, err = r.str(MaxXattrName, "xattr name"); err != nil {
			return nil, err
		}
		if x.Value, err = r.bytes(MaxXattrValue, "xattr value"); err != nil {
			return nil, err
		}
		if total += len(x.Name) + len(x.Value); total > MaxXattrBytes {
			return nil, r.fail(fmt.Errorf("tree stream: %q has more than %d bytes of xattrs", e.Name, MaxXattrBytes))
		}
		e.Xattrs = append(e.Xattrs, x)
	}
	if e.Target, err = r.str(MaxTarget, "symlink target"); err != nil {
		return nil, err
	}
	return &e, nil
}

// Data reads a data record's offset and its bytes into buf (grown as
// needed), returning the bytes.
func (r *Reader) Data(buf []byte) (off uint64, data []byte, err error) {
	if off, err = r.bounded(1<<63-1, "data offset"); err != nil {
		return 0, nil, err
	}
	n, err := r.bounded(MaxData, "data length")
	if err != nil {
		return 0, nil, err
	}
	if uint64(cap(buf)) < n {
		buf = make([]byte, n)
	}
	buf = buf[:n]
	if _, err := io.ReadFull(r.r, buf); err != nil {
		return 0, nil, r.fail(fmt.Errorf("tree stream: data: %w", eofIsTruncated(err)))
	}
	return off, buf, nil
}

// Entries reads an end record's entry count.
func (r *Reader) Entries() (uint64, error) { return r.uvarint("entry count") }
