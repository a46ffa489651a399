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
	"context"
	"errors"
	"fmt"
	"io"
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

// Inode is an inode of a mounted filesystem: its number and mtime.
type Inode struct {
	Ino       uint64
	MtimeSec  int64
	MtimeNsec int64
}

// Inodes lists root and every inode below it on root's filesystem (a
// mount below root is not entered), sorted by number.
func Inodes(root string) ([]Inode, error) {
	var rootDev uint64
	seen := map[uint64]Inode{}
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
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		seen[st.Ino] = Inode{Ino: st.Ino, MtimeSec: st.Mtim.Sec, MtimeNsec: st.Mtim.Nsec}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list the inodes of %s: %w", root, err)
	}
	out := make([]Inode, 0, len(seen))
	for _, in := range seen {
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Ino < out[j].Ino })
	return out, nil
}

// Tools are e2fsprogs' commands, as the caller finds them (in a
// buildroot: on its PATH).
type Tools struct {
	Debugfs, E2fsck, Tune2fs string
}

// devicePath is how the tools Normalize runs reach its device: their
// file descriptor 3 (exec.Cmd.ExtraFiles[0]), so a device node swapped in
// the meantime does not matter.
const devicePath = "/proc/self/fd/3"

// Normalize rewrites the unmounted ext4 filesystem on dev (a block device
// or an image file, open for writing) as described in the package
// comment: the inodes listed (Inodes of it while it was mounted) and the
// filesystem itself get epoch for every time the kernel set (and for an
// mtime later than it, as forge's store clamps them), and zero for the
// numbers it made up.
func Normalize(ctx context.Context, dev *os.File, inodes []Inode, epoch int64, t Tools) error {
	e := strconv.FormatInt(epoch, 10)
	env := []string{"E2FSPROGS_FAKE_TIME=" + e, "E2FSCK_TIME=" + e, "PATH=/usr/sbin:/usr/bin:/sbin:/bin"}
	name := dev.Name()

	script := func(w io.Writer) error {
		bw := bufio.NewWriter(w)
		for _, in := range inodes {
			for _, f := range []string{"ctime @" + e, "ctime_extra 0", "crtime @" + e, "crtime_extra 0",
				"atime @" + e, "atime_extra 0", "generation 0", "version 0"} {
				fmt.Fprintf(bw, "sif <%d> %s\n", in.Ino, f)
			}
			if in.MtimeSec > epoch || (in.MtimeSec == epoch && in.MtimeNsec > 0) {
				fmt.Fprintf(bw, "sif <%d> mtime @%s\nsif <%d> mtime_extra 0\n", in.Ino, e, in.Ino)
			}
		}
		return bw.Flush()
	}
	if err := debugfs(ctx, t.Debugfs, dev, env, script); err != nil {
		return err
	}
	// 0: nothing to fix, 1: fixed (the checksums); anything else is an
	// error e2fsck could not repair, or an operational one.
	out, err := run(ctx, t.E2fsck, dev, env, "-f", "-y", devicePath)
	var exit *exec.ExitError
	if err != nil && !(errors.As(err, &exit) && exit.ExitCode() == 1) {
		return fmt.Errorf("e2fsck -f -y %s: %w\n%s", name, err, out)
	}
	sb := fmt.Sprintf("ssv mtime @%s\nssv wtime @%s\nssv lastcheck @%s\nssv kbytes_written 0\nssv mnt_count 0\n", e, e, e)
	if err := debugfs(ctx, t.Debugfs, dev, env, func(w io.Writer) error { _, err := io.WriteString(w, sb); return err }); err != nil {
		return err
	}
	journal, blockSize, err := superblock(ctx, t.Tune2fs, dev, env)
	if err != nil {
		return err
	}
	if journal {
		// The old journal's blocks keep its transactions when freed,
		// and the new journal need not reuse them all: they are zeroed
		// in between. Written last: tune2fs writes every copy of the
		// superblock, the backups included, with what debugfs set in
		// the first.
		blocks, err := journalBlocks(ctx, t.Debugfs, dev, env)
		if err != nil {
			return err
		}
		if out, err := run(ctx, t.Tune2fs, dev, env, "-O", "^has_journal", devicePath); err != nil {
			return fmt.Errorf("tune2fs -O ^has_journal %s: %w\n%s", name, err, out)
		}
		if err := zeroBlocks(dev, blocks, blockSize); err != nil {
			return err
		}
		if out, err := run(ctx, t.Tune2fs, dev, env, "-O", "has_journal", devicePath); err != nil {
			return fmt.Errorf("tune2fs -O has_journal %s: %w\n%s", name, err, out)
		}
	}
	return nil
}

// journalBlocks lists the blocks of the journal inode (8), its extent
// tree's included.
func journalBlocks(ctx context.Context, debugfs string, dev *os.File, env []string) ([]uint64, error) {
	out, err := run(ctx, debugfs, dev, env, "-R", "blocks <8>", devicePath)
	if err != nil {
		return nil, fmt.Errorf("debugfs -R 'blocks <8>' %s: %w\n%s", dev.Name(), err, out)
	}
	var blocks []uint64
	for _, f := range strings.Fields(string(out)) {
		if b, err := strconv.ParseUint(f, 10, 64); err == nil {
			blocks = append(blocks, b)
		}
	}
	if len(blocks) == 0 {
		return nil, fmt.Errorf("debugfs %s: the journal has no blocks", dev.Name())
	}
	return blocks, nil
}

// zeroBlocks writes zeros over the blocks, a run of neighbours at a time.
func zeroBlocks(dev *os.File, blocks []uint64, blockSize int64) error {
	sort.Slice(blocks, func(i, j int) bool { return blocks[i] < blocks[j] })
	const maxRun = 256 // blocks per write
	zeros := make([]byte, maxRun*blockSize)
	for i := 0; i < len(blocks); {
		j := i + 1
		for j < len(blocks) && j-i < maxRun && blocks[j] == blocks[j-1]+1 {
			j++
		}
		if _, err := dev.WriteAt(zeros[:int64(j-i)*blockSize], int64(blocks[i])*blockSize); err != nil {
			return fmt.Errorf("zero the old journal of %s: %w", dev.Name(), err)
		}
		i = j
	}
	if err := dev.Sync(); err != nil {
		return fmt.Errorf("zero the old journal of %s: %w", dev.Name(), err)
	}
	return nil
}

// debugfs runs a script of debugfs commands, written to its stdin by
// script, on dev, writable, and fails on any message but its banner and
// the echo of each command: debugfs itself exits 0 after a command
// fails. Its output is read as it comes, not held.
func debugfs(ctx context.Context, debugfs string, dev *os.File, env []string, script func(io.Writer) error) error {
	cmd := exec.CommandContext(ctx, debugfs, "-w", "-f", "-", devicePath)
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{dev}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("debugfs %s: %w", dev.Name(), err)
	}
	werr := make(chan error, 1)
	go func() {
		err := script(stdin)
		stdin.Close()
		werr <- err
	}()
	var first string
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "debugfs ") || strings.HasPrefix(line, "debugfs:") {
			continue // the banner, and the echo of each command read from stdin
		}
		if first == "" {
			first = line
		}
	}
	io.Copy(io.Discard, out)
	err = cmd.Wait()
	if serr := <-werr; serr != nil && err == nil && first == "" {
		err = serr
	}
	switch {
	case first != "":
		return fmt.Errorf("debugfs %s: %s", dev.Name(), first)
	case err != nil:
		return fmt.Errorf("debugfs %s: %w", dev.Name(), err)
	}
	return nil
}

// superblock reads whether the filesystem has a journal, and its block
// size.
func superblock(ctx context.Context, tune2fs string, dev *os.File, env []string) (journal bool, blockSize int64, err error) {
	out, err := run(ctx, tune2fs, dev, env, "-l", devicePath)
	if err != nil {
		return false, 0, fmt.Errorf("tune2fs -l %s: %w\n%s", dev.Name(), err, out)
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
		return false, 0, fmt.Errorf("tune2fs -l %s: no features or block size listed", dev.Name())
	}
	return journal, blockSize, nil
}

// run runs a command with dev as its file descriptor 3 and returns its
// combined output.
func run(ctx context.Context, path string, dev *os.File, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, path, args...)
	cmd.Env = env
	cmd.ExtraFiles = []*os.File{dev}
	return cmd.CombinedOutput()
}
