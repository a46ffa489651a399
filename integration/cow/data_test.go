package cow_test

import (
	"bytes"
	"fmt"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/forge-build/forge/internal/fstree"
)

// TestReadWrite covers read, write, pread and pwrite on base and new
// files: partial overwrites copy up the rest of the file, writes past the
// end leave holes that read as zeros.
func TestReadWrite(t *testing.T) {
	runCases(t, []opCase{
		{"pwrite into the middle of a base file", func(r *rec) {
			fd := r.open(baseBig, unix.O_RDWR, 0)
			r.pwrite(fd, []byte("patched"), 1<<20+3)
			r.pread(fd, 16, 1<<20)
			r.pread(fd, 4096, 0) // untouched data before the write
			r.pread(fd, 4096, bigBytes-4096)
			r.close(fd)
			r.stat(baseBig)
			r.content(baseBig)
		}},
		{"read and write through one descriptor", func(r *rec) {
			fd := r.open("d/a", unix.O_RDWR, 0)
			r.read(fd, 5)
			r.write(fd, []byte("ONE")) // at the file offset, 5
			r.seek(fd, 0, unix.SEEK_SET)
			r.read(fd, 100)
			r.read(fd, 100) // at EOF
			r.close(fd)
			r.content("d/a")
		}},
		{"overwrite a whole base file in place", func(r *rec) {
			fd := r.open("d/b", unix.O_WRONLY, 0)
			r.write(fd, fstree.RandomBytes("overwrite", 64<<10))
			r.close(fd)
			r.content("d/b")
			r.stat("d/b")
		}},
		{"pwrite past the end leaves a hole", func(r *rec) {
			fd := r.open("d/b", unix.O_RDWR, 0)
			r.pwrite(fd, []byte("far away"), 12<<20)
			r.fstat(fd)
			r.pread(fd, 4096, 6<<20) // in the hole
			r.pread(fd, 100, 12<<20-4)
			r.pread(fd, 100, 13<<20) // past the end
			r.close(fd)
			r.content("d/b")
		}},
		{"write into a hole of a sparse base file", func(r *rec) {
			fd := r.open(baseSparse, unix.O_RDWR, 0)
			r.pwrite(fd, []byte("in the hole"), 10<<20)
			r.pread(fd, 4096, 1<<20)
			r.pread(fd, 32, 10<<20-8)
			r.pread(fd, 4096, sparseOff)
			r.close(fd)
			r.stat(baseSparse)
			r.content(baseSparse)
		}},
		{"many small writes to a new file", func(r *rec) {
			fd := r.open("many", unix.O_WRONLY|unix.O_CREAT, 0o644)
			for i := range 300 {
				r.write(fd, []byte(fmt.Sprintf("line %03d of a file written in small pieces\n", i)))
			}
			r.close(fd)
			r.content("many")
		}},
		{"large write to a new file", func(r *rec) {
			fd := r.open("large", unix.O_WRONLY|unix.O_CREAT, 0o644)
			r.write(fd, fstree.RandomBytes("large", 3<<20+17))
			r.close(fd)
			r.content("large")
			r.stat("large")
		}},
		{"read the same base file through two descriptors while one writes", func(r *rec) {
			rd := r.open(baseBig, unix.O_RDONLY, 0)
			wr := r.open(baseBig, unix.O_WRONLY, 0)
			r.pread(rd, 32, 2<<20)
			r.pwrite(wr, bytes.Repeat([]byte("w"), 32), 2<<20)
			// Both descriptors name one file: the reader sees the write.
			r.pread(rd, 32, 2<<20)
			r.close(wr)
			r.close(rd)
		}},
		{"pread and pwrite on a directory or beyond reason", func(r *rec) {
			fd := r.open("d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
			r.pread(fd, 10, 0, unix.EISDIR)
			r.close(fd)
			fd = r.open("d/a", unix.O_RDONLY, 0)
			r.pwrite(fd, []byte("x"), 0, unix.EBADF)
			r.pread(fd, 10, -1, unix.EINVAL)
			r.close(fd)
		}},
	})
}

// TestTruncate covers truncate(2) and ftruncate(2), growing and
// shrinking, on base files and on new ones.
func TestTruncate(t *testing.T) {
	runCases(t, []opCase{
		{"truncate shrinks a base file", func(r *rec) {
			r.check("truncate d/big 1000", unix.Truncate(r.p(baseBig), 1000))
			r.stat(baseBig)
			r.content(baseBig)
		}},
		{"truncate grows a base file with zeros", func(r *rec) {
			r.check("truncate d/a 1MiB", unix.Truncate(r.p("d/a"), 1<<20))
			r.stat("d/a")
			r.content("d/a")
			fd := r.open("d/a", unix.O_RDONLY, 0)
			r.pread(fd, 64, 0)
			r.pread(fd, 64, 1<<20-64)
			r.close(fd)
		}},
		{"truncate to zero then write", func(r *rec) {
			r.check("truncate d/b 0", unix.Truncate(r.p("d/b"), 0))
			fd := r.open("d/b", unix.O_WRONLY, 0)
			r.pwrite(fd, []byte("after"), 100)
			r.close(fd)
			r.content("d/b")
		}},
		{"truncate to the same size", func(r *rec) {
			r.check("truncate d/a same size", unix.Truncate(r.p("d/a"), int64(len(baseText))))
			r.stat("d/a")
			r.content("d/a")
		}},
		{"ftruncate shrinks then grows: the tail reads as zeros", func(r *rec) {
			fd := r.open("d/b", unix.O_RDWR, 0)
			r.check("ftruncate 100", unix.Ftruncate(fd, 100))
			r.check("ftruncate 50000", unix.Ftruncate(fd, 50000))
			r.pread(fd, 200, 0)
			r.pread(fd, 1000, 40000)
			r.fstat(fd)
			r.close(fd)
			r.content("d/b")
		}},
		{"ftruncate a new file", func(r *rec) {
			fd := r.open("n", unix.O_RDWR|unix.O_CREAT, 0o644)
			r.write(fd, []byte("0123456789"))
			r.check("ftruncate 4", unix.Ftruncate(fd, 4))
			r.check("ftruncate 5MiB", unix.Ftruncate(fd, 5<<20))
			r.pwrite(fd, []byte("end"), 5<<20-3)
			r.close(fd)
			r.stat("n")
			r.content("n")
		}},
		{"ftruncate of a sparse base file keeps its holes", func(r *rec) {
			fd := r.open(baseSparse, unix.O_RDWR, 0)
			r.check("ftruncate 32MiB", unix.Ftruncate(fd, 32<<20))
			r.close(fd)
			r.stat(baseSparse)
			r.content(baseSparse)
		}},
		{"truncate errors", func(r *rec) {
			r.check("truncate d", unix.Truncate(r.p("d"), 0), unix.EISDIR)
			r.check("truncate negative", unix.Truncate(r.p("d/a"), -1), unix.EINVAL)
			r.check("truncate missing", unix.Truncate(r.p("missing"), 0), unix.ENOENT)
			fd := r.open("d/a", unix.O_RDONLY, 0)
			r.check("ftruncate of a read-only descriptor", unix.Ftruncate(fd, 0), unix.EINVAL)
			r.close(fd)
			r.content("d/a")
		}},
	})
}

// TestFallocate covers fallocate(2): plain (allocates and grows),
// FALLOC_FL_KEEP_SIZE (allocates, size stays), and
// FALLOC_FL_PUNCH_HOLE|FALLOC_FL_KEEP_SIZE (the range reads as zeros and
// stops being allocated). Allocation is written down as what each side's
// st_blocks shows against the sizes involved, not as a block count.
func TestFallocate(t *testing.T) {
	const mib = 1 << 20
	runCases(t, []opCase{
		{"fallocate grows a new file", func(r *rec) {
			fd := r.open("alloc", unix.O_RDWR|unix.O_CREAT, 0o644)
			r.check("fallocate 0 0+4MiB", unix.Fallocate(fd, 0, 0, 4*mib))
			r.fstat(fd)
			r.note("allocates at least 4 MiB: %v", r.allocated("alloc") >= 4*mib)
			r.pread(fd, 4096, 2*mib)
			r.pwrite(fd, []byte("data"), mib)
			r.close(fd)
			r.content("alloc")
		}},
		{"fallocate grows a base file", func(r *rec) {
			fd := r.open("d/a", unix.O_RDWR, 0)
			r.check("fallocate 0 0+2MiB", unix.Fallocate(fd, 0, 0, 2*mib))
			r.fstat(fd)
			r.note("allocates at least 2 MiB: %v", r.allocated("d/a") >= 2*mib)
			r.pread(fd, 64, 0)
			r.close(fd)
			r.content("d/a")
		}},
		{"fallocate KEEP_SIZE allocates past the end", func(r *rec) {
			fd := r.open("d/a", unix.O_RDWR, 0)
			r.check("fallocate KEEP_SIZE 0+3MiB", unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, 3*mib))
			r.fstat(fd)
			r.note("allocates at least 3 MiB: %v", r.allocated("d/a") >= 3*mib)
			r.close(fd)
			r.content("d/a")
		}},
		{"fallocate KEEP_SIZE on a new empty file", func(r *rec) {
			fd := r.open("prealloc", unix.O_RDWR|unix.O_CREAT, 0o644)
			r.check("fallocate KEEP_SIZE 0+1MiB", unix.Fallocate(fd, unix.FALLOC_FL_KEEP_SIZE, 0, mib))
			r.fstat(fd)
			r.note("allocates at least 1 MiB: %v", r.allocated("prealloc") >= mib)
			r.read(fd, 10)
			r.close(fd)
		}},
		{"punch a hole in a base file", func(r *rec) {
			before := r.allocated(baseBig)
			fd := r.open(baseBig, unix.O_RDWR, 0)
			r.check("fallocate PUNCH_HOLE|KEEP_SIZE 1MiB+6MiB",
				unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, mib, 6*mib))
			r.fstat(fd)
			r.pread(fd, 4096, mib)        // start of the hole
			r.pread(fd, 4096, 7*mib-4096) // its end
			r.pread(fd, 16, mib-8)        // across its start
			r.pread(fd, 4096, 7*mib)      // data after it
			after := r.allocated(baseBig)
			r.note("allocation fell by at least 5 MiB: %v", before-after >= 5*mib)
			r.close(fd)
			r.content(baseBig)
		}},
		{"punch a hole that is not block-aligned", func(r *rec) {
			fd := r.open("d/b", unix.O_RDWR, 0)
			r.check("fallocate PUNCH_HOLE|KEEP_SIZE 1000+20000",
				unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 1000, 20000))
			r.pread(fd, 20100, 950)
			r.fstat(fd)
			r.close(fd)
			r.content("d/b")
		}},
		{"punch the data out of a sparse base file", func(r *rec) {
			fd := r.open(baseSparse, unix.O_RDWR, 0)
			r.check("fallocate PUNCH_HOLE|KEEP_SIZE over the data",
				unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, sparseOff, sparseData))
			r.pread(fd, 4096, sparseOff)
			r.fstat(fd)
			r.close(fd)
			r.note("allocates under 64 KiB (+ the copy-up's slack): %v", r.allocated(baseSparse) < 64<<10+r.copyUpSlack())
			r.content(baseSparse)
		}},
		{"punch a hole in a new file, then write into it", func(r *rec) {
			fd := r.open("n", unix.O_RDWR|unix.O_CREAT, 0o644)
			r.write(fd, fstree.RandomBytes("n", 4*mib))
			r.check("fallocate PUNCH_HOLE|KEEP_SIZE 1MiB+2MiB",
				unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, mib, 2*mib))
			r.note("allocates at most 2 MiB + 64 KiB: %v", r.allocated("n") <= 2*mib+64<<10)
			r.pwrite(fd, []byte("refill"), 2*mib)
			r.close(fd)
			r.content("n")
		}},
		{"PUNCH_HOLE without KEEP_SIZE is EOPNOTSUPP", func(r *rec) {
			fd := r.open("d/b", unix.O_RDWR, 0)
			r.check("fallocate PUNCH_HOLE", unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE, 0, 4096), unix.EOPNOTSUPP)
			r.close(fd)
			r.content("d/b")
		}},
	})
}

// TestSync covers fsync and fdatasync on written, base and directory
// descriptors, and syncfs.
func TestSync(t *testing.T) {
	runCases(t, []opCase{
		{"fsync and fdatasync a written file", func(r *rec) {
			fd := r.open("d/a", unix.O_WRONLY|unix.O_APPEND, 0)
			r.write(fd, []byte("synced\n"))
			r.check("fdatasync", unix.Fdatasync(fd))
			r.write(fd, []byte("synced again\n"))
			r.check("fsync", unix.Fsync(fd))
			r.close(fd)
			r.content("d/a")
		}},
		{"fsync a new file and its directory", func(r *rec) {
			fd := r.open("d/new", unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL, 0o644)
			r.write(fd, []byte("durable\n"))
			r.check("fsync file", unix.Fsync(fd))
			r.close(fd)
			dfd := r.open("d", unix.O_RDONLY|unix.O_DIRECTORY, 0)
			r.check("fsync dir", unix.Fsync(dfd))
			r.check("fdatasync dir", unix.Fdatasync(dfd))
			r.close(dfd)
			r.content("d/new")
		}},
		{"fsync a base file opened read-only", func(r *rec) {
			fd := r.open(baseBig, unix.O_RDONLY, 0)
			r.check("fsync", unix.Fsync(fd))
			r.check("fdatasync", unix.Fdatasync(fd))
			r.close(fd)
		}},
		{"O_SYNC writes and syncfs", func(r *rec) {
			fd := r.open("d/b", unix.O_WRONLY|unix.O_SYNC, 0)
			r.pwrite(fd, []byte("sync"), 100)
			r.check("syncfs", unix.Syncfs(fd))
			r.close(fd)
			r.content("d/b")
		}},
	})
}

// TestMmap covers shared writable mappings (written data reaches read(2)
// at once, and the commit) and private ones (it does not).
func TestMmap(t *testing.T) {
	mapped := func(r *rec, rel string, size int, prot, flags int) ([]byte, int) {
		fd := r.open(rel, unix.O_RDWR, 0)
		if fd < 0 {
			return nil, -1
		}
		m, err := unix.Mmap(fd, 0, size, prot, flags)
		if !r.check(fmt.Sprintf("mmap %s %d", rel, size), err) {
			r.close(fd)
			return nil, -1
		}
		return m, fd
	}
	runCases(t, []opCase{
		{"MAP_SHARED write to a base file", func(r *rec) {
			m, fd := mapped(r, baseBig, bigBytes, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if m == nil {
				return
			}
			copy(m[0:], "start of the map")
			copy(m[3<<20+5:], "middle")
			copy(m[bigBytes-3:], "end")
			// read(2) sees the pages before msync and munmap.
			r.pread(fd, 16, 0)
			r.pread(fd, 6, 3<<20+5)
			r.check("msync MS_SYNC", unix.Msync(m, unix.MS_SYNC))
			r.check("munmap", unix.Munmap(m))
			r.close(fd)
			r.stat(baseBig)
			r.content(baseBig)
		}},
		{"MAP_SHARED write to a new file sized by ftruncate", func(r *rec) {
			fd := r.open("mapped", unix.O_RDWR|unix.O_CREAT, 0o644)
			r.check("ftruncate 64KiB", unix.Ftruncate(fd, 64<<10))
			m, err := unix.Mmap(fd, 0, 64<<10, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if !r.check("mmap", err) {
				r.close(fd)
				return
			}
			for i := 0; i < len(m); i += 4096 {
				copy(m[i:], fmt.Sprintf("page %d", i/4096))
			}
			r.check("munmap without msync", unix.Munmap(m))
			r.close(fd)
			r.content("mapped")
		}},
		{"MAP_SHARED write, then write(2) over part of it", func(r *rec) {
			m, fd := mapped(r, "d/b", 64<<10, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
			if m == nil {
				return
			}
			copy(m[100:], "through the map")
			r.pwrite(fd, []byte("THROUGH"), 100)
			r.note("the map sees the write: %q", m[100:115])
			r.check("munmap", unix.Munmap(m))
			r.close(fd)
			r.content("d/b")
		}},
		{"MAP_PRIVATE writes stay private", func(r *rec) {
			m, fd := mapped(r, "d/a", len(baseText), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE)
			if m == nil {
				return
			}
			copy(m, "PRIVATE")
			r.pread(fd, 16, 0)
			r.check("munmap", unix.Munmap(m))
			r.close(fd)
			r.content("d/a")
		}},
		{"mmap reads of an unmodified base file equal read(2)", func(r *rec) {
			fd := r.open(baseSparse, unix.O_RDONLY, 0)
			m, err := unix.Mmap(fd, 0, sparseSize, unix.PROT_READ, unix.MAP_SHARED)
			if r.check("mmap read-only", err) {
				r.note("mapped data: %s", summary(m[sparseOff:sparseOff+sparseData]))
				r.note("mapped hole: %s", summary(m[0:4096]))
				r.check("munmap", unix.Munmap(m))
			}
			r.close(fd)
		}},
	})
}
