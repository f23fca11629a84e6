package spool

import (
	"context"
	"reflect"
	"testing"
	"time"
)

// stored reads and decodes the pending record id from pebble, bypassing
// the entry cache.
func stored(t *testing.T, s *Spool, id string) Entry {
	t.Helper()
	v, err := s.get(dbKey(prefixQueue, id))
	if err != nil {
		t.Fatalf("reading %s: %v", id, err)
	}
	e, err := decodeEntry(v)
	if err != nil {
		t.Fatalf("decoding %s: %v", id, err)
	}
	return e
}

// cached reports whether id's entry is in the cache, after checking the
// cache's accounting and that the cached entry equals the stored one.
func cached(t *testing.T, s *Spool, id string) bool {
	t.Helper()
	s.mu.Lock()
	var sum int64
	for _, it := range s.items {
		if it.entry != nil {
			sum += it.entrySize
		}
	}
	if sum != s.cacheBytes || s.cacheBytes > max(s.cacheMax, 0) {
		t.Errorf("cache holds %d bytes, accounted %d, bound %d", sum, s.cacheBytes, s.cacheMax)
	}
	var e *Entry
	if it := s.items[id]; it != nil && it.entry != nil {
		c := *it.entry
		e = &c
	}
	s.mu.Unlock()
	if e == nil {
		return false
	}
	if want := stored(t, s, id); !reflect.DeepEqual(*e, want) {
		t.Errorf("cached %s:\n%#v\nstored:\n%#v", id, *e, want)
	}
	return true
}

// TestCacheIsTheStoredEntry checks that the entries Next hands out from the
// cache are exactly those decoding the store would give (times, empty
// fields, sent records), after Put and after each rewrite, and that what
// JSON would change (invalid UTF-8) is not cached.
func TestCacheIsTheStoredEntry(t *testing.T) {
	zone := time.FixedZone("X", 5*3600+1800)
	tests := []struct {
		name       string
		e          Entry
		retryAt    time.Time // never in the future
		reason     string
		wantCached [3]bool // after put, mark sent, retry
	}{
		{"plain", entry("a", "payload"), time.Time{}, "timeout", [3]bool{true, true, true}},
		{"empty payload", Entry{ID: "b", Payload: []byte{}}, time.Now(), "x", [3]bool{true, true, true}},
		{"nil payload", Entry{ID: "c"}, time.Now().In(zone), "x", [3]bool{true, true, true}},
		{"enqueued in a zone", Entry{ID: "d", Payload: []byte("p"), EnqueuedAt: time.Date(2026, 1, 2, 3, 4, 5, 6, zone)}, time.Now().UTC(), "x", [3]bool{true, true, true}},
		{"sent empty", Entry{ID: "e", Payload: []byte("p"), Sent: map[string]string{}}, time.Time{}, "x", [3]bool{true, true, true}},
		{"invalid utf-8 reason", entry("f", "p"), time.Time{}, "bad \xff reason", [3]bool{true, true, false}},
		{"invalid utf-8 kind", Entry{ID: "g", Kind: "\xfe", Payload: []byte("p")}, time.Time{}, "x", [3]bool{false, true, true}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir(), Options{})
			mustPut(t, s, tc.e)
			id := tc.e.ID
			if got := cached(t, s, id); got != tc.wantCached[0] {
				t.Fatalf("cached after put: %v, want %v", got, tc.wantCached[0])
			}
			check := func(step string) {
				t.Helper()
				e := mustNext(t, s)
				if want := stored(t, s, id); !reflect.DeepEqual(e, want) {
					t.Fatalf("%s: next gave\n%#v\nstored:\n%#v", step, e, want)
				}
			}
			check("after put")
			if err := s.MarkSent(id, "k", "ses-1"); err != nil {
				t.Fatal(err)
			}
			// Read back from the store if it was not cached: as stored.
			if got := cached(t, s, id); got != tc.wantCached[1] {
				t.Fatalf("cached after mark sent: %v, want %v", got, tc.wantCached[1])
			}
			if err := s.Retry(id, tc.retryAt, tc.reason); err != nil {
				t.Fatal(err)
			}
			if got := cached(t, s, id); got != tc.wantCached[2] {
				t.Fatalf("cached after retry: %v, want %v", got, tc.wantCached[2])
			}
			check("after retry")
		})
	}
}

// TestCacheSharesNothing checks that changing what Next returned (its
// payload, its sent record) changes neither the spool's entry nor what
// MarkSent records.
func TestCacheSharesNothing(t *testing.T) {
	s := openTest(t, t.TempDir(), Options{})
	e := entry("a", "payload")
	e.Sent = map[string]string{"k0": "ses-0"}
	mustPut(t, s, e)
	e.Payload[0], e.Sent["k0"] = 'X', "changed" // the caller's, after Put
	got := mustNext(t, s)
	got.Payload[1] = 'Y'
	got.Sent["k9"] = "not recorded"
	if err := s.MarkSent("a", "k1", "ses-1"); err != nil {
		t.Fatal(err)
	}
	got.Sent["k8"] = "not recorded either"
	if err := s.Retry("a", time.Time{}, "again"); err != nil {
		t.Fatal(err)
	}
	again := mustNext(t, s)
	want := map[string]string{"k0": "ses-0", "k1": "ses-1"}
	if string(again.Payload) != "payload" || !reflect.DeepEqual(again.Sent, want) {
		t.Fatalf("next: payload %q, sent %v; want payload, %v", again.Payload, again.Sent, want)
	}
	if !cached(t, s, "a") {
		t.Fatal("not cached")
	}
}

// TestCacheBudget runs entries through their life with no cache, a cache
// holding two of them and the default one: the entries are the same
// either way, the cache stays within its bound and is empty once nothing
// is pending.
func TestCacheBudget(t *testing.T) {
	payload := string(make([]byte, 1000))
	size := cacheSize(&Entry{ID: "m0", Kind: "Received", TopicARN: "arn:aws:sns:eu-west-1:1:t", Payload: []byte(payload)})
	for _, tc := range []struct {
		name       string
		cacheBytes int64
		wantCached int
	}{
		{"off", -1, 0},
		{"two entries", 2*size + size/2, 2},
		{"default", 0, 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := openTest(t, t.TempDir(), Options{CacheBytes: tc.cacheBytes})
			ids := []string{"m0", "m1", "m2", "m3", "m4"}
			n := 0
			for _, id := range ids {
				mustPut(t, s, entry(id, payload))
				if cached(t, s, id) {
					n++
				}
			}
			if n != tc.wantCached {
				t.Fatalf("%d cached, want %d", n, tc.wantCached)
			}
			for _, id := range ids {
				e := mustNext(t, s)
				if e.ID != id || string(e.Payload) != payload {
					t.Fatalf("next: %q, want %q", e.ID, id)
				}
				if err := s.MarkSent(id, "k", "ses"); err != nil {
					t.Fatal(err)
				}
				cached(t, s, id)
				if err := s.Complete(id); err != nil {
					t.Fatal(err)
				}
			}
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.cacheBytes != 0 {
				t.Fatalf("cache holds %d bytes with nothing pending", s.cacheBytes)
			}
		})
	}
}

// TestCacheLeftOnChange checks that the paths that end or replace a pending
// entry outside a rewrite leave it uncached or cache what they stored:
// dead-lettering, redriving, held entries, reopening.
func TestCacheLeftOnChange(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, Options{})
	mustPut(t, s, entry("a", "1"))
	held := entry("h", "2")
	held.NextAttempt = HeldDue
	mustPut(t, s, held)
	if cached(t, s, "h") {
		t.Fatal("held entry cached")
	}
	if !cached(t, s, "a") {
		t.Fatal("a not cached after put")
	}
	if err := s.MarkSent("a", "k", "ses"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeadLetter("a", "gave up"); err != nil {
		t.Fatal(err)
	}
	if s.cacheBytes != 0 {
		t.Fatalf("cache holds %d bytes after dead-lettering", s.cacheBytes)
	}
	if dup, err := s.Put(context.Background(), entry("a", "1")); !dup || err != nil {
		t.Fatalf("put of a dead-lettered id: %v, %v", dup, err)
	}
	if n, err := s.Redrive("a"); n != 1 || err != nil {
		t.Fatalf("redrive: %d, %v", n, err)
	}
	cached(t, s, "a")
	e := mustNext(t, s)
	if e.ID != "a" || e.Sent["k"] != "ses" {
		t.Fatalf("next after redrive: %+v", e)
	}
	if err := s.MarkSent("a", "k2", "ses2"); err != nil {
		t.Fatal(err)
	}
	if !cached(t, s, "a") {
		t.Fatal("a not cached after mark sent")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, Options{})
	if cached(t, s, "a") || s.cacheBytes != 0 {
		t.Fatal("cached after reopening")
	}
	e = mustNext(t, s)
	if e.ID != "a" || len(e.Sent) != 2 {
		t.Fatalf("next after reopen: %+v", e)
	}
}
