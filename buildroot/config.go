package buildroot

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/forge-build/forge/internal/ext4repro"
)

// InitArg is os.Args[1] of forge re-executed as a buildroot's init; the
// program's main must call Init first thing when it sees it.
const InitArg = "__buildroot-init"

// Well-known places inside a buildroot (osbuild's).
const (
	TreeDir   = "/run/osbuild/tree"
	LibDir    = "/run/osbuild/lib"
	OutputDir = "/run/osbuild/output"
	APIDir    = "/run/osbuild/api"
)

// Network says whether the buildroot shares the host's network.
type Network string

const (
	NetworkHost    Network = "host"    // stages download packages
	NetworkPrivate Network = "private" // a new namespace with only lo, up
)

// Bind is a host path made visible inside the buildroot at Target.
// Source may be a directory, a file or a socket.
type Bind struct {
	Source   string `json:"source"`
	Target   string `json:"target"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// Device is a device node made in the buildroot's /dev.
type Device struct {
	// Name is the node's path under /dev, like "loop3" or "loop3p1".
	Name         string `json:"name"`
	Major, Minor uint32
	Block        bool `json:"block"`
}

// FSMount is a filesystem mounted inside the buildroot.
type FSMount struct {
	// Source is the device inside the buildroot, like "/dev/loop3".
	Source string `json:"source"`
	// Target is an absolute path inside the buildroot; made when missing.
	Target string `json:"target"`
	FSType string `json:"fstype"`
	// Data are the filesystem's mount options, like "umask=077".
	Data     string `json:"data,omitempty"`
	ReadOnly bool   `json:"read_only,omitempty"`
}

// Config describes one run.
type Config struct {
	// BuildTree is the host path of the build tree ("/" for the host's).
	BuildTree string
	// Chroot makes BuildTree itself the root, writable, with its own /etc.
	Chroot bool
	// Plain gives the command osbuild's own buildroot and nothing of
	// forge's runner steps: an empty /etc (with the build tree's
	// mke2fs.conf, containers and selinux configuration, as osbuild
	// binds them), no ld.so.cache, users or certificates. For a runner
	// from a libdir other than forge's, which does its own setup.
	Plain bool
	Binds []Bind
	// Devices are block or character device nodes made in /dev, such as
	// a loop device a stage writes a filesystem on.
	Devices []Device
	// Mounts are filesystems mounted after the binds, in order, such as
	// a loop device's ext4 under /run/osbuild/mounts.
	Mounts []FSMount
	// Capabilities, when not nil, are all the command keeps (names as in
	// capabilities(7), like StageCapabilities); nil keeps root's all.
	Capabilities []string
	// EtcCache, when set, is an empty host directory, or one an earlier
	// run with the same build tree, hostname and binds filled: the /etc
	// that the runner's steps (ld.so.cache, sysusers, CA certificates)
	// made is kept there and copied in by the next run instead of being
	// made again (about 0.17 s a stage). The stage never sees it.
	EtcCache string
	// ReproducibleExt4, when set, is a time in seconds since 1970 (a
	// pipeline's source-epoch) to make the ext4 filesystems of Mounts
	// reproducible to (package ext4repro): they are mounted with
	// nodelalloc, the command runs on one CPU, and after it exits 0 each
	// is unmounted and normalized with the build tree's e2fsprogs, before
	// Run returns. Without an ext4 mount only the pinning to one CPU
	// remains, which costs a sequential command nothing (the apt stage's
	// mkinitramfs took as long unpinned).
	ReproducibleExt4 *int64

	Network Network // NetworkHost when empty
	// Hostname inside the UTS namespace; "forge-buildroot" when empty.
	Hostname string
	// Env is the command's whole environment; DefaultEnv() when nil.
	Env  []string
	Args []string // the command and its arguments; Args[0] is looked up in PATH
	Dir  string   // working directory inside; "/" when empty
	// Timeout kills the whole buildroot after this long (0: none).
	Timeout time.Duration
	// Stdin, Stdout, Stderr are passed through; an *os.File (a terminal)
	// goes through as is.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	// ForwardSignals passes SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1,
	// SIGUSR2 and SIGWINCH this process gets on to the command (forge run);
	// otherwise only ctx ends the run.
	ForwardSignals bool
	// StateDir is an empty host directory for the new root's mountpoint;
	// a temporary one when empty. Nothing is ever mounted on it in the
	// host's namespace.
	StateDir string
	// InitPath is the executable that handles InitArg; /proc/self/exe
	// when empty.
	InitPath string
}

// DefaultEnv is the environment commands get unless the caller says
// otherwise: the host's is never leaked in.
func DefaultEnv() []string {
	return []string{
		"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOME=/root",
		"LANG=C.UTF-8",
		"SHELL=/bin/sh",
	}
}

// Errors a caller may test with errors.Is.
var (
	// ErrTimeout: the command ran past Config.Timeout and was killed.
	ErrTimeout = errors.New("buildroot: timed out")
	// ErrCommandNotFound: Args[0] is not in the buildroot.
	ErrCommandNotFound = errors.New("command not found")
	// ErrNoUsr: the build tree has no /usr directory.
	ErrNoUsr = errors.New("build tree has no /usr directory")
)

// SetupError is a failure of one of init's phases, reported back over the
// sync pipe.
type SetupError struct {
	Phase   string
	Message string
	kind    string
}

func (e *SetupError) Error() string {
	return fmt.Sprintf("buildroot setup, phase %s: %s", e.Phase, e.Message)
}

// Is maps the kinds init reports onto the package's sentinels.
func (e *SetupError) Is(target error) bool {
	switch e.kind {
	case kindNotFound:
		return target == ErrCommandNotFound
	case kindNoUsr:
		return target == ErrNoUsr
	}
	return false
}

const (
	kindNotFound = "command_not_found"
	kindNoUsr    = "no_usr"
)

// initConfig is what init receives over its config pipe.
type initConfig struct {
	BuildTree string    `json:"build_tree"`
	Chroot    bool      `json:"chroot,omitempty"`
	Plain     bool      `json:"plain,omitempty"`
	Devices   []Device  `json:"devices,omitempty"`
	Mounts    []FSMount `json:"mounts,omitempty"`
	// Caps is Config.Capabilities; DropCaps says whether to apply it
	// (an empty list keeps nothing).
	Caps     []string `json:"caps,omitempty"`
	DropCaps bool     `json:"drop_caps,omitempty"`
	EtcCache string   `json:"etc_cache,omitempty"`
	// ReproducibleExt4 is Config's, set only when Mounts has a writable
	// ext4 one.
	ReproducibleExt4 *int64 `json:"reproducible_ext4,omitempty"`

	Binds    []Bind   `json:"binds,omitempty"`
	Network  Network  `json:"network"`
	Hostname string   `json:"hostname"`
	Env      []string `json:"env"`
	Args     []string `json:"args"`
	Dir      string   `json:"dir"`
	NewRoot  string   `json:"new_root"`
}

// newInitConfig is what Run tells init about a checked cfg; newRoot is
// the new root's mountpoint.
func newInitConfig(cfg Config, newRoot string) initConfig {
	ic := initConfig{
		BuildTree: cfg.BuildTree, Chroot: cfg.Chroot, Plain: cfg.Plain, Devices: cfg.Devices, Mounts: cfg.Mounts,
		Caps: cfg.Capabilities, DropCaps: cfg.Capabilities != nil, EtcCache: cfg.EtcCache,
		Binds: cfg.Binds, Network: cfg.Network,
		Hostname: cfg.Hostname, Env: cfg.Env, Args: cfg.Args, Dir: cfg.Dir, NewRoot: newRoot,
	}
	if cfg.ReproducibleExt4 != nil && slices.ContainsFunc(cfg.Mounts, isWritableExt4) {
		ic.ReproducibleExt4 = cfg.ReproducibleExt4
		ic.Mounts = slices.Clone(cfg.Mounts)
		for i, m := range ic.Mounts {
			if isWritableExt4(m) {
				ic.Mounts[i].Data = strings.TrimPrefix(m.Data+","+ext4repro.MountOption, ",")
			}
		}
	}
	return ic
}

// isWritableExt4 says whether the mount is one Config.ReproducibleExt4
// makes reproducible: a read-only one is never written.
func isWritableExt4(m FSMount) bool { return m.FSType == "ext4" && !m.ReadOnly }

// writeInitConfig is Run's end of the config pipe, readInitConfig init's.
func writeInitConfig(w io.Writer, ic initConfig) error {
	return json.NewEncoder(w).Encode(ic)
}

func readInitConfig(r io.Reader) (initConfig, error) {
	var ic initConfig
	err := json.NewDecoder(r).Decode(&ic)
	return ic, err
}

// initReport is what init sends back over the sync pipe when a phase fails.
type initReport struct {
	Phase   string `json:"phase"`
	Message string `json:"message"`
	Kind    string `json:"kind,omitempty"`
}

// writeInitReport is init's end of the sync pipe when phase failed with
// err; a *phaseError's kind goes along, so that Run's SetupError matches
// the package's sentinels.
func writeInitReport(w io.Writer, phase string, err error) {
	r := initReport{Phase: phase, Message: err.Error()}
	var pe *phaseError
	if errors.As(err, &pe) {
		r.Kind = pe.kind
	}
	json.NewEncoder(w).Encode(r)
}

// readInitReport is Run's end: the *SetupError init reported.
func readInitReport(report []byte) error {
	var r initReport
	if err := json.Unmarshal(report, &r); err != nil {
		return fmt.Errorf("buildroot: init reported %q: %w", report, err)
	}
	return &SetupError{Phase: r.Phase, Message: r.Message, kind: r.Kind}
}

// check validates a config and fills defaults.
func (c *Config) check() error {
	if len(c.Args) == 0 || c.Args[0] == "" {
		return errors.New("buildroot: no command")
	}
	if c.BuildTree == "" || !filepath.IsAbs(c.BuildTree) {
		return fmt.Errorf("buildroot: build tree %q: must be an absolute path", c.BuildTree)
	}
	switch c.Network {
	case "":
		c.Network = NetworkHost
	case NetworkHost, NetworkPrivate:
	default:
		return fmt.Errorf("buildroot: network %q: want %q or %q", c.Network, NetworkHost, NetworkPrivate)
	}
	if c.Hostname == "" {
		c.Hostname = "forge-buildroot"
	}
	if c.Env == nil {
		c.Env = DefaultEnv()
	}
	if c.Dir == "" {
		c.Dir = "/"
	}
	for i, b := range c.Binds {
		if !filepath.IsAbs(b.Source) {
			return fmt.Errorf("buildroot: bind source %q: must be an absolute path", b.Source)
		}
		t := path.Clean(b.Target)
		if !path.IsAbs(t) || t == "/" || strings.HasPrefix(t, "/proc") || strings.HasPrefix(t, "/dev") || strings.HasPrefix(t, "/sys") {
			return fmt.Errorf("buildroot: bind target %q: want an absolute path outside /, /proc, /dev, /sys", b.Target)
		}
		c.Binds[i].Target = t
	}
	if err := checkCaps(c.Capabilities); err != nil {
		return err
	}
	if c.EtcCache != "" && (!filepath.IsAbs(c.EtcCache) || c.Chroot || c.Plain) {
		return fmt.Errorf("buildroot: etc cache %q: want an absolute path, and a buildroot whose /etc forge makes", c.EtcCache)
	}
	for _, d := range c.Devices {
		if d.Name == "" || d.Name != path.Clean(d.Name) || path.IsAbs(d.Name) || strings.HasPrefix(d.Name, "..") ||
			strings.Contains(d.Name, "/") && !strings.HasPrefix(d.Name, "mapper/") {
			return fmt.Errorf("buildroot: device %q: want a name under /dev like loop3", d.Name)
		}
	}
	for i, m := range c.Mounts {
		t := path.Clean(m.Target)
		if !path.IsAbs(t) || t == "/" || !path.IsAbs(m.Source) || m.FSType == "" {
			return fmt.Errorf("buildroot: mount %s on %q (%s): want an absolute source, type and target other than /", m.Source, m.Target, m.FSType)
		}
		c.Mounts[i].Target = t
	}
	return nil
}
