package cas

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/cas/digest"
)

// The ref log is where refs live: an append-only file beside the packs,
// each record checksummed and fsynced before the change it records is
// acknowledged. The index keeps no refs; it is rebuilt from the packs and
// this log (git keeps refs in files of their own for the same reason: a
// damaged object database must not take the names with it).
//
// Layout:
//
//	"FORGERL1"                                   8-byte header
//	record...                                    back to back
//
//	record: "RLOG" length (u32) crc32c (u32) payload   (the CRC covers the payload)
//	payload: time (i64, unix ns) count (uvarint) change...
//	change: 'S' name-length (uvarint) name tree (32 bytes)  — point name at tree
//	        'D' name-length (uvarint) name                  — drop name
//
// Integers are little-endian. A record is one write and one fsync; a record
// cut short at the end of the file is a write a crash interrupted before it
// was acknowledged, and is cut off when the log is opened. A record that is
// whole but fails its checksum is damage: it is reported, skipped, and the
// store is flagged until fsck --repair rewrites the log.
const (
	refLogName       = "refs.log"
	refLogHeaderSize = 8
	refRecHeaderSize = 12
	maxRefRecord     = 16 << 20
	// compactRefLogAt: a log larger than this and four times what its live
	// refs need is rewritten with one record per ref.
	compactRefLogAt = 1 << 20
)

var (
	castagnoli  = crc32.MakeTable(crc32.Castagnoli)
	refLogMagic = [refLogHeaderSize]byte{'F', 'O', 'R', 'G', 'E', 'R', 'L', '1'}
	refRecMagic = [4]byte{'R', 'L', 'O', 'G'}
)

// refChange is one change a ref log record makes.
type refChange struct {
	Name   string
	Tree   digest.Hash
	Delete bool
}

// refEntry is a ref as the log says it is.
type refEntry struct {
	Tree digest.Hash
	Set  int64 // unix ns of the record that set it
}

// refLog is the open ref log and the refs it holds. Its methods are called
// with Store.refMu held.
type refLog struct {
	path string
	f    *os.File // O_APPEND
	size int64
	refs map[string]refEntry
	// damage lists whole records that failed their checksum when the log
	// was read: refs may be missing or stale until fsck --repair.
	damage []string
}

// openRefLog opens (creating when create is set) and reads the ref log of
// the store at dir. A torn last record is cut off.
func openRefLog(dir string, create bool, logf func(string, ...any)) (*refLog, error) {
	path := filepath.Join(dir, refLogName)
	flags := os.O_RDWR | unix.O_CLOEXEC
	if create {
		flags |= os.O_CREATE
	}
	f, err := os.OpenFile(path, flags, 0o600)
	if err != nil {
		return nil, fmt.Errorf("ref log %s: %w", path, err)
	}
	l := &refLog{path: path, f: f, refs: map[string]refEntry{}}
	ok := false
	defer func() {
		if !ok {
			f.Close()
		}
	}()
	data, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("ref log %s: %w", path, err)
	}
	if len(data) == 0 {
		if !create {
			return nil, fmt.Errorf("ref log %s: empty: %w", path, ErrCorrupt)
		}
		if _, err := f.Write(refLogMagic[:]); err != nil {
			return nil, fmt.Errorf("ref log %s: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("ref log %s: %w", path, err)
		}
		if err := syncDir(dir); err != nil {
			return nil, err
		}
		data = refLogMagic[:]
	}
	end, err := l.replay(data)
	if err != nil {
		return nil, err
	}
	if end < int64(len(data)) {
		// A crash cut the last append short: it was never acknowledged.
		if err := f.Truncate(end); err != nil {
			return nil, fmt.Errorf("ref log %s: cut off a torn record: %w", path, err)
		}
		if err := f.Sync(); err != nil {
			return nil, fmt.Errorf("ref log %s: %w", path, err)
		}
		logf("ref log %s: cut off %d bytes of a record a crash left unfinished", path, int64(len(data))-end)
	}
	l.size = end
	// Appends go to the end whatever the file offset is.
	if err := setAppend(f); err != nil {
		return nil, fmt.Errorf("ref log %s: %w", path, err)
	}
	ok = true
	return l, nil
}

func setAppend(f *os.File) error {
	fl, err := unix.FcntlInt(f.Fd(), unix.F_GETFL, 0)
	if err != nil {
		return err
	}
	_, err = unix.FcntlInt(f.Fd(), unix.F_SETFL, fl|unix.O_APPEND)
	return err
}

// replay applies every record of data to l.refs and returns where the last
// whole record ends. Whole records that fail their checksum are skipped
// and listed in l.damage.
func (l *refLog) replay(data []byte) (int64, error) {
	if len(data) < refLogHeaderSize || !bytes.Equal(data[:refLogHeaderSize], refLogMagic[:]) {
		return 0, fmt.Errorf("ref log %s: no ref log header: %w", l.path, ErrCorrupt)
	}
	off := refLogHeaderSize
	for off < len(data) {
		payload, next, ok := parseRefRecord(data, off)
		if !ok {
			// Torn at the end, or damaged: a damaged record is followed
			// by whole ones, which a resync finds.
			resync := findRefRecord(data, off+1)
			if resync < 0 {
				return int64(off), nil
			}
			l.damage = append(l.damage, fmt.Sprintf("ref log %s: %d damaged bytes at offset %d", l.path, resync-off, off))
			off = resync
			continue
		}
		if err := l.apply(payload); err != nil {
			l.damage = append(l.damage, fmt.Sprintf("ref log %s: record at offset %d: %v", l.path, off, err))
		}
		off = next
	}
	return int64(off), nil
}

// parseRefRecord checks the record at off and returns its payload and where
// the next record starts.
func parseRefRecord(data []byte, off int) (payload []byte, next int, ok bool) {
	if len(data)-off < refRecHeaderSize || !bytes.Equal(data[off:off+4], refRecMagic[:]) {
		return nil, 0, false
	}
	n := int(binary.LittleEndian.Uint32(data[off+4:]))
	crc := binary.LittleEndian.Uint32(data[off+8:])
	start := off + refRecHeaderSize
	if n > maxRefRecord || n > len(data)-start {
		return nil, 0, false
	}
	payload = data[start : start+n]
	if crc32.Checksum(payload, castagnoli) != crc {
		return nil, 0, false
	}
	return payload, start + n, true
}

// findRefRecord returns the offset of the first whole record at or after
// from, or -1.
func findRefRecord(data []byte, from int) int {
	for from < len(data) {
		i := bytes.Index(data[from:], refRecMagic[:])
		if i < 0 {
			return -1
		}
		if _, _, ok := parseRefRecord(data, from+i); ok {
			return from + i
		}
		from += i + 1
	}
	return -1
}

func (l *refLog) apply(payload []byte) error {
	if len(payload) < 8 {
		return fmt.Errorf("short record: %w", ErrCorrupt)
	}
	when := int64(binary.LittleEndian.Uint64(payload))
	changes, err := decodeRefChanges(payload[8:])
	if err != nil {
		return err
	}
	for _, c := range changes {
		if c.Delete {
			delete(l.refs, c.Name)
		} else {
			l.refs[c.Name] = refEntry{Tree: c.Tree, Set: when}
		}
	}
	return nil
}

func encodeRefRecord(when int64, changes []refChange) []byte {
	payload := binary.LittleEndian.AppendUint64(nil, uint64(when))
	payload = binary.AppendUvarint(payload, uint64(len(changes)))
	for _, c := range changes {
		op := byte('S')
		if c.Delete {
			op = 'D'
		}
		payload = append(payload, op)
		payload = binary.AppendUvarint(payload, uint64(len(c.Name)))
		payload = append(payload, c.Name...)
		if !c.Delete {
			payload = append(payload, c.Tree[:]...)
		}
	}
	rec := make([]byte, 0, refRecHeaderSize+len(payload))
	rec = append(rec, refRecMagic[:]...)
	rec = binary.LittleEndian.AppendUint32(rec, uint32(len(payload)))
	rec = binary.LittleEndian.AppendUint32(rec, crc32.Checksum(payload, castagnoli))
	return append(rec, payload...)
}

func decodeRefChanges(b []byte) ([]refChange, error) {
	count, n := binary.Uvarint(b)
	if n <= 0 || count > uint64(len(b)) {
		return nil, fmt.Errorf("bad change count: %w", ErrCorrupt)
	}
	b = b[n:]
	changes := make([]refChange, 0, count)
	for range count {
		if len(b) < 1 {
			return nil, fmt.Errorf("short change: %w", ErrCorrupt)
		}
		op := b[0]
		nameLen, n := binary.Uvarint(b[1:])
		if n <= 0 || nameLen > MaxRefNameLen || uint64(len(b)-1-n) < nameLen {
			return nil, fmt.Errorf("bad ref name: %w", ErrCorrupt)
		}
		c := refChange{Name: string(b[1+n : 1+n+int(nameLen)])}
		b = b[1+n+int(nameLen):]
		switch op {
		case 'S':
			if len(b) < digest.Size {
				return nil, fmt.Errorf("ref %q: short tree hash: %w", c.Name, ErrCorrupt)
			}
			copy(c.Tree[:], b)
			b = b[digest.Size:]
		case 'D':
			c.Delete = true
		default:
			return nil, fmt.Errorf("unknown change %q: %w", op, ErrCorrupt)
		}
		if err := ValidRefName(c.Name); err != nil {
			return nil, fmt.Errorf("%w: %w", ErrCorrupt, err)
		}
		changes = append(changes, c)
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%d bytes after the last change: %w", len(b), ErrCorrupt)
	}
	return changes, nil
}

// append makes changes durable, then applies them. Nothing is applied if
// the write or the sync fails.
func (l *refLog) append(when int64, changes []refChange) error {
	if len(changes) == 0 {
		return nil
	}
	rec := encodeRefRecord(when, changes)
	if len(rec)-refRecHeaderSize > maxRefRecord {
		return fmt.Errorf("ref log %s: %d changes in one record: %w", l.path, len(changes), ErrInvalidArgument)
	}
	if _, err := l.f.Write(rec); err != nil {
		// A partial write is a torn record: cut it off so that the next
		// record does not follow garbage.
		l.f.Truncate(l.size)
		return fmt.Errorf("ref log %s: %w", l.path, err)
	}
	if err := unix.Fdatasync(int(l.f.Fd())); err != nil {
		l.f.Truncate(l.size)
		return fmt.Errorf("ref log %s: sync: %w", l.path, err)
	}
	l.size += int64(len(rec))
	for _, c := range changes {
		if c.Delete {
			delete(l.refs, c.Name)
		} else {
			l.refs[c.Name] = refEntry{Tree: c.Tree, Set: when}
		}
	}
	if l.size > compactRefLogAt && l.size > 4*l.liveSize() {
		// The records just written are durable; a failed compaction only
		// leaves the longer log in place.
		return l.compact()
	}
	return nil
}

// liveSize estimates what a compacted log takes.
func (l *refLog) liveSize() int64 {
	n := int64(refLogHeaderSize)
	for name := range l.refs {
		n += int64(refRecHeaderSize + 8 + 2 + 1 + 2 + len(name) + digest.Size)
	}
	return n
}

// compact rewrites the log with one record per ref (each with the time it
// was set), syncs it and renames it over the old one. A damaged record
// read at open is gone afterwards, so compaction also clears l.damage.
func (l *refLog) compact() error {
	dir := filepath.Dir(l.path)
	tmp := l.path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return fmt.Errorf("compact ref log %s: %w", l.path, err)
	}
	names := make([]string, 0, len(l.refs))
	for name := range l.refs {
		names = append(names, name)
	}
	sort.Strings(names)
	buf := append([]byte(nil), refLogMagic[:]...)
	for _, name := range names {
		e := l.refs[name]
		buf = append(buf, encodeRefRecord(e.Set, []refChange{{Name: name, Tree: e.Tree}})...)
	}
	_, err = f.Write(buf)
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = setAppend(f)
	}
	if err == nil {
		err = os.Rename(tmp, l.path)
	}
	if err == nil {
		err = syncDir(dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("compact ref log %s: %w", l.path, err)
	}
	l.f.Close()
	l.f, l.size, l.damage = f, int64(len(buf)), nil
	return nil
}

func (l *refLog) close() error {
	if l == nil || l.f == nil {
		return nil
	}
	err := l.f.Close()
	l.f = nil
	return err
}

// errRefLogDamaged: the ref log has records that could not be read.
var errRefLogDamaged = errors.New("the ref log is damaged")
