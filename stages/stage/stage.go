package stage

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
)

// Kind says where an executable lives in the libdir.
type Kind string

const (
	KindStage     Kind = "stages"
	KindAssembler Kind = "assemblers"
)

// Args is what a stage is given: in format 1 a JSON object on stdin
// (tree, options and, for an assembler, output_dir); in format 2 the file
// /run/osbuild/api/arguments, which adds paths, devices, inputs, mounts
// and meta (see ReadArgsFile). Paths in it are paths in the buildroot.
type Args struct {
	// Tree is the tree the stage changes (an assembler reads it; it is
	// read-only then).
	Tree string `json:"tree"`
	// Options are the stage's options from the manifest, undecoded.
	Options json.RawMessage `json:"options"`
	// OutputDir is where an assembler writes its output (format 1 only).
	OutputDir string `json:"output_dir,omitempty"`

	// Format is 1 or 2: how the arguments came (not part of the JSON).
	Format int `json:"-"`
	// Paths are where the buildroot keeps devices, inputs and mounts
	// (format 2).
	Paths Paths `json:"paths"`
	// Devices are the stage's devices by their name in the manifest
	// (format 2).
	Devices map[string]Device `json:"devices"`
	// Inputs are the stage's inputs by their name in the manifest
	// (format 2).
	Inputs map[string]Input `json:"inputs"`
	// Mounts are the stage's mounts by their name in the manifest
	// (format 2).
	Mounts map[string]Mount `json:"mounts"`
	// Meta is about the stage itself (format 2).
	Meta Meta `json:"meta"`
}

// Func runs one stage. Errors it returns are printed, prefixed by the
// stage's name, and make it exit 1.
type Func func(ctx context.Context, a Args) error

// Stage is one executable of the libdir.
type Stage struct {
	Name string // e.g. org.osbuild.hostname
	Kind Kind
	Run  Func
	// MetaJSON is the stage's NAME.meta.json, osbuild's description of
	// a module: {"summary", "description": [lines], "schema" (format 1's
	// options), "schema_2" (format 2's options, inputs, devices,
	// mounts)}. Link writes it beside the stage; osbuild validates
	// manifests with it.
	MetaJSON []byte
}

// maxArgs bounds what a stage reads on stdin: options are small.
const maxArgs = 16 << 20

// ReadArgs reads and checks the arguments a stage gets on stdin.
func ReadArgs(r io.Reader, kind Kind) (Args, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxArgs+1))
	if err != nil {
		return Args{}, fmt.Errorf("read arguments from stdin: %w", err)
	}
	if len(b) > maxArgs {
		return Args{}, fmt.Errorf("arguments on stdin are larger than %d bytes", maxArgs)
	}
	var a Args
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&a); err != nil {
		return Args{}, fmt.Errorf("arguments on stdin: %w", err)
	}
	if a.Tree == "" || !filepath.IsAbs(a.Tree) {
		return Args{}, fmt.Errorf("arguments on stdin: \"tree\" must be an absolute path, got %q", a.Tree)
	}
	if kind == KindAssembler && (a.OutputDir == "" || !filepath.IsAbs(a.OutputDir)) {
		return Args{}, fmt.Errorf("arguments on stdin: an assembler needs \"output_dir\", an absolute path, got %q", a.OutputDir)
	}
	if len(a.Options) == 0 || string(a.Options) == "null" {
		a.Options = json.RawMessage("{}")
	}
	a.Format = 1
	return a, nil
}

// DecodeOptions decodes a stage's options into v, a pointer to a struct
// whose fields carry json tags. Unknown options and wrong types are
// errors that name the option, e.g. `option "hostname": want string, got
// number`.
func DecodeOptions(raw json.RawMessage, v any) error {
	if len(raw) == 0 {
		raw = json.RawMessage("{}")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &te) && te.Field != "":
			return fmt.Errorf("option %q: want %s, got %s", te.Field, typeName(te.Type.Kind().String()), te.Value)
		case errors.As(err, &te):
			return fmt.Errorf("options: want an object, got %s", te.Value)
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			return fmt.Errorf("unknown option %s", strings.TrimPrefix(err.Error(), "json: unknown field "))
		}
		return fmt.Errorf("options: %w", err)
	}
	if dec.More() {
		return errors.New("options: trailing data after the object")
	}
	return nil
}

func typeName(kind string) string {
	switch kind {
	case "slice", "array":
		return "array"
	case "map", "struct":
		return "object"
	case "int", "int8", "int16", "int32", "int64", "uint", "uint8", "uint16", "uint32", "uint64":
		return "integer"
	case "float32", "float64":
		return "number"
	}
	return kind
}

// OptionError is an error about one option's value.
func OptionError(option string, format string, a ...any) error {
	return fmt.Errorf("option %q: %s", option, fmt.Sprintf(format, a...))
}

// Main runs the stage named by the executable's base name (argv[0]) and
// exits. The same binary is also the runners (RunnerName, Runners) and,
// run as anything else, offers `link DIR` to make the libdir.
func Main(stages []Stage) {
	os.Exit(main1(context.Background(), stages, os.Args, os.Stdin, os.Stdout, os.Stderr))
}
