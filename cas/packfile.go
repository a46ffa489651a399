package cas

import (
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"

	"github.com/forge-build/forge/cas/digest"
	"github.com/forge-build/forge/cas/pack"
)

// packOutput is a pack being written: a file under tmp/ until finish makes
// it durable and renames it into packs/. Writers and GC's repacking both
// use it, so every pack reaches packs/ the same way.
type packOutput struct {
	s   *Store
	id  packID
	tmp string
	out *directFile
	pw  *pack.Writer
}

func (s *Store) newPackOutput() (*packOutput, error) {
	p := &packOutput{s: s}
	if _, err := rand.Read(p.id[:]); err != nil {
		return nil, fmt.Errorf("new pack ID: %w", err)
	}
	p.tmp = filepath.Join(s.dir, tmpDir, "pack-"+p.id.String()+".tmp")
	out, err := createPackFile(p.tmp)
	if err != nil {
		return nil, fmt.Errorf("store %s: new pack: %w", s.dir, err)
	}
	p.out = out
	if p.pw, err = pack.NewWriter(out); err != nil {
		p.abort()
		return nil, p.errorf("%w", err)
	}
	return p, nil
}

func (p *packOutput) errorf(format string, args ...any) error {
	return fmt.Errorf("store %s: pack %s: "+format, append([]any{p.s.dir, p.id}, args...)...)
}

// add appends a blob and returns where the index should say it is.
func (p *packOutput) add(h digest.Hash, data []byte, rawLength int, flags uint8) (chunkLoc, error) {
	e, err := p.pw.Add(h, data, rawLength, flags)
	if err != nil {
		return chunkLoc{}, p.errorf("%w", err)
	}
	return chunkLoc{Pack: p.id, Offset: e.Offset, Length: e.Length, RawLength: e.RawLength, Flags: e.Flags}, nil
}

func (p *packOutput) size() int64 { return p.pw.Size() }

// finish writes the footer, syncs the pack, reads its footer back, renames
// it into packs/ and syncs the directory. Only after finish may the index
// point into the pack; the caller must hold off GC (Store.gcMu) from the
// rename until the index knows the pack.
func (p *packOutput) finish() (packMeta, error) {
	entries, err := p.pw.Finish()
	if err != nil {
		return packMeta{}, p.errorf("%w", err)
	}
	size, err := p.out.Finish()
	if err != nil {
		return packMeta{}, p.errorf("%w", err)
	}
	// Re-read the footer before publishing: a pack whose index cannot be
	// read back is not one to point the store at.
	back, err := pack.ReadIndex(p.out.f, size)
	if err != nil {
		return packMeta{}, p.errorf("reading back: %w", err)
	}
	if len(back) != len(entries) {
		return packMeta{}, p.errorf("reading back: %d entries, wrote %d: %w", len(back), len(entries), ErrCorrupt)
	}
	if err := p.out.f.Close(); err != nil {
		return packMeta{}, p.errorf("%w", err)
	}
	final := p.s.packPath(p.id)
	if err := os.Rename(p.tmp, final); err != nil {
		return packMeta{}, p.errorf("%w", err)
	}
	if err := syncDir(filepath.Dir(final)); err != nil {
		return packMeta{}, p.errorf("%w", err)
	}
	return packMeta{Size: size, Created: p.s.opts.Now().UnixNano()}, nil
}

// abort discards an unfinished pack.
func (p *packOutput) abort() {
	p.out.Abort()
	os.Remove(p.tmp)
}
