package incident

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
)

// mailState is what the generator knows of one notification.
type mailState struct {
	token    string
	copies   []string // destination keys of the copies it must be forwarded as
	started  bool     // not skipped
	acked    bool
	rejected bool          // answered a final 4xx: SNS would discard it
	ackAt    time.Duration // offset of the acknowledgement
	attempts int
}

// post is one delivery attempt.
type post struct {
	at   time.Duration // offset of its start
	took time.Duration
	code int // 0: no answer (timeout, reset)
}

// generator is the open-loop load: notifications at a fixed rate, each in
// its own goroutine.
type generator struct {
	s      Scenario
	e      *env
	client *http.Client
	url    string
	runID  string
	t0     time.Time

	sem     chan struct{}
	wg      sync.WaitGroup
	mails   []mailState // index i written only by delivery i until wait returns
	bodies  [][]byte    // signed notifications, dropped once sent
	skipped atomic.Int64

	mu    sync.Mutex
	posts []post
}

func newGenerator(s Scenario, e *env) *generator {
	return &generator{
		s: s,
		e: e,
		client: &http.Client{
			Timeout: s.AckTimeout,
			Transport: &http.Transport{
				MaxIdleConns:        s.MaxInFlight,
				MaxIdleConnsPerHost: s.MaxInFlight,
				IdleConnTimeout:     30 * time.Second,
			},
		},
		url:   "http://" + e.Relay.InboundAddr + "/sns",
		runID: newRunID(),
		sem:   make(chan struct{}, s.MaxInFlight),
		mails: make([]mailState, s.notifications()),
	}
}

// prepare stores every mail in the S3 stand-in and signs every
// notification before the load starts, on all CPUs, so that the sender's
// own work (SNS's, in production) does not compete with the relay while it
// is measured.
func (g *generator) prepare(ctx context.Context) error {
	g.bodies = make([][]byte, len(g.mails))
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, runtime.GOMAXPROCS(0))
	for range runtime.GOMAXPROCS(0) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1)) - 1
				if i >= len(g.mails) {
					return
				}
				if err := g.prepareOne(i); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	return ctx.Err()
}

func (g *generator) prepareOne(i int) error {
	m := &g.mails[i]
	m.token = fmt.Sprintf("%s.%d", g.runID, i)
	m.copies = []string{shopCopy}
	recipients := []string{"shop@relay.example.com"}
	if n := g.s.SecondCopyEvery; n > 0 && i%n == 0 {
		m.copies = append(m.copies, newsCopy)
		recipients = append(recipients, "news@relay.example.com")
	}
	sesID := "ses-" + m.token
	if err := g.e.Put(sesID, mailBytes(m.token, recipients)); err != nil {
		return fmt.Errorf("incident: storing mail %d: %w", i, err)
	}
	g.bodies[i] = g.e.Sign("sns-"+m.token, g.e.Received(sesID, recipients...))
	return nil
}

// run sends the notifications, paced by a ticker: on each tick it starts
// every notification due by then, so a slow tick or a slow server never
// lowers the rate. It returns when the last one was started.
func (g *generator) run(ctx context.Context, t0 time.Time) {
	g.t0 = t0
	total := len(g.mails)
	interval := max(time.Second/time.Duration(g.s.Rate), time.Millisecond)
	tick := time.NewTicker(interval)
	defer tick.Stop()
	next := 0
	for next < total {
		due := min(total, int(time.Since(t0).Seconds()*float64(g.s.Rate))+1)
		for ; next < due; next++ {
			select {
			case g.sem <- struct{}{}:
			default:
				g.skipped.Add(1)
				continue
			}
			g.wg.Add(1)
			go func(i int) {
				defer func() { <-g.sem; g.wg.Done() }()
				g.deliver(ctx, i)
			}(next)
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// wait waits for every delivery to finish (each is bounded by its
// attempts).
func (g *generator) wait() { g.wg.Wait() }

// deliver posts notification i until it is acknowledged, refused for
// good, or out of attempts.
func (g *generator) deliver(ctx context.Context, i int) {
	m := &g.mails[i]
	m.started = true
	body := g.bodies[i]
	g.bodies[i] = nil
	for m.attempts < g.s.MaxAttempts {
		m.attempts++
		code := g.post(ctx, body)
		switch {
		case code == http.StatusOK:
			m.acked = true
			m.ackAt = time.Since(g.t0)
			return
		case code >= 400 && code < 500 && code != http.StatusTooManyRequests:
			m.rejected = true
			return
		}
		if ctx.Err() != nil {
			return
		}
		t := time.NewTimer(g.s.RetryDelay)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// post makes one delivery attempt and records it.
func (g *generator) post(ctx context.Context, body []byte) int {
	start := time.Now()
	code := 0
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.url, bytes.NewReader(body))
	if err == nil {
		req.Header.Set("Content-Type", "text/plain; charset=UTF-8")
		req.Header.Set("X-Amz-Sns-Message-Type", "Notification")
		var resp *http.Response
		if resp, err = g.client.Do(req); err == nil {
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if err == nil {
				code = resp.StatusCode
			}
		}
	}
	p := post{at: start.Sub(g.t0), took: time.Since(start), code: code}
	g.mu.Lock()
	g.posts = append(g.posts, p)
	g.mu.Unlock()
	return code
}

// expected returns the copies every acknowledged mail must be forwarded
// as, keyed by token. Only valid after wait.
func (g *generator) expected() map[string][]string {
	out := make(map[string][]string, len(g.mails))
	for _, m := range g.mails {
		if m.acked {
			out[m.token] = m.copies
		}
	}
	return out
}

// mailBytes is the raw mail stored in S3; its Message-ID carries the token.
func mailBytes(token string, recipients []string) []byte {
	to := strings.Join(recipients, ", ")
	return []byte("From: Dora Sender <dora@example.net>\r\nTo: " + to + "\r\nSubject: incident " + token + "\r\n" +
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <" + token + "@incident.invalid>\r\n" +
		"DKIM-Signature: v=1; a=rsa-sha256; d=example.net\r\nReturn-Path: <bounce@example.net>\r\n\r\n" +
		"Replay of incident 004, mail " + token + ".\r\n")
}

// copyKey identifies one forwarded copy: the mail's token and the sorted
// envelope destinations.
func copyKey(token, dest string) string { return token + "|" + dest }

// sentCopy returns the copy key of a mail the SES stand-in accepted, or ""
// when it carries no token of ours.
func sentCopy(s fakes.Sent) string {
	tp := textproto.NewReader(bufio.NewReader(bytes.NewReader(s.Raw)))
	h, err := tp.ReadMIMEHeader()
	if err != nil && len(h) == 0 {
		return ""
	}
	id := strings.TrimSpace(h.Get("Message-Id"))
	token, ok := strings.CutSuffix(strings.Trim(id, "<>"), "@incident.invalid")
	if !ok || token == "" {
		return ""
	}
	dest := slices.Clone(s.Destinations)
	slices.Sort(dest)
	return copyKey(token, strings.Join(dest, ","))
}

// sendTracker counts the copies the SES stand-in accepts as they arrive
// (its OnSend hook), for the drain wait; the report counts again from
// fakes.SES.Sent.
type sendTracker struct {
	mu     sync.Mutex
	counts map[string]int
}

func newSendTracker() *sendTracker { return &sendTracker{counts: map[string]int{}} }

func (t *sendTracker) observe(s fakes.Sent) error {
	if k := sentCopy(s); k != "" {
		t.mu.Lock()
		t.counts[k]++
		t.mu.Unlock()
	}
	return nil
}

// missing is the number of expected copies not yet forwarded.
func (t *sendTracker) missing(expected map[string][]string) int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for token, copies := range expected {
		for _, c := range copies {
			if t.counts[copyKey(token, c)] == 0 {
				n++
			}
		}
	}
	return n
}

// probe is one health request.
type probe struct {
	at   time.Duration
	path string
	took time.Duration
	code int // 0: no answer within the timeout
}

// sample is one poll of the relay's state.
type sample struct {
	at       time.Duration
	queue    int
	breakers map[string]int // dependency → 0 closed, 1 half-open, 2 open
}

// memSample is one poll of process metrics.
type memSample struct {
	at         time.Duration
	rss, heap  float64
	goroutines float64
}

// monitors are the prober and the pollers.
type monitors struct {
	e      *env
	client *http.Client
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	t0     atomic.Pointer[time.Time]

	mu      sync.Mutex
	probes  []probe
	samples []sample
	mem     []memSample
}

// startMonitors starts probing and polling at once (offsets are negative
// until begin).
func startMonitors(e *env) *monitors {
	ctx, cancel := context.WithCancel(context.Background())
	m := &monitors{
		e: e,
		// A client of its own, one new connection per probe (kubelet
		// does not reuse connections), 1 s timeout.
		client: &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		ctx:    ctx,
		cancel: cancel,
	}
	now := time.Now()
	m.t0.Store(&now)
	breakers := prometheus.NewRegistry()
	breakers.MustRegister(e.metrics.BreakerState)
	for _, path := range []string{"/livez", "/readyz"} {
		m.wg.Add(1)
		go m.probeLoop("http://" + e.Relay.HealthAddr + path)
	}
	m.wg.Add(2)
	go m.pollLoop(breakers)
	go m.memLoop()
	return m
}

func (m *monitors) begin(t0 time.Time) { m.t0.Store(&t0) }

func (m *monitors) since(t time.Time) time.Duration { return t.Sub(*m.t0.Load()) }

// stop ends the monitors and waits for probes in flight (at most 1 s).
func (m *monitors) stop() {
	m.cancel()
	m.wg.Wait()
}

// probeLoop probes url every 100 ms, each probe in its own goroutine so
// that a slow answer does not delay the next probe.
func (m *monitors) probeLoop(url string) {
	defer m.wg.Done()
	path := url[strings.LastIndex(url, "/"):]
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	var probes sync.WaitGroup
	defer probes.Wait()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		probes.Add(1)
		go func() {
			defer probes.Done()
			start := time.Now()
			code := 0
			// Not m.ctx: a probe in flight when the monitors stop runs
			// to its answer or its 1 s timeout.
			if resp, err := m.client.Get(url); err == nil {
				if _, err := io.Copy(io.Discard, resp.Body); err == nil {
					code = resp.StatusCode
				}
				resp.Body.Close()
			}
			p := probe{at: m.since(start), path: path, took: time.Since(start), code: code}
			m.mu.Lock()
			m.probes = append(m.probes, p)
			m.mu.Unlock()
		}()
	}
}

// pollLoop samples the spool size and breaker states every 100 ms. The
// breaker states come from mailrelay_breaker_state as the registry exposes
// it; the spool size from the spool itself (mailrelay_queue_messages is
// published from it every 500 ms).
func (m *monitors) pollLoop(breakers *prometheus.Registry) {
	defer m.wg.Done()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		s := sample{at: m.since(time.Now()), queue: m.e.Relay.Spool.Stats().Messages, breakers: map[string]int{}}
		if mfs, err := breakers.Gather(); err == nil {
			for _, mf := range mfs {
				for _, metric := range mf.GetMetric() {
					for _, l := range metric.GetLabel() {
						if l.GetName() == "dependency" {
							s.breakers[l.GetValue()] = int(metric.GetGauge().GetValue())
						}
					}
				}
			}
		}
		m.mu.Lock()
		m.samples = append(m.samples, s)
		m.mu.Unlock()
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
	}
}

// memLoop samples resident memory, heap in use and goroutines from the
// relay's registry every second. The replay runs in one process: these
// include the generator and the stand-ins.
func (m *monitors) memLoop() {
	defer m.wg.Done()
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		m.sampleMem()
		select {
		case <-m.ctx.Done():
			m.sampleMem() // after the drain, with idle connections closed
			return
		case <-t.C:
		}
	}
}

func (m *monitors) sampleMem() {
	s := memSample{at: m.since(time.Now())}
	if mfs, err := m.e.metrics.Registry.Gather(); err == nil {
		for _, mf := range mfs {
			if len(mf.GetMetric()) == 0 {
				continue
			}
			metric := mf.GetMetric()[0]
			switch mf.GetName() {
			case "process_resident_memory_bytes":
				s.rss = metric.GetGauge().GetValue()
			case "go_memstats_heap_inuse_bytes":
				s.heap = metric.GetGauge().GetValue()
			case "go_goroutines":
				s.goroutines = metric.GetGauge().GetValue()
			}
		}
	}
	m.mu.Lock()
	m.mem = append(m.mem, s)
	m.mu.Unlock()
}
