package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// write creates the planned tree under root, which must not exist.
func (p *plan) write(ctx context.Context, root string, workers int) error {
	if err := os.Mkdir(root, 0o755); err != nil {
		return fmt.Errorf("create tree root: %w", err)
	}
	for _, d := range p.dirs {
		if err := os.Mkdir(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("create directory: %w", err)
		}
		// Mkdir's mode is cut by the umask; the tree must not depend on it.
		if err := os.Chmod(filepath.Join(root, d), 0o755); err != nil {
			return fmt.Errorf("set directory mode: %w", err)
		}
	}

	jobs := make(chan file)
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range jobs {
				if err := writeFile(filepath.Join(root, f.path), f); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var err error
feed:
	for _, f := range p.files {
		select {
		case jobs <- f:
		case err = <-errs:
			break feed
		case <-ctx.Done():
			err = ctx.Err()
			break feed
		}
	}
	close(jobs)
	wg.Wait()
	close(errs)
	if err == nil {
		err = <-errs // nil when the channel is empty
	}
	if err != nil {
		return err
	}

	// Directory mtimes last: creating their entries changed them. Children
	// before parents, although setting a child's mtime does not touch its
	// parent's, to keep the order obviously right.
	for i, d := range slices.Backward(p.dirs) {
		t := epoch.Add(-time.Duration(i+1) * time.Minute)
		if err := os.Chtimes(filepath.Join(root, d), t, t); err != nil {
			return fmt.Errorf("set directory mtime: %w", err)
		}
	}
	// The root's mode too: Mkdir's was cut by the umask.
	if err := os.Chmod(root, 0o755); err != nil {
		return fmt.Errorf("set tree root mode: %w", err)
	}
	t := epoch.Add(-time.Duration(len(p.dirs)+1) * time.Minute)
	if err := os.Chtimes(root, t, t); err != nil {
		return fmt.Errorf("set tree root mtime: %w", err)
	}
	return nil
}

func writeFile(name string, f file) error {
	out, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create file: %w", err)
	}
	w := bufio.NewWriterSize(out, 1<<20)
	_, err = io.Copy(w, io.LimitReader(newContentReader(f.content), f.size))
	err = errors.Join(err, w.Flush())
	// Chmod rather than the create mode: the umask must not change the tree.
	err = errors.Join(err, out.Chmod(os.FileMode(f.mode)))
	err = errors.Join(err, out.Close())
	if err == nil {
		err = os.Chtimes(name, f.mtime, f.mtime)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", name, err)
	}
	return nil
}

// newContentReader returns the endless stream of bytes that content c
// starts with; the caller cuts it at c.size.
func newContentReader(c content) io.Reader {
	rng := rand.New(rand.NewPCG(c.id, 0x636f_6e74_656e_74)) // "content"
	if c.text {
		return &textReader{rng: rng}
	}
	return &randomReader{rng: rng}
}

// randomReader yields incompressible bytes: PCG output, much faster than a
// cryptographic generator and just as incompressible for zstd or gzip.
type randomReader struct{ rng *rand.Rand }

func (r *randomReader) Read(p []byte) (int, error) {
	n := len(p) &^ 7
	if n == 0 {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], r.rng.Uint64())
		return copy(p, b[:]), nil
	}
	for i := 0; i < n; i += 8 {
		binary.LittleEndian.PutUint64(p[i:], r.rng.Uint64())
	}
	return n, nil
}

// vocabulary is the word list of text-like content: pseudo-words with the
// letter frequencies of nothing in particular, enough to compress about
// threefold like source code or configuration files do.
var vocabulary = func() []string {
	rng := rand.New(rand.NewPCG(1, 2))
	const letters = "etaoinshrdlucmfwypvbgkjqxz_"
	words := make([]string, 2048)
	for i := range words {
		w := make([]byte, 2+rng.IntN(9))
		for j := range w {
			// Squaring favors the first letters, as in real text.
			k := rng.IntN(len(letters))
			w[j] = letters[k*k/len(letters)]
		}
		words[i] = string(w)
	}
	return words
}()

// textReader yields lines of words from vocabulary.
type textReader struct {
	rng     *rand.Rand
	buf     []byte // the current line
	pending []byte // what Read has not returned of buf
}

func (r *textReader) Read(p []byte) (int, error) {
	n := 0
	for n < len(p) {
		if len(r.pending) == 0 {
			r.buf = r.line(r.buf[:0])
			r.pending = r.buf
		}
		c := copy(p[n:], r.pending)
		r.pending = r.pending[c:]
		n += c
	}
	return n, nil
}

func (r *textReader) line(buf []byte) []byte {
	indent := r.rng.IntN(4)
	for range indent {
		buf = append(buf, '\t')
	}
	for i := range 3 + r.rng.IntN(10) {
		if i > 0 {
			buf = append(buf, ' ')
		}
		buf = append(buf, vocabulary[r.rng.IntN(len(vocabulary))]...)
	}
	return append(buf, '\n')
}
