package buildroot

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

const (
	bindRec = unix.MS_BIND | unix.MS_REC
	bindRO  = unix.MS_BIND | unix.MS_REC | unix.MS_RDONLY
)

// Every buildroot has these, whatever its config.
var (
	wantDev = []mountSpec{
		{source: "tmpfs", target: "dev", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NOEXEC, data: "mode=0755"},
		{source: "devpts", target: "dev/pts", fstype: "devpts", flags: unix.MS_NOSUID | unix.MS_NOEXEC, data: "newinstance,ptmxmode=0666,mode=0620"},
		{source: "tmpfs", target: "dev/shm", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: "mode=1777"},
	}
	wantProc    = mountSpec{source: "proc", target: "proc", fstype: "proc", flags: unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC}
	wantSys     = mountSpec{source: "sysfs", target: "sys", fstype: "sysfs", flags: unix.MS_RDONLY | unix.MS_NOSUID | unix.MS_NODEV | unix.MS_NOEXEC}
	wantSysBind = mountSpec{source: "/sys", target: "sys", flags: bindRO}
	wantTmpRun  = []mountSpec{
		{source: "tmpfs", target: "tmp", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: "mode=1777"},
		{source: "tmpfs", target: "run", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: "mode=0755"},
	}
	wantVar = mountSpec{source: "tmpfs", target: "var", fstype: "tmpfs", flags: unix.MS_NOSUID | unix.MS_NODEV, data: "mode=0755"}
)

func TestMountsFor(t *testing.T) {
	tests := []struct {
		name string
		cfg  initConfig // as Config.check leaves it: bind targets absolute and clean
		want mounts
	}{
		{
			name: "the host's tree",
			cfg:  initConfig{BuildTree: "/", NewRoot: "/state/root-1"},
			want: mounts{
				root: mountSpec{source: "tmpfs", target: "/state/root-1", fstype: "tmpfs", data: "mode=0755"},
				buildTree: []mountSpec{
					{source: "/usr", target: "usr", flags: bindRO},
					{source: "/bin", target: "bin", flags: bindRO, ifDir: true},
					{source: "/sbin", target: "sbin", flags: bindRO, ifDir: true},
					{source: "/lib", target: "lib", flags: bindRO, ifDir: true},
					{source: "/lib32", target: "lib32", flags: bindRO, ifDir: true},
					{source: "/lib64", target: "lib64", flags: bindRO, ifDir: true},
					{source: "/libx32", target: "libx32", flags: bindRO, ifDir: true},
				},
				scratch: append([]mountSpec{wantVar}, wantTmpRun...),
				dev:     wantDev,
				proc:    wantProc,
				sys:     wantSys,
				sysBind: wantSysBind,
			},
		},
		{
			name: "a stored tree and a stage's binds",
			cfg: initConfig{BuildTree: "/store/mnt/tree", NewRoot: "/state/root-2", Binds: []Bind{
				{Source: "/usr/libexec/forge", Target: LibDir, ReadOnly: true},
				{Source: "/store/tmp/mount-1/merged", Target: TreeDir},
				{Source: "/run/loopd.sock", Target: APIDir + "/remoteloop"},
			}},
			want: mounts{
				root: mountSpec{source: "tmpfs", target: "/state/root-2", fstype: "tmpfs", data: "mode=0755"},
				buildTree: []mountSpec{
					{source: "/store/mnt/tree/usr", target: "usr", flags: bindRO},
					{source: "/store/mnt/tree/bin", target: "bin", flags: bindRO, ifDir: true},
					{source: "/store/mnt/tree/sbin", target: "sbin", flags: bindRO, ifDir: true},
					{source: "/store/mnt/tree/lib", target: "lib", flags: bindRO, ifDir: true},
					{source: "/store/mnt/tree/lib32", target: "lib32", flags: bindRO, ifDir: true},
					{source: "/store/mnt/tree/lib64", target: "lib64", flags: bindRO, ifDir: true},
					{source: "/store/mnt/tree/libx32", target: "libx32", flags: bindRO, ifDir: true},
				},
				scratch: append([]mountSpec{wantVar}, wantTmpRun...),
				dev:     wantDev,
				proc:    wantProc,
				sys:     wantSys,
				sysBind: wantSysBind,
				binds: []mountSpec{
					{source: "/usr/libexec/forge", target: "run/osbuild/lib", flags: bindRO},
					{source: "/store/tmp/mount-1/merged", target: "run/osbuild/tree", flags: bindRec},
					{source: "/run/loopd.sock", target: "run/osbuild/api/remoteloop", flags: bindRec},
				},
			},
		},
		{
			name: "chroot",
			cfg: initConfig{BuildTree: "/images/debian", Chroot: true, NewRoot: "/state/root-3", Binds: []Bind{
				{Source: "/src", Target: "/mnt/src", ReadOnly: true},
			}},
			want: mounts{
				// Writable, and no build tree binds, nor /var: the image's own.
				root:    mountSpec{source: "/images/debian", target: "/state/root-3", flags: bindRec},
				scratch: wantTmpRun,
				dev:     wantDev,
				proc:    wantProc,
				sys:     wantSys,
				sysBind: wantSysBind,
				binds:   []mountSpec{{source: "/src", target: "mnt/src", flags: bindRO}},
			},
		},
	}
	for _, test := range tests {
		t.Run(test.name, func(t *testing.T) {
			got := mountsFor(&test.cfg)
			if !reflect.DeepEqual(got, test.want) {
				t.Fatalf("mount table:\n%s\nwant:\n%s", describeMounts(got), describeMounts(test.want))
			}
		})
	}
}

// describeMounts prints a table one mount a line, flags by name.
func describeMounts(m mounts) string {
	var b strings.Builder
	line := func(phase string, s mountSpec) {
		fmt.Fprintf(&b, "  %-9s %s on %s type %q flags %s data %q ifDir %v\n",
			phase, s.source, s.target, s.fstype, flagNames(s.flags), s.data, s.ifDir)
	}
	line("root", m.root)
	for _, p := range []struct {
		name string
		ms   []mountSpec
	}{{"buildtree", m.buildTree}, {"scratch", m.scratch}, {"dev", m.dev}} {
		for _, s := range p.ms {
			line(p.name, s)
		}
	}
	line("proc", m.proc)
	line("sys", m.sys)
	line("sys bind", m.sysBind)
	for _, s := range m.binds {
		line("binds", s)
	}
	return b.String()
}
