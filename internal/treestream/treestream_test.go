package treestream

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestRoundTrip: what a Writer writes, a Reader reads back, record by
// record, holes and all.
func TestRoundTrip(t *testing.T) {
	var b bytes.Buffer
	w := NewWriter(&b)
	root := &Entry{Mode: 0o40755, MtimeSec: -5, MtimeNsec: 999_999_999}
	file := &Entry{Name: "f", Mode: 0o104755, UID: 1 << 31, GID: 7, Link: 3, Size: 10 << 20, MtimeSec: 1 << 40,
		Xattrs: []Xattr{{"security.capability", []byte{1, 0, 0, 2}}, {"user.empty", nil}}}
	link := &Entry{Name: "l", Mode: 0o120777, Target: strings.Repeat("x/", 100)}
	dev := &Entry{Name: "d", Mode: 0o20600, Rdev: 0x10302}
	big := bytes.Repeat([]byte("0123456789abcdef"), MaxData/16+100) // more than one record
	for _, err := range []error{
		w.Entry(root), w.Entry(file), w.Data(4096, big), w.Data(9<<20, []byte("tail")), w.EndFile(),
		w.Entry(link), w.Entry(dev), w.EndDir(), w.End(4),
	} {
		if err != nil {
			t.Fatal(err)
		}
	}
	r, err := NewReader(&b)
	if err != nil {
		t.Fatal(err)
	}
	next := func(want byte) {
		t.Helper()
		k, err := r.Next()
		if err != nil || k != want {
			t.Fatalf("Next: %q, %v; want %q", k, err, want)
		}
	}
	entry := func(want *Entry) {
		t.Helper()
		next(KindEntry)
		got, err := r.Entry()
		if err != nil {
			t.Fatal(err)
		}
		if want.Xattrs != nil {
			for i := range want.Xattrs {
				if want.Xattrs[i].Value == nil {
					want.Xattrs[i].Value = []byte{}
				}
			}
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("entry %+v, want %+v", got, want)
		}
	}
	entry(root)
	entry(file)
	var data []byte
	off := uint64(4096)
	for {
		k, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if k == KindFile {
			break
		}
		if k != KindData {
			t.Fatalf("record %q in a file's data", k)
		}
		o, d, err := r.Data(nil)
		if err != nil {
			t.Fatal(err)
		}
		if o == 9<<20 {
			if string(d) != "tail" {
				t.Fatalf("data at 9 MiB: %q", d)
			}
			continue
		}
		if o != off || len(d) > MaxData {
			t.Fatalf("data record at %d of %d bytes, want at %d, at most %d", o, len(d), off, MaxData)
		}
		data = append(data, d...)
		off += uint64(len(d))
	}
	if !bytes.Equal(data, big) {
		t.Fatalf("file data: %d bytes back, %d sent, or not the same", len(data), len(big))
	}
	entry(link)
	entry(dev)
	next(KindUp)
	next(KindEnd)
	if n, err := r.Entries(); err != nil || n != 4 {
		t.Fatalf("Entries: %d, %v", n, err)
	}
}

// TestReaderRefuses: what a reader must not take, each refused with an
// error that says what was wrong, and every later call gives it again.
func TestReaderRefuses(t *testing.T) {
	entry := func(e Entry) string {
		var b bytes.Buffer
		w := NewWriter(&b)
		w.Entry(&e)
		w.End(1)
		return b.String()
	}
	valid := entry(Entry{Name: "ok", Mode: 0o100644})
	for _, tc := range []struct {
		name, stream, want string
	}{
		{"not a stream", "HTTP/1.1 500 Internal Server Error\r\n", "not a tree stream"},
		{"empty", "", "ended early"},
		{"cut in an entry", valid[:len(Magic)+3], "ended early"},
		{"unknown kind", Magic + "Q", "unknown record kind"},
		{"slash in a name", entry(Entry{Name: "a/b"}), "not a name"},
		{"dot-dot", entry(Entry{Name: ".."}), "not a name"},
		{"dot", entry(Entry{Name: "."}), "not a name"},
		{"NUL in a name", entry(Entry{Name: "a\x00"}), "not a name"},
		{"long name", entry(Entry{Name: strings.Repeat("n", MaxName+1)}), "name length 256 is more than 255"},
		{"long target", entry(Entry{Name: "l", Target: strings.Repeat("t", MaxTarget+1)}), "symlink target length"},
		{"big xattr", entry(Entry{Name: "x", Xattrs: []Xattr{{"user.x", make([]byte, MaxXattrValue+1)}}}), "xattr value length"},
		{"nanoseconds", entry(Entry{Name: "n", MtimeNsec: 1_000_000_000}), "mtime nanoseconds"},
		{"many xattr bytes", entry(Entry{Name: "x", Xattrs: func() []Xattr {
			var xs []Xattr
			for i := range MaxXattrBytes/MaxXattrValue + 1 {
				xs = append(xs, Xattr{string(rune('a' + i)), make([]byte, MaxXattrValue)})
			}
			return xs
		}()}), "bytes of xattrs"},
		{"huge length", Magic + "E\xff\xff\xff\xff\xff\xff\xff\xff\x7f", "name length"},
		{"writer failed", func() string {
			var b bytes.Buffer
			NewWriter(&b).Fail(errors.New("chunk 1234: damaged"))
			return b.String()
		}(), "the tree's sender failed: chunk 1234: damaged"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := NewReader(strings.NewReader(tc.stream))
			if err == nil {
				var k byte
				k, err = r.Next()
				if err == nil && k == KindEntry {
					_, err = r.Entry()
				}
				if err == nil {
					k, err = r.Next()
				}
				if err != nil {
					if _, again := r.Next(); again == nil || again.Error() != err.Error() {
						t.Errorf("after %v, Next gave %v", err, again)
					}
				}
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error containing %q", err, tc.want)
			}
		})
	}
	// A data record longer than MaxData.
	r, err := NewReader(strings.NewReader(Magic + "D\x00\x81\x80\x80\x05"))
	if err != nil {
		t.Fatal(err)
	}
	if k, err := r.Next(); err != nil || k != KindData {
		t.Fatal(k, err)
	}
	if _, _, err := r.Data(nil); err == nil || !strings.Contains(err.Error(), "data length") {
		t.Fatalf("a data record of 10 MiB: %v", err)
	}
}

// TestWriterError: a writer that cannot write says so, and keeps saying
// so.
func TestWriterError(t *testing.T) {
	w := NewWriter(failWriter{})
	w.Entry(&Entry{Mode: 0o40755})
	if err := w.End(1); err == nil {
		t.Fatal("End on a failing writer: no error")
	}
	if err := w.Data(0, []byte("x")); err == nil {
		t.Fatal("Data after a failure: no error")
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk on fire") }

// FuzzReader: no input makes a Reader panic or allocate past its limits;
// it reads records until an error or the end record.
func FuzzReader(f *testing.F) {
	var b bytes.Buffer
	w := NewWriter(&b)
	w.Entry(&Entry{Mode: 0o40755})
	w.Entry(&Entry{Name: "f", Mode: 0o100644, Size: 3, Xattrs: []Xattr{{"user.a", []byte("b")}}})
	w.Data(0, []byte("abc"))
	w.EndFile()
	w.Entry(&Entry{Name: "l", Mode: 0o120777, Target: "f"})
	w.EndDir()
	w.End(3)
	f.Add(b.Bytes())
	f.Add([]byte(Magic + "X\x05oops!"))
	f.Fuzz(func(t *testing.T, stream []byte) {
		r, err := NewReader(bytes.NewReader(stream))
		if err != nil {
			return
		}
		var buf []byte
		for range 10000 {
			k, err := r.Next()
			if err != nil {
				return
			}
			switch k {
			case KindEntry:
				_, err = r.Entry()
			case KindData:
				_, buf, err = r.Data(buf)
				if len(buf) > MaxData {
					t.Fatalf("a data record of %d bytes", len(buf))
				}
			case KindEnd:
				_, err = r.Entries()
				return
			}
			if err != nil {
				return
			}
		}
	})
}
