package aliases

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

const sample = `domains: [relay.example.com, Other.Example.NET.]
aliases:
  - address: shop@relay.example.com
    forward_to: [alice@example.org, bob@Example.COM]
  - address: "@relay.example.com"
    forward_to: [ops@example.org]
  - address: Sales.Team@RELAY.example.com
    forward_to: [carol@example.org]
  - address: only@other.example.net
    forward_to: [dave@example.org]
`

func mustParse(t *testing.T, s string) *Table {
	t.Helper()
	tab, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return tab
}

func TestResolve(t *testing.T) {
	tab := mustParse(t, sample)
	tests := []struct {
		addr    string
		alias   string
		forward []string
		err     error
	}{
		{"shop@relay.example.com", "shop@relay.example.com", []string{"alice@example.org", "bob@example.com"}, nil},
		{"SHOP@Relay.Example.COM", "shop@relay.example.com", []string{"alice@example.org", "bob@example.com"}, nil},
		{"shop+orders@relay.example.com", "shop@relay.example.com", []string{"alice@example.org", "bob@example.com"}, nil},
		{"Shop+A+B@relay.example.com.", "shop@relay.example.com", []string{"alice@example.org", "bob@example.com"}, nil},
		{" <shop@relay.example.com> ", "shop@relay.example.com", []string{"alice@example.org", "bob@example.com"}, nil},
		{"sales.team@relay.example.com", "sales.team@relay.example.com", []string{"carol@example.org"}, nil},
		// Catch-all: the alias is the received address, normalised.
		{"Random+X@relay.example.com", "random@relay.example.com", []string{"ops@example.org"}, nil},
		{"+tag@relay.example.com", "+tag@relay.example.com", []string{"ops@example.org"}, nil},
		{"only@other.example.net", "only@other.example.net", []string{"dave@example.org"}, nil},
		{"ONLY+x@OTHER.example.net", "only@other.example.net", []string{"dave@example.org"}, nil},
		// No catch-all on other.example.net.
		{"nobody@other.example.net", "", nil, ErrUnknownAlias},
		{"@relay.example.com", "", nil, ErrUnknownAlias},
		{"shop@example.com", "", nil, ErrNotOurDomain},
		{"shop@relay.example.com.evil.org", "", nil, ErrNotOurDomain},
		{"no-at-sign", "", nil, ErrNotOurDomain},
		// Not an address the relay can send from: never forwarded, never
		// retried (the catch-all would make it the From of the copy).
		{`"a b"@relay.example.com`, "", nil, ErrInvalidRecipient},
		{"a b@relay.example.com", "", nil, ErrInvalidRecipient},
		{"<a<b>@relay.example.com>", "", nil, ErrInvalidRecipient},
		{"jörg@relay.example.com", "", nil, ErrInvalidRecipient},
		{".dot@relay.example.com", "", nil, ErrInvalidRecipient},
		{"a..b@relay.example.com", "", nil, ErrInvalidRecipient},
		{"a\r\nbcc:x@relay.example.com", "", nil, ErrInvalidRecipient},
		{strings.Repeat("a", 65) + "@relay.example.com", "", nil, ErrInvalidRecipient},
		{`"x y"@other.example.net`, "", nil, ErrInvalidRecipient},
		{`"a b"@example.com`, "", nil, ErrNotOurDomain},
		{strings.Repeat("a", 64) + "@relay.example.com", strings.Repeat("a", 64) + "@relay.example.com", []string{"ops@example.org"}, nil},
		{"o'brien-x_y@relay.example.com", "o'brien-x_y@relay.example.com", []string{"ops@example.org"}, nil},
		{"shop@", "", nil, ErrNotOurDomain},
		{"", "", nil, ErrNotOurDomain},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			r, err := tab.Resolve(context.Background(), tt.addr)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("Resolve: %v", err)
			}
			if r.Alias != tt.alias || !slices.Equal(r.ForwardTo, tt.forward) {
				t.Fatalf("got %+v, want alias %q forward %v", r, tt.alias, tt.forward)
			}
		})
	}
}

func TestResolveCopiesForwardTo(t *testing.T) {
	tab := mustParse(t, sample)
	r, err := tab.Resolve(context.Background(), "shop@relay.example.com")
	if err != nil {
		t.Fatal(err)
	}
	r.ForwardTo[0] = "mallory@example.org"
	r2, _ := tab.Resolve(context.Background(), "shop@relay.example.com")
	if r2.ForwardTo[0] != "alice@example.org" {
		t.Fatalf("table was modified through a returned route: %v", r2.ForwardTo)
	}
}

func TestResolveCanceled(t *testing.T) {
	tab := mustParse(t, sample)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := tab.Resolve(ctx, "shop@relay.example.com")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	if errors.Is(err, ErrUnknownAlias) || errors.Is(err, ErrNotOurDomain) {
		t.Fatal("a cancelled lookup must not look like a routing answer")
	}
}

func TestIsOurDomain(t *testing.T) {
	tab := mustParse(t, sample)
	for d, want := range map[string]bool{
		"relay.example.com":   true,
		"RELAY.Example.com":   true,
		"relay.example.com.":  true,
		"other.example.net":   true,
		"example.com":         false,
		"x.relay.example.com": false,
		"":                    false,
	} {
		if got := tab.IsOurDomain(d); got != want {
			t.Errorf("IsOurDomain(%q) = %v, want %v", d, got, want)
		}
	}
	if got := tab.Domains(); !slices.Equal(got, []string{"other.example.net", "relay.example.com"}) {
		t.Errorf("Domains = %v", got)
	}
	if tab.Len() != 4 {
		t.Errorf("Len = %d, want 4", tab.Len())
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		yaml string
		want string // substring of the error
	}{
		{"empty", "", "empty alias file"},
		{"no domains", "aliases: []\n", "no domains"},
		{"unknown top key", "domains: [a.example]\nalias: []\n", "field alias not found"},
		{"unknown entry key", "domains: [a.example]\naliases:\n  - address: x@a.example\n    forward: [y@b.example]\n", "line 4: field forward not found"},
		{"wrong type", "domains: a.example\n", "decode"},
		{"two documents", "domains: [a.example]\n---\ndomains: [b.example]\n", "more than one YAML document"},
		{"bad domain", "domains: [a_b.example]\n", `domains[0] "a_b.example": invalid character`},
		{"unicode domain", "domains: [bücher.example]\n", "punycode"},
		{"duplicate domain", "domains: [a.example, A.example]\n", "listed twice"},
		{"no at", "domains: [a.example]\naliases:\n  - address: shop\n    forward_to: [x@b.example]\n", `line 3: aliases[0] ("shop"): address must be`},
		{"domain not listed", "domains: [a.example]\naliases:\n  - address: shop@b.example\n    forward_to: [x@c.example]\n", `aliases[0] ("shop@b.example"): domain "b.example" is not in domains`},
		{"bad local", "domains: [a.example]\naliases:\n  - address: sh op@a.example\n    forward_to: [x@b.example]\n", "bad local part"},
		{"dot local", "domains: [a.example]\naliases:\n  - address: .shop@a.example\n    forward_to: [x@b.example]\n", "misplaced '.'"},
		{"plus local", "domains: [a.example]\naliases:\n  - address: shop+x@a.example\n    forward_to: [x@b.example]\n", "plus-addressing"},
		{"empty forward", "domains: [a.example]\naliases:\n  - address: shop@a.example\n    forward_to: []\n", `aliases[0] ("shop@a.example"): forward_to is empty`},
		{"missing forward", "domains: [a.example]\naliases:\n  - address: shop@a.example\n", "forward_to is empty"},
		{"bad forward", "domains: [a.example]\naliases:\n  - address: shop@a.example\n    forward_to: [not-an-address]\n", `forward_to[0] "not-an-address": bad address`},
		{"named forward", "domains: [a.example]\naliases:\n  - address: shop@a.example\n    forward_to: [\"Al <al@b.example>\"]\n", "plain address"},
		{"forward injection", "domains: [a.example]\naliases:\n  - address: shop@a.example\n    forward_to: [\"al@b.example\\r\\nBcc: x@c.example\"]\n", "forward_to[0]"},
		{"unicode forward", "domains: [a.example]\naliases:\n  - address: shop@a.example\n    forward_to: [jürgen@b.example]\n", "not ASCII"},
		{"duplicate forward", "domains: [a.example]\naliases:\n  - address: shop@a.example\n    forward_to: [x@b.example, X@B.example]\n", "listed twice"},
		{"loop", "domains: [a.example]\naliases:\n  - address: shop@a.example\n    forward_to: [x@b.example, other@A.Example]\n", `forward_to[1] "other@A.Example": points back into relay domain "a.example" (mail loop)`},
		{"duplicate alias", "domains: [a.example]\naliases:\n  - address: shop@a.example\n    forward_to: [x@b.example]\n  - address: SHOP@a.example\n    forward_to: [y@b.example]\n", `line 5: aliases[1] ("SHOP@a.example"): duplicate alias "shop@a.example"`},
		{"duplicate catch-all", "domains: [a.example]\naliases:\n  - address: \"@a.example\"\n    forward_to: [x@b.example]\n  - address: \"@A.example\"\n    forward_to: [y@b.example]\n", "duplicate catch-all"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml))
			if err == nil {
				t.Fatalf("Parse succeeded, want error containing %q", tt.want)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "aliases.yaml")
	if _, err := Load(p); err == nil || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Load missing file: %v", err)
	}
	writeFile(t, p, sample)
	tab, err := Load(p)
	if err != nil {
		t.Fatal(err)
	}
	if !tab.IsOurDomain("relay.example.com") {
		t.Fatal("loaded table lacks its domain")
	}
	writeFile(t, p, "domains: [a.example]\nbogus: 1\n")
	if _, err := Load(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("error should name the file: %v", err)
	}
}

func writeFile(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestReloadable(t *testing.T) {
	ctx := context.Background()
	p := filepath.Join(t.TempDir(), "aliases.yaml")
	if _, err := NewReloadable(p); err == nil {
		t.Fatal("NewReloadable on a missing file must fail")
	}
	writeFile(t, p, sample)
	r, err := NewReloadable(p)
	if err != nil {
		t.Fatal(err)
	}
	var _ Resolver = r
	if _, err := r.Resolve(ctx, "new@relay.example.com"); err != nil {
		t.Fatalf("catch-all before reload: %v", err)
	}

	// A broken file is refused and the old table stays.
	writeFile(t, p, "domains: [relay.example.com]\naliases:\n  - address: x@nope.example\n    forward_to: [a@b.example]\n")
	if _, err := r.Reload(); err == nil {
		t.Fatal("Reload of an invalid file succeeded")
	}
	if rt, err := r.Resolve(ctx, "shop@relay.example.com"); err != nil || rt.ForwardTo[0] != "alice@example.org" {
		t.Fatalf("old table lost after a failed reload: %+v %v", rt, err)
	}

	// A good file replaces the table.
	writeFile(t, p, "domains: [relay.example.com]\naliases:\n  - address: shop@relay.example.com\n    forward_to: [zoe@example.org]\n")
	c, err := r.Reload()
	if err != nil {
		t.Fatal(err)
	}
	// sample has three aliases and a catch-all; the new file keeps shop@ only.
	if want := (Change{Added: 0, Removed: 3, Total: 1}); c != want {
		t.Errorf("Reload change %+v, want %+v", c, want)
	}
	if rt, err := r.Resolve(ctx, "shop@relay.example.com"); err != nil || !slices.Equal(rt.ForwardTo, []string{"zoe@example.org"}) {
		t.Fatalf("after reload: %+v %v", rt, err)
	}
	if _, err := r.Resolve(ctx, "new@relay.example.com"); !errors.Is(err, ErrUnknownAlias) {
		t.Fatalf("catch-all removed by reload still answers: %v", err)
	}
	if r.IsOurDomain("other.example.net") {
		t.Fatal("domain removed by reload is still ours")
	}
	if r.Table().Len() != 1 {
		t.Fatalf("Table().Len() = %d", r.Table().Len())
	}
}

func TestWatchSIGHUP(t *testing.T) {
	p := filepath.Join(t.TempDir(), "aliases.yaml")
	writeFile(t, p, sample)
	r, err := NewReloadable(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	reports := make(chan error, 4)
	r.WatchSIGHUP(ctx, func(_ Change, err error) { reports <- err })

	writeFile(t, p, "domains: [fresh.example]\n")
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-reports:
		if err != nil {
			t.Fatalf("reload after SIGHUP: %v", err)
		}
	case <-time.After(30 * time.Second): // bound the wait; not a timing assertion
		t.Fatal("no reload after SIGHUP")
	}
	if !r.IsOurDomain("fresh.example") || r.IsOurDomain("relay.example.com") {
		t.Fatal("SIGHUP did not install the new table")
	}
}

func TestWatchChannel(t *testing.T) {
	p := filepath.Join(t.TempDir(), "aliases.yaml")
	writeFile(t, p, sample)
	r, err := NewReloadable(p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ch := make(chan os.Signal)
	reports := make(chan error, 1)
	done := make(chan struct{})
	go func() {
		r.watch(ctx, ch, func(_ Change, err error) { reports <- err })
		close(done)
	}()
	writeFile(t, p, "not: [valid")
	ch <- syscall.SIGHUP
	if err := <-reports; err == nil {
		t.Fatal("reload of broken YAML reported success")
	}
	if !r.IsOurDomain("relay.example.com") {
		t.Fatal("old table lost")
	}
	cancel()
	<-done
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(sample))
	f.Add([]byte("domains: [a.example]\naliases:\n  - address: \"@a.example\"\n    forward_to: [x@b.example]\n"))
	f.Add([]byte("domains: [a.example]\naliases:\n  - address: shop+x@a.example\n    forward_to: [x@b.example]\n"))
	f.Add([]byte("domains: [a.example]\n---\n"))
	f.Add([]byte("{domains: [a], aliases: [{address: b@a, forward_to: [c@d]}]}"))
	f.Fuzz(func(t *testing.T, data []byte) {
		tab, err := Parse(data)
		if err != nil {
			return
		}
		ctx := context.Background()
		for _, d := range tab.Domains() {
			if !tab.IsOurDomain(d) {
				t.Fatalf("listed domain %q is not ours", d)
			}
		}
		for alias, fw := range tab.exact {
			r, err := tab.Resolve(ctx, strings.ToUpper(alias))
			if err != nil {
				t.Fatalf("alias %q does not resolve: %v", alias, err)
			}
			if r.Alias != alias || !slices.Equal(r.ForwardTo, fw) {
				t.Fatalf("alias %q resolved to %+v", alias, r)
			}
			for _, to := range fw {
				at := strings.LastIndexByte(to, '@')
				if tab.IsOurDomain(to[at+1:]) {
					t.Fatalf("loop accepted: %q -> %q", alias, to)
				}
			}
		}
	})
}
