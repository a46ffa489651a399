// Package ptable reads MBR (MS-DOS) and GPT partition tables from a disk image
// or block device, the way the Linux kernel's msdos and efi partition parsers
// do, so that loopd can add the partitions itself on kernels built without
// those parsers.
//
// It only parses: it sees an io.ReaderAt and the device size, never a path or
// a file descriptor, and it never writes. Offsets and sizes in a Partition are
// in bytes, already clipped to the device the way the kernel clips them.
package ptable
