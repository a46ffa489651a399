package buildroot

import (
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"
)

// mountSpec is one mount of the new root. A bind (MS_BIND) is of the host
// path source; with MS_RDONLY it is made read-only by a remount after it,
// as the kernel requires (rootfs.bind).
type mountSpec struct {
	source string
	target string // relative to the new root; except mounts.root's, a host path
	fstype string
	flags  uintptr
	data   string
	// ifDir: bound only when source is a directory; a symlink there is
	// made again at target (merged /usr), an absent one skipped.
	ifDir bool
}

// mounts is what the new root is made of, phase by phase. It depends on
// the config alone (mountsFor), so that it can be read, and tested, apart
// from the syscalls that make it. Propagation changes ("/" private, the
// old root slave) are not in it: they mount nothing.
type mounts struct {
	root      mountSpec   // on the new root's mountpoint itself, cfg.NewRoot
	buildTree []mountSpec // none in a chroot
	scratch   []mountSpec
	dev       []mountSpec
	proc      mountSpec
	sys       mountSpec
	sysBind   mountSpec // where a fresh sysfs is refused
	binds     []mountSpec
	fs        []mountSpec // Config.Mounts, after the binds
}

// usrDirs are bound from the build tree when they are directories, and
// recreated when they are symlinks (into usr, on merged-/usr systems).
var usrDirs = []string{"bin", "sbin", "lib", "lib32", "lib64", "libx32"}

const (
	readOnlyBind = unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY
	scratchFlags = unix.MS_NOSUID | unix.MS_NODEV
)

// mountsFor is the mount table of cfg's new root.
func mountsFor(cfg *initConfig) mounts {
	m := mounts{
		root:    mountSpec{source: "tmpfs", target: cfg.NewRoot, fstype: "tmpfs", data: "mode=0755"},
		scratch: scratchMounts(cfg.Chroot),
		dev: []mountSpec{
			{source: "tmpfs", target: "dev", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NOEXEC, data: "mode=0755"},
			// A private devpts instance: the buildroot's ptys are its own.
			{source: "devpts", target: "dev/pts", fstype: "devpts", flags: unix.MS_NOSUID | unix.MS_NOEXEC, data: "newinstance,ptmxmode=0666,mode=0620"},
			{source: "tmpfs", target: "dev/shm", fstype: "tmpfs", flags: scratchFlags, data: "mode=1777"},
		},
		// The new PID namespace's proc: ps sees only the buildroot.
		proc:    mountSpec{source: "proc", target: "proc", fstype: "proc", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		sys:     mountSpec{source: "sysfs", target: "sys", fstype: "sysfs", flags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC},
		sysBind: mountSpec{source: "/sys", target: "sys", flags: readOnlyBind},
	}
	if cfg.Chroot {
		// The build tree is the root, writable, as it is.
		m.root = mountSpec{source: cfg.BuildTree, target: cfg.NewRoot, flags: unix.MS_BIND | unix.MS_REC}
	} else {
		m.buildTree = buildTreeMounts(cfg.BuildTree)
	}
	for _, b := range cfg.Binds {
		flags := uintptr(unix.MS_BIND | unix.MS_REC)
		if b.ReadOnly {
			flags |= unix.MS_RDONLY
		}
		m.binds = append(m.binds, mountSpec{source: b.Source, target: strings.TrimPrefix(b.Target, "/"), flags: flags})
	}
	for _, f := range cfg.Mounts {
		// Devices are not nodes a stage could swap: they are in our /dev,
		// reached before the pivot through the new root's path.
		flags := uintptr(unix.MS_NOSUID | unix.MS_NODEV)
		if f.ReadOnly {
			flags |= unix.MS_RDONLY
		}
		m.fs = append(m.fs, mountSpec{source: filepath.Join(cfg.NewRoot, f.Source), target: strings.TrimPrefix(f.Target, "/"), fstype: f.FSType, flags: flags, data: f.Data})
	}
	return m
}

// buildTreeMounts are the build tree's /usr and its friends, read-only.
func buildTreeMounts(bt string) []mountSpec {
	ms := []mountSpec{{source: filepath.Join(bt, "usr"), target: "usr", flags: readOnlyBind}}
	for _, d := range usrDirs {
		ms = append(ms, mountSpec{source: filepath.Join(bt, d), target: d, flags: readOnlyBind, ifDir: true})
	}
	return ms
}

// scratchMounts are the empty, writable places; a chroot keeps its /var.
func scratchMounts(chroot bool) []mountSpec {
	var ms []mountSpec
	if !chroot {
		ms = append(ms, mountSpec{source: "tmpfs", target: "var", fstype: "tmpfs", flags: scratchFlags, data: "mode=0755"})
	}
	return append(ms,
		mountSpec{source: "tmpfs", target: "tmp", fstype: "tmpfs", flags: scratchFlags, data: "mode=1777"},
		mountSpec{source: "tmpfs", target: "run", fstype: "tmpfs", flags: scratchFlags, data: "mode=0755"},
	)
}
