package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"
)

func TestRunUsage(t *testing.T) {
	for _, args := range [][]string{
		{"-faults", "s3:melt@1s+1s"},
		{"-faults", "s3:hang@1s+1s", "-duration", "1s"}, // fault ends after the load
		{"-rate", "x"},
		{"-log-level", "loud"},
	} {
		var out, errs bytes.Buffer
		code, err := run(context.Background(), args, &out, &errs)
		if code == 0 || err == nil {
			t.Errorf("%q: code %d, err %v: want a failure", args, code, err)
		}
		if out.Len() != 0 {
			t.Errorf("%q: printed a report for a bad scenario", args)
		}
	}
}

// TestRunReplay runs a tiny replay with a reset and a 500 from SES and
// checks the printed report says nothing was lost or duplicated.
func TestRunReplay(t *testing.T) {
	if testing.Short() {
		t.Skip("replay takes a few seconds")
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var out, errs bytes.Buffer
	code, err := run(ctx, []string{
		"-rate", "20", "-duration", "2s", "-faults", "ses:reset@200ms+300ms,ses:500@500ms+300ms",
		"-retry-delay", "100ms", "-drain-timeout", "20s", "-breaker-open", "200ms",
		"--", "--retry-min", "50ms", "--retry-max", "200ms", "--workers", "2",
	}, &out, &errs)
	if code != 0 || err != nil {
		t.Fatalf("code %d, err %v; report:\n%s\nstderr:\n%s", code, err, out.String(), errs.String())
	}
	report := out.String()
	for _, want := range []string{
		"| notifications sent / acknowledged | 40 / 40 |",
		"| **lost / duplicated** | **0 / 0** |",
		"workers 2,",
		"No problems",
	} {
		if !strings.Contains(report, want) {
			t.Errorf("report lacks %q:\n%s", want, report)
		}
	}
}
