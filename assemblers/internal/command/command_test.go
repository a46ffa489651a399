package command

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestRunFailureCarriesOutput(t *testing.T) {
	var log bytes.Buffer
	err := Cmd{Name: "sh", Args: []string{"-c", "echo to-stdout; echo to-stderr >&2; exit 3"}, Log: &log}.Run(context.Background())
	if err == nil {
		t.Fatal("a failing command succeeded")
	}
	for _, want := range []string{"sh -c", "exit status 3", "to-stdout", "to-stderr"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
	if !strings.Contains(log.String(), "to-stdout") || !strings.Contains(log.String(), "to-stderr") {
		t.Errorf("log %q lacks the output", log.String())
	}
}

func TestOutputStdinEnv(t *testing.T) {
	out, err := Cmd{Name: "sh", Args: []string{"-c", "cat; echo $FORGE_TEST_VAR"}, Stdin: strings.NewReader("in\n"),
		Env: []string{"FORGE_TEST_VAR=set"}, Log: &bytes.Buffer{}}.Output(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if string(out) != "in\nset\n" {
		t.Errorf("output %q", out)
	}
}

func TestNotFound(t *testing.T) {
	err := Cmd{Name: "forge-no-such-tool"}.Run(context.Background())
	if err == nil || !strings.Contains(err.Error(), "forge-no-such-tool: not found in the build root") {
		t.Errorf("%v", err)
	}
}

func TestCancel(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := Cmd{Name: "sleep", Args: []string{"60"}, Log: &bytes.Buffer{}}.Run(ctx)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled run: %v", err)
	}
}

func TestTailBuffer(t *testing.T) {
	tb := &tailBuffer{max: 8}
	tb.Write([]byte("0123456789"))
	tb.Write([]byte("ab"))
	if got := tb.String(); got != "…456789ab" {
		t.Errorf("tail %q", got)
	}
}
