package remote

import (
	"testing"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/pack"
)

// TestPackWindows: a window never cuts a chunk, and within lists the
// chunks whole inside a range.
func TestPackWindows(t *testing.T) {
	x := newChunkIndex(nil, "")
	p := digest.Sum([]byte("pack"))
	// Chunks at 8+100, 108+50, 158+200, 358+10.
	var es []pack.Entry
	off := int64(pack.HeaderSize)
	for i, n := range []uint32{100, 50, 200, 10} {
		es = append(es, pack.Entry{Hash: digest.Sum([]byte{byte(i)}), Offset: off, Length: n})
		off += int64(n)
	}
	x.byPack[p] = es
	tests := []struct {
		end, want int64
	}{
		{108, 108}, // at a boundary
		{109, 158}, // inside the second chunk: to its end
		{300, 358},
		{368, 368},
		{500, 500}, // past the last
	}
	for _, tt := range tests {
		if got := x.chunkEnd(p, tt.end); got != tt.want {
			t.Errorf("chunkEnd(%d) = %d, want %d", tt.end, got, tt.want)
		}
	}
	if got := x.within(p, 108, 358); len(got) != 2 || got[0].Offset != 108 || got[1].Offset != 158 {
		t.Errorf("within(108, 358) = %v, want the chunks at 108 and 158", got)
	}
	if got := x.within(p, 110, 357); len(got) != 0 {
		t.Errorf("within(110, 357) = %v, want none (no chunk lies whole in it)", got)
	}
}
