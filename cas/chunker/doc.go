// Package chunker splits byte streams into content-defined chunks with
// FastCDC ("FastCDC: a Fast and Efficient Content-Defined Chunking
// Approach", Xia et al., USENIX ATC 2016, and its 2020 journal version in
// IEEE TPDS). Boundaries depend only on nearby content, so an insertion or
// deletion changes the chunks around it and no others: that is what lets the
// store share chunks between trees, files and disk images that differ a little.
//
// The choices, and why:
//
//   - Gear hash. Each byte costs one shift, one table load and one add
//     (fp = fp<<1 + gear[b]), against a multiply and a subtraction for a
//     Rabin or buzhash window. Bit k of fp depends on the last k+1 bytes
//     only, so the rolling window needs no explicit removal step.
//
//   - Masks in the high bits. The judgement "fp&mask == 0" uses the top bits
//     below bit 63 (bits 62 down), which mix the last ~63 bytes; low bits
//     would depend on the last few bytes only and cut on short repeated
//     patterns. (The paper's zero-padded masks spread over the word serve the
//     same purpose.) Keeping bit 63 out of the mask is what makes the
//     two-bytes-per-step loop below exact.
//
//   - Normalized chunking, level 2. Up to Avg bytes the mask has log2(Avg)+2
//     bits (a cut is 4× less likely than 1/Avg), after Avg it has
//     log2(Avg)-2 bits (4× more likely). Chunk sizes then cluster around Avg
//     instead of following the geometric spread of plain CDC: fewer tiny
//     chunks (index entries and per-chunk overhead) and far fewer chunks cut
//     at Max, whose boundaries are position- rather than content-defined and
//     so shift with every insertion. The paper measures equal or better
//     deduplication than plain CDC at the same average, with a larger
//     minimum size that we can skip (next point).
//
//   - Cut-point skipping. No boundary may fall within Min bytes of the chunk
//     start, so the hash is not computed there at all: the scan starts at
//     Min with fp = 0. With the default sizes that skips ~20% of the bytes
//     outright. The cost is the usual one for a minimum size: a boundary
//     that falls within Min of the previous one is lost. Resynchronisation
//     after an edit is unaffected, because a cut at position p ≥ start+Min+63
//     depends on bytes p-63..p only.
//
//   - Two bytes per step (the 2020 paper's "rolling two bytes"). With
//     gearShifted[b] = gear[b]<<1, one step computes t = fp<<2 +
//     gearShifted[b0], which is fp0<<1 for the hash fp0 after b0, tests it
//     against mask<<1, then adds gear[b1] to get the hash after b1 and tests
//     that against mask. The cut points are exactly those of the byte-wise
//     definition (a test in this package checks it), with one shift fewer
//     per two bytes on the loop's critical path.
//
//   - A fixed gear table. gear[i] is the first 8 bytes, big-endian, of
//     SHA-256("forge/cas/chunker gear v1" || byte(i)). Chunk boundaries are
//     part of the store's format: the same bytes must give the same chunks
//     on every machine and in every release, or old and new trees stop
//     sharing chunks. Changing the table, the masks, the skipping or the
//     cut rule is a format change.
//
// Sizes default to min 16 KiB, avg 64 KiB, max 256 KiB (casync's and
// puzzlefs's). A stream shorter than Min is a single chunk. On random data
// the mean chunk is ~74 KiB: Avg is where the masks switch (the paper's
// "normal size"), and the skipped Min plus the easier mask after Avg put
// the mean a little above it. All-zero data never meets the judgement and
// is cut at Max, which suits the store's holes.
package chunker
