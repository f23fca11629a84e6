package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"regexp"
	"testing"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
)

// cliStep is one call of an admin CLI command in a table test.
type cliStep struct {
	name   string
	args   []string
	out    string // regexp of stdout
	errRe  string // regexp of the error, "" for success
	usage  bool   // the error is a usage error (exit 2)
	object bool   // stdout is one JSON object (else an array, or nothing)
}

// runCLISteps runs the steps in order, each as a subtest.
func runCLISteps(ctx context.Context, t *testing.T, steps []cliStep) {
	t.Helper()
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := run(ctx, st.args, &stdout, &stderr)
			if st.errRe == "" && err != nil {
				t.Fatalf("err = %v", err)
			}
			if st.errRe != "" {
				if err == nil || !regexp.MustCompile(st.errRe).MatchString(err.Error()) {
					t.Fatalf("err = %v, want %s", err, st.errRe)
				}
				var ue *config.UsageError
				if errors.As(err, &ue) != st.usage {
					t.Fatalf("usage error: %v, want %v", errors.As(err, &ue), st.usage)
				}
				if code := report(err, st.args, &stderr); code == 0 {
					t.Fatal("exit code 0 for an error")
				}
			}
			if !regexp.MustCompile(st.out).Match(stdout.Bytes()) {
				t.Fatalf("stdout does not match %s:\n%s", st.out, stdout.String())
			}
			if st.object {
				var m map[string]any
				if err := json.Unmarshal(stdout.Bytes(), &m); err != nil {
					t.Fatalf("stdout is not one JSON object: %v\n%s", err, stdout.String())
				}
			}
		})
	}
}
