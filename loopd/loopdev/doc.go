// Package loopdev drives Linux loop devices: it takes a free device from
// /dev/loop-control, binds a backing file descriptor to it (LOOP_CONFIGURE,
// or LOOP_SET_FD + LOOP_SET_STATUS64 on kernels before 5.8), adds partitions
// with BLKPG, creates device nodes in a directory given as a file descriptor,
// and detaches what it attached.
//
// Vocabulary:
//   - The index N of a device names it: loopN, /dev/loopN. Its partitions
//     are loopNp1, loopNp2, …, with device numbers the kernel chooses
//     (major 259 unless loop's max_part is set).
//   - A Device is one loop device this process attached and holds open.
//     Every device is attached with autoclear, so the kernel unbinds it when
//     the last opener closes it; Detach removes the partitions it added,
//     clears the device if it is still bound to the same file, and closes it.
//
// Every failed system call comes back as an *OpError naming the operation,
// the device and the file it concerned; errors.Is sees the errno through it.
package loopdev
