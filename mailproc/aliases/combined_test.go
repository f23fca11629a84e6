package aliases_test

import (
	"context"
	"errors"
	"path/filepath"
	"regexp"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliasdb"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

const fileYAML = `domains: [relay.example.com, other.example.net]
aliases:
  - address: shop@relay.example.com
    forward_to: [alice@example.org]
  - address: "@other.example.net"
    forward_to: [ops@example.org]
`

func setup(t *testing.T) (*aliases.Table, *aliasdb.Store) {
	t.Helper()
	tab, err := aliases.Parse([]byte(fileYAML))
	if err != nil {
		t.Fatal(err)
	}
	s, err := aliasdb.OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "aliases.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return tab, s
}

func managed(addr string, state aliases.State, to ...string) aliases.Alias {
	return aliases.Alias{Address: addr, ForwardTo: to, State: state, Source: aliases.SourceManaged, Created: time.Unix(0, 0)}
}

func TestCombinedResolve(t *testing.T) {
	tab, s := setup(t)
	ctx := context.Background()
	for _, a := range []aliases.Alias{
		managed("news@relay.example.com", aliases.StateBlockPromotional, "bob@example.org"),
		managed("off@relay.example.com", aliases.StateDisabled, "bob@example.org"),
		managed("x@other.example.net", aliases.StateEnabled, "carol@example.org", "dave@example.org"),
		// The file's alias wins over a managed one of the same address.
		managed("shop@relay.example.com", aliases.StateDisabled, "mallory@example.org"),
	} {
		if err := s.Create(ctx, a); err != nil {
			t.Fatal(err)
		}
	}
	c := aliases.NewCombined(func() *aliases.Table { return tab }, s, aliases.CombinedOptions{})
	tests := []struct {
		addr  string
		alias string
		fw    []string
		state aliases.State
		err   error
	}{
		{"shop@relay.example.com", "shop@relay.example.com", []string{"alice@example.org"}, "", nil},
		{"News+Tag@Relay.Example.com", "news@relay.example.com", []string{"bob@example.org"}, aliases.StateBlockPromotional, nil},
		{"off@relay.example.com", "off@relay.example.com", []string{"bob@example.org"}, aliases.StateDisabled, nil},
		{"x@other.example.net", "x@other.example.net", []string{"carol@example.org", "dave@example.org"}, aliases.StateEnabled, nil},
		// A managed alias beats the catch-all; others fall to it.
		{"y@other.example.net", "y@other.example.net", []string{"ops@example.org"}, "", nil},
		{"nobody@relay.example.com", "", nil, "", aliases.ErrUnknownAlias},
		{"a b@relay.example.com", "", nil, "", aliases.ErrInvalidRecipient},
		{"x@example.com", "", nil, "", aliases.ErrNotOurDomain},
	}
	for _, tt := range tests {
		t.Run(tt.addr, func(t *testing.T) {
			r, err := c.Resolve(ctx, tt.addr)
			if tt.err != nil || err != nil {
				if !errors.Is(err, tt.err) || tt.err == nil {
					t.Fatalf("err = %v, want %v", err, tt.err)
				}
				return
			}
			if r.Alias != tt.alias || !slices.Equal(r.ForwardTo, tt.fw) || r.State != tt.state {
				t.Fatalf("got %+v, want %s %v %q", r, tt.alias, tt.fw, tt.state)
			}
		})
	}
}

// flaky is the real store with an injected outage.
type flaky struct {
	*aliasdb.Store
	down atomic.Bool
}

var errDown = errors.New("database unreachable")

func (f *flaky) Get(ctx context.Context, a string) (aliases.Alias, error) {
	if f.down.Load() {
		return aliases.Alias{}, errDown
	}
	return f.Store.Get(ctx, a)
}

func (f *flaky) Version(ctx context.Context) (int64, error) {
	if f.down.Load() {
		return 0, errDown
	}
	return f.Store.Version(ctx)
}

// TestCombinedCache: answers (found and not found) are cached until the
// store's version changes or they expire; an outage serves the expired
// answer, and without one is an error that is not a routing answer.
func TestCombinedCache(t *testing.T) {
	tab, s := setup(t)
	ctx := context.Background()
	fs := &flaky{Store: s}
	now := time.Unix(1000, 0)
	c := aliases.NewCombined(func() *aliases.Table { return tab }, fs, aliases.CombinedOptions{Now: func() time.Time { return now }})
	if changed, err := c.Poll(ctx); err != nil || !changed {
		t.Fatalf("first Poll = %v, %v", changed, err)
	}
	resolve := func(addr string) (aliases.Route, error) { return c.Resolve(ctx, addr) }

	// Negative caching: created behind the cache's back, not seen yet.
	if _, err := resolve("new@relay.example.com"); !errors.Is(err, aliases.ErrUnknownAlias) {
		t.Fatalf("err = %v", err)
	}
	if err := s.Create(ctx, managed("new@relay.example.com", aliases.StateEnabled, "bob@example.org")); err != nil {
		t.Fatal(err)
	}
	if _, err := resolve("new@relay.example.com"); !errors.Is(err, aliases.ErrUnknownAlias) {
		t.Fatalf("not cached: err = %v", err)
	}
	// The version changed: the next poll empties the cache.
	if changed, err := c.Poll(ctx); err != nil || !changed {
		t.Fatalf("Poll after a change = %v, %v", changed, err)
	}
	if changed, _ := c.Poll(ctx); changed {
		t.Fatal("Poll without a change emptied the cache")
	}
	if r, err := resolve("new@relay.example.com"); err != nil || r.State != aliases.StateEnabled {
		t.Fatalf("after poll: %+v, %v", r, err)
	}
	// Positive caching: disabled behind the cache's back.
	if _, err := s.SetState(ctx, "new@relay.example.com", aliases.StateDisabled); err != nil {
		t.Fatal(err)
	}
	if r, _ := resolve("new@relay.example.com"); r.State != aliases.StateEnabled {
		t.Fatalf("not cached: %+v", r)
	}
	// An outage after expiry: the stale answer is served.
	fs.down.Store(true)
	now = now.Add(aliases.DefaultCacheTTL + time.Second)
	if r, err := resolve("new@relay.example.com"); err != nil || r.State != aliases.StateEnabled {
		t.Fatalf("stale during outage: %+v, %v", r, err)
	}
	// Nothing cached: an error, not "unknown alias" (the mail is retried).
	_, err := resolve("other@relay.example.com")
	if !errors.Is(err, errDown) || errors.Is(err, aliases.ErrUnknownAlias) {
		t.Fatalf("uncached during outage: err = %v", err)
	}
	if _, err := c.Poll(ctx); !errors.Is(err, errDown) {
		t.Fatalf("Poll during outage: %v", err)
	}
	fs.down.Store(false)
	if r, err := resolve("new@relay.example.com"); err != nil || r.State != aliases.StateDisabled {
		t.Fatalf("after recovery: %+v, %v", r, err)
	}
}

func TestManager(t *testing.T) {
	tab, s := setup(t)
	ctx := context.Background()
	c := aliases.NewCombined(func() *aliases.Table { return tab }, s, aliases.CombinedOptions{})
	m := aliases.NewManager(func() *aliases.Table { return tab }, s, c)
	random := regexp.MustCompile(`^[a-z2-7]{16}@relay\.example\.com$`)

	a, err := m.Create(ctx, []string{"Bob@Example.ORG"}, "", "", "  newsletters ")
	if err != nil {
		t.Fatal(err)
	}
	if !random.MatchString(a.Address) || !slices.Equal(a.ForwardTo, []string{"Bob@example.org"}) || a.State != aliases.StateEnabled || a.Description != "newsletters" {
		t.Fatalf("random alias = %+v", a)
	}
	b, err := m.Create(ctx, []string{"bob@example.org"}, "", "", "")
	if err != nil || b.Address == a.Address {
		t.Fatalf("second random alias %+v, %v", b, err)
	}
	// The resolver was told: the negative answer cached before is gone.
	if _, err := c.Resolve(ctx, "shopping@other.example.net"); err != nil {
		t.Fatal(err) // catch-all
	}
	if _, err := m.Create(ctx, []string{"carol@example.org"}, "other.example.net", "Shopping", ""); err != nil {
		t.Fatal(err)
	}
	if r, err := c.Resolve(ctx, "shopping@other.example.net"); err != nil || r.ForwardTo[0] != "carol@example.org" {
		t.Fatalf("after create: %+v, %v", r, err)
	}

	tests := []struct {
		name string
		do   func() error
		want error
	}{
		{"explicit", func() error {
			_, err := m.Create(ctx, []string{"x@example.org"}, "", "sales@relay.example.com", "")
			return err
		}, nil},
		{"taken", func() error {
			_, err := m.Create(ctx, []string{"x@example.org"}, "", "sales@relay.example.com", "")
			return err
		}, aliases.ErrExists},
		{"file alias", func() error {
			_, err := m.Create(ctx, []string{"x@example.org"}, "", "SHOP@relay.example.com", "")
			return err
		}, aliases.ErrExists},
		{"not our domain", func() error { _, err := m.Create(ctx, []string{"x@example.org"}, "example.com", "", ""); return err }, aliases.ErrInvalid},
		{"domain mismatch", func() error {
			_, err := m.Create(ctx, []string{"x@example.org"}, "other.example.net", "a@relay.example.com", "")
			return err
		}, aliases.ErrInvalid},
		{"no destination", func() error { _, err := m.Create(ctx, nil, "", "", ""); return err }, aliases.ErrInvalid},
		{"loop", func() error { _, err := m.Create(ctx, []string{"x@relay.example.com"}, "", "", ""); return err }, aliases.ErrInvalid},
		{"bad destination", func() error { _, err := m.Create(ctx, []string{"Al <al@example.org>"}, "", "", ""); return err }, aliases.ErrInvalid},
		{"duplicate destination", func() error {
			_, err := m.Create(ctx, []string{"x@example.org", "X@example.org"}, "", "", "")
			return err
		}, aliases.ErrInvalid},
		{"plus", func() error {
			_, err := m.Create(ctx, []string{"x@example.org"}, "", "a+b@relay.example.com", "")
			return err
		}, aliases.ErrInvalid},
		{"catch-all", func() error {
			_, err := m.Create(ctx, []string{"x@example.org"}, "", "@relay.example.com", "")
			return err
		}, aliases.ErrInvalid},
		{"control in description", func() error { _, err := m.Create(ctx, []string{"x@example.org"}, "", "", "a\nb"); return err }, aliases.ErrInvalid},
		{"disable", func() error { _, err := m.SetState(ctx, "Sales@relay.example.com", aliases.StateDisabled); return err }, nil},
		{"bad state", func() error { _, err := m.SetState(ctx, "sales@relay.example.com", "paused"); return err }, aliases.ErrInvalid},
		{"disable file alias", func() error { _, err := m.SetState(ctx, "shop@relay.example.com", aliases.StateDisabled); return err }, aliases.ErrReadOnly},
		{"delete catch-all", func() error { return m.Delete(ctx, "@other.example.net") }, aliases.ErrReadOnly},
		{"disable unknown", func() error { _, err := m.SetState(ctx, "nobody@relay.example.com", aliases.StateDisabled); return err }, aliases.ErrNotFound},
		{"delete", func() error { return m.Delete(ctx, "sales@relay.example.com") }, nil},
		{"delete again", func() error { return m.Delete(ctx, "sales@relay.example.com") }, aliases.ErrNotFound},
		{"get file alias", func() error {
			a, err := m.Get(ctx, "Shop@relay.example.com")
			if err == nil && a.Source != aliases.SourceFile {
				t.Errorf("source = %q", a.Source)
			}
			return err
		}, nil},
		{"get unknown", func() error { _, err := m.Get(ctx, "nobody@relay.example.com"); return err }, aliases.ErrNotFound},
	}
	for _, tt := range tests {
		err := tt.do()
		if tt.want == nil && err != nil || tt.want != nil && !errors.Is(err, tt.want) {
			t.Errorf("%s: err = %v, want %v", tt.name, err, tt.want)
		}
	}
	list, err := m.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 4 || list[0].Source != aliases.SourceFile || list[0].Address != "shop@relay.example.com" {
		t.Fatalf("List = %+v", list)
	}
}

func TestRandomLocal(t *testing.T) {
	seen := map[string]bool{}
	re := regexp.MustCompile(`^[a-z2-7]{16}$`)
	for range 1000 {
		l := aliases.RandomLocal()
		if !re.MatchString(l) || seen[l] {
			t.Fatalf("RandomLocal = %q (seen before: %v)", l, seen[l])
		}
		seen[l] = true
	}
}
