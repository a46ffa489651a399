package cas

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Compression is how a store keeps new chunks.
type Compression string

const (
	// CompressionNone stores chunks as they are: the default, since zstd
	// costs CPU on every import and commit (see bench/RESULTS.md, area
	// store, for the trade-off measured).
	CompressionNone Compression = "none"
	// CompressionZstd stores each chunk zstd-compressed when that saves
	// an eighth of it or more.
	CompressionZstd Compression = "zstd"
)

// compressionFile holds the store's Compression, "none" when absent. It
// decides what new chunks become; any store reads chunks of either kind.
const compressionFile = "compression"

// ParseCompression checks a compression setting's name.
func ParseCompression(s string) (Compression, error) {
	switch c := Compression(strings.TrimSpace(s)); c {
	case CompressionNone, CompressionZstd:
		return c, nil
	}
	return "", fmt.Errorf("compression %q: want %q or %q", s, CompressionNone, CompressionZstd)
}

// Compression returns the store's setting. It is read for every Writer,
// so a change takes effect with the next import or commit, daemon or not.
func (s *Store) Compression() (Compression, error) {
	return ReadCompression(s.dir)
}

// ReadCompression reads the compression setting of the store at dir.
func ReadCompression(dir string) (Compression, error) {
	b, err := os.ReadFile(filepath.Join(dir, compressionFile))
	if errors.Is(err, os.ErrNotExist) {
		return CompressionNone, nil
	}
	if err != nil {
		return "", fmt.Errorf("store %s: %w", dir, err)
	}
	c, err := ParseCompression(string(b))
	if err != nil {
		return "", fmt.Errorf("store %s: %s: %w", dir, compressionFile, err)
	}
	return c, nil
}

// SetCompression sets the compression of the chunks the store at dir
// writes from now on; chunks stored already stay as they are. The file is
// replaced atomically: a daemon's next Writer reads it whole.
func SetCompression(dir string, c Compression) error {
	if _, err := ParseCompression(string(c)); err != nil {
		return err
	}
	f, err := os.CreateTemp(dir, ".compression-")
	if err != nil {
		return fmt.Errorf("store %s: %w", dir, err)
	}
	_, err = f.WriteString(string(c) + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(f.Name(), 0o600)
	}
	if err == nil {
		err = os.Rename(f.Name(), filepath.Join(dir, compressionFile))
	}
	if err != nil {
		os.Remove(f.Name())
		return fmt.Errorf("store %s: set compression: %w", dir, err)
	}
	return nil
}
