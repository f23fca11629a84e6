package mailproc

import (
	"context"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliasdb"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
)

// TestAliasStates runs mail for managed aliases (a real SQLite store behind
// the combined resolver) through the pool.
func TestAliasStates(t *testing.T) {
	plain := mailtest.ReceivedMail()
	withHeader := func(h string) []byte { return append([]byte(h+"\r\n"), plain...) }
	const (
		on    = "on@relay.example.com"
		off   = "off@relay.example.com"
		promo = "promo@relay.example.com"
		shop  = "shop@relay.example.com"
	)
	tests := []struct {
		name      string
		mail      []byte
		rcpts     []string
		deadUnk   bool
		sentFrom  []string
		counts    map[string]float64
		forwarded map[string]int64 // per alias counter
		blocked   map[string]int64
	}{
		{name: "enabled", mail: plain, rcpts: []string{on}, sentFrom: []string{on},
			counts: map[string]float64{"forwarded/ok": 1}, forwarded: map[string]int64{on: 1}},
		{name: "disabled", mail: plain, rcpts: []string{off},
			counts: map[string]float64{"dropped/alias_disabled": 1}, blocked: map[string]int64{off: 1}},
		{name: "disabled, dead-lettering unknown aliases", mail: plain, rcpts: []string{off}, deadUnk: true,
			counts: map[string]float64{"dropped/alias_disabled": 1}, blocked: map[string]int64{off: 1}},
		{name: "disabled and enabled", mail: plain, rcpts: []string{off, on}, sentFrom: []string{on},
			counts:    map[string]float64{"forwarded/ok": 1, "dropped/alias_disabled": 1},
			forwarded: map[string]int64{on: 1}, blocked: map[string]int64{off: 1}},
		{name: "block promotional, personal mail", mail: plain, rcpts: []string{promo}, sentFrom: []string{promo},
			counts: map[string]float64{"forwarded/ok": 1}, forwarded: map[string]int64{promo: 1}},
		{name: "block promotional, List-Id", mail: withHeader("List-Id: Deals <deals.shop.example>"), rcpts: []string{promo},
			counts: map[string]float64{"dropped/promotional_blocked": 1}, blocked: map[string]int64{promo: 1}},
		{name: "block promotional, List-Unsubscribe", mail: withHeader("List-Unsubscribe: <mailto:u@shop.example>"), rcpts: []string{promo},
			counts: map[string]float64{"dropped/promotional_blocked": 1}, blocked: map[string]int64{promo: 1}},
		{name: "block promotional, Precedence bulk", mail: withHeader("Precedence:  Bulk "), rcpts: []string{promo},
			counts: map[string]float64{"dropped/promotional_blocked": 1}, blocked: map[string]int64{promo: 1}},
		{name: "block promotional, Precedence first-class", mail: withHeader("Precedence: first-class"), rcpts: []string{promo}, sentFrom: []string{promo},
			counts: map[string]float64{"forwarded/ok": 1}, forwarded: map[string]int64{promo: 1}},
		{name: "promotional to a blocking and an enabled alias", mail: withHeader("List-Id: <l.example>"), rcpts: []string{promo, shop, on},
			sentFrom:  []string{on, shop},
			counts:    map[string]float64{"forwarded/ok": 1, "dropped/promotional_blocked": 1},
			forwarded: map[string]int64{on: 1}, blocked: map[string]int64{promo: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			store, err := aliasdb.OpenSQLite(ctx, filepath.Join(t.TempDir(), "aliases.db"))
			if err != nil {
				t.Fatal(err)
			}
			defer store.Close()
			for addr, st := range map[string]aliases.State{on: aliases.StateEnabled, off: aliases.StateDisabled, promo: aliases.StateBlockPromotional} {
				if err := store.Create(ctx, aliases.Alias{Address: addr, ForwardTo: []string{"dana@example.org"}, State: st, Created: testNow}); err != nil {
					t.Fatal(err)
				}
			}
			table, err := aliases.Parse([]byte(aliasYAML))
			if err != nil {
				t.Fatal(err)
			}
			counter := aliasdb.NewCounter(store, nil)
			e := newEnv(t, func(c *Config) {
				c.Aliases = aliases.NewCombined(func() *aliases.Table { return table }, store, aliases.CombinedOptions{})
				c.AliasEvents = counter
				c.Policy.DeadLetterUnknown = tt.deadUnk
			})
			e.objects.put(testBucket, testKey, tt.mail)
			e.run(ctx, newEntry("m1", s3Notification(t, nil, tt.rcpts...)))

			if completed, retried, dead, _ := e.q.outcomes(); completed != 1 || retried+dead != 0 {
				t.Fatalf("completed %d, retried %d, dead %d", completed, retried, dead)
			}
			var from []string
			for _, c := range e.sender.sent() {
				from = append(from, c.from)
			}
			if len(from) != len(tt.sentFrom) || (len(from) > 0 && !equalSorted(from, tt.sentFrom)) {
				t.Fatalf("sent from %v, want %v", from, tt.sentFrom)
			}
			if got := messageCounts(t, e.metrics); !maps.Equal(got, tt.counts) {
				t.Fatalf("counts = %v, want %v", got, tt.counts)
			}
			if err := counter.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			for _, addr := range []string{on, off, promo} {
				a, err := store.Get(ctx, addr)
				if err != nil {
					t.Fatal(err)
				}
				if a.Forwarded != tt.forwarded[addr] || a.Blocked != tt.blocked[addr] {
					t.Errorf("%s: forwarded %d blocked %d, want %d %d", addr, a.Forwarded, a.Blocked, tt.forwarded[addr], tt.blocked[addr])
				}
				if used := a.Forwarded+a.Blocked > 0; used == a.LastUsed.IsZero() || used && a.LastUsed.Before(time.Now().Add(-time.Hour)) {
					t.Errorf("%s: last used %v", addr, a.LastUsed)
				}
			}
		})
	}
}

func equalSorted(a, b []string) bool {
	m := map[string]int{}
	for _, s := range a {
		m[s]++
	}
	for _, s := range b {
		m[s]--
	}
	for _, n := range m {
		if n != 0 {
			return false
		}
	}
	return len(a) == len(b)
}

func TestIsPromotional(t *testing.T) {
	for _, tt := range []struct {
		raw  string
		want bool
	}{
		{"From: a@b.example\r\nList-Id: <x.example>\r\n\r\nbody", true},
		{"From: a@b.example\nlist-unsubscribe: <https://u.example/x>\n\nbody", true},
		{"Precedence: junk\r\n\r\n", true},
		{"Precedence: list\r\n\r\n", true},
		{"From: a@b.example\r\nSubject: hi\r\n\r\nList-Id: in the body\r\n", false},
		{"Precedence: first-class\r\n\r\n", false},
		{"X-List-Id: <x.example>\r\n\r\n", false},
		{"", false},
		{"no header block at all", false},
	} {
		raw := []byte(tt.raw)
		cp := append([]byte(nil), raw...)
		if got := isPromotional(raw); got != tt.want {
			t.Errorf("isPromotional(%q) = %v, want %v", tt.raw, got, tt.want)
		}
		if string(cp) != string(raw) {
			t.Errorf("isPromotional changed its input: %q", raw)
		}
	}
}

// FuzzIsPromotional: any bytes are judged without a panic and without
// being changed, and a header block that starts with List-Id is
// promotional whatever follows.
func FuzzIsPromotional(f *testing.F) {
	for _, s := range []string{
		"List-Id: <x.example>\r\n\r\nbody", "Precedence: bulk\n\n", "From: a@b\r\n folded\r\n\r\n",
		"\r\n\r\nList-Id: body", "List-Unsubscribe:\r\n\r\n", ": no name\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		cp := append([]byte(nil), raw...)
		isPromotional(raw)
		if string(cp) != string(raw) {
			t.Fatal("isPromotional changed its input")
		}
		if !isPromotional(append([]byte("List-Id: <l.example>\r\n\r\n"), raw...)) {
			t.Fatal("a List-Id header block is not promotional")
		}
	})
}
