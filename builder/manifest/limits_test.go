package manifest

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"testing"

	"github.com/forge-build/forge/builder/pyjson"
)

// Input that a parse could not hold in bounded memory and time fails with
// a clear error, and so fast that the test runs in a blink.
func TestParseBounds(t *testing.T) {
	stages := func(s string, n int) string {
		return `{"stages": [` + strings.Repeat(s+",", n-1) + s + `]}`
	}
	cases := []struct {
		name, data string
		is         error  // an error Parse's error wraps
		last       string // the error's last line
		lines      int    // the error's lines
	}{
		{"a million levels", strings.Repeat("[", 1e6) + strings.Repeat("]", 1e6), pyjson.ErrTooDeep, "", 1},
		{"a million levels of options", stages(`{"name": "a", "options": {"x": `+strings.Repeat(`{"a": `, 1e6)+`1`+strings.Repeat("}", 1e6)+`}}`, 1),
			pyjson.ErrTooDeep, "", 1},
		{"a million build pipelines", strings.Repeat(`{"build": `, 1e6) + "{}" + strings.Repeat("}", 1e6), pyjson.ErrTooDeep, "", 1},
		{"too many values", stages(`{"name": "a", "options": {"x": [`+strings.Repeat("0, ", pyjson.MaxValues)+`0]}}`, 1), pyjson.ErrTooManyValues, "", 1},
		{"too many stages", stages(`{}`, pyjson.MaxValues), pyjson.ErrTooManyValues, "", 1},
		{"many bad stages", stages(`{}`, 5000), nil, "manifest: 4900 more problems not listed", maxErrors + 1},
		{"just enough bad stages", stages(`{}`, maxErrors), nil, "stages[99].name: missing: a stage needs a name", maxErrors},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.data))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("Parse: %v (%T); want an Errors", err, err)
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("Parse: %v; want it to wrap %v", err, tc.is)
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != tc.lines {
				t.Errorf("%d lines of error, want %d", len(lines), tc.lines)
			}
			if tc.last != "" && lines[len(lines)-1] != tc.last {
				t.Errorf("last line of the error %q, want %q", lines[len(lines)-1], tc.last)
			}
		})
	}
}

// A manifest that is mostly one long string costs a small multiple of its
// size to parse, whatever the string holds: its text once, the options'
// compact form once, and the stage ID's dumps (up to three times the
// source, for \uXXXX) not at all.
func TestParseLongString(t *testing.T) {
	const size = 16 << 20
	for _, unit := range []string{"a", "é", "😀", `\u00e9`, `\n`} {
		data := []byte(`{"stages": [{"name": "org.osbuild.hostname", "options": {"hostname": "` +
			strings.Repeat(unit, size/len(unit)) + `"}}]}`)
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m, err := Parse(data)
		runtime.ReadMemStats(&after)
		if err != nil {
			t.Fatalf("%q: %v", unit, err)
		}
		got := after.TotalAlloc - before.TotalAlloc
		if got > 5*uint64(len(data))/2 {
			t.Errorf("%q: Parse of %d bytes allocated %d (%.2f times), want at most 2.5 times", unit, len(data), got, float64(got)/float64(len(data)))
		}
		// The ID is the one of dumps made whole in memory.
		s := m.Pipeline.Stages[0]
		opts, err := pyjson.Parse(s.Options)
		if err != nil {
			t.Fatal(err)
		}
		dumps := append(pyjson.AppendString(nil, s.Name), "nullnull"...)
		if want := fmt.Sprintf("%x", sha256.Sum256(opts.AppendDumps(dumps))); s.ID != want {
			t.Errorf("%q: ID %s, want %s", unit, s.ID, want)
		}
	}
}
