package buildroot_test

import (
	"os/exec"
	"strings"
	"testing"
)

// The buildroot makes Debian's CA certificates itself (update-ca-
// certificates spends half a second of every stage's start on a sed and
// an ln per certificate): the result must be what the script makes.
func TestCACertificatesAsDebian(t *testing.T) {
	for _, tool := range []string{"update-ca-certificates", "openssl"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s on the host (the build tree): %v", tool, err)
		}
	}
	store := storeDir(t)
	// A listing of /etc/ssl/certs: every name with its link target, and
	// the bundle's digest.
	const list = `cd /etc/ssl/certs && for f in *; do printf '%s -> %s\n' "$f" "$(readlink "$f")"; done && sha256sum ca-certificates.crt`
	out := mustForge(t, "run", "--store", store, "--", "sh", "-c",
		list+` > /tmp/ours && update-ca-certificates --fresh >/dev/null 2>&1 && `+list+` > /tmp/theirs && cat /tmp/ours && echo ==== && diff /tmp/ours /tmp/theirs`)
	ours, _, _ := strings.Cut(out, "====")
	if n := strings.Count(ours, ".pem -> /usr/share/ca-certificates/"); n < 50 {
		t.Errorf("only %d certificate links in the buildroot's /etc/ssl/certs:\n%s", n, ours)
	}
	if strings.Count(ours, ".0 -> ") < 50 {
		t.Errorf("no subject-hash links in the buildroot's /etc/ssl/certs:\n%s", ours)
	}
}
