package main

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/recovery"
)

func TestRecoveryCommandArgs(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"redrive-sns-dlq"}, "--queue-url is required"},
		{[]string{"redrive-sns-dlq", "--queue-url", "http://127.0.0.1:1/q", "extra"}, "no arguments"},
		{[]string{"redrive-sns-dlq", "--bogus"}, "unknown flag --bogus"},
		{[]string{"reconcile", "--since", "6h"}, "--bucket and --since are required"},
		{[]string{"reconcile", "--bucket", "b"}, "--bucket and --since are required"},
		{[]string{"reconcile", "--bucket", "b", "--since", "yesterday"}, "want RFC 3339"},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		err := run(context.Background(), tc.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestPrintFound(t *testing.T) {
	mod := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	found := []recovery.Found{
		{Object: recovery.Object{Key: "in/a", LastModified: mod, Size: 10}, Recipients: []string{"a@r.example", "b@r.example"}, Submitted: true},
		{Object: recovery.Object{Key: "in/b", LastModified: mod, Size: 11}, Recipients: []string{"c@r.example"}},
		{Object: recovery.Object{Key: "in/c", LastModified: mod, Size: 12}},
		{Object: recovery.Object{Key: "in/d", LastModified: mod, Size: 13}, Err: errors.New("AccessDenied")},
	}
	var out bytes.Buffer
	if failed := printFound(&out, found, true); failed != 1 {
		t.Errorf("failed %d, want 1", failed)
	}
	for _, want := range []string{
		"in/a  2026-11-23T10:00:00Z  10     a@r.example,b@r.example  submitted",
		"in/b  2026-11-23T10:00:00Z  11     c@r.example              unprocessed",
		"in/c  2026-11-23T10:00:00Z  12     -                        no recipients found",
		"in/d  2026-11-23T10:00:00Z  13     -                        error: AccessDenied",
		"4 unprocessed objects, 1 submitted, 1 errors",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("output lacks %q:\n%s", want, out.String())
		}
	}
}
