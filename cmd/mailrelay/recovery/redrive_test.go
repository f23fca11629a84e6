package recovery

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

// fakeQueue is an SQS stand-in: received messages are invisible for the
// rest of the run unless reappear is set (a visibility timeout that ran out).
type fakeQueue struct {
	msgs     []Message
	inflight map[string]Message
	reappear bool
	deleted  []string
	receives int
	failRecv error
	failDel  error
	lastMax  int
	lastWait time.Duration
}

func newQueue(n int) *fakeQueue {
	q := &fakeQueue{inflight: map[string]Message{}}
	for i := range n {
		id := fmt.Sprintf("m%02d", i)
		q.msgs = append(q.msgs, Message{ID: id, Receipt: "r-" + id, Body: `{"MessageId":"` + id + `"}`})
	}
	return q
}

func (q *fakeQueue) Receive(ctx context.Context, max int, wait time.Duration) ([]Message, error) {
	q.receives++
	q.lastMax, q.lastWait = max, wait
	if q.failRecv != nil {
		return nil, q.failRecv
	}
	n := min(max, len(q.msgs))
	out := slices.Clone(q.msgs[:n])
	q.msgs = q.msgs[n:]
	for _, m := range out {
		q.inflight[m.Receipt] = m
	}
	if q.reappear {
		q.msgs = append(q.msgs, out...)
	}
	return out, nil
}

func (q *fakeQueue) Delete(ctx context.Context, receipt string) error {
	if q.failDel != nil {
		return q.failDel
	}
	m, ok := q.inflight[receipt]
	if !ok {
		return errors.New("unknown receipt")
	}
	delete(q.inflight, receipt)
	q.msgs = slices.DeleteFunc(q.msgs, func(x Message) bool { return x.Receipt == receipt })
	q.deleted = append(q.deleted, m.ID)
	return nil
}

// remaining is what a later run would see.
func (q *fakeQueue) remaining() int { return len(q.msgs) + len(q.inflight) }

// statusPoster answers by the message id in the body.
type statusPoster struct {
	status map[string]int // default 200
	err    map[string]error
	posted []string
}

func (p *statusPoster) Post(ctx context.Context, body []byte) (int, error) {
	id := strings.TrimSuffix(strings.TrimPrefix(string(body), `{"MessageId":"`), `"}`)
	p.posted = append(p.posted, id)
	if err := p.err[id]; err != nil {
		return 0, err
	}
	if s, ok := p.status[id]; ok {
		return s, nil
	}
	return 200, nil
}

func TestRedrive(t *testing.T) {
	refused := errors.New("connection refused")
	tests := []struct {
		name       string
		n          int
		opts       RedriveOptions
		status     map[string]int
		postErr    map[string]error
		wantErr    error
		want       RedriveResult
		wantPosted int
		wantQueued int
	}{
		{name: "empty", n: 0, want: RedriveResult{}},
		{name: "all accepted over several batches", n: 23, want: RedriveResult{Received: 23, Accepted: 23}, wantPosted: 23},
		{name: "max bounds the run", n: 23, opts: RedriveOptions{Max: 12}, want: RedriveResult{Received: 12, Accepted: 12}, wantPosted: 12, wantQueued: 11},
		{name: "rejected is left", n: 5, status: map[string]int{"m01": 403, "m03": 400},
			want:       RedriveResult{Received: 5, Accepted: 3, Rejected: 2, Left: 2, Rejections: []Rejection{{ID: "m01", Status: 403}, {ID: "m03", Status: 400}}},
			wantPosted: 5, wantQueued: 2},
		{name: "rejected is deleted on request", n: 5, opts: RedriveOptions{DeleteRejected: true}, status: map[string]int{"m01": 403},
			want: RedriveResult{Received: 5, Accepted: 4, Rejected: 1, Rejections: []Rejection{{ID: "m01", Status: 403, Deleted: true}}}, wantPosted: 5},
		{name: "503 stops, rest left", n: 15, status: map[string]int{"m12": 503}, wantErr: ErrRelayUnavailable,
			want: RedriveResult{Received: 15, Accepted: 12, Left: 3}, wantPosted: 13, wantQueued: 3},
		{name: "429 is not final", n: 3, status: map[string]int{"m00": 429}, wantErr: ErrRelayUnavailable,
			want: RedriveResult{Received: 3, Left: 3}, wantPosted: 1, wantQueued: 3},
		{name: "relay down", n: 3, postErr: map[string]error{"m01": refused}, wantErr: refused,
			want: RedriveResult{Received: 3, Accepted: 1, Left: 2}, wantPosted: 2, wantQueued: 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			q := newQueue(tc.n)
			p := &statusPoster{status: tc.status, err: tc.postErr}
			got, err := Redrive(context.Background(), q, p, tc.opts)
			if tc.wantErr == nil && err != nil || tc.wantErr != nil && !errors.Is(err, tc.wantErr) {
				t.Fatalf("err %v, want %v", err, tc.wantErr)
			}
			if fmt.Sprint(got) != fmt.Sprint(tc.want) || !slices.Equal(got.Rejections, tc.want.Rejections) {
				t.Errorf("result %+v, want %+v", got, tc.want)
			}
			if len(p.posted) != tc.wantPosted {
				t.Errorf("posted %d, want %d", len(p.posted), tc.wantPosted)
			}
			if q.remaining() != tc.wantQueued {
				t.Errorf("queued after run %d, want %d", q.remaining(), tc.wantQueued)
			}
			if q.lastMax > 10 || q.lastWait != 2*time.Second {
				t.Errorf("receive max %d wait %v, want ≤10 and 2s", q.lastMax, q.lastWait)
			}
		})
	}
}

// A rejected message that becomes visible again is not posted twice: the
// run ends when a receive brings nothing new.
func TestRedriveStopsOnRepeats(t *testing.T) {
	q := newQueue(3)
	q.reappear = true
	p := &statusPoster{status: map[string]int{"m00": 403, "m01": 403, "m02": 403}}
	got, err := Redrive(context.Background(), q, p, RedriveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Received != 3 || got.Rejected != 3 || len(p.posted) != 3 {
		t.Fatalf("result %+v, posted %v", got, p.posted)
	}
}

// A refused message that shows up again does not hide the ones behind it.
func TestRedriveRepeatsDoNotHideOthers(t *testing.T) {
	q := newQueue(0)
	q.msgs = []Message{{ID: "bad", Receipt: "r-bad", Body: `{"MessageId":"bad"}`}}
	q.reappear = true
	p := &statusPoster{status: map[string]int{"bad": 403}}
	calls := 0
	rq := &scriptQueue{fakeQueue: q, before: func() {
		if calls++; calls == 3 { // the good one arrives behind a repeat
			q.reappear = false
			q.msgs = append(q.msgs, Message{ID: "good", Receipt: "r-good", Body: `{"MessageId":"good"}`})
		}
	}}
	got, err := Redrive(context.Background(), rq, p, RedriveOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got.Received != 2 || got.Accepted != 1 || got.Rejected != 1 || !slices.Equal(q.deleted, []string{"good"}) {
		t.Fatalf("result %+v, deleted %v", got, q.deleted)
	}
}

type scriptQueue struct {
	*fakeQueue
	before func()
}

func (q *scriptQueue) Receive(ctx context.Context, max int, wait time.Duration) ([]Message, error) {
	q.before()
	return q.fakeQueue.Receive(ctx, max, wait)
}

func TestRedriveWaitAfterEmpty(t *testing.T) {
	q := newQueue(0)
	clock := time.Unix(0, 0)
	opts := RedriveOptions{Wait: 10 * time.Second, Poll: 7 * time.Second, Now: func() time.Time { clock = clock.Add(time.Second); return clock }}
	if _, err := Redrive(context.Background(), q, &statusPoster{}, opts); err != nil {
		t.Fatal(err)
	}
	if q.receives < 10 || q.lastWait != 5*time.Second {
		t.Fatalf("receives %d (want ≥10 over the 10 s wait), poll %v (want clamped to 5s)", q.receives, q.lastWait)
	}
}

func TestRedriveErrors(t *testing.T) {
	q := newQueue(2)
	q.failRecv = errors.New("AccessDenied")
	if _, err := Redrive(context.Background(), q, &statusPoster{}, RedriveOptions{}); err == nil || !strings.Contains(err.Error(), "AccessDenied") {
		t.Fatalf("receive error: %v", err)
	}
	q = newQueue(2)
	q.failDel = errors.New("throttled")
	got, err := Redrive(context.Background(), q, &statusPoster{}, RedriveOptions{})
	if err == nil || got.Accepted != 1 || got.Left != 2 {
		t.Fatalf("delete error: %+v %v", got, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := Redrive(ctx, newQueue(2), &statusPoster{}, RedriveOptions{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}
