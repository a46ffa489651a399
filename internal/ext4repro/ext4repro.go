// Package ext4repro makes an ext4 filesystem the kernel wrote the same,
// byte for byte, each time the same files are written into it the same
// way: what osbuild's image pipelines do (mkfs.ext4 on a loop device,
// mount, copy the tree in) gives a different image on every build
// otherwise, whatever SOURCE_DATE_EPOCH says, because the kernel writes
// the clock and random numbers into it.
//
// Measured on the Debian sample (a 645 MiB tree into a 3 GiB ext4), what
// differs between two such images, and what this package does about it:
//
//   - Block allocation: with delayed allocation the kernel picks blocks at
//     writeback, on whichever CPU and in whatever order the flusher gets
//     to the inodes; without it (mount -o nodelalloc) at write time, but
//     mballoc's per-CPU groups still follow the writer around the CPUs.
//     The caller mounts with nodelalloc and runs the writer on one CPU
//     (MountOption, and the buildroot pins the stage); then allocation is
//     a function of the writes.
//   - Each inode's ctime, crtime and atime (the clock), i_generation
//     (random) and i_version (a count of changes): Normalize sets the
//     times to the epoch and the others to zero with debugfs. The inode's
//     generation seeds the checksums of its directory and extent blocks,
//     so e2fsck -fy then rewrites those checksums (it fixes nothing else
//     in a filesystem the kernel unmounted cleanly).
//   - The superblock's mount and write times, mount count and lifetime
//     writes: set to the epoch and zero.
//   - The journal, which holds the transactions of the copy: removed,
//     its blocks zeroed, and made anew (zeroed) with tune2fs.
//   - The directory hash seed and the lazily zeroed inode tables are
//     mkfs.ext4's business (stages/mkfs sets both with an epoch).
package ext4repro

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"syscall"
)

// MountOption is the mount option a filesystem Normalize is to make
// reproducible must be mounted with.
const MountOption = "nodelalloc"

// Inodes lists the inode numbers of root and every name below it on
// root's filesystem (a mount below root is not entered), sorted.
func Inodes(root string) ([]uint64, error) {
	var rootDev uint64
	seen := map[uint64]bool{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no inode number", p)
		}
		if p == root {
			rootDev = st.Dev
		} else if st.Dev != rootDev {
			return filepath.SkipDir
		}
		seen[st.Ino] = true
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the inodes of %s: %w", root, err)
	}
	out := make([]uint64, 0, len(seen))
	for ino := range seen {
		out = append(out, ino)
	}
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out, nil
}

// Tools are e2fsprogs' commands, as the caller finds them (in a
// buildroot: on its PATH).
type Tools struct {
	Debugfs, E2fsck, Tune2fs string
}

// Normalize rewrites the unmounted ext4 filesystem on device (a block
// device or an image file) as described in the package comment: the
// inodes listed (Inodes of it while it was mounted) and the filesystem
// itself get epoch for every time the kernel set, and zero for the
// numbers it made up.
func Normalize(ctx context.Context, device string, inodes []uint64, epoch int64, t Tools) error {
	e := strconv.FormatInt(epoch, 10)
	env := []string{"E2FSPROGS_FAKE_TIME=" + e, "E2FSCK_TIME=" + e, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}

	var script bytes.Buffer
	for _, ino := range inodes {
		for _, f := range []string{"ctime @" + e, "ctime_extra 0", "crtime @" + e, "crtime_extra 0",
			"atime @" + e, "atime_extra 0", "generation 0", "version 0"} {
			fmt.Fprintf(&script, "sif <%d> %s\n", ino, f)
		}
	}
	if err := debugfs(ctx, t.Debugfs, device, env, script.Bytes()); err != nil {
		return err
	}
	// 0: nothing to fix, 1: fixed (the checksums); anything else is an
	// error e2fsck could not repair, or an operational one.
	out, err := run(ctx, t.E2fsck, env, nil, "-f", "-y", device)
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		return fmt.Errorf("e2fsck -f -y %s: %w\n%s", device, err, out)
	}
	sb := fmt.Sprintf("ssv mtime @%s\nssv wtime @%s\nssv lastcheck @%s\nssv kbytes_written 0\nssv mnt_count 0\n", e, e, e)
	if err := debugfs(ctx, t.Debugfs, device, env, []byte(sb)); err != nil {
		return err
	}
	journal, blockSize, err := superblock(ctx, t.Tune2fs, device, env)
	if err != nil {
		return err
	}
	if journal {
		// The old journal's blocks keep its transactions when freed,
		// and the new journal need not reuse them all: they are zeroed
		// in between. Written last: tune2fs writes every copy of the
		// superblock, the backups included, with what debugfs set in
		// the first.
		blocks, err := journalBlocks(ctx, t.Debugfs, device, env)
		if err != nil {
			return err
		}
		if out, err := run(ctx, t.Tune2fs, env, nil, "-O", "^has_journal", device); err != nil {
			return fmt.Errorf("tune2fs -O ^has_journal %s: %w\n%s", device, err, out)
		}
		if err := zeroBlocks(device, blocks, blockSize); err != nil {
			return err
		}
		if out, err := run(ctx, t.Tune2fs, env, nil, "-O", "has_journal", device); err != nil {
			return fmt.Errorf("tune2fs -O has_journal %s: %w\n%s", device, err, out)
		}
	}
	return nil
}

// journalBlocks lists the blocks of the journal inode (8), its extent
// tree's included.
func journalBlocks(ctx context.Context, debugfs, device string, env []string) ([]uint64, error) {
	out, err := run(ctx, debugfs, env, nil, "-R", "blocks <8>", device)
	if err != nil {
		return nil, fmt.Errorf("debugfs -R 'blocks <8>' %s: %w\n%s", device, err, out)
	}
	var blocks []uint64
	for _, f := range strings.Fields(string(out)) {
		if b, err := strconv.ParseUint(f, 10, 64); err == nil {
			blocks = append(blocks, b)
		}
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("debugfs %s: the journal has no blocks", device)
	}
	return blocks, nil
}

// zeroBlocks writes zeros over the blocks, a run of neighbours at a time.
func zeroBlocks(device string, blocks []uint64, blockSize int64) error {
	f, err := os.OpenFile(device, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	sort.Slice(blocks, func(i, j int) bool { return blocks[i] < blocks[j] })
	const maxRun = 256 // blocks per write
	zeros := make([]byte, maxRun*blockSize)
	for i := 0; i < len(blocks); {
		j := i + 1
		for j < len(blocks) && j-i < maxRun && blocks[j] == blocks[j-1]+1 {
			j++
		}
		if _, err := f.WriteAt(zeros[:int64(j-i)*blockSize], int64(blocks[i])*blockSize); err != nil {
			f.Close()
			return fmt.Errorf("zero the old journal of %s: %w", device, err)
		}
		i = j
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("zero the old journal of %s: %w", device, err)
	}
	return f.Close()
}

// debugfs runs a script of debugfs commands on device, writable, and
// fails on any message but its banner: debugfs itself exits 0 after a
// command fails.
func debugfs(ctx context.Context, debugfs, device string, env []string, script []byte) error {
	out, err := run(ctx, debugfs, env, script, "-w", "-f", "-", device)
	if err != nil {
		return fmt.Errorf("debugfs %s: %w\n%s", device, err, out)
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "debugfs ") || strings.HasPrefix(line, "debugfs:") {
			continue // the banner, and the echo of each command read from stdin
		}
		return fmt.Errorf("debugfs %s: %s", device, line)
	}
	return nil
}

// superblock reads whether the filesystem has a journal, and its block
// size.
func superblock(ctx context.Context, tune2fs, device string, env []string) (journal bool, blockSize int64, err error) {
	out, err := run(ctx, tune2fs, env, nil, "-l", device)
	if err != nil {
		return false, 0, fmt.Errorf("tune2fs -l %s: %w\n%s", device, err, out)
	}
	features := false
	for _, line := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(line, "Filesystem features:"); ok {
			features = true
			journal = slices.Contains(strings.Fields(v), "has_journal")
		}
		if v, ok := strings.CutPrefix(line, "Block size:"); ok {
			blockSize, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	if !features || blockSize < 1024 || blockSize > 65536 {
		return false, 0, fmt.Errorf("tune2fs -l %s: no features or block size listed", device)
	}
	return journal, blockSize, nil
}

// run runs a command with stdin and returns its combined output.
func run(ctx context.Context, path string, env []string, stdin []byte, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	return cmd.CombinedOutput()
}
