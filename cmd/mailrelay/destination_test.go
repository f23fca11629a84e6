package main

import (
	"bytes"
	"context"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"testing"

	"github.com/mailrelay/mailrelay/inbound/admin"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/feedback/sqlitestore"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

type emptyQueue struct{}

func (emptyQueue) DeadLetters(int) ([]spool.DeadLetter, error)    { return nil, nil }
func (emptyQueue) Redrive(...string) (int, error)                 { return 0, nil }
func (emptyQueue) Put(context.Context, spool.Entry) (bool, error) { return false, nil }

// destinationAdminServer is the relay's admin API (admin.New, with its
// guard) on 127.0.0.1 over a real SQLite feedback state in which a hard
// bounce paused alice@example.org.
func destinationAdminServer(t *testing.T, token string) *httptest.Server {
	t.Helper()
	ctx := context.Background()
	tab, err := aliases.Parse([]byte("domains: [relay.example.com]\naliases:\n  - address: shop@relay.example.com\n    forward_to: [alice@example.org]\n"))
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h := feedback.NewHandler(feedback.Options{Store: store, Aliases: tab})
	bounce := `{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":"alice@example.org"}],"timestamp":"2026-11-23T12:00:00Z","feedbackId":"fb1"},
"mail":{"messageId":"m1","source":"shop@relay.example.com","destination":["alice@example.org"],"commonHeaders":{"from":["shop@relay.example.com"]}}}`
	if err := h.Record(ctx, []byte(bounce)); err != nil {
		t.Fatal(err)
	}
	api, err := admin.New(admin.Config{Queue: emptyQueue{}, Token: token, Loopback: true, Destinations: h})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	return srv
}

func TestDestinationCLI(t *testing.T) {
	const token = "s3cret-t0ken-0123456789abcdef"
	srv := destinationAdminServer(t, token)
	t.Setenv("RELAY_ADMIN_URL", srv.URL)
	t.Setenv("RELAY_ADMIN_TOKEN", token)
	ctx := context.Background()
	steps := []cliStep{
		{"list", []string{"destination", "list"}, `(?s)^\[\s*\{\s*"address": "alice@example.org",\s*"paused": true,\s*"bounce_type": "Permanent".*"until": "\d{4}-\d\d-\d\dT`, "", false, false},
		{"show paused", []string{"destination", "show", "Alice@example.org"}, `"paused": true`, "", false, true},
		{"show not paused", []string{"destination", "show", "bob@example.org"}, `"paused": false`, "", false, true},
		{"show without address", []string{"destination", "show"}, `^$`, `want exactly one destination address`, true, false},
		{"list with argument", []string{"destination", "list", "x"}, `^$`, `unexpected arguments`, true, false},
		{"unknown subcommand", []string{"destination", "pause", "a@example.org"}, `^$`, `unknown subcommand`, true, false},
		{"unpause, flag after", []string{"destination", "unpause", "alice@example.org", "--admin", srv.URL}, `"unpaused": true`, "", false, true},
		{"unpause again", []string{"destination", "unpause", "alice@example.org"}, `^$`, `404 Not Found: alice@example.org is not paused`, false, false},
		{"list empty", []string{"destination", "list"}, `^\[\]\n$`, "", false, false},
	}
	runCLISteps(ctx, t, steps)
	t.Setenv("RELAY_ADMIN_TOKEN", "wrong-token-0123456789abcdef")
	if err := run(ctx, []string{"destination", "list"}, new(bytes.Buffer), new(bytes.Buffer)); err == nil || !regexp.MustCompile(`refused RELAY_ADMIN_TOKEN`).MatchString(err.Error()) {
		t.Errorf("wrong token: %v", err)
	}
}
