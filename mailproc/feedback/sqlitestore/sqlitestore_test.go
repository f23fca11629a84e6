package sqlitestore

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/feedback"
)

func open(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.db")
	s, err := Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, path
}

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func TestPauses(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	steps := []struct {
		name   string
		pause  *feedback.Pause
		now    time.Time
		want   time.Time // zero: not paused
		listed int
	}{
		{"none", nil, t0, time.Time{}, 0},
		{"soft", &feedback.Pause{Address: "a@x", Until: t0.Add(24 * time.Hour), Kind: feedback.BounceTransient, Since: t0}, t0, t0.Add(24 * time.Hour), 1},
		{"hard extends", &feedback.Pause{Address: "a@x", Until: t0.Add(720 * time.Hour), Kind: feedback.BouncePermanent, Since: t0}, t0, t0.Add(720 * time.Hour), 1},
		{"soft does not shorten", &feedback.Pause{Address: "a@x", Until: t0.Add(48 * time.Hour), Kind: feedback.BounceTransient, Since: t0.Add(time.Hour)}, t0, t0.Add(720 * time.Hour), 1},
		{"another", &feedback.Pause{Address: "b@x", Until: t0.Add(time.Hour), Kind: feedback.BounceTransient, Since: t0}, t0, t0.Add(720 * time.Hour), 2},
		{"expired is not paused", nil, t0.Add(721 * time.Hour), time.Time{}, 0},
	}
	for _, st := range steps {
		if st.pause != nil {
			if err := s.Pause(ctx, *st.pause); err != nil {
				t.Fatal(err)
			}
		}
		p, ok, err := s.Paused(ctx, "a@x", st.now)
		if err != nil {
			t.Fatal(err)
		}
		if ok != !st.want.IsZero() || ok && !p.Until.Equal(st.want) {
			t.Errorf("%s: paused %v until %v, want until %v", st.name, ok, p.Until, st.want)
		}
		l, err := s.ListPaused(ctx, st.now)
		if err != nil {
			t.Fatal(err)
		}
		if len(l) != st.listed {
			t.Errorf("%s: %d listed, want %d", st.name, len(l), st.listed)
		}
	}
	if ok, err := s.Unpause(ctx, "a@x"); !ok || err != nil {
		t.Errorf("Unpause = %v, %v", ok, err)
	}
	if _, ok, _ := s.Paused(ctx, "a@x", t0); ok {
		t.Error("still paused after Unpause")
	}
	if ok, _ := s.Unpause(ctx, "a@x"); ok {
		t.Error("second Unpause found a pause")
	}
}

func TestComplaintsAndDisabledAliases(t *testing.T) {
	s, path := open(t)
	ctx := context.Background()
	since := t0.Add(-30 * 24 * time.Hour)
	for _, tc := range []struct {
		id   string
		at   time.Time
		want int
	}{
		{"f1", t0.Add(-40 * 24 * time.Hour), 0}, // too old to count
		{"f2", t0.Add(-time.Hour), 1},
		{"f2", t0.Add(-time.Hour), 1}, // the same feedback again
		{"f3", t0, 2},
	} {
		n, err := s.AddComplaint(ctx, "shop@relay", tc.id, tc.at, since)
		if err != nil {
			t.Fatal(err)
		}
		if n != tc.want {
			t.Errorf("after %s: %d complaints, want %d", tc.id, n, tc.want)
		}
	}
	if n, _ := s.Complaints(ctx, "other@relay", since); n != 0 {
		t.Errorf("other alias has %d", n)
	}
	if err := s.DisableAlias(ctx, "shop@relay", t0, "3 complaints"); err != nil {
		t.Fatal(err)
	}
	if err := s.DisableAlias(ctx, "shop@relay", t0.Add(time.Hour), "again"); err != nil {
		t.Fatal(err)
	}
	// The state survives a reopen (and the migrations run again as no-ops).
	s.Close()
	s2, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if d, err := s2.AliasDisabled(ctx, "shop@relay"); !d || err != nil {
		t.Errorf("disabled = %v, %v", d, err)
	}
	if d, _ := s2.AliasDisabled(ctx, "other@relay"); d {
		t.Error("other alias disabled")
	}
	if ok, _ := s2.EnableAlias(ctx, "shop@relay"); !ok {
		t.Error("EnableAlias found nothing")
	}
	if d, _ := s2.AliasDisabled(ctx, "shop@relay"); d {
		t.Error("still disabled")
	}
}

func TestDailySends(t *testing.T) {
	s, _ := open(t)
	ctx := context.Background()
	for _, tc := range []struct {
		addr, day string
		n, want   int
	}{
		{"a@x", "2026-03-01", 1, 1},
		{"a@x", "2026-03-01", 2, 3},
		{"b@x", "2026-03-01", 1, 1},
		{"a@x", "2026-03-02", 1, 1},
	} {
		got, err := s.AddSends(ctx, tc.addr, tc.day, tc.n)
		if err != nil {
			t.Fatal(err)
		}
		if got != tc.want {
			t.Errorf("%s %s: %d, want %d", tc.addr, tc.day, got, tc.want)
		}
	}
	if n, _ := s.Sends(ctx, "a@x", "2026-03-01"); n != 3 {
		t.Errorf("Sends = %d", n)
	}
	if n, _ := s.Sends(ctx, "c@x", "2026-03-01"); n != 0 {
		t.Errorf("Sends of nobody = %d", n)
	}
}

// The migrations keep their own version table, next to others'.
func TestVersionTable(t *testing.T) {
	s, _ := open(t)
	var n int
	if err := s.db.QueryRow(`SELECT count(*) FROM ` + VersionTable).Scan(&n); err != nil || n < 2 {
		t.Errorf("%s: %d rows, %v", VersionTable, n, err)
	}
	if err := s.db.QueryRow(`SELECT count(*) FROM sqlite_master WHERE name = 'goose_db_version'`).Scan(&n); err != nil || n != 0 {
		t.Errorf("goose's default table exists (%d, %v)", n, err)
	}
}
