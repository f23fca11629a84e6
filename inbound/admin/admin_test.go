package admin

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

type fakeQueue struct {
	dead     []spool.DeadLetter
	redriven []string
	put      map[string]spool.Entry
	putErr   error
}

func (f *fakeQueue) Put(ctx context.Context, e spool.Entry) (bool, error) {
	if f.putErr != nil {
		return false, f.putErr
	}
	if f.put == nil {
		f.put = map[string]spool.Entry{}
	}
	if _, ok := f.put[e.ID]; ok {
		return true, nil
	}
	f.put[e.ID] = e
	return false, nil
}

func (f *fakeQueue) DeadLetters(limit int) ([]spool.DeadLetter, error) {
	return f.dead[:min(limit, len(f.dead))], nil
}

func (f *fakeQueue) Redrive(ids ...string) (int, error) {
	if len(ids) == 0 {
		n := len(f.dead)
		for _, d := range f.dead {
			f.redriven = append(f.redriven, d.ID)
		}
		f.dead = nil
		return n, nil
	}
	n := 0
	var missing []string
	for _, id := range ids {
		i := slices.IndexFunc(f.dead, func(d spool.DeadLetter) bool { return d.ID == id })
		if i < 0 {
			missing = append(missing, id)
			continue
		}
		n++
		f.redriven = append(f.redriven, id)
		f.dead = slices.Delete(f.dead, i, i+1)
	}
	if len(missing) > 0 {
		return n, fmt.Errorf("%w: dead letters %s", spool.ErrNotFound, strings.Join(missing, ", "))
	}
	return n, nil
}

func TestListAndRedrive(t *testing.T) {
	now := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	fs := &fakeQueue{dead: []spool.DeadLetter{
		{Entry: spool.Entry{ID: "a", Payload: []byte("xyz"), Attempts: 2}, Reason: "malformed_mail: no header", DeadAt: now},
		{Entry: spool.Entry{ID: "b"}, Reason: "ses_rejected", DeadAt: now},
		{Entry: spool.Entry{ID: "c"}, Reason: "ses_rejected", DeadAt: now},
	}}
	srv := httptest.NewServer(Handler(fs, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	c := &Client{BaseURL: srv.URL}
	ctx := context.Background()

	items, err := c.List(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 2 || items[0].ID != "a" || items[0].Bytes != 3 || !strings.HasPrefix(items[0].Reason, "malformed_mail") {
		t.Fatalf("list = %+v", items)
	}
	if r, err := c.Redrive(ctx, []string{"b"}, false); err != nil || r.Redriven != 1 || r.NotFound != "" {
		t.Fatalf("redrive b = %+v, %v", r, err)
	}
	if _, err := c.Redrive(ctx, []string{"zzz"}, false); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("unknown id: %v", err)
	}
	if _, err := c.Redrive(ctx, nil, false); err == nil || !strings.Contains(err.Error(), "400") {
		t.Fatalf("neither ids nor all: %v", err)
	}
	// Partial: a is redriven, zzz is reported, nothing is hidden.
	if r, err := c.Redrive(ctx, []string{"a", "zzz"}, false); err != nil || r.Redriven != 1 || !strings.Contains(r.NotFound, "zzz") {
		t.Fatalf("partial redrive = %+v, %v", r, err)
	}
	if r, err := c.Redrive(ctx, nil, true); err != nil || r.Redriven != 1 {
		t.Fatalf("redrive all = %+v, %v", r, err)
	}
	if !slices.Equal(fs.redriven, []string{"b", "a", "c"}) {
		t.Errorf("redriven %q", fs.redriven)
	}
	resp, err := http.Get(srv.URL + "/deadletters?limit=-1")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("bad limit = %d", resp.StatusCode)
	}
}

func TestReconcile(t *testing.T) {
	fs := &fakeQueue{}
	srv := httptest.NewServer(Handler(fs, slog.New(slog.DiscardHandler)))
	defer srv.Close()
	post := func(body string) (int, string) {
		resp, err := http.Post(srv.URL+"/reconcile", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	good := string(sesnotify.Received("abc", time.Now(), []string{"shop@relay.example.com"}, sesnotify.S3Action("", "inbound", "mail/abc")).JSON())
	tests := []struct {
		name, body string
		code       int
		want       string
	}{
		{"spooled", good, 202, `"id": "reconcile:inbound/mail/abc"`},
		{"again", good, 202, `"duplicate": true`},
		{"not json", `{`, 400, ""},
		{"bounce", `{"notificationType":"Bounce","mail":{"messageId":"x"},"bounce":{}}`, 400, ""},
		{"inline action", `{"notificationType":"Received","mail":{"messageId":"x"},"receipt":{"action":{"type":"SNS"}},"content":"x"}`, 400, ""},
		{"too large", strings.Repeat("x", MaxReconcileBytes+1), 413, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := post(tt.body)
			if code != tt.code || !strings.Contains(body, tt.want) {
				t.Fatalf("%d %s, want %d containing %q", code, body, tt.code, tt.want)
			}
		})
	}
	if len(fs.put) != 1 || fs.put["reconcile:inbound/mail/abc"].Kind != "Received" {
		t.Errorf("stored %+v", fs.put)
	}
	fs.putErr = spool.ErrFull
	if code, _ := post(strings.Replace(good, "mail/abc", "mail/def", 1)); code != 503 {
		t.Errorf("full spool: %d", code)
	}
}
