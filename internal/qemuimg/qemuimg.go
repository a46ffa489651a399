// Package qemuimg is what forge knows about `qemu-img convert`'s output
// formats: osbuild's list of them, the options osbuild gives each, which
// of those qemu-img (7.2, Debian 12's) accepts, and the command line that
// converts a disk image to one. The assembler org.osbuild.qemu and the
// stage org.osbuild.qemu share it; running the command is theirs.
//
// Of the formats, only qcow2 comes out the same for the same input bytes:
// qemu-img writes a random image UUID into vdi and vhdx files (and random
// GUIDs into vhdx's headers), a random content ID into a vmdk's
// descriptor, and a UUID and the time into a vpc footer.
package qemuimg

import (
	"fmt"
	"slices"
	"strings"
)

// Formats are the output formats: the "type"s of osbuild's
// org.osbuild.qemu stage.
var Formats = []string{"qcow2", "vdi", "vmdk", "vpc", "vhdx"}

// QCOW2Compats are the qcow2 compat levels qemu-img takes (osbuild's
// schema takes any string): "0.10" (qcow2 version 2, read by any qemu)
// and "1.1" (version 3), and their aliases.
var QCOW2Compats = []string{"0.10", "1.1", "v2", "v3"}

// VMDKAdapterTypes are the virtual disk controllers a VMDK may name.
var VMDKAdapterTypes = []string{"ide", "lsilogic", "buslogic", "legacyESX"}

// VMDKSubformats are the VMDK layouts; the Flat ones write the data as
// a raw file beside the descriptor, the twoGbMaxExtent ones in 2 GiB
// pieces: several files, named after the output.
var VMDKSubformats = []string{"monolithicSparse", "monolithicFlat", "twoGbMaxExtentSparse", "twoGbMaxExtentFlat", "streamOptimized"}

// VPCSubformats are the VHD (vpc) layouts.
var VPCSubformats = []string{"fixed", "dynamic"}

// Format is an output format and its options: the "format" object of
// osbuild's org.osbuild.qemu stage. A nil field is one not given, which
// gets osbuild's default.
type Format struct {
	Type string `json:"type"`
	// Compression (qcow2, vmdk; default true) compresses each cluster
	// (qemu-img -c) with zlib, on one core: qemu-img writes clusters in
	// order, which keeps the output reproducible but the compression
	// serial (about 40 MB/s of data here, where an uncompressed qcow2 is
	// written at disk speed).
	Compression *bool `json:"compression"`
	// Compat is qcow2's compat level (QCOW2Compats).
	Compat *string `json:"compat"`
	// AdapterType is VMDK's adapter type (VMDKAdapterTypes).
	AdapterType *string `json:"adapter_type"`
	// Compat6 makes a VMDK version 6 image.
	Compat6 *bool `json:"compat6"`
	// Subformat is VMDK's (VMDKSubformats) or VHD's (VPCSubformats,
	// default "fixed").
	Subformat *string `json:"subformat"`
	// ForceSize (vpc; default true) keeps the size given rather than
	// rounding it to a CHS geometry.
	ForceSize *bool `json:"force_size"`
}

// FieldError is an error about one field of a Format ("compat",
// "subformat").
type FieldError struct {
	Field string
	Msg   string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Msg }

func fieldError(field, format string, a ...any) error {
	return &FieldError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// fields are the options each type takes, as osbuild's schema has them.
var fields = map[string][]string{
	"qcow2": {"compression", "compat"},
	"vdi":   nil,
	"vmdk":  {"adapter_type", "compat6", "compression", "subformat"},
	"vpc":   {"force_size", "subformat"},
	"vhdx":  nil,
}

// Check checks f against osbuild's schema and against what qemu-img
// takes: a known type, only that type's options, known values.
func (f Format) Check() error {
	allowed, ok := fields[f.Type]
	if !ok {
		return fieldError("type", "%q is not one of %s", f.Type, strings.Join(Formats, ", "))
	}
	given := map[string]bool{
		"compression":  f.Compression != nil,
		"compat":       f.Compat != nil,
		"adapter_type": f.AdapterType != nil,
		"compat6":      f.Compat6 != nil,
		"subformat":    f.Subformat != nil,
		"force_size":   f.ForceSize != nil,
	}
	for _, name := range []string{"compression", "compat", "adapter_type", "compat6", "subformat", "force_size"} {
		if given[name] && !slices.Contains(allowed, name) {
			return fieldError(name, "not an option of type %q (it takes %s)", f.Type, list(allowed))
		}
	}
	oneOf := func(field string, v *string, values []string) error {
		if v != nil && !slices.Contains(values, *v) {
			return fieldError(field, "%q is not one of %s", *v, strings.Join(values, ", "))
		}
		return nil
	}
	switch f.Type {
	case "qcow2":
		return oneOf("compat", f.Compat, QCOW2Compats)
	case "vmdk":
		if err := oneOf("adapter_type", f.AdapterType, VMDKAdapterTypes); err != nil {
			return err
		}
		if err := oneOf("subformat", f.Subformat, VMDKSubformats); err != nil {
			return err
		}
		if f.Compression != nil && *f.Compression && f.flatVMDK() {
			return fieldError("compression", "a %s VMDK holds raw data, which qemu-img cannot compress: leave compression out or false", *f.Subformat)
		}
	case "vpc":
		return oneOf("subformat", f.Subformat, VPCSubformats)
	}
	return nil
}

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

func (f Format) flatVMDK() bool {
	return f.Subformat != nil && strings.HasSuffix(*f.Subformat, "Flat")
}

func isTrue(b *bool, def bool) bool {
	if b == nil {
		return def
	}
	return *b
}

// ConvertArgs are qemu-img's arguments before the source and the target
// for a checked Format: osbuild's for each type. srcFormat, when not
// empty, is the source's format, so that qemu-img does not probe it.
func (f Format) ConvertArgs(srcFormat string) []string {
	args := []string{"convert"}
	if srcFormat != "" {
		args = append(args, "-f", srcFormat)
	}
	args = append(args, "-O", f.Type)
	var opts []string
	switch f.Type {
	case "qcow2":
		if isTrue(f.Compression, true) {
			args = append(args, "-c")
		}
		if f.Compat != nil {
			opts = append(opts, "compat="+*f.Compat)
		}
	case "vmdk":
		// osbuild compresses every VMDK by default, but qemu-img refuses
		// to for the flat subformats, which have nothing to compress.
		if isTrue(f.Compression, true) && !f.flatVMDK() {
			args = append(args, "-c")
		}
		if f.AdapterType != nil {
			opts = append(opts, "adapter_type="+*f.AdapterType)
		}
		if isTrue(f.Compat6, false) {
			opts = append(opts, "compat6")
		}
		if f.Subformat != nil {
			opts = append(opts, "subformat="+*f.Subformat)
		}
	case "vpc":
		sub := "fixed"
		if f.Subformat != nil {
			sub = *f.Subformat
		}
		opts = append(opts, "subformat="+sub)
		if isTrue(f.ForceSize, true) {
			opts = append(opts, "force_size")
		}
	}
	if len(opts) > 0 {
		args = append(args, "-o", strings.Join(opts, ","))
	}
	return args
}
