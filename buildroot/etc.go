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
	if b, err := os.ReadFile(filepath.Join(bt, "etc/ld.so.conf")); err == nil {
		files["ld.so.conf"] = string(b)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(etc, name), []byte(content), 0o644); err != nil {
			return err
		}
	}
	// The build tree's library paths (multiarch directories on Debian).
	confs, _ := filepath.Glob(filepath.Join(bt, "etc/ld.so.conf.d/*.conf"))
	if len(confs) > 0 {
		if err := os.Mkdir(filepath.Join(etc, "ld.so.conf.d"), 0o755); err != nil {
			return err
		}
	}
	for _, c := range confs {
		b, err := os.ReadFile(c)
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

// runner does osbuild-run's steps inside the new root, with the tools the
// build tree has: ld.so.cache, sysusers, CA certificates, tmpfiles.
func (r *rootfs) runner() error {
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
	if err := caCertificates(); err != nil {
		return err
	}
	if p := findTool("systemd-tmpfiles"); p != "" {
		// As osbuild: packages ask for directories owned by users that
		// sysusers does not know; that is no reason to fail.
		_ = tool(p, "--create")
	}
	return nil
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
	p := findTool("update-ca-certificates")
	if p == "" {
		return nil
	}
	// Debian: the configuration (in /etc) selects certificates from
	// /usr/share/ca-certificates; select them all, as the package does.
	const share = "/usr/share/ca-certificates"
	var certs []string
	filepath.WalkDir(share, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".crt") {
			certs = append(certs, strings.TrimPrefix(p, share+"/"))
		}
		return nil
	})
	if len(certs) == 0 {
		return nil
	}
	sort.Strings(certs)
	if err := os.WriteFile("/etc/ca-certificates.conf", []byte(strings.Join(certs, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	if err := os.MkdirAll("/etc/ssl/certs", 0o755); err != nil {
		return err
	}
	return tool(p, "--fresh")
}
