package builder

import (
	"bytes"
	"io"
	"strconv"
	"sync"
	"unicode/utf8"
)

// maxKeptOutput bounds the output kept to show when a stage fails: the
// end of it, which is where the error is.
const maxKeptOutput = 256 << 10

// maxLine bounds one log event; longer lines are split.
const maxLine = 16 << 10

// stageOutput collects what a stage writes on stdout and stderr: it keeps
// the last maxKeptOutput bytes, emits each line as a log event, and
// copies everything to live when set (a terminal).
type stageOutput struct {
	mu      sync.Mutex
	live    io.Writer
	line    func(string)
	kept    []byte
	dropped int64
	partial []byte
}

func (o *stageOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.live != nil {
		// A display that fails must not fail the stage.
		o.live.Write(p)
	}
	o.kept = append(o.kept, p...)
	if over := len(o.kept) - maxKeptOutput; over > 0 {
		o.dropped += int64(over)
		o.kept = append(o.kept[:0], o.kept[over:]...)
	}
	if o.line != nil {
		o.partial = append(o.partial, p...)
		for {
			i := bytes.IndexByte(o.partial, '\n')
			if i < 0 && len(o.partial) < maxLine {
				break
			}
			if i < 0 {
				i = maxLine
			}
			o.line(validUTF8(o.partial[:i]))
			if i < len(o.partial) && o.partial[i] == '\n' {
				i++
			}
			o.partial = append(o.partial[:0], o.partial[i:]...)
		}
	}
	return len(p), nil
}

// flush emits a last line without a newline.
func (o *stageOutput) flush() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.line != nil && len(o.partial) > 0 {
		o.line(validUTF8(o.partial))
		o.partial = o.partial[:0]
	}
}

// String is the output kept, with a note when its start was dropped.
func (o *stageOutput) String() string {
	o.mu.Lock()
	defer o.mu.Unlock()
	s := validUTF8(o.kept)
	if o.dropped > 0 {
		s = "[… first " + strconv.FormatInt(o.dropped, 10) + " bytes not kept …]\n" + s
	}
	return s
}

func validUTF8(b []byte) string {
	if utf8.Valid(b) {
		return string(b)
	}
	return string(bytes.ToValidUTF8(b, []byte("\uFFFD")))
}
