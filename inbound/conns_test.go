package inbound_test

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
)

// limitedServer is the inbound endpoint served like the relay serves it:
// an http.Server with the package's timeouts behind LimitListener.
type limitedServer struct {
	addr   string
	signer *snstest.Signer
	queue  *memQueue
}

func newLimitedServer(t *testing.T, max int, bodyTimeout time.Duration) *limitedServer {
	t.Helper()
	signer := snstest.New(t)
	v, err := sns.NewVerifier(sns.VerifierOptions{CertURLPrefixes: []string{strings.TrimSuffix(signer.CertURL(), snstest.CertPath)}})
	if err != nil {
		t.Fatal(err)
	}
	q := newMemQueue()
	h, err := inbound.New(inbound.Config{TopicARNs: []string{topic}, Verifier: v, Queue: q, BodyTimeout: bodyTimeout})
	if err != nil {
		t.Fatal(err)
	}
	e := inbound.NewServer(nil, nil)
	h.Register(e)
	srv := &http.Server{
		Handler:           e,
		ReadHeaderTimeout: inbound.ReadHeaderTimeout,
		ReadTimeout:       inbound.ReadTimeout,
		WriteTimeout:      inbound.WriteTimeout,
		IdleTimeout:       inbound.IdleTimeout,
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lln := inbound.LimitListener(ln, srv, max, 0)
	go srv.Serve(lln)
	t.Cleanup(func() { srv.Close() })
	return &limitedServer{addr: ln.Addr().String(), signer: signer, queue: q}
}

// dial opens a connection, closed when the test ends.
func (s *limitedServer) dial(t *testing.T) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", s.addr, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// idle opens a keep-alive connection and completes one request on it.
func (s *limitedServer) idle(t *testing.T) net.Conn {
	t.Helper()
	c := s.dial(t)
	fmt.Fprintf(c, "GET /nope HTTP/1.1\r\nHost: relay\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("request on the idle connection: %v", err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	c.SetReadDeadline(time.Time{})
	return c
}

// slowHeader opens a connection that sends part of a request header.
func (s *limitedServer) slowHeader(t *testing.T) net.Conn {
	t.Helper()
	c := s.dial(t)
	fmt.Fprintf(c, "POST /sns HTTP/1.1\r\nHost: relay\r\nX-Slow: a")
	return c
}

// slowBody opens a connection that sends a request header and the start
// of a body it never finishes.
func (s *limitedServer) slowBody(t *testing.T) net.Conn {
	t.Helper()
	c := s.dial(t)
	fmt.Fprintf(c, "POST /sns HTTP/1.1\r\nHost: relay\r\nContent-Type: text/plain\r\nContent-Length: 1000\r\n\r\n{\"Type\":")
	return c
}

// post sends a signed notification on a new connection and returns its
// status and how long it took.
func (s *limitedServer) post(t *testing.T, id string) (int, time.Duration) {
	t.Helper()
	body := s.signer.Notification(topic, id, "", sesS3, "2")
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	start := time.Now()
	resp, err := client.Post("http://"+s.addr+inbound.Path, "text/plain", bytes.NewReader(body))
	d := time.Since(start)
	if err != nil {
		t.Fatalf("post after %v: %v", d, err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, d
}

// closedBy reports whether the server closed c within d (EOF or reset,
// possibly after an answer).
func closedBy(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // an answer (408, 503) before the close
		}
		var ne net.Error
		return !(errors.As(err, &ne) && ne.Timeout())
	}
}

// N idle or slow connections at a limit of N never delay request N+1 by
// more than about the slow-sender grace: idle ones are closed at once, slow
// senders once they had DefaultSlowGrace for their request.
func TestLimitListenerMakesRoom(t *testing.T) {
	const max = 4
	tests := []struct {
		name                     string
		idle, slowHeader, slowBd int
		within                   time.Duration
	}{
		{name: "idle keep-alive connections", idle: max, within: 500 * time.Millisecond},
		{name: "partial headers", slowHeader: max, within: inbound.DefaultSlowGrace + time.Second},
		{name: "drip-fed bodies", slowBd: max, within: inbound.DefaultSlowGrace + time.Second},
		{name: "mixed, twice the limit", idle: max, slowHeader: max / 2, slowBd: max / 2, within: inbound.DefaultSlowGrace + time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newLimitedServer(t, max, 0)
			var attackers []net.Conn
			for range tt.idle {
				attackers = append(attackers, s.idle(t))
			}
			for range tt.slowHeader {
				attackers = append(attackers, s.slowHeader(t))
			}
			for range tt.slowBd {
				attackers = append(attackers, s.slowBody(t))
			}
			time.Sleep(50 * time.Millisecond) // let the server accept them
			code, d := s.post(t, "real")
			t.Logf("%d attackers: delivery answered %d in %v", len(attackers), code, d.Round(time.Millisecond))
			if code != http.StatusOK {
				t.Errorf("delivery answered %d, want 200", code)
			}
			if d > tt.within {
				t.Errorf("delivery took %v, want within %v", d, tt.within)
			}
			// At least one attacker lost its slot. Which one is the
			// server's choice (the order it saw them in, under the race
			// detector not always the order they were dialed).
			closed := make(chan bool, len(attackers))
			for _, c := range attackers {
				go func() { closed <- closedBy(c, time.Second) }()
			}
			lost := 0
			for range attackers {
				if <-closed {
					lost++
				}
			}
			if lost == 0 {
				t.Error("every attacker's connection is still open")
			}
		})
	}
}

// A connection whose request was read and is being answered is never
// closed to make room: a new connection waits for a slot instead.
func TestLimitListenerKeepsBusyConnections(t *testing.T) {
	s := newLimitedServer(t, 1, 0)
	block := make(chan struct{})
	s.queue.mu.Lock()
	s.queue.block = block
	s.queue.mu.Unlock()
	var wg sync.WaitGroup
	var busyCode int
	wg.Add(1)
	go func() {
		defer wg.Done()
		busyCode, _ = s.post(t, "busy")
	}()
	// Give the busy request time to be read and to reach Put (the
	// certificate comes from a local server).
	time.Sleep(300 * time.Millisecond)
	time.AfterFunc(inbound.DefaultSlowGrace+500*time.Millisecond, func() { close(block) })
	code, d := s.post(t, "second")
	wg.Wait()
	if busyCode != http.StatusOK {
		t.Errorf("busy request answered %d, want 200 (closed to make room?)", busyCode)
	}
	if code != http.StatusOK {
		t.Errorf("second request answered %d", code)
	}
	if d < inbound.DefaultSlowGrace {
		t.Errorf("second request answered after %v: it did not wait for the busy one", d)
	}
}

// A drip-fed body is cut after BodyTimeout (503, read_error) even with
// slots to spare; an idle keep-alive connection is closed after
// IdleTimeout.
func TestBodyTimeout(t *testing.T) {
	s := newLimitedServer(t, 16, 300*time.Millisecond)
	c := s.slowBody(t)
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() { // one byte every 100 ms: never done
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}
	}()
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("no answer to the drip-fed body within 3s: %v", err)
	}
	resp.Body.Close()
	d := time.Since(start)
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Errorf("drip-fed body answered %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	if d > time.Second {
		t.Errorf("drip-fed body cut after %v, want about 300ms", d)
	}
	if !closedBy(c, time.Second) {
		t.Error("connection of the drip-fed body still open")
	}

	idle := s.idle(t)
	start = time.Now()
	if !closedBy(idle, inbound.IdleTimeout+2*time.Second) {
		t.Fatalf("idle connection still open after %v", time.Since(start))
	}
	if d := time.Since(start); d > inbound.IdleTimeout+time.Second {
		t.Errorf("idle connection closed after %v, want about %v", d, inbound.IdleTimeout)
	}
}
