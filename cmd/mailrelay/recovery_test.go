package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

func TestRecoveryCommandArgs(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"redrive-sns-dlq"}, "--queue-url is required"},
		{[]string{"redrive-sns-dlq", "--queue-url", "http://127.0.0.1:1/q", "extra"}, "no arguments"},
		{[]string{"redrive-sns-dlq", "--bogus"}, "flag provided but not defined"},
	}
	for _, tc := range tests {
		var out, errb bytes.Buffer
		err := run(context.Background(), tc.args, &out, &errb)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%v: err %v, want %q", tc.args, err, tc.want)
		}
	}
}
