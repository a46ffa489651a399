package builder

import (
	"encoding/json"
	"io"
	"sync"
	"time"
)

// EventType names what happened.
type EventType string

const (
	EventStageCached   EventType = "stage.cached"   // found in the store, not run
	EventStageStarted  EventType = "stage.started"  // its buildroot is starting
	EventStageFinished EventType = "stage.finished" // exited 0 and committed
	EventStageFailed   EventType = "stage.failed"   // exited non-zero or could not run
	EventLog           EventType = "log"            // a line the running stage wrote
	EventMetadata      EventType = "stage.metadata" // what a stage wrote to /run/osbuild/meta
	EventResult        EventType = "result"         // the build's end
)

// Event is one step of a build, for progress displays and --monitor-fd.
type Event struct {
	Type EventType `json:"type"`
	Time time.Time `json:"time"`
	// Path is the stage's JSON path in the manifest, e.g. "build.stages[0]"
	// or "assembler".
	Path      string  `json:"path,omitempty"`
	Name      string  `json:"name,omitempty"`
	ID        string  `json:"id,omitempty"`
	Assembler bool    `json:"assembler,omitempty"`
	Duration  float64 `json:"duration_seconds,omitempty"`
	Line      string  `json:"line,omitempty"`
	Error     string  `json:"error,omitempty"`
	Result    *Result `json:"result,omitempty"`
	// Metadata is the JSON a format-2 stage wrote to /run/osbuild/meta.
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

// JSONSeq returns an event sink writing RFC 7464 JSON text sequences to w:
// each event is RS, one JSON object, LF. Writes are serialized; a write
// error stops further writes (a monitor that went away must not stop the
// build).
func JSONSeq(w io.Writer) func(Event) {
	var mu sync.Mutex
	broken := false
	return func(ev Event) {
		b, err := json.Marshal(ev)
		if err != nil {
			return
		}
		mu.Lock()
		defer mu.Unlock()
		if broken {
			return
		}
		rec := make([]byte, 0, len(b)+2)
		rec = append(rec, 0x1e)
		rec = append(rec, b...)
		rec = append(rec, '\n')
		if _, err := w.Write(rec); err != nil {
			broken = true
		}
	}
}
