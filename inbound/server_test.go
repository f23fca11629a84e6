package inbound_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/telemetry"
)

// chunked hides the length of r so the request is sent chunked.
type chunked struct{ r io.Reader }

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p) }

func TestBodyLimit(t *testing.T) {
	signer := snstest.New(t)
	e := newEnv(t, signer, envOptions{maxBody: 4096})
	big := signer.Notification(topic, "big", "", strings.Repeat("x", 8192), "1")
	if code, _ := e.post(t, chunked{bytes.NewReader(big)}); code != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked oversized body: %d, want 413", code)
	}
	if code, _ := e.post(t, bytes.NewReader(big)); code != http.StatusRequestEntityTooLarge {
		t.Errorf("oversized body: %d, want 413", code)
	}
	// A body of exactly the cap passes the size check.
	body := signer.Notification(topic, "fits", "", "", "1")
	pad := 4096 - len(body)
	body = signer.Notification(topic, "fits", "", strings.Repeat("y", pad), "1")
	if len(body) != 4096 {
		t.Fatalf("test body is %d bytes", len(body))
	}
	if code, _ := e.post(t, chunked{bytes.NewReader(body)}); code != http.StatusOK {
		t.Errorf("body at the cap: %d, want 200", code)
	}
	if n := len(e.queue.stored()); n != 1 {
		t.Errorf("stored %d, want 1", n)
	}
	if got := e.requests(inbound.TypeInvalid, "413"); got != 2 {
		t.Errorf("413 counted %v times, want 2", got)
	}
}

func TestNewValidates(t *testing.T) {
	v, err := sns.NewVerifier(sns.VerifierOptions{})
	if err != nil {
		t.Fatal(err)
	}
	q := newMemQueue()
	for name, cfg := range map[string]inbound.Config{
		"no topics":   {Verifier: v, Queue: q},
		"blank topic": {TopicARNs: []string{" "}, Verifier: v, Queue: q},
		"no verifier": {TopicARNs: []string{topic}, Queue: q},
		"no queue":    {TopicARNs: []string{topic}, Verifier: v},
	} {
		if _, err := inbound.New(cfg); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := inbound.New(inbound.Config{TopicARNs: []string{topic}, Verifier: v, Queue: q}); err != nil {
		t.Errorf("minimal config: %v", err)
	}
	if _, err := inbound.New(inbound.Config{TopicARNs: []string{topic}, Verifier: v, Queue: q}); err != nil {
		t.Errorf("the deprecated Store field is not taken as Queue: %v", err)
	}
}

func TestServerHardening(t *testing.T) {
	m := telemetry.NewMetrics()
	e := inbound.NewServer(m, nil)
	e.GET("/boom", func(c echo.Context) error { panic("boom") })
	e.GET("/err", func(c echo.Context) error { return fmt.Errorf("secret internal detail") })
	e.POST("/post-only", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	srv := snstest.Server(t, e)
	tests := []struct {
		method, path string
		code         int
	}{
		{http.MethodGet, "/boom", 500},
		{http.MethodGet, "/err", 500},
		{http.MethodGet, "/nope", 404},
		{http.MethodGet, "/post-only", 405},
	}
	for _, tt := range tests {
		req, _ := http.NewRequest(tt.method, srv.URL+tt.path, nil)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code {
			t.Errorf("%s %s: %d, want %d", tt.method, tt.path, resp.StatusCode, tt.code)
		}
		if strings.Contains(string(b), "secret") || strings.Contains(string(b), "{") {
			t.Errorf("%s %s: body leaks details: %q", tt.method, tt.path, b)
		}
	}
	if n := testutil.ToFloat64(m.Panics.WithLabelValues("inbound")); n != 1 {
		t.Errorf("panics %v, want 1", n)
	}
	if e.Server.ReadHeaderTimeout == 0 || e.Server.ReadTimeout == 0 || e.Server.WriteTimeout == 0 || e.Server.IdleTimeout == 0 {
		t.Errorf("server timeouts not set: %+v", e.Server)
	}
}

// TestConcurrentDuplicates posts the same delivery from many clients at
// once: every answer is 200 and it is stored once.
func TestConcurrentDuplicates(t *testing.T) {
	signer := snstest.New(t)
	e := newEnv(t, signer, envOptions{})
	body := signer.Notification(topic, "same", subject, sesS3, "2")
	const n = 16
	var wg sync.WaitGroup
	var bad atomic.Int64
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, e.server.URL+inbound.Path, bytes.NewReader(body))
			resp, err := client.Do(req)
			if err != nil {
				bad.Add(1)
				return
			}
			resp.Body.Close()
			if resp.StatusCode != 200 {
				bad.Add(1)
			}
		}()
	}
	wg.Wait()
	if bad.Load() != 0 {
		t.Errorf("%d requests not answered 200", bad.Load())
	}
	if got := len(e.queue.stored()); got != 1 {
		t.Errorf("stored %d, want 1", got)
	}
	if got := signer.Fetches() - e.fetchesBefore; got != 1 {
		t.Errorf("certificate fetched %d times, want 1", got)
	}
}

func FuzzInbound(f *testing.F) {
	signer := snstest.New(f)
	e := newEnv(f, signer, envOptions{maxBody: 64 << 10})
	f.Add(signer.Notification(topic, "f1", subject, sesS3, "1"))
	f.Add(signer.Notification(topic, "f2", "", sesInline, "2"))
	f.Add(signer.Notification(otherTopic, "f3", "", "x", "2"))
	f.Add(signer.SubscriptionConfirmation(topic, e.elsewhereURL))
	f.Add(signer.UnsubscribeConfirmation(topic, e.confirmURL))
	f.Add([]byte(`{"Type":"Notification"}`))
	f.Add([]byte(`not json`))
	allowed := map[int]bool{200: true, 400: true, 403: true, 413: true, 503: true}
	f.Fuzz(func(t *testing.T, body []byte) {
		req := httptest.NewRequest(http.MethodPost, inbound.Path, bytes.NewReader(body))
		rec := httptest.NewRecorder()
		e.echo.ServeHTTP(rec, req)
		if !allowed[rec.Code] {
			t.Fatalf("status %d for body %q", rec.Code, body)
		}
		if n := testutil.ToFloat64(e.metrics.Panics.WithLabelValues("inbound")); n != 0 {
			t.Fatalf("handler panicked on %q", body)
		}
	})
}

// BenchmarkInbound measures POST /sns through a loopback server, the
// certificate cached and an in-memory store, at several client
// concurrencies. ns/op is wall time per delivery across all clients.
func BenchmarkInbound(b *testing.B) {
	signer := snstest.New(b)
	const pool = 512
	bodies := make([][]byte, pool)
	for i := range bodies {
		bodies[i] = signer.Notification(topic, fmt.Sprintf("bench-%d", i), subject, sesS3, "2")
	}
	for _, conc := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("c=%d", conc), func(b *testing.B) {
			e := newEnv(b, signer, envOptions{})
			tr := &http.Transport{MaxIdleConns: conc, MaxIdleConnsPerHost: conc}
			defer tr.CloseIdleConnections()
			c := &http.Client{Transport: tr}
			var next, failed atomic.Int64
			b.SetBytes(int64(len(bodies[0])))
			b.ResetTimer()
			var wg sync.WaitGroup
			for range conc {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						resp, err := c.Post(e.server.URL+inbound.Path, "text/plain", bytes.NewReader(bodies[i%pool]))
						if err != nil {
							failed.Add(1)
							continue
						}
						io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode != 200 {
							failed.Add(1)
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			if failed.Load() != 0 {
				b.Fatalf("%d requests failed", failed.Load())
			}
		})
	}
}
