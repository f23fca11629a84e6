package admin

import (
	"context"
	"fmt"
	"path/filepath"
	"regexp"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliasdb"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/feedback/sqlitestore"
)

// destinationHandler is a feedback handler over a real SQLite state with
// bob@example.org paused by a hard bounce.
func destinationHandler(t *testing.T) *feedback.Handler {
	t.Helper()
	ctx := context.Background()
	tab, err := aliases.Parse([]byte(aliasFile))
	if err != nil {
		t.Fatal(err)
	}
	store, err := sqlitestore.Open(ctx, filepath.Join(t.TempDir(), "state.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	h := feedback.NewHandler(feedback.Options{Store: store, Aliases: tab, Now: func() time.Time { return now }})
	bounce := fmt.Sprintf(`{"notificationType":"Bounce","bounce":{"bounceType":"Permanent","bounceSubType":"General","bouncedRecipients":[{"emailAddress":"Alice@example.org","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"timestamp":"2026-11-23T12:00:00Z","feedbackId":"fb1"},
"mail":{"messageId":"m1","source":%q,"destination":["alice@example.org"],"commonHeaders":{"from":["shop@relay.example.com"]}}}`, "shop@relay.example.com")
	if err := h.Record(ctx, []byte(bounce)); err != nil {
		t.Fatal(err)
	}
	return h
}

// TestDestinationAPI: the destination endpoints, behind the admin guard.
func TestDestinationAPI(t *testing.T) {
	h := newAPI(t, &fakeQueue{}, nil, false, func(c *Config) { c.Destinations = destinationHandler(t) })
	steps := []struct {
		name  string
		r     req
		code  int
		match string
	}{
		{"no token", req{method: "GET", path: "/destinations", header: map[string]string{"Authorization": ""}}, 401, `"error"`},
		{"wrong token", req{method: "POST", path: "/destinations/alice@example.org/unpause", header: map[string]string{"Authorization": "Bearer wrong-token-0123456789"}}, 401, `"error"`},
		{"list", req{method: "GET", path: "/destinations"}, 200, `(?s)^\[\s*\{\s*"address": "alice@example.org",\s*"paused": true,\s*"bounce_type": "Permanent",\s*"reason": "General smtp; 550 5.1.1 user unknown",\s*"since": "2026-11-23T12:00:00Z",\s*"until": "2026-12-23T12:00:00Z"\s*\}\s*\]`},
		{"show paused (any case)", req{method: "GET", path: "/destinations/ALICE@example.org"}, 200, `"paused": true`},
		{"show not paused", req{method: "GET", path: "/destinations/bob@example.org"}, 200, `^\{\s*"address": "bob@example.org",\s*"paused": false\s*\}`},
		{"show not an address", req{method: "GET", path: "/destinations/bob"}, 400, `"error": "want a destination address`},
		{"unknown action", req{method: "POST", path: "/destinations/alice@example.org/pause"}, 404, `unknown action`},
		{"wrong method", req{method: "DELETE", path: "/destinations/alice@example.org"}, 405, `"error"`},
		{"unpause", req{method: "POST", path: "/destinations/alice@example.org/unpause"}, 200, `"unpaused": true`},
		{"unpause again", req{method: "POST", path: "/destinations/alice@example.org/unpause"}, 404, `"error": "alice@example.org is not paused"`},
		{"list empty", req{method: "GET", path: "/destinations"}, 200, `^\[\]\s*$`},
		{"show after unpause", req{method: "GET", path: "/destinations/alice@example.org"}, 200, `"paused": false`},
	}
	for _, st := range steps {
		w := do(h, st.r)
		if w.Code != st.code || !regexp.MustCompile(st.match).MatchString(w.Body.String()) {
			t.Errorf("%s: %s %s = %d %s; want %d matching %s", st.name, st.r.method, st.r.path, w.Code, w.Body, st.code, st.match)
		}
		if ct := w.Header().Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", st.name, ct)
		}
	}
}

// TestDestinationAPIOff: without Destinations the routes do not exist.
func TestDestinationAPIOff(t *testing.T) {
	if w := do(newAPI(t, &fakeQueue{}, nil, false, nil), req{method: "GET", path: "/destinations"}); w.Code != 404 {
		t.Errorf("GET /destinations without a feedback state: %d %s", w.Code, w.Body)
	}
}

// TestAliasAPIBehindGuard: routes with a wildcard ({address}) get it when
// served through New (the guard), not only on a bare mux.
func TestAliasAPIBehindGuard(t *testing.T) {
	tab, err := aliases.Parse([]byte(aliasFile))
	if err != nil {
		t.Fatal(err)
	}
	file := func() *aliases.Table { return tab }
	s, err := aliasdb.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "aliases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	h := newAPI(t, &fakeQueue{}, nil, false, func(c *Config) { c.Aliases = aliases.NewManager(file, s, nil) })
	if w := do(h, req{method: "GET", path: "/aliases/shop@relay.example.com"}); w.Code != 200 || !regexp.MustCompile(`"source": "file"`).MatchString(w.Body.String()) {
		t.Errorf("GET /aliases/shop@relay.example.com = %d %s", w.Code, w.Body)
	}
}
