package admin

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/mailrelay/mailrelay/mailproc/aliasdb"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

const aliasFile = `domains: [relay.example.com, other.example.net]
aliases:
  - address: shop@relay.example.com
    forward_to: [alice@example.org]
`

// aliasServer serves the admin API with the alias endpoints over a real
// SQLite store on 127.0.0.1, behind the guard as the relay serves them.
func aliasServer(t *testing.T) *httptest.Server {
	t.Helper()
	tab, err := aliases.Parse([]byte(aliasFile))
	if err != nil {
		t.Fatal(err)
	}
	s, err := aliasdb.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "aliases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	file := func() *aliases.Table { return tab }
	h, err := New(Config{Queue: &fakeQueue{}, Token: testToken, Loopback: true,
		Aliases: aliases.NewManager(file, s, aliases.NewCombined(file, s, aliases.CombinedOptions{}))})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

func TestAliasAPI(t *testing.T) {
	srv := aliasServer(t)
	steps := []struct {
		name, method, path, body string
		code                     int
		match                    string // regexp the answer must match
	}{
		{"list empty store", "GET", "/aliases", "", 200, `"address": "shop@relay.example.com",\s+"forward_to": \[\s+"alice@example.org"\s+\],\s+"state": "enabled",\s+"source": "file"`},
		{"create random", "POST", "/aliases", `{"to": "bob@example.org", "description": "shops"}`, 201, `"address": "[a-z2-7]{16}@relay.example.com"[\s\S]*"state": "enabled"[\s\S]*"description": "shops"[\s\S]*"source": "managed"[\s\S]*"forwarded": 0`},
		{"create on domain", "POST", "/aliases", `{"to": ["bob@example.org", "carol@example.org"], "domain": "other.example.net"}`, 201, `"address": "[a-z2-7]{16}@other.example.net"`},
		{"create named", "POST", "/aliases", `{"to": ["bob@example.org"], "address": "News@relay.example.com"}`, 201, `"address": "news@relay.example.com"`},
		{"create named again", "POST", "/aliases", `{"to": "bob@example.org", "address": "news@relay.example.com"}`, 409, `"error": ".*exists`},
		{"create over the file's", "POST", "/aliases", `{"to": "bob@example.org", "address": "shop@relay.example.com"}`, 409, `alias file`},
		{"no to", "POST", "/aliases", `{"domain": "relay.example.com"}`, 400, `"to\\" is required`},
		{"unknown field", "POST", "/aliases", `{"to": "bob@example.org", "forward": "x"}`, 400, `unknown field`},
		{"not JSON", "POST", "/aliases", `to=bob`, 400, `"error"`},
		{"two objects", "POST", "/aliases", `{"to": "bob@example.org"} {}`, 400, `more after it`},
		{"to a number", "POST", "/aliases", `{"to": 5}`, 400, `want an address or an array`},
		{"loop", "POST", "/aliases", `{"to": "x@relay.example.com"}`, 400, `mail loop`},
		{"foreign domain", "POST", "/aliases", `{"to": "b@example.org", "domain": "example.com"}`, 400, `not a relay domain`},
		{"too large", "POST", "/aliases", `{"to": "b@example.org", "description": "` + strings.Repeat("x", MaxAliasRequestBytes) + `"}`, 413, `larger than`},
		{"show", "GET", "/aliases/NEWS@relay.example.com", "", 200, `"address": "news@relay.example.com"`},
		{"show file alias", "GET", "/aliases/shop@relay.example.com", "", 200, `"source": "file"`},
		{"show unknown", "GET", "/aliases/nobody@relay.example.com", "", 404, `"error": "alias not found`},
		{"disable", "POST", "/aliases/news@relay.example.com/disable", "", 200, `"state": "disabled"`},
		{"block promotional", "POST", "/aliases/news@relay.example.com/block-promotional", "", 200, `"state": "block_promotional"`},
		{"enable", "POST", "/aliases/news@relay.example.com/enable", "", 200, `"state": "enabled"`},
		{"unknown action", "POST", "/aliases/news@relay.example.com/pause", "", 404, `unknown action`},
		{"disable file alias", "POST", "/aliases/shop@relay.example.com/disable", "", 409, `read-only`},
		{"disable unknown", "POST", "/aliases/nobody@relay.example.com/disable", "", 404, `not found`},
		{"delete file alias", "DELETE", "/aliases/shop@relay.example.com", "", 409, `read-only`},
		{"delete", "DELETE", "/aliases/news@relay.example.com", "", 200, `"deleted": true`},
		{"delete again", "DELETE", "/aliases/news@relay.example.com", "", 404, `not found`},
		{"address too long", "GET", "/aliases/" + strings.Repeat("a", 400), "", 400, `1 to 320`},
		{"list", "GET", "/aliases", "", 200, `(?s)^\[\s*\{\s*"address": "shop@relay.example.com".*"[a-z2-7]{16}@other.example.net"`},
	}
	for _, st := range steps {
		req, err := http.NewRequest(st.method, srv.URL+st.path, strings.NewReader(st.body))
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testToken)
		req.Header.Set("Content-Type", "application/json")
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != st.code {
			t.Errorf("%s: %d, want %d: %s", st.name, resp.StatusCode, st.code, body)
			continue
		}
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", st.name, ct)
		}
		if !regexp.MustCompile(st.match).Match(body) {
			t.Errorf("%s: answer does not match %s:\n%s", st.name, st.match, body)
		}
		if !json.Valid(body) {
			t.Errorf("%s: answer is not JSON: %s", st.name, body)
		}
	}
}

func TestDecodeCreateAlias(t *testing.T) {
	tests := []struct {
		body    string
		to      []string
		wantErr bool
	}{
		{`{"to": "a@example.org"}`, []string{"a@example.org"}, false},
		{`{"to": ["a@example.org", "b@example.org"], "domain": "d", "address": "x", "description": "y"}`, []string{"a@example.org", "b@example.org"}, false},
		{`{"to": []}`, nil, true},
		{`{"to": ""}`, []string{""}, false}, // the manager says why "" is no address
		{`{"to": null}`, nil, true},
		{`{"to": [1]}`, nil, true},
		{`{"to": "a@example.org", "x": 1}`, nil, true},
		{`[]`, nil, true},
		{``, nil, true},
		{`{"to": "a@example.org"`, nil, true},
	}
	for _, tt := range tests {
		req, err := DecodeCreateAlias(strings.NewReader(tt.body))
		if (err != nil) != tt.wantErr {
			t.Errorf("%s: err = %v, want error %v", tt.body, err, tt.wantErr)
			continue
		}
		if err == nil && strings.Join(req.To, ",") != strings.Join(tt.to, ",") {
			t.Errorf("%s: to = %q, want %q", tt.body, req.To, tt.to)
		}
	}
}

// FuzzDecodeCreateAlias: any body is decoded or refused with an error,
// never a panic; what is accepted has a destination and re-encodes to a
// body that decodes to the same request.
func FuzzDecodeCreateAlias(f *testing.F) {
	for _, s := range []string{
		`{"to": "a@example.org"}`,
		`{"to": ["a@example.org", "b@example.org"], "domain": "relay.example.com", "address": "x", "description": "y"}`,
		`{"to": "a@example.org", "to": ["b@example.org"]}`,
		`{"to": "\u0000"}`, `{"to": [null]}`, `{} {}`, `"x"`, `{"to": "a"}` + strings.Repeat(" ", 100),
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := DecodeCreateAlias(strings.NewReader(string(body)))
		if err != nil {
			if req.To != nil || req.Address != "" || req.Domain != "" || req.Description != "" {
				t.Fatalf("a refused body left a partial request: %+v", req)
			}
			return
		}
		if len(req.To) == 0 {
			t.Fatalf("accepted without a destination: %q", body)
		}
		enc, err := json.Marshal(req)
		if err != nil {
			t.Fatal(err)
		}
		again, err := DecodeCreateAlias(strings.NewReader(string(enc)))
		if err != nil || strings.Join(again.To, "\x00") != strings.Join(req.To, "\x00") || again.Address != req.Address ||
			again.Domain != req.Domain || again.Description != req.Description {
			t.Fatalf("round trip of %q: %+v, %v", body, again, err)
		}
	})
}
