package stage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"sort"
	"strconv"
)

// ArgumentsPath is where a format-2 stage finds its arguments, as
// osbuild's osbuild.api.arguments reads them.
const ArgumentsPath = "/run/osbuild/api/arguments"

// ArgumentsEnv, when set in a stage's environment, names the arguments
// file in place of ArgumentsPath: for running a format-2 stage outside a
// buildroot (tests). The builder does not set it.
const ArgumentsEnv = "FORGE_STAGE_ARGUMENTS"

// MetadataPath is where a format-2 stage may write its metadata, a JSON
// object osbuild keeps with the stage's result.
const MetadataPath = "/run/osbuild/meta"

// maxArgsFile bounds the format-2 arguments file: larger than maxArgs,
// because inputs list their files (a package set's checksums and their
// metadata) beside the options.
const maxArgsFile = 64 << 20

// Paths are the buildroot's directories for devices, inputs and mounts;
// osbuild gives "/dev", "/run/osbuild/inputs" and "/run/osbuild/mounts".
// A device's, input's or mount's own path is already joined to its
// directory (osbuild's Stage.prepare_arguments).
type Paths struct {
	Devices string `json:"devices"`
	Inputs  string `json:"inputs"`
	Mounts  string `json:"mounts"`
}

// Device is one of a stage's devices, opened by the builder, e.g. a loop
// device: {"path": "/dev/loop3", "node": {"major": 7, "minor": 3}}.
type Device struct {
	// Path is the device node in the buildroot.
	Path string `json:"path"`
	// Node is the device's numbers, when the device gives them.
	Node *DeviceNode `json:"node,omitempty"`
}

// DeviceNode is a device's major and minor numbers.
type DeviceNode struct {
	Major uint32 `json:"major"`
	Minor uint32 `json:"minor"`
}

// Input is one of a stage's inputs, mapped by the builder into a
// directory: a pipeline's tree (org.osbuild.tree), or files from sources
// or pipelines (org.osbuild.files).
type Input struct {
	// Path is the input's directory in the buildroot.
	Path string `json:"path"`
	// Data is what the input type says about its content.
	Data InputData `json:"data"`
}

// InputData is an input's data. Input types other than org.osbuild.files
// put other keys here; they are not decoded.
type InputData struct {
	// Files are org.osbuild.files's files, keyed by their name in the
	// input's directory (a source's checksum, "sha256:…", or a path of a
	// pipeline's tree), each with its metadata object, undecoded.
	Files map[string]json.RawMessage `json:"files,omitempty"`
}

// Mount is one of a stage's mounts, mounted by the builder below
// Paths.Mounts at its target.
type Mount struct {
	// Path is where the filesystem is mounted in the buildroot; empty
	// for a mount type that mounts nothing there.
	Path string `json:"path"`
}

// Meta is osbuild's "meta" argument: about the stage itself.
type Meta struct {
	// ID is the stage's ID, the hex SHA-256 osbuild computes.
	ID string `json:"id"`
	// SourceEpoch is the pipeline's source-epoch, when it has one
	// (SOURCE_DATE_EPOCH is then in the environment too).
	SourceEpoch *int64 `json:"source-epoch,omitempty"`
}

// ArgumentsFile is the format-2 arguments file for this process:
// ArgumentsEnv's value if set, else ArgumentsPath.
func ArgumentsFile() string {
	if p := os.Getenv(ArgumentsEnv); p != "" {
		return p
	}
	return ArgumentsPath
}

// LoadArgs reads a stage's arguments: from the format-2 arguments file
// argsPath when it exists (the stage's stdin is then /dev/null, as in
// osbuild), else in format 1 from stdin.
func LoadArgs(argsPath string, stdin io.Reader, kind Kind) (Args, error) {
	f, err := os.Open(argsPath)
	if errors.Is(err, fs.ErrNotExist) {
		return ReadArgs(stdin, kind)
	}
	if err != nil {
		return Args{}, fmt.Errorf("arguments: %w", err)
	}
	defer f.Close()
	return ReadArgsFile(f, argsPath, kind)
}

// ReadArgsFile reads and checks format-2 arguments, the JSON object of
// the arguments file (name is for errors):
//
//	{"tree": "/run/osbuild/tree",
//	 "paths": {"devices": "/dev", "inputs": "/run/osbuild/inputs", "mounts": "/run/osbuild/mounts"},
//	 "devices": {NAME: {"path": "/dev/loop3", ...}},
//	 "inputs": {NAME: {"path": "/run/osbuild/inputs/NAME", "data": {...}}},
//	 "mounts": {NAME: {"path": "/run/osbuild/mounts/TARGET"}},
//	 "options": {...},
//	 "meta": {"id": STAGE_ID, "source-epoch": N}}
//
// tree and meta.id are required; every path given must be absolute. An
// assembler also needs output_dir, which osbuild's format 2 never gives
// (it has no assemblers).
func ReadArgsFile(r io.Reader, name string, kind Kind) (Args, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxArgsFile+1))
	if err != nil {
		return Args{}, fmt.Errorf("read arguments from %s: %w", name, err)
	}
	if len(b) > maxArgsFile {
		return Args{}, fmt.Errorf("arguments in %s are larger than %d bytes", name, maxArgsFile)
	}
	var a Args
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&a); err != nil {
		return Args{}, fmt.Errorf("arguments in %s: %w", name, err)
	}
	if dec.More() {
		return Args{}, fmt.Errorf("arguments in %s: trailing data after the object", name)
	}
	if err := a.check2(kind); err != nil {
		return Args{}, fmt.Errorf("arguments in %s: %w", name, err)
	}
	if len(a.Options) == 0 || string(a.Options) == "null" {
		a.Options = json.RawMessage("{}")
	}
	a.Format = 2
	return a, nil
}

func (a *Args) check2(kind Kind) error {
	if !path.IsAbs(a.Tree) {
		return fmt.Errorf("\"tree\" must be an absolute path, got %q", a.Tree)
	}
	if kind == KindAssembler && !path.IsAbs(a.OutputDir) {
		return fmt.Errorf("an assembler needs \"output_dir\", an absolute path, got %q", a.OutputDir)
	}
	if a.Meta.ID == "" {
		return errors.New("\"meta\" has no \"id\"")
	}
	for key, p := range map[string]string{"devices": a.Paths.Devices, "inputs": a.Paths.Inputs, "mounts": a.Paths.Mounts} {
		if p != "" && !path.IsAbs(p) {
			return fmt.Errorf("\"paths\": %q must be an absolute path, got %q", key, p)
		}
	}
	check := func(group, name, p string, required bool) error {
		switch {
		case name == "":
			return fmt.Errorf("%q: an empty name", group)
		case p == "" && !required:
			return nil
		case !path.IsAbs(p):
			return fmt.Errorf("%q: %q: \"path\" must be an absolute path, got %q", group, name, p)
		}
		return nil
	}
	for _, n := range sortedKeys(a.Devices) {
		if err := check("devices", n, a.Devices[n].Path, true); err != nil {
			return err
		}
	}
	for _, n := range sortedKeys(a.Inputs) {
		if err := check("inputs", n, a.Inputs[n].Path, true); err != nil {
			return err
		}
	}
	for _, n := range sortedKeys(a.Mounts) {
		if err := check("mounts", n, a.Mounts[n].Path, false); err != nil {
			return err
		}
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Device returns the path of the stage's device called name (osbuild's
// mkfs and sfdisk stages take theirs as "device").
func (a Args) Device(name string) (string, error) {
	d, ok := a.Devices[name]
	if !ok {
		if a.Format != 2 {
			return "", fmt.Errorf("the stage needs a device %q: devices exist in manifest format 2 only", name)
		}
		return "", fmt.Errorf("the stage needs a device %q (\"devices\": {%q: ...} in the manifest)", name, name)
	}
	return d.Path, nil
}

// SourceEpoch is the time, in seconds since 1970, a stage should give
// what it makes for reproducible output: the pipeline's source-epoch
// (format 2), else SOURCE_DATE_EPOCH from the environment; ok is false
// when neither is set (a SOURCE_DATE_EPOCH that is not a non-negative
// integer counts as unset, as reproducible-builds.org asks).
func (a Args) SourceEpoch() (epoch int64, ok bool) {
	if a.Meta.SourceEpoch != nil {
		return *a.Meta.SourceEpoch, true
	}
	v, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64)
	if err != nil || v < 0 {
		return 0, false
	}
	return v, true
}
