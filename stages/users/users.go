// Package users is org.osbuild.users: it adds user accounts to the tree
// or changes existing ones, with the build root's useradd and usermod
// (`--root TREE`, so they edit the tree's /etc/passwd, group, shadow and
// gshadow and run none of the tree's programs), and installs SSH public
// keys in ~/.ssh/authorized_keys.
//
// Users are handled in the order the options list them, so UIDs that
// useradd picks are the same from build to build. One difference from
// osbuild's Fedora: Debian's useradd makes no home directory unless
// asked, so a new user gets one (--create-home) unless "home" is "".
package users

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"strconv"
	"strings"

	"github.com/forge-build/forge/stages/stage"
)

// options are osbuild's; each user's are in user.
type options struct {
	Users json.RawMessage `json:"users"`
}

// user is one user's options, osbuild's (its schema and its stage's
// force_password_reset). Pointers tell an absent option from a zero one,
// as osbuild does: "password": "" sets an empty password, "home": ""
// means no home directory.
type user struct {
	UID                *int64   `json:"uid"`
	GID                *int64   `json:"gid"`
	Groups             []string `json:"groups"`
	Description        *string  `json:"description"`
	Home               *string  `json:"home"`
	Shell              *string  `json:"shell"`
	Password           *string  `json:"password"`
	Key                *string  `json:"key"`
	Keys               []string `json:"keys"`
	ExpireDate         *int64   `json:"expiredate"`
	ForcePasswordReset bool     `json:"force_password_reset"`
}

// namedUser is a user with the name it is keyed by in the options.
type namedUser struct {
	name string
	user
}

// Run adds or changes each user, in the options' order.
func Run(ctx context.Context, a stage.Args) error {
	users, err := parse(a.Options)
	if err != nil {
		return err
	}
	if len(users) == 0 {
		return nil
	}
	root, err := os.OpenRoot(a.Tree)
	if err != nil {
		return fmt.Errorf("open tree: %w", err)
	}
	defer root.Close()
	for _, u := range users {
		if err := apply(ctx, a.Tree, root, u); err != nil {
			return fmt.Errorf("user %q: %w", u.name, err)
		}
	}
	return nil
}

// parse decodes and checks the options, keeping the users in order.
func parse(raw json.RawMessage) ([]namedUser, error) {
	var o options
	if err := stage.DecodeOptions(raw, &o); err != nil {
		return nil, err
	}
	if len(o.Users) == 0 || string(o.Users) == "null" {
		return nil, stage.OptionError("users", "is required")
	}
	dec := json.NewDecoder(bytes.NewReader(o.Users))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, stage.OptionError("users", "want an object of user names to user options")
	}
	var users []namedUser
	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, stage.OptionError("users", "%v", err)
		}
		name := tok.(string) // object keys are strings
		var rawUser json.RawMessage
		if err := dec.Decode(&rawUser); err != nil {
			return nil, stage.OptionError("users", "%v", err)
		}
		if seen[name] {
			return nil, stage.OptionError("users", "user %q is given twice", name)
		}
		seen[name] = true
		if err := validateName(name); err != nil {
			return nil, stage.OptionError("users", "%v", err)
		}
		u := namedUser{name: name}
		if string(rawUser) == "null" {
			return nil, stage.OptionError("users", "user %q: want an object, got null", name)
		}
		if err := stage.DecodeOptions(rawUser, &u.user); err != nil {
			return nil, fmt.Errorf("option \"users\": user %q: %w", name, err)
		}
		if err := u.validate(); err != nil {
			return nil, fmt.Errorf("option \"users\": user %q: %w", name, err)
		}
		users = append(users, u)
	}
	return users, nil
}

// validateName checks a user name against osbuild's pattern,
// ^[A-Za-z0-9_.][A-Za-z0-9_.-]{0,31}$, less "." and "..", which name
// directories.
func validateName(name string) error {
	if name == "" || len(name) > 32 {
		return fmt.Errorf("user name %q: want 1 to 32 characters", name)
	}
	if name == "." || name == ".." {
		return fmt.Errorf("user name %q is not allowed", name)
	}
	for i, c := range name {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || (c == '-' && i > 0)
		if !ok {
			return fmt.Errorf("user name %q contains %q at %d: want letters, digits, '_', '.' and (not first) '-'", name, c, i)
		}
	}
	return nil
}

// maxID is the largest UID or GID: 2^32-1 is (uid_t)-1, "no user".
const maxID = 1<<32 - 2

func (u user) validate() error {
	if u.UID != nil && (*u.UID < 0 || *u.UID > maxID) {
		return stage.OptionError("uid", "%d is out of range 0..%d", *u.UID, maxID)
	}
	if u.GID != nil && (*u.GID < 0 || *u.GID > maxID) {
		return stage.OptionError("gid", "%d is out of range 0..%d", *u.GID, maxID)
	}
	for _, g := range u.Groups {
		if err := validateGroup(g); err != nil {
			return stage.OptionError("groups", "%v", err)
		}
	}
	if u.Description != nil {
		if err := passwdField(*u.Description); err != nil {
			return stage.OptionError("description", "%v", err)
		}
	}
	if u.Home != nil && *u.Home != "" {
		if err := absPath(*u.Home); err != nil {
			return stage.OptionError("home", "%v", err)
		}
	}
	if u.Shell != nil && *u.Shell != "" {
		if err := absPath(*u.Shell); err != nil {
			return stage.OptionError("shell", "%v", err)
		}
	}
	if u.Password != nil {
		if err := passwdField(*u.Password); err != nil {
			return stage.OptionError("password", "%v", err)
		}
	}
	if u.Key != nil {
		if err := validateKey(*u.Key); err != nil {
			return stage.OptionError("key", "%v", err)
		}
	}
	for _, k := range u.Keys {
		if err := validateKey(k); err != nil {
			return stage.OptionError("keys", "%v", err)
		}
	}
	// -1 is "never"; other negative dates mean nothing to useradd.
	if u.ExpireDate != nil && *u.ExpireDate < -1 {
		return stage.OptionError("expiredate", "%d: want days since 1970-01-01, or -1 for never", *u.ExpireDate)
	}
	return nil
}

func validateGroup(g string) error {
	if g == "" {
		return errors.New("empty group name")
	}
	for _, c := range g {
		if c == ',' || c == ':' || c <= ' ' || c == 0x7f {
			return fmt.Errorf("group name %q contains %q", g, c)
		}
	}
	return nil
}

// passwdField checks a value that goes into a field of /etc/passwd or
// /etc/shadow, which a ':' or a newline would break.
func passwdField(s string) error {
	for _, c := range s {
		if c == ':' || c < ' ' || c == 0x7f {
			return fmt.Errorf("%q contains %q, which /etc/passwd and /etc/shadow cannot hold", s, c)
		}
	}
	return nil
}

func absPath(p string) error {
	if !strings.HasPrefix(p, "/") {
		return fmt.Errorf("%q is not an absolute path", p)
	}
	return passwdField(p)
}

// validateKey checks an SSH public key: authorized_keys holds one a line.
func validateKey(k string) error {
	if strings.TrimSpace(k) == "" {
		return errors.New("empty key")
	}
	if strings.ContainsAny(k, "\n\r\x00") {
		return errors.New("a key is one line: it contains a line break or NUL")
	}
	return nil
}

// apply adds or changes one user, then installs its keys.
func apply(ctx context.Context, tree string, root *os.Root, u namedUser) error {
	pw, err := lookup(root, u.name)
	if err != nil {
		return err
	}
	if pw == nil {
		if err := runTool(ctx, "useradd", useraddArgs(tree, u)...); err != nil {
			return err
		}
	} else {
		// osbuild's rule: an existing user keeps its UID.
		if u.UID != nil && strconv.FormatInt(*u.UID, 10) != pw.uid {
			return stage.OptionError("uid", "can't set the UID of existing user %q (%s) to %d", u.name, pw.uid, *u.UID)
		}
		if args := usermodArgs(tree, u); args != nil {
			if err := runTool(ctx, "usermod", args...); err != nil {
				return err
			}
		}
	}
	if pw, err = lookup(root, u.name); err != nil {
		return err
	}
	if pw == nil {
		return fmt.Errorf("not in the tree's /etc/passwd after useradd")
	}
	if u.Home == nil || *u.Home != "" {
		// usermod --home does not make the directory; useradd did.
		if err := ensureHome(root, pw); err != nil {
			return err
		}
	}
	if u.ForcePasswordReset {
		if err := runTool(ctx, "passwd", "--root", tree, "--expire", u.name); err != nil {
			return err
		}
	}
	keys := append([]string(nil), u.Keys...)
	if u.Key != nil {
		keys = append(keys, *u.Key) // osbuild appends "key" after "keys"
	}
	if len(keys) > 0 {
		return addKeys(root, pw, keys)
	}
	return nil
}

func useraddArgs(tree string, u namedUser) []string {
	args := []string{"--root", tree}
	if u.UID != nil {
		// -o as osbuild: a UID may be shared on purpose.
		args = append(args, "--uid", strconv.FormatInt(*u.UID, 10), "-o")
	}
	if u.GID != nil {
		args = append(args, "--gid", strconv.FormatInt(*u.GID, 10))
	}
	if len(u.Groups) > 0 {
		args = append(args, "--groups", strings.Join(u.Groups, ","))
	}
	if u.Description != nil {
		args = append(args, "--comment", *u.Description)
	}
	switch {
	case u.Home == nil:
		args = append(args, "--create-home")
	case *u.Home == "":
		args = append(args, "--no-create-home")
	default:
		args = append(args, "--home-dir", *u.Home, "--create-home")
	}
	if u.Shell != nil && *u.Shell != "" {
		args = append(args, "--shell", *u.Shell)
	}
	if u.Password != nil {
		args = append(args, "--password", *u.Password)
	}
	if u.ExpireDate != nil {
		args = append(args, "--expiredate", strconv.FormatInt(*u.ExpireDate, 10))
	}
	return append(args, u.name)
}

// usermodArgs are usermod's arguments, or nil when there is nothing to
// change.
func usermodArgs(tree string, u namedUser) []string {
	var args []string
	if u.GID != nil {
		args = append(args, "--gid", strconv.FormatInt(*u.GID, 10))
	}
	if len(u.Groups) > 0 {
		args = append(args, "--groups", strings.Join(u.Groups, ","))
	}
	if u.Description != nil {
		args = append(args, "--comment", *u.Description)
	}
	if u.Home != nil && *u.Home != "" {
		args = append(args, "--home", *u.Home)
	}
	if u.Shell != nil && *u.Shell != "" {
		args = append(args, "--shell", *u.Shell)
	}
	if u.Password != nil {
		args = append(args, "--password", *u.Password)
	}
	if u.ExpireDate != nil {
		args = append(args, "--expiredate", strconv.FormatInt(*u.ExpireDate, 10))
	}
	if args == nil {
		return nil
	}
	return append(append([]string{"--root", tree}, args...), u.name)
}

// toolDirs are searched after PATH: a stage's PATH may lack the sbin
// directories useradd and usermod live in.
var toolDirs = []string{"/usr/sbin", "/usr/bin", "/sbin", "/bin"}

// runTool runs a build-root tool; its output goes to the stage's log, and
// into the error when it fails.
func runTool(ctx context.Context, name string, args ...string) error {
	bin, err := exec.LookPath(name)
	if err != nil {
		for _, d := range toolDirs {
			if fi, serr := os.Stat(path.Join(d, name)); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				bin, err = path.Join(d, name), nil
				break
			}
		}
	}
	if err != nil {
		return fmt.Errorf("%s is not in the build root (package passwd): %w", name, err)
	}
	cmd := exec.CommandContext(ctx, bin, args...)
	out, err := cmd.CombinedOutput()
	os.Stdout.Write(out)
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// passwdEntry is what the stage needs of a line of /etc/passwd.
type passwdEntry struct {
	name, uid, gid, home string
}

// lookup finds name in the tree's /etc/passwd; nil if it is not there.
func lookup(root *os.Root, name string) (*passwdEntry, error) {
	b, err := root.ReadFile("etc/passwd")
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read /etc/passwd: %w", err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Split(line, ":")
		if len(f) == 7 && f[0] == name {
			return &passwdEntry{name: f[0], uid: f[2], gid: f[3], home: f[5]}, nil
		}
	}
	return nil, nil
}

func (pw *passwdEntry) ids() (int, int, error) {
	uid, err := strconv.Atoi(pw.uid)
	if err != nil {
		return 0, 0, fmt.Errorf("/etc/passwd: bad UID %q for %s", pw.uid, pw.name)
	}
	gid, err := strconv.Atoi(pw.gid)
	if err != nil {
		return 0, 0, fmt.Errorf("/etc/passwd: bad GID %q for %s", pw.gid, pw.name)
	}
	return uid, gid, nil
}

// treePath is an absolute path of the tree as a name for root.
func treePath(p string) string {
	p = strings.TrimLeft(path.Clean("/"+p), "/")
	if p == "" {
		return "."
	}
	return p
}

// ensureHome makes the user's home directory if it is missing, as
// osbuild's stage does with mkhomedir_helper: mode 0777 less the tree's
// login.defs UMASK (or its HOME_MODE), filled from /etc/skel, owned by the
// user.
func ensureHome(root *os.Root, pw *passwdEntry) error {
	// Debian's system users have /nonexistent, which must stay so.
	if pw.home == "" || pw.home == "/nonexistent" {
		return nil
	}
	home := treePath(pw.home)
	if _, err := root.Lstat(home); err == nil || !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	uid, gid, err := pw.ids()
	if err != nil {
		return err
	}
	if err := root.MkdirAll(path.Dir(home), 0o755); err != nil {
		return fmt.Errorf("create home %s: %w", pw.home, err)
	}
	mode := homeMode(root)
	if err := root.Mkdir(home, mode); err != nil {
		return fmt.Errorf("create home %s: %w", pw.home, err)
	}
	if err := root.Chmod(home, mode); err != nil {
		return fmt.Errorf("create home %s: %w", pw.home, err)
	}
	if err := root.Lchown(home, uid, gid); err != nil {
		return fmt.Errorf("create home %s: %w", pw.home, err)
	}
	if err := copySkel(root, "etc/skel", home, uid, gid); err != nil {
		return fmt.Errorf("create home %s from /etc/skel: %w", pw.home, err)
	}
	return nil
}

// homeMode is the mode useradd and mkhomedir_helper give a home: the
// tree's login.defs HOME_MODE, or 0777 less its UMASK (022 if unset).
func homeMode(root *os.Root) os.FileMode {
	defs, _ := root.ReadFile("etc/login.defs")
	umask, homeMode := int64(0o22), int64(-1)
	for _, line := range strings.Split(string(defs), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 {
			continue
		}
		if v, err := strconv.ParseInt(f[1], 8, 32); err == nil && v >= 0 && v <= 0o777 {
			switch f[0] {
			case "UMASK":
				umask = v
			case "HOME_MODE":
				homeMode = v
			}
		}
	}
	if homeMode >= 0 {
		return os.FileMode(homeMode)
	}
	return os.FileMode(0o777 &^ umask)
}

// copySkel copies the directory src of the tree (files, directories and
// symlinks, with their modes) into dst, owned by uid:gid.
func copySkel(root *os.Root, src, dst string, uid, gid int) error {
	ents, err := fs.ReadDir(root.FS(), src)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	for _, e := range ents {
		s, d := path.Join(src, e.Name()), path.Join(dst, e.Name())
		fi, err := root.Lstat(s)
		if err != nil {
			return err
		}
		switch {
		case fi.IsDir():
			if err := root.Mkdir(d, fi.Mode().Perm()); err != nil {
				return err
			}
			if err := root.Chmod(d, fi.Mode().Perm()); err != nil {
				return err
			}
			if err := copySkel(root, s, d, uid, gid); err != nil {
				return err
			}
		case fi.Mode()&fs.ModeSymlink != 0:
			target, err := root.Readlink(s)
			if err != nil {
				return err
			}
			if err := root.Symlink(target, d); err != nil {
				return err
			}
		case fi.Mode().IsRegular():
			data, err := root.ReadFile(s)
			if err != nil {
				return err
			}
			f, err := root.OpenFile(d, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
			if err != nil {
				return err
			}
			_, err = f.Write(data)
			if err == nil {
				err = f.Chmod(fi.Mode().Perm())
			}
			if cerr := f.Close(); err == nil {
				err = cerr
			}
			if err != nil {
				return err
			}
		default:
			continue // no devices or pipes in a home
		}
		if err := root.Lchown(d, uid, gid); err != nil {
			return err
		}
	}
	return nil
}

// addKeys appends keys to the user's ~/.ssh/authorized_keys, making
// ~/.ssh (0700) if needed; the file ends up 0600, both owned by the user,
// as sshd's StrictModes wants.
func addKeys(root *os.Root, pw *passwdEntry, keys []string) error {
	uid, gid, err := pw.ids()
	if err != nil {
		return err
	}
	home := treePath(pw.home)
	if fi, err := root.Stat(home); err != nil || !fi.IsDir() {
		return fmt.Errorf("install SSH keys: home directory %s is not a directory in the tree (give \"home\", not \"\")", pw.home)
	}
	sshDir := path.Join(home, ".ssh")
	if _, err := root.Lstat(sshDir); errors.Is(err, fs.ErrNotExist) {
		if err := root.Mkdir(sshDir, 0o700); err != nil {
			return fmt.Errorf("create %s/.ssh: %w", pw.home, err)
		}
		if err := root.Chmod(sshDir, 0o700); err != nil {
			return fmt.Errorf("create %s/.ssh: %w", pw.home, err)
		}
		if err := root.Lchown(sshDir, uid, gid); err != nil {
			return fmt.Errorf("create %s/.ssh: %w", pw.home, err)
		}
	}
	name := path.Join(sshDir, "authorized_keys")
	old, err := root.ReadFile(name)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s/.ssh/authorized_keys: %w", pw.home, err)
	}
	if len(old) > 0 && old[len(old)-1] != '\n' {
		old = append(old, '\n')
	}
	data := append(old, strings.Join(keys, "\n")+"\n"...)
	return stage.WriteFileOwned(root, name, data, 0o600, uid, gid)
}
