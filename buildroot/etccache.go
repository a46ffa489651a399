package buildroot

import (
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"golang.org/x/sys/unix"
)

// The runner's steps (ldconfig, systemd-sysusers, the CA certificates)
// depend on the build tree alone, yet took ~0.17 s of every stage's
// start. With Config.EtcCache the first buildroot of a build tree keeps
// the /etc they made, and later ones copy it in: a copy of a few hundred
// small files and links instead of running the tools. systemd-tmpfiles
// still runs every time: what it makes lives in /run, /var and /tmp,
// which are fresh for each stage.

// etcCacheMount is where the cache directory is bound inside the new root
// while the runner's steps fill it; it is gone before the command runs.
const etcCacheMount = "run/.forge-etc-cache"

// etcCacheDone marks a cache that holds a whole /etc.
const etcCacheDone = "complete"

func etcCacheComplete(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, etcCacheDone))
	return err == nil
}

// copyTree copies the directory src to dst (which must not exist) with
// modes, owners and modification times: regular files, directories and
// symlinks, what the runner's steps make in /etc. Anything else is an
// error: a cache holds nothing else.
func copyTree(src, dst string) error {
	return filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, p)
		if err != nil {
			return err
		}
		target := filepath.Join(dst, rel)
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return fmt.Errorf("%s: no stat", p)
		}
		switch {
		case d.IsDir():
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
		case d.Type()&fs.ModeSymlink != 0:
			link, err := os.Readlink(p)
			if err != nil {
				return err
			}
			if err := os.Symlink(link, target); err != nil {
				return err
			}
			return os.Lchown(target, int(st.Uid), int(st.Gid))
		case d.Type().IsRegular():
			if err := copyFile(p, target); err != nil {
				return err
			}
		default:
			return fmt.Errorf("%s: %s is not a file, directory or symlink", p, fi.Mode().Type())
		}
		if err := os.Lchown(target, int(st.Uid), int(st.Gid)); err != nil {
			return err
		}
		// After chown, which clears set-id bits.
		if err := os.Chmod(target, fi.Mode()&(fs.ModePerm|fs.ModeSetuid|fs.ModeSetgid|fs.ModeSticky)); err != nil {
			return err
		}
		return os.Chtimes(target, fi.ModTime(), fi.ModTime())
	})
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = io.Copy(out, in)
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	return err
}

// etcFromCache makes the new root's /etc a copy of the cache's.
func (r *rootfs) etcFromCache() error {
	return copyTree(filepath.Join(r.cfg.EtcCache, "etc"), filepath.Join(r.cfg.NewRoot, "etc"))
}

// bindEtcCache binds the empty cache directory into the new root, so that
// the runner's steps, which run after the pivot, can fill it.
func (r *rootfs) bindEtcCache() error {
	if r.cfg.EtcCache == "" || r.fromCache {
		return nil
	}
	r.cacheBound = true
	return r.bind(r.cfg.EtcCache, etcCacheMount, false)
}

// saveEtcCache keeps /etc in the bound cache, then unbinds it: whatever
// happens, the command must not find the cache (it could change what the
// next stages get). A failed save leaves the cache without its mark, so
// that the next run makes /etc itself.
func (r *rootfs) saveEtcCache() error {
	if !r.cacheBound {
		return nil
	}
	cache := "/" + etcCacheMount
	tmp := filepath.Join(cache, "etc.tmp")
	os.RemoveAll(tmp)
	err := copyTree("/etc", tmp)
	if err == nil {
		err = os.Rename(tmp, filepath.Join(cache, "etc"))
	}
	if err == nil {
		var f *os.File
		if f, err = os.Create(filepath.Join(cache, etcCacheDone)); err == nil {
			err = f.Close()
		}
	}
	if uerr := unix.Unmount(cache, unix.MNT_DETACH); uerr != nil {
		return &mountError{op: "umount", target: cache, flags: unix.MNT_DETACH, err: uerr}
	}
	os.Remove(cache)
	r.cacheBound = false
	// A failed save (err) is not this stage's problem: it has its /etc,
	// and the next run, finding no mark, makes its own.
	_ = err
	return nil
}
