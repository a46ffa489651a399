// Package locale is org.osbuild.locale: it sets the system language,
// LANG, in /etc/locale.conf (systemd's file, which osbuild writes) and in
// /etc/default/locale (Debian's, which update-locale and pam_env read).
// The locale itself must still be generated in the tree (locales,
// /etc/locale.gen) for programs to use it; this stage does not.
package locale

import (
	"context"
	"fmt"
	"os"

	"github.com/forge-build/forge/stages/stage"
)

// options are osbuild's, unchanged.
type options struct {
	Language *string `json:"language"`
}

// files are where the language goes, relative to the tree.
var files = []string{"etc/locale.conf", "etc/default/locale"}

// Run writes LANG=LANGUAGE to /etc/locale.conf and /etc/default/locale,
// root:root 0644, replacing what they held.
func Run(ctx context.Context, a stage.Args) error {
	var o options
	if err := stage.DecodeOptions(a.Options, &o); err != nil {
		return err
	}
	if o.Language == nil {
		return stage.OptionError("language", "is required")
	}
	if err := validate(*o.Language); err != nil {
		return stage.OptionError("language", "%v", err)
	}
	root, err := os.OpenRoot(a.Tree)
	if err != nil {
		return fmt.Errorf("open tree: %w", err)
	}
	defer root.Close()
	for _, f := range files {
		if err := stage.WriteFile(root, f, []byte("LANG="+*o.Language+"\n"), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// maxLen bounds a locale name; glibc's longest are about 40 characters.
const maxLen = 128

// validate checks that lang is a locale name such as en_US.UTF-8,
// de_DE@euro or C.UTF-8: it starts with a letter and holds only letters,
// digits and "_.@+-", so it is safe in both files unquoted (systemd's
// locale_is_valid is no stricter about characters).
func validate(lang string) error {
	if lang == "" {
		return fmt.Errorf("empty locale name")
	}
	if len(lang) > maxLen {
		return fmt.Errorf("%q is longer than %d characters", lang, maxLen)
	}
	if c := lang[0]; !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z') {
		return fmt.Errorf("%q does not start with a letter (like en_US.UTF-8)", lang)
	}
	for _, c := range lang {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '.' || c == '@' || c == '+' || c == '-') {
			return fmt.Errorf("%q contains %q: a locale name holds only letters, digits and \"_.@+-\"", lang, c)
		}
	}
	return nil
}
