package buildroot

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/sys/unix"
)

// writeEtc fills the new root's /etc (on its tmpfs) with what osbuild's
// buildroot and runner provide: files the runner's tools build on, the
// host's resolv.conf, and no nsswitch.conf (nss modules of a non-booted
// system, like nss-resolve, do not work here; glibc's defaults do).
func (r *rootfs) writeEtc() error {
	etc := filepath.Join(r.cfg.NewRoot, "etc")
	if err := os.Mkdir(etc, 0o755); err != nil {
		return err
	}
	files := map[string]string{
		"hostname": r.cfg.Hostname + "\n",
		"hosts":    "127.0.0.1\tlocalhost\n::1\tlocalhost\n127.0.1.1\t" + r.cfg.Hostname + "\n",
		// sysusers adds the build tree's users to these; root must be
		// there even when the build tree has no sysusers.
		"passwd": "root:x:0:0:root:/root:/bin/sh\n",
		"group":  "root:x:0:\n",
		// ldconfig warns without it.
		"ld.so.conf": "include /etc/ld.so.conf.d/*.conf\n",
	}
	if b, err := os.ReadFile("/etc/resolv.conf"); err == nil {
		files["resolv.conf"] = string(b)
	}
	bt := r.cfg.BuildTree
	// Through os.Root: a build tree's symlink must not read the host's
	// files into the buildroot.
	btRoot, err := os.OpenRoot(bt)
	if err != nil {
		return fmt.Errorf("open build tree %s: %w", bt, err)
	}
	defer btRoot.Close()
	if b, err := btRoot.ReadFile("etc/ld.so.conf"); err == nil {
		files["ld.so.conf"] = string(b)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	// The build tree's library paths (multiarch directories on Debian).
	confs, _ := fs.Glob(btRoot.FS(), "etc/ld.so.conf.d/*.conf")
	if len(confs) > 0 {
		if err := os.Mkdir(filepath.Join(etc, "ld.so.conf.d"), 0o755); err != nil {
			return err
		}
	}
	for _, c := range confs {
		b, err := btRoot.ReadFile(c)
		if err != nil {
			continue
		}
		if err := os.WriteFile(filepath.Join(etc, "ld.so.conf.d", filepath.Base(c)), b, 0o644); err != nil {
			return err
		}
	}
	if _, err := os.Stat(filepath.Join(bt, "usr/lib/os-release")); err == nil {
		if err := os.Symlink("../usr/lib/os-release", filepath.Join(etc, "os-release")); err != nil {
			return err
		}
	}
	return nil
}

// plainEtc is osbuild's /etc: an empty directory, with the build tree's
// mke2fs.conf (an old mke2fs fails without it), container and SELinux
// configuration bound read-only where they exist. A foreign runner does
// the rest of the setup itself.
func (r *rootfs) plainEtc() error {
	if err := os.Mkdir(filepath.Join(r.cfg.NewRoot, "etc"), 0o755); err != nil {
		return err
	}
	bt, err := unix.Open(r.cfg.BuildTree, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open build tree %s: %w", r.cfg.BuildTree, err)
	}
	defer unix.Close(bt)
	for _, p := range []string{"etc/mke2fs.conf", "etc/containers", "etc/selinux"} {
		// Through an fd opened without following symlinks: the build
		// tree is a manifest's work, and its /etc/containers -> /root
		// must not bind the host's /root.
		fd, err := unix.Openat2(bt, p, &unix.OpenHow{Flags: unix.O_PATH | unix.O_CLOEXEC, Resolve: unix.RESOLVE_NO_SYMLINKS | unix.RESOLVE_BENEATH})
		if err != nil {
			continue
		}
		err = r.bind(fdPath(fd), p, true)
		unix.Close(fd)
		if err != nil {
			return err
		}
	}
	return nil
}

// runner does osbuild-run's steps inside the new root, with the tools the
// build tree has: ld.so.cache, sysusers, CA certificates, tmpfiles.
func (r *rootfs) runner() error {
	if !r.fromCache {
		if err := r.etcSteps(); err != nil {
			return err
		}
	}
	if err := r.saveEtcCache(); err != nil {
		return err
	}
	if p := findTool("systemd-tmpfiles"); p != "" {
		// As osbuild: packages ask for directories owned by users that
		// sysusers does not know; that is no reason to fail.
		_ = tool(p, "--create")
	}
	return nil
}

// etcSteps are the runner's steps whose work is all in /etc: what
// Config.EtcCache keeps.
func (r *rootfs) etcSteps() error {
	if p := findTool("ldconfig"); p != "" {
		if err := tool(p); err != nil {
			return err
		}
	}
	if p := findTool("systemd-sysusers"); p != "" {
		if err := tool(p); err != nil {
			return err
		}
	}
	return caCertificates()
}

var toolDirs = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

func findTool(name string) string {
	for _, d := range toolDirs {
		p := d + "/" + name
		if executable(p) == nil {
			return p
		}
	}
	return ""
}

// tool runs a runner step; its output is shown only when it fails.
func tool(path string, args ...string) error {
	cmd := exec.Command(path, args...)
	cmd.Env = DefaultEnv()
	cmd.Dir = "/"
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w\n%s", path, strings.Join(args, " "), err, bytes.TrimSpace(out.Bytes()))
	}
	return nil
}

// caCertificates builds the CA bundle in /etc from the certificates in
// /usr, with whichever tool the build tree's distribution uses.
func caCertificates() error {
	if p := findTool("update-ca-trust"); p != "" {
		// Fedora, CentOS: the extract step writes under these.
		for _, d := range []string{"source/anchors", "source/blocklist", "extracted/pem", "extracted/openssl", "extracted/java", "extracted/edk2"} {
			if err := os.MkdirAll("/etc/pki/ca-trust/"+d, 0o755); err != nil {
				return err
			}
		}
		return tool(p, "extract")
	}
	if findTool("update-ca-certificates") == "" {
		return nil
	}
	return debianCACertificates()
}

// Debian's ca-certificates layout, as update-ca-certificates makes it.
const (
	caShare      = "/usr/share/ca-certificates"
	caLocalShare = "/usr/local/share/ca-certificates"
	caEtcCerts   = "/etc/ssl/certs"
	caBundle     = caEtcCerts + "/ca-certificates.crt"
)

// debianCACertificates does what `update-ca-certificates --fresh` does
// with a configuration selecting every certificate under /usr (as the
// package's own does) and no hooks: a .pem link per certificate in
// /etc/ssl/certs, the bundle, and the subject-hash links of `openssl
// rehash`. The script does it with a sed, an ln and a readlink per
// certificate: half a second of every stage's start, against a few
// milliseconds here (TestCACertificatesAsDebian checks the result is
// the script's).
func debianCACertificates() error {
	certs := findCerts(caShare)
	if len(certs) == 0 {
		return nil
	}
	// The configuration, for a stage that runs update-ca-certificates.
	var conf strings.Builder
	for _, c := range certs {
		conf.WriteString(strings.TrimPrefix(c, caShare+"/") + "\n")
	}
	if err := os.WriteFile("/etc/ca-certificates.conf", []byte(conf.String()), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll(caEtcCerts, 0o755); err != nil {
		return err
	}
	certs = append(certs, findCerts(caLocalShare)...)
	var bundle bytes.Buffer
	pemName := strings.NewReplacer(" ", "_", "(", "=", ")", "=", ",", "_")
	for _, c := range certs {
		b, err := os.ReadFile(c)
		if err != nil {
			return fmt.Errorf("CA certificate %s: %w", c, err)
		}
		link := filepath.Join(caEtcCerts, pemName.Replace(strings.TrimSuffix(filepath.Base(c), ".crt"))+".pem")
		os.Remove(link)
		if err := os.Symlink(c, link); err != nil {
			return err
		}
		bundle.Write(b)
		if len(b) > 0 && b[len(b)-1] != '\n' {
			bundle.WriteByte('\n')
		}
	}
	if err := os.WriteFile(caBundle, bundle.Bytes(), 0o644); err != nil {
		return err
	}
	if p := findTool("openssl"); p != "" {
		return tool(p, "rehash", caEtcCerts)
	}
	return nil
}

// findCerts lists the *.crt files under dir (following symlinks, as
// `find -L` does), sorted.
func findCerts(dir string) []string {
	var certs []string
	var walk func(string)
	walk = func(d string) {
		ents, err := os.ReadDir(d)
		if err != nil {
			return
		}
		for _, e := range ents {
			p := filepath.Join(d, e.Name())
			fi, err := os.Stat(p)
			switch {
			case err != nil:
			case fi.IsDir():
				walk(p)
			case fi.Mode().IsRegular() && strings.HasSuffix(p, ".crt"):
				certs = append(certs, p)
			}
		}
	}
	walk(dir)
	sort.Strings(certs)
	return certs
}
