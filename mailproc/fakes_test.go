package mailproc

// In-memory stand-ins for the pool's dependencies, and helpers shared by the
// tests: they record every call so that tests assert what the pool did, not
// how long it took.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/mailtest"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/telemetry"
)

type retryCall struct {
	id     string
	at     time.Time
	reason string
}

type deadCall struct {
	id     string
	reason string
}

type markCall struct {
	id, key, sesID string
}

// fakeQueue is a Queue in memory. It keeps the entries it was given so that
// a second attempt (entry(id)) sees the Sent record and Attempts of the
// first, as the spool would.
type fakeQueue struct {
	mu        sync.Mutex
	entries   map[string]*spool.Entry
	completed []string
	retries   []retryCall
	dead      []deadCall
	released  []string
	marks     []markCall

	markErr     error // returned by MarkSent
	completeErr error // returned by Complete

	next     chan spool.Entry // what Next hands out
	nextErr  error            // when set, Next returns it at once
	finished chan string      // receives the id of each entry completed, dead-lettered or retried, when set
}

func newFakeQueue() *fakeQueue {
	return &fakeQueue{entries: map[string]*spool.Entry{}, next: make(chan spool.Entry)}
}

// add stores e as pending and returns a copy of it to process.
func (q *fakeQueue) add(e spool.Entry) spool.Entry {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := e
	c.Sent = maps.Clone(e.Sent)
	q.entries[e.ID] = &c
	return q.copyLocked(e.ID)
}

// entry returns a copy of the pending entry id as the spool would hand it
// out for the next attempt.
func (q *fakeQueue) entry(t *testing.T, id string) spool.Entry {
	t.Helper()
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.entries[id]; !ok {
		t.Fatalf("entry %q is not pending", id)
	}
	return q.copyLocked(id)
}

func (q *fakeQueue) copyLocked(id string) spool.Entry {
	e := *q.entries[id]
	e.Sent = maps.Clone(e.Sent)
	return e
}

func (q *fakeQueue) Next(ctx context.Context) (spool.Entry, error) {
	if q.nextErr != nil {
		return spool.Entry{}, q.nextErr
	}
	select {
	case e := <-q.next:
		return q.add(e), nil
	case <-ctx.Done():
		return spool.Entry{}, ctx.Err()
	}
}

func (q *fakeQueue) MarkSent(id, key, sesMessageID string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.markErr != nil {
		return q.markErr
	}
	e, ok := q.entries[id]
	if !ok {
		return fmt.Errorf("mark sent %q: %w", id, spool.ErrNotFound)
	}
	if e.Sent == nil {
		e.Sent = map[string]string{}
	}
	e.Sent[key] = sesMessageID
	q.marks = append(q.marks, markCall{id, key, sesMessageID})
	return nil
}

func (q *fakeQueue) Retry(id string, at time.Time, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	e, ok := q.entries[id]
	if !ok {
		return fmt.Errorf("retry %q: %w", id, spool.ErrNotFound)
	}
	e.Attempts++
	e.NextAttempt = at
	e.LastError = reason
	q.retries = append(q.retries, retryCall{id, at, reason})
	q.signal(id)
	return nil
}

func (q *fakeQueue) Release(id string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.released = append(q.released, id)
}

func (q *fakeQueue) Complete(id string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.completeErr != nil {
		return q.completeErr
	}
	if _, ok := q.entries[id]; !ok {
		return fmt.Errorf("complete %q: %w", id, spool.ErrNotFound)
	}
	delete(q.entries, id)
	q.completed = append(q.completed, id)
	q.signal(id)
	return nil
}

func (q *fakeQueue) DeadLetter(id, reason string) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if _, ok := q.entries[id]; !ok {
		return fmt.Errorf("dead-letter %q: %w", id, spool.ErrNotFound)
	}
	delete(q.entries, id)
	q.dead = append(q.dead, deadCall{id, reason})
	q.signal(id)
	return nil
}

func (q *fakeQueue) signal(id string) {
	if q.finished != nil {
		q.finished <- id
	}
}

// outcomes returns how many times each settling call was made.
func (q *fakeQueue) outcomes() (completed, retried, dead, released int) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.completed), len(q.retries), len(q.dead), len(q.released)
}

// fakeObjects is an ObjectStore over a map "bucket/key" → bytes.
type fakeObjects struct {
	mu        sync.Mutex
	objects   map[string][]byte
	getErrs   []error // error of the Get call with that index (nil: none)
	deleteErr error
	gets      int
	deletes   map[string]int // "bucket/key" → Delete calls
}

func newFakeObjects() *fakeObjects {
	return &fakeObjects{objects: map[string][]byte{}, deletes: map[string]int{}}
}

func (s *fakeObjects) put(bucket, key string, data []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.objects[bucket+"/"+key] = data
}

func (s *fakeObjects) Get(ctx context.Context, bucket, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	i := s.gets
	s.gets++
	if i < len(s.getErrs) && s.getErrs[i] != nil {
		return nil, s.getErrs[i]
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	data, ok := s.objects[bucket+"/"+key]
	if !ok {
		return nil, fmt.Errorf("fake store: no object %s/%s", bucket, key)
	}
	return bytes.Clone(data), nil
}

func (s *fakeObjects) Delete(ctx context.Context, bucket, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.deletes[bucket+"/"+key]++
	return s.deleteErr
}

func (s *fakeObjects) counts() (gets, deletes int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range s.deletes {
		deletes += n
	}
	return s.gets, deletes
}

// sendCall is one SendRaw call.
type sendCall struct {
	from string
	to   []string
	raw  []byte
	err  error // what the call returned
}

// fakeSender is a Sender that records every call. errs and panics are keyed
// by call index (0 is the first call); block makes every call wait for its
// context to end; hook, when set, runs at the start of each call.
type fakeSender struct {
	mu     sync.Mutex
	calls  []sendCall
	errs   map[int]error
	panics map[int]bool
	block  bool
	hook   func(ctx context.Context, call int) error

	started chan struct{} // receives once per call when set (before blocking)
}

func (s *fakeSender) SendRaw(ctx context.Context, from string, destinations []string, raw []byte) (string, error) {
	s.mu.Lock()
	i := len(s.calls)
	// Copy: the pool reuses its buffer for the next copy.
	c := sendCall{from: from, to: slices.Clone(destinations), raw: bytes.Clone(raw)}
	s.calls = append(s.calls, c)
	err, doPanic, block, hook := s.errs[i], s.panics[i], s.block, s.hook
	s.mu.Unlock()

	if s.started != nil {
		s.started <- struct{}{}
	}
	if doPanic {
		s.mu.Lock()
		s.calls[i].err = errors.New("panicked")
		s.mu.Unlock()
		panic(fmt.Sprintf("fake sender panic on call %d", i))
	}
	if hook != nil && err == nil {
		err = hook(ctx, i)
	}
	if block && err == nil {
		<-ctx.Done()
		err = ctx.Err()
	}
	s.mu.Lock()
	s.calls[i].err = err
	s.mu.Unlock()
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("ses-out-%d", i), nil
}

// sent returns the calls that succeeded.
func (s *fakeSender) sent() []sendCall {
	s.mu.Lock()
	defer s.mu.Unlock()
	var l []sendCall
	for _, c := range s.calls {
		if c.err == nil {
			l = append(l, c)
		}
	}
	return l
}

func (s *fakeSender) numCalls() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.calls)
}

// errResolver fails every lookup with err.
type errResolver struct{ err error }

func (r errResolver) Resolve(ctx context.Context, address string) (aliases.Route, error) {
	return aliases.Route{}, r.err
}

const aliasYAML = `domains: [relay.example.com]
aliases:
  - address: shop@relay.example.com
    forward_to: [bob@example.org, alice@example.org]
  - address: sales@relay.example.com
    forward_to: [carol@example.org]
`

const (
	testBucket = "relay-inbound-mail"
	testKey    = "incoming/c2v5b9sj1q0r8m7n6p5k4t3u2v1w0x9y8z7a6b5c"
)

var (
	testNow   = time.Date(2024, 3, 1, 10, 12, 0, 0, time.UTC)
	shopTo    = []string{"alice@example.org", "bob@example.org"}
	salesTo   = []string{"carol@example.org"}
	testMaxMB = int64(1 << 20)
)

// notification loads a mailtest notification (real SES shapes), applies
// mut and encodes it again.
func notification(t testing.TB, name string, mut func(n *sesnotify.Notification)) []byte {
	t.Helper()
	var n sesnotify.Notification
	if err := json.Unmarshal(mailtest.Notification(name), &n); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if mut != nil {
		mut(&n)
	}
	b, err := json.Marshal(&n)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// s3Notification is received_s3.json with all verdicts PASS (the file has a
// DMARC FAIL with policy quarantine) and recipients rcpts (when given).
func s3Notification(t testing.TB, mut func(n *sesnotify.Notification), rcpts ...string) []byte {
	t.Helper()
	return notification(t, "received_s3.json", func(n *sesnotify.Notification) {
		n.Pass().Receipt.DMARCPolicy = ""
		if len(rcpts) > 0 {
			n.Receipt.Recipients = rcpts
		}
		if mut != nil {
			mut(n)
		}
	})
}

// env is a pool with fakes, a fixed clock and its own metrics.
type env struct {
	p       *Pool
	q       *fakeQueue
	objects *fakeObjects
	sender  *fakeSender
	metrics *telemetry.Metrics
}

// defaultPolicy drops on every verdict and deletes objects.
func defaultPolicy() Policy {
	return Policy{
		DropSpam:        true,
		DropVirus:       true,
		DropDMARCReject: true,
		DeleteObjects:   true,
		MaxMessageBytes: testMaxMB,
	}
}

// newEnv builds a pool over fakes; mut may change the config before New.
// The S3 object of received_s3.json holds mail.eml.
func newEnv(t testing.TB, mut func(c *Config)) *env {
	t.Helper()
	table, err := aliases.Parse([]byte(aliasYAML))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{q: newFakeQueue(), objects: newFakeObjects(), sender: &fakeSender{}, metrics: telemetry.NewMetrics()}
	e.objects.put(testBucket, testKey, mailtest.ReceivedMail())
	cfg := Config{
		Workers:        1,
		Queue:          e.q,
		Objects:        e.objects,
		Sender:         e.sender,
		Aliases:        table,
		Policy:         defaultPolicy(),
		AttemptTimeout: time.Minute,
		RetryMin:       2 * time.Second,
		RetryMax:       5 * time.Minute,
		RetryMaxAge:    24 * time.Hour,
		InFlightBytes:  8 * testMaxMB,
		Metrics:        e.metrics,
		Now:            func() time.Time { return testNow },
	}
	if mut != nil {
		mut(&cfg)
	}
	e.p, err = New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// newEntry returns a fresh spool entry for payload, enqueued a minute ago.
func newEntry(id string, payload []byte) spool.Entry {
	return spool.Entry{ID: id, Kind: "Received", Payload: payload, EnqueuedAt: testNow.Add(-time.Minute)}
}

// run adds e to the queue and runs one attempt on it.
func (e *env) run(ctx context.Context, ent spool.Entry) {
	e.p.handle(ctx, e.q.add(ent))
}

// messageCounts returns the non-zero mailrelay_messages_total series as
// "outcome/reason" → value.
func messageCounts(t testing.TB, m *telemetry.Metrics) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != "mailrelay_messages_total" {
			continue
		}
		for _, met := range mf.GetMetric() {
			var outcome, reason string
			for _, lp := range met.GetLabel() {
				switch lp.GetName() {
				case "outcome":
					outcome = lp.GetValue()
				case "reason":
					reason = lp.GetValue()
				}
			}
			if v := met.GetCounter().GetValue(); v != 0 {
				counts[outcome+"/"+reason] = v
			}
		}
	}
	return counts
}

// budgetUsed returns the bytes the pool's byte budget counts as held.
func budgetUsed(p *Pool) int64 {
	p.budget.mu.Lock()
	defer p.budget.mu.Unlock()
	return p.budget.used
}

// await fails t unless ch yields a value within wait; what says what was
// awaited.
func await[T any](t testing.TB, ch <-chan T, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(wait):
		t.Fatal(what)
	}
}

// give hands entry to a worker, failing t unless one takes it within wait.
func (e *env) give(t testing.TB, entry spool.Entry) {
	t.Helper()
	select {
	case e.q.next <- entry:
	case <-time.After(wait):
		t.Fatal("no worker took the entry")
	}
}
