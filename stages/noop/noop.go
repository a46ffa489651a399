// Package noop is org.osbuild.noop: it changes nothing. Any options are
// accepted, as osbuild's does, which makes it a cheap way to give a
// pipeline an extra cache point or a different ID.
package noop

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/forge-build/forge/stages/stage"
)

// Run checks that the options are a JSON object and does nothing else.
func Run(ctx context.Context, a stage.Args) error {
	var opts map[string]json.RawMessage
	if err := json.Unmarshal(a.Options, &opts); err != nil {
		return fmt.Errorf("options: want an object: %w", err)
	}
	return nil
}
