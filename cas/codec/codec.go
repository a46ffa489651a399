// Package codec compresses and decompresses the blobs of packs: zstd, per
// blob, kept only where it pays. A compressed blob is flagged
// pack.FlagZstd in its pack's footer and keeps its hash: the hash is of
// the plain bytes, so what is read is checked after decoding, and a
// blob's name does not depend on how a store keeps it.
package codec

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/klauspost/compress/zstd"

	"github.com/forge-build/forge/cas/pack"
)

// Codec compresses and decodes blobs. It is safe for concurrent use. The
// zero value is not usable: call New.
type Codec struct {
	enc *zstd.Encoder
	dec *zstd.Decoder
}

// New returns a Codec. Its encoder is zstd's fastest level: compression
// runs on the write path of every import and commit.
func New() (*Codec, error) {
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedFastest),
		zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
		// One frame per blob, decoded in one piece: no checksum (the
		// blob's SHA-256 is checked after decoding) and no window larger
		// than a blob.
		zstd.WithEncoderCRC(false),
		zstd.WithWindowSize(windowFor(pack.MaxBlob)),
		zstd.WithZeroFrames(true),
	)
	if err != nil {
		return nil, fmt.Errorf("zstd encoder: %w", err)
	}
	dec, err := zstd.NewReader(nil,
		zstd.WithDecoderConcurrency(runtime.GOMAXPROCS(0)),
		// A damaged or hostile frame cannot make us allocate more than a
		// blob may hold.
		zstd.WithDecoderMaxMemory(pack.MaxBlob),
		zstd.WithDecoderMaxWindow(pack.MaxBlob),
		zstd.WithDecodeAllCapLimit(true),
	)
	if err != nil {
		enc.Close()
		return nil, fmt.Errorf("zstd decoder: %w", err)
	}
	return &Codec{enc: enc, dec: dec}, nil
}

// windowFor is the smallest power of two zstd accepts as a window that
// holds n bytes.
func windowFor(n int) int {
	w := zstd.MinWindowSize
	for w < n && w < zstd.MaxWindowSize {
		w <<= 1
	}
	return w
}

// Close frees the Codec's encoders and decoders.
func (c *Codec) Close() {
	c.enc.Close()
	c.dec.Close()
}

// minSaving is the share of a blob compression must save to be kept: a
// blob that shrinks less is stored as it is, and read without decoding.
const minSaving = 8 // 1/8, 12.5 %

// Compress returns how to store data: zstd-compressed with
// pack.FlagZstd when that saves at least an eighth of it, else data itself
// and no flag. dst is reused for the compressed bytes when large enough.
func (c *Codec) Compress(data, dst []byte) (stored []byte, flags uint8) {
	if len(data) < 64 {
		return data, 0
	}
	out := c.enc.EncodeAll(data, dst[:0])
	if len(out) > len(data)-len(data)/minSaving {
		return data, 0
	}
	return out, pack.FlagZstd
}

// ErrCorrupt is wrapped by Decode's errors: the stored bytes are not what
// their flags say.
var ErrCorrupt = errors.New("corrupt compressed blob")

// Decode appends to dst the plain bytes of a blob stored as stored with
// flags, rawLength long once decoded: stored itself without FlagZstd. It
// never allocates more than rawLength (at most pack.MaxBlob) for the
// output; the caller checks the result against the blob's hash.
func (c *Codec) Decode(stored []byte, flags uint8, rawLength uint32, dst []byte) ([]byte, error) {
	if flags&pack.FlagZstd == 0 {
		return append(dst, stored...), nil
	}
	if rawLength > pack.MaxBlob {
		return dst, fmt.Errorf("%w: says %d bytes decoded, more than a blob holds (%d)", ErrCorrupt, rawLength, pack.MaxBlob)
	}
	start := len(dst)
	if cap(dst)-start < int(rawLength) {
		grown := make([]byte, start, start+int(rawLength))
		copy(grown, dst)
		dst = grown
	}
	// DecodeAll stops at the capacity it is given (WithDecodeAllCapLimit).
	out, err := c.dec.DecodeAll(stored, dst[:start:start+int(rawLength)])
	if err != nil {
		return dst[:start], fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	if len(out)-start != int(rawLength) {
		return dst[:start], fmt.Errorf("%w: decodes to %d bytes, not %d", ErrCorrupt, len(out)-start, rawLength)
	}
	return out, nil
}
