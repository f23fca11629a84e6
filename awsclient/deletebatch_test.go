package awsclient

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/telemetry"
)

// never is an interval no test waits for: batches leave when full or at
// Close only, so the requests made are known exactly.
const never = time.Hour

func notDeleted(m *telemetry.Metrics) float64 {
	return testutil.ToFloat64(m.S3ObjectsNotDeleted)
}

// TestBatchedDeletesFake: against gofakes3, objects queued by Delete are
// gone after Close, in one DeleteObjects per bucket and per 1,000 keys.
func TestBatchedDeletesFake(t *testing.T) {
	fs := newFakeS3(t)
	want := map[string]int{"inbound": 2100, "other": 5}
	for bucket, n := range want {
		for i := range n {
			if err := fs.Put(bucket, fmt.Sprintf("m/%d", i), []byte(mail)); err != nil {
				t.Fatal(err)
			}
		}
	}
	o := testOptions(fs.URL(), "")
	b := newClients(t, o).S3.BatchDeletes(never, 0)
	ctx := context.Background()
	for bucket, n := range want {
		for i := range n {
			if err := b.Delete(ctx, bucket, fmt.Sprintf("m/%d", i)); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	for bucket, n := range want {
		for i := range n {
			if fs.Has(bucket, fmt.Sprintf("m/%d", i)) {
				t.Fatalf("%s/m/%d still there after Close", bucket, i)
			}
		}
	}
	// inbound: 1,000 + 1,000 when full, 100 at Close; other: 5 at Close.
	if n := calls(t, o.Metrics, "s3", "DeleteObjects", "ok"); n != 4 {
		t.Errorf("DeleteObjects ok observed %d times, want 4", n)
	}
	if n := calls(t, o.Metrics, "s3", "DeleteObject", "ok"); n != 0 {
		t.Errorf("DeleteObject observed %d times, want 0", n)
	}
	if n := notDeleted(o.Metrics); n != 0 {
		t.Errorf("not deleted %v, want 0", n)
	}

	// Closed: a Delete deletes at once.
	if err := fs.Put("inbound", "late", []byte(mail)); err != nil {
		t.Fatal(err)
	}
	if err := b.Delete(ctx, "inbound", "late"); err != nil {
		t.Fatal(err)
	}
	if fs.Has("inbound", "late") {
		t.Error("Delete after Close left the object")
	}
	if err := b.Close(ctx); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

// keyStore is an S3 stand-in for deletes: DeleteObjects and DeleteObject
// on a set of keys, with keys it refuses to delete (answered as per-key
// errors) a given number of times. It records each request's keys.
type keyStore struct {
	mu       sync.Mutex
	keys     map[string]bool
	refuse   map[string]int // key → DeleteObjects requests still refusing it
	requests [][]string     // keys of each DeleteObjects, in order
	singles  []string       // keys of each DeleteObject
	hold     chan struct{}  // if set, the first DeleteObjects waits for it
	held     chan struct{}  // closed when that request arrived
}

func newKeyStore(keys ...string) *keyStore {
	s := &keyStore{keys: map[string]bool{}, refuse: map[string]int{}}
	for _, k := range keys {
		s.keys[k] = true
	}
	return s
}

func (s *keyStore) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := strings.TrimPrefix(r.URL.Path, "/b/")
	switch {
	case r.Method == http.MethodDelete:
		s.mu.Lock()
		delete(s.keys, key)
		s.singles = append(s.singles, key)
		s.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && r.URL.Query().Has("delete"):
		var req struct {
			Quiet   bool
			Objects []struct{ Key string } `xml:"Object"`
		}
		if err := xml.NewDecoder(r.Body).Decode(&req); err != nil || !req.Quiet {
			http.Error(w, fmt.Sprintf("bad request (quiet %v): %v", req.Quiet, err), http.StatusBadRequest)
			return
		}
		s.mu.Lock()
		if s.hold != nil && len(s.requests) == 0 {
			close(s.held)
			s.mu.Unlock()
			<-s.hold
			s.mu.Lock()
		}
		var keys []string
		var errs strings.Builder
		for _, o := range req.Objects {
			keys = append(keys, o.Key)
			if s.refuse[o.Key] > 0 {
				s.refuse[o.Key]--
				fmt.Fprintf(&errs, "<Error><Key>%s</Key><Code>InternalError</Code><Message>try again</Message></Error>", o.Key)
				continue
			}
			delete(s.keys, o.Key)
		}
		s.requests = append(s.requests, keys)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/xml")
		fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><DeleteResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">%s</DeleteResult>`, errs.String())
	default:
		http.Error(w, "unexpected "+r.Method+" "+r.URL.String(), http.StatusMethodNotAllowed)
	}
}

func (s *keyStore) state() (left []string, requests [][]string, singles []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k := range s.keys {
		left = append(left, k)
	}
	return left, s.requests, s.singles
}

// TestBatchedDeleteRetries: an object S3 did not delete (a per-key error,
// or the whole request failed) is sent once more; one that fails twice is
// counted, left, and named by Close's error.
func TestBatchedDeleteRetries(t *testing.T) {
	for _, tc := range []struct {
		name         string
		refuse       map[string]int // per-key refusals
		failRequests int            // whole DeleteObjects requests failing (each 2 attempts)
		wantRequests [][]string
		wantLeft     []string
	}{
		{name: "all deleted", wantRequests: [][]string{{"a", "b", "c"}}},
		{name: "per-key error retried once", refuse: map[string]int{"b": 1},
			wantRequests: [][]string{{"a", "b", "c"}, {"b"}}},
		{name: "per-key error twice: left", refuse: map[string]int{"b": 2, "c": 1},
			wantRequests: [][]string{{"a", "b", "c"}, {"b", "c"}}, wantLeft: []string{"b"}},
		{name: "request failed, retried", failRequests: 1,
			wantRequests: [][]string{{"a", "b", "c"}}},
		{name: "request failed twice: all left", failRequests: 2,
			wantRequests: nil, wantLeft: []string{"a", "b", "c"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ks := newKeyStore("a", "b", "c")
			for k, n := range tc.refuse {
				ks.refuse[k] = n
			}
			srv, faults := standIn(t, ks)
			faults.Next(2*tc.failRequests, fakes.FaultInternalError)
			o := testOptions(srv.URL, "")
			b := newClients(t, o).S3.BatchDeletes(never, 0)
			for _, k := range []string{"a", "b", "c"} {
				if err := b.Delete(context.Background(), "b", k); err != nil {
					t.Fatal(err)
				}
			}
			err := b.Close(context.Background())
			left, requests, singles := ks.state()
			if fmt.Sprint(requests) != fmt.Sprint(tc.wantRequests) {
				t.Errorf("DeleteObjects requests %v, want %v", requests, tc.wantRequests)
			}
			if len(singles) != 0 {
				t.Errorf("DeleteObject for %v, want none", singles)
			}
			if len(left) != len(tc.wantLeft) {
				t.Errorf("left %v, want %v", left, tc.wantLeft)
			}
			if got := notDeleted(o.Metrics); got != float64(len(tc.wantLeft)) {
				t.Errorf("not deleted counted %v, want %d", got, len(tc.wantLeft))
			}
			if (err != nil) != (len(tc.wantLeft) > 0) {
				t.Errorf("Close: %v, want an error: %v", err, len(tc.wantLeft) > 0)
			}
		})
	}
}

// TestBatchedDeleteQueueFull: while a batch is under way and the queue is
// full, Delete deletes the object itself (DeleteObject); nothing is
// dropped.
func TestBatchedDeleteQueueFull(t *testing.T) {
	ks := newKeyStore("k0", "k1", "k2")
	ks.hold, ks.held = make(chan struct{}), make(chan struct{})
	srv, _ := standIn(t, ks)
	o := testOptions(srv.URL, "")
	b := newClients(t, o).S3.BatchDeletes(10*time.Millisecond, 1)
	ctx := context.Background()
	if err := b.Delete(ctx, "b", "k0"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-ks.held: // k0's batch is under way, the queue empty
	case <-time.After(10 * time.Second):
		t.Fatal("no DeleteObjects after an interval")
	}
	for _, k := range []string{"k1", "k2"} { // k1 queued, k2 deleted at once
		if err := b.Delete(ctx, "b", k); err != nil {
			t.Fatal(err)
		}
	}
	close(ks.hold)
	if err := b.Close(ctx); err != nil {
		t.Fatal(err)
	}
	left, requests, singles := ks.state()
	if len(left) != 0 {
		t.Errorf("left %v", left)
	}
	if fmt.Sprint(requests) != "[[k0] [k1]]" {
		t.Errorf("DeleteObjects requests %v, want [[k0] [k1]]", requests)
	}
	if fmt.Sprint(singles) != "[k2]" {
		t.Errorf("DeleteObject for %v, want [k2]", singles)
	}
}

// TestBatchedDeleteCloseDeadline: Close returns by its deadline while S3
// hangs, and counts what it left.
func TestBatchedDeleteCloseDeadline(t *testing.T) {
	ks := newKeyStore("a")
	srv, faults := standIn(t, ks)
	faults.Next(10, fakes.Hang(30*time.Second))
	o := testOptions(srv.URL, "")
	b := newClients(t, o).S3.BatchDeletes(never, 0)
	if err := b.Delete(context.Background(), "b", "a"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- b.Close(ctx) }()
	select {
	case err := <-done:
		if err == nil {
			t.Error("Close: nil, want the object counted as left")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return after its deadline")
	}
	if got := notDeleted(o.Metrics); got != 1 {
		t.Errorf("not deleted counted %v, want 1", got)
	}
}
