package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/inbound/admin"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

func TestDeadletterCLI(t *testing.T) {
	var redriven admin.RedriveRequest
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/deadletters":
			_ = json.NewEncoder(w).Encode([]admin.Item{{ID: "abc", Reason: "ses_rejected: no", Attempts: 1, Bytes: 10}})
		case "/deadletters/redrive":
			_ = json.NewDecoder(r.Body).Decode(&redriven)
			_ = json.NewEncoder(w).Encode(admin.RedriveResponse{Redriven: len(redriven.IDs)})
		}
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	ctx := context.Background()

	var out bytes.Buffer
	if err := run(ctx, []string{"deadletter", "list", "--admin", addr}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "abc") || !strings.Contains(out.String(), "ses_rejected") {
		t.Errorf("list printed %q", out.String())
	}
	out.Reset()
	if err := run(ctx, []string{"deadletter", "redrive", "--admin", addr, "abc", "def"}, &out, io.Discard); err != nil {
		t.Fatal(err)
	}
	if out.String() != "redriven: 2\n" || len(redriven.IDs) != 2 {
		t.Errorf("redrive printed %q, sent %+v", out.String(), redriven)
	}
	if err := run(ctx, []string{"deadletter", "redrive", "--admin", addr}, &out, io.Discard); err == nil {
		t.Error("redrive with neither ids nor --all succeeded")
	}
	for _, args := range [][]string{nil, {"bogus"}, {"deadletter"}, {"deadletter", "bogus"}} {
		if err := run(ctx, args, io.Discard, io.Discard); err == nil {
			t.Errorf("run(%q) succeeded", args)
		}
	}
	out.Reset()
	if err := run(ctx, []string{"config"}, &out, io.Discard); err != nil || !strings.Contains(out.String(), "RELAY_SPOOL_DIR") {
		t.Errorf("config: %v %q", err, out.String())
	}
}

func TestServeRejectsBadConfig(t *testing.T) {
	var stderr bytes.Buffer
	err := run(context.Background(), []string{"serve", "--workers", "0", "--sns-topic-arns", "arn:aws:sns:us-east-1:1:t"}, io.Discard, &stderr)
	if err == nil || !strings.Contains(err.Error(), "workers") {
		t.Fatalf("err = %v", err)
	}
}

// The README's configuration table is generated; keep it in step with the flags.
func TestReadmeConfigTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), config.MarkdownTable()) {
		t.Error("README.md's configuration table is stale: paste the output of `mailrelay config`")
	}
}

// The exit code tells a supervisor what happened: 0 a clean stop, 1 a
// failure, 2 a usage mistake, 75 a storage failure only a restart cures.
func TestReportExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name string
		err  error
		want int
	}{
		{"clean stop", nil, 0},
		{"help", flag.ErrHelp, 0},
		{"failure", errors.New("boom"), 1},
		{"usage", &config.UsageError{Err: errors.New("bad flag")}, 2},
		{"storage", fmt.Errorf("serve: %w", fmt.Errorf("%w: disk on fire", spool.ErrStorage)), exitStorage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if got := report(tc.err, []string{"serve"}, &b); got != tc.want {
				t.Errorf("exit code %d, want %d (stderr %q)", got, tc.want, b.String())
			}
		})
	}
}
