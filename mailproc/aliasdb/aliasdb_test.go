package aliasdb

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

// backend opens a fresh, empty store.
type backend struct {
	name string
	open func(t *testing.T) *Store
}

func sqliteBackend() backend {
	return backend{"sqlite", func(t *testing.T) *Store {
		s, err := OpenSQLite(context.Background(), filepath.Join(t.TempDir(), "aliases.db"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		return s
	}}
}

// backends are the stores every test runs against: SQLite always, and
// PostgreSQL where a server is available (postgresBackends).
func backends(t *testing.T) []backend {
	return append([]backend{sqliteBackend()}, postgresBackends(t)...)
}

var created = time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)

func alias(addr string, to ...string) aliases.Alias {
	return aliases.Alias{Address: addr, ForwardTo: to, State: aliases.StateEnabled, Description: "for " + addr,
		Source: aliases.SourceManaged, Created: created}
}

func TestStore(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t)
			v0, err := s.Version(ctx)
			if err != nil {
				t.Fatal(err)
			}
			steps := []struct {
				name    string
				do      func() error
				wantErr error
				bumps   bool
			}{
				{"create", func() error { return s.Create(ctx, alias("a@relay.example", "x@example.org", "y@example.org")) }, nil, true},
				{"create b", func() error { return s.Create(ctx, alias("b@relay.example", "z@example.org")) }, nil, true},
				{"create again", func() error { return s.Create(ctx, alias("a@relay.example", "w@example.org")) }, aliases.ErrExists, false},
				{"create without destination", func() error { return s.Create(ctx, alias("c@relay.example")) }, aliases.ErrInvalid, false},
				{"create with bad state", func() error {
					a := alias("c@relay.example", "x@example.org")
					a.State = "paused"
					return s.Create(ctx, a)
				}, aliases.ErrInvalid, false},
				{"disable", func() error { _, err := s.SetState(ctx, "a@relay.example", aliases.StateDisabled); return err }, nil, true},
				{"disable unknown", func() error { _, err := s.SetState(ctx, "q@relay.example", aliases.StateDisabled); return err }, aliases.ErrNotFound, false},
				{"bad state", func() error { _, err := s.SetState(ctx, "a@relay.example", "off"); return err }, aliases.ErrInvalid, false},
				{"delete b", func() error { return s.Delete(ctx, "b@relay.example") }, nil, true},
				{"delete b again", func() error { return s.Delete(ctx, "b@relay.example") }, aliases.ErrNotFound, false},
				{"counters", func() error {
					return s.AddCounts(ctx, map[string]aliases.Counts{
						"a@relay.example":         {Forwarded: 3, Blocked: 2, Replied: 1, Spam: 4, LastUsed: created.Add(time.Hour)},
						"notstored@relay.example": {Forwarded: 1},
					})
				}, nil, false},
				{"older last use", func() error {
					return s.AddCounts(ctx, map[string]aliases.Counts{"a@relay.example": {Forwarded: 1, LastUsed: created}})
				}, nil, false},
			}
			v := v0
			for _, st := range steps {
				err := st.do()
				if st.wantErr == nil && err != nil || st.wantErr != nil && !errors.Is(err, st.wantErr) {
					t.Fatalf("%s: err = %v, want %v", st.name, err, st.wantErr)
				}
				nv, err := s.Version(ctx)
				if err != nil {
					t.Fatal(err)
				}
				if (nv != v) != st.bumps {
					t.Fatalf("%s: version %d -> %d, want a change: %v", st.name, v, nv, st.bumps)
				}
				v = nv
			}
			got, err := s.Get(ctx, "a@relay.example")
			if err != nil {
				t.Fatal(err)
			}
			want := alias("a@relay.example", "x@example.org", "y@example.org")
			want.State = aliases.StateDisabled
			want.Counts = aliases.Counts{Forwarded: 4, Blocked: 2, Replied: 1, Spam: 4, LastUsed: created.Add(time.Hour)}
			if !equal(got, want) {
				t.Fatalf("Get = %+v\nwant  %+v", got, want)
			}
			if _, err := s.Get(ctx, "b@relay.example"); !errors.Is(err, aliases.ErrNotFound) {
				t.Fatalf("deleted alias: err = %v", err)
			}
			list, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(list) != 1 || !equal(list[0], want) {
				t.Fatalf("List = %+v", list)
			}
		})
	}
}

func equal(a, b aliases.Alias) bool {
	return a.Address == b.Address && slices.Equal(a.ForwardTo, b.ForwardTo) && a.State == b.State &&
		a.Description == b.Description && a.Source == b.Source && a.Created.Equal(b.Created) &&
		a.Forwarded == b.Forwarded && a.Blocked == b.Blocked && a.Replied == b.Replied && a.Spam == b.Spam &&
		a.LastUsed.Equal(b.LastUsed)
}

func TestListSorted(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t)
			if l, err := s.List(ctx); err != nil || l == nil || len(l) != 0 {
				t.Fatalf("empty List = %#v, %v (want an empty, non-nil slice)", l, err)
			}
			for _, a := range []string{"m@r.example", "a@r.example", "z@r.example"} {
				if err := s.Create(ctx, alias(a, "d@example.org")); err != nil {
					t.Fatal(err)
				}
			}
			l, err := s.List(ctx)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, a := range l {
				got = append(got, a.Address)
			}
			if !slices.Equal(got, []string{"a@r.example", "m@r.example", "z@r.example"}) {
				t.Fatalf("List order = %v", got)
			}
		})
	}
}

// TestReopen: the data survives a restart, and migrating twice is harmless.
func TestReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "aliases.db")
	s, err := OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, alias("a@r.example", "d@example.org")); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = OpenSQLite(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.Get(ctx, "a@r.example"); err != nil {
		t.Fatalf("after reopen: %v", err)
	}
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM "+VersionTable).Scan(&n); err != nil || n < 2 {
		t.Fatalf("goose version table %s: %d rows, %v", VersionTable, n, err)
	}
}

func TestCounter(t *testing.T) {
	for _, b := range backends(t) {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			s := b.open(t)
			if err := s.Create(ctx, alias("a@r.example", "d@example.org")); err != nil {
				t.Fatal(err)
			}
			c := NewCounter(s, nil)
			c.now = func() time.Time { return created.Add(time.Minute) }
			for _, ev := range []aliases.Event{aliases.EventForwarded, aliases.EventForwarded, aliases.EventBlocked, aliases.EventReplied, aliases.EventSpam} {
				c.AliasEvent("a@r.example", ev)
			}
			c.AliasEvent("file@r.example", aliases.EventForwarded)
			if err := c.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			if err := c.Flush(ctx); err != nil { // nothing pending: no change
				t.Fatal(err)
			}
			a, err := s.Get(ctx, "a@r.example")
			if err != nil {
				t.Fatal(err)
			}
			want := aliases.Counts{Forwarded: 2, Blocked: 1, Replied: 1, Spam: 1, LastUsed: created.Add(time.Minute)}
			if a.Forwarded != want.Forwarded || a.Blocked != want.Blocked || a.Replied != want.Replied || a.Spam != want.Spam || !a.LastUsed.Equal(want.LastUsed) {
				t.Fatalf("counts = %+v, want %+v", a.Counts, want)
			}
		})
	}
}

// TestCounterKeepsOnFailure: counts that could not be written are written
// by the next flush.
func TestCounterKeepsOnFailure(t *testing.T) {
	ctx := context.Background()
	s := sqliteBackend().open(t)
	if err := s.Create(ctx, alias("a@r.example", "d@example.org")); err != nil {
		t.Fatal(err)
	}
	c := NewCounter(s, nil)
	c.AliasEvent("a@r.example", aliases.EventForwarded)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := c.Flush(cctx); err == nil {
		t.Fatal("flush with a cancelled context succeeded")
	}
	c.AliasEvent("a@r.example", aliases.EventForwarded)
	if err := c.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	a, _ := s.Get(ctx, "a@r.example")
	if a.Forwarded != 2 {
		t.Fatalf("forwarded = %d, want 2", a.Forwarded)
	}
}
