package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/inbound/admin"
	"github.com/mailrelay/mailrelay/mailproc/aliasdb"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

// aliasAdminServer is the admin API's alias endpoints over a real SQLite
// store on 127.0.0.1, behind a bearer token check standing in for the
// relay's.
func aliasAdminServer(t *testing.T, token string) *httptest.Server {
	t.Helper()
	tab, err := aliases.Parse([]byte("domains: [relay.example.com, other.example.net]\naliases:\n  - address: shop@relay.example.com\n    forward_to: [alice@example.org]\n"))
	if err != nil {
		t.Fatal(err)
	}
	s, err := aliasdb.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "aliases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	file := func() *aliases.Table { return tab }
	mux := http.NewServeMux()
	admin.RegisterAliases(mux, aliases.NewManager(file, s, nil), nil)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer "+token {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte(`{"error": "missing or wrong bearer token"}`))
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestAliasCLI(t *testing.T) {
	srv := aliasAdminServer(t, "s3cret")
	t.Setenv("RELAY_ADMIN_URL", srv.URL)
	t.Setenv("RELAY_ADMIN_TOKEN", "s3cret")
	ctx := context.Background()
	random := `"address": "[a-z2-7]{16}@relay.example.com"`
	steps := []cliStep{
		{"create random", []string{"alias", "create", "--to", "bob@example.org"}, random + `[\s\S]*"state": "enabled"`, "", false, true},
		{"create named", []string{"alias", "create", "--to", "bob@example.org,carol@example.org", "--address", "news", "--domain", "other.example.net", "--description", "news letters"},
			`"address": "news@other.example.net",\s+"forward_to": \[\s+"bob@example.org",\s+"carol@example.org"\s+\][\s\S]*"description": "news letters"`, "", false, true},
		{"create taken", []string{"alias", "create", "--to", "bob@example.org", "--address", "news@other.example.net"}, `^$`, `409 Conflict: alias exists`, false, false},
		{"create without to", []string{"alias", "create"}, `^$`, `--to is required`, true, false},
		{"create bad destination", []string{"alias", "create", "--to", "not-an-address"}, `^$`, `400 Bad Request: invalid alias: destination`, false, false},
		{"show", []string{"alias", "show", "news@other.example.net"}, `"address": "news@other.example.net"`, "", false, true},
		{"disable", []string{"alias", "disable", "news@other.example.net"}, `"state": "disabled"`, "", false, true},
		{"block promotional", []string{"alias", "block-promotional", "NEWS@other.example.net"}, `"state": "block_promotional"`, "", false, true},
		{"enable, flag after", []string{"alias", "enable", "news@other.example.net", "--admin", srv.URL}, `"state": "enabled"`, "", false, true},
		{"disable file alias", []string{"alias", "disable", "shop@relay.example.com"}, `^$`, `409 Conflict: .*read-only`, false, false},
		{"show unknown", []string{"alias", "show", "nobody@relay.example.com"}, `^$`, `404 Not Found: alias not found`, false, false},
		{"show without alias", []string{"alias", "show"}, `^$`, `want exactly one alias`, true, false},
		{"two aliases", []string{"alias", "delete", "a@relay.example.com", "b@relay.example.com"}, `^$`, `want exactly one alias`, true, false},
		{"unknown subcommand", []string{"alias", "rename"}, `^$`, `unknown subcommand`, true, false},
		{"list", []string{"alias", "list"}, `(?s)^\[\s*\{\s*"address": "shop@relay.example.com".*"source": "file".*news@other.example.net.*\]\n$`, "", false, false},
		{"delete", []string{"alias", "delete", "news@other.example.net"}, `"deleted": true`, "", false, true},
	}
	runCLISteps(ctx, t, steps)
}

func TestAliasCLIToken(t *testing.T) {
	srv := aliasAdminServer(t, "s3cret")
	t.Setenv("RELAY_ADMIN_URL", srv.URL)
	for _, tt := range []struct{ token, want string }{
		{"", "the admin API wants RELAY_ADMIN_TOKEN"},
		{"wrong", "the admin API refused RELAY_ADMIN_TOKEN"},
	} {
		t.Setenv("RELAY_ADMIN_TOKEN", tt.token)
		err := run(context.Background(), []string{"alias", "list"}, new(bytes.Buffer), new(bytes.Buffer))
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("token %q: err = %v, want …%s", tt.token, err, tt.want)
		}
	}
}

func TestAliasCLINoServer(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	t.Setenv("RELAY_ADMIN_URL", url)
	err := run(context.Background(), []string{"alias", "list"}, new(bytes.Buffer), new(bytes.Buffer))
	if err == nil || !strings.Contains(err.Error(), "nothing answers at "+url) {
		t.Fatalf("err = %v", err)
	}
}
