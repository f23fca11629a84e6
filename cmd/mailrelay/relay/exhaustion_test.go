package relay_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/inbound"
)

const exhaustMaxConns = 16

// prober hits /livez and /readyz on the health listener every 50 ms, each
// probe on a fresh connection with a 1 s limit, and records failures.
type prober struct {
	addr   string
	cancel context.CancelFunc
	done   chan struct{}

	mu       sync.Mutex
	probes   int
	failures []string
}

func startProber(addr string) *prober {
	ctx, cancel := context.WithCancel(context.Background())
	p := &prober{addr: addr, cancel: cancel, done: make(chan struct{})}
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	go func() {
		defer close(p.done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			for _, path := range []string{"/livez", "/readyz"} {
				start := time.Now()
				resp, err := client.Get("http://" + p.addr + path)
				var fail string
				if err != nil {
					fail = fmt.Sprintf("%s: %v", path, err)
				} else {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						fail = fmt.Sprintf("%s: %d", path, resp.StatusCode)
					} else if d := time.Since(start); d >= time.Second {
						fail = fmt.Sprintf("%s: took %v", path, d)
					}
				}
				p.mu.Lock()
				p.probes++
				if fail != "" {
					p.failures = append(p.failures, fail)
				}
				p.mu.Unlock()
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return p
}

// stop ends probing and fails t if any probe failed or none ran.
func (p *prober) stop(t *testing.T) {
	t.Helper()
	p.cancel()
	<-p.done
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.probes < 4 {
		t.Errorf("only %d health probes ran", p.probes)
	}
	if len(p.failures) > 0 {
		t.Errorf("%d of %d health probes failed, first: %v", len(p.failures), p.probes, p.failures[:min(5, len(p.failures))])
	}
	t.Logf("%d health probes, all 200 within 1s", p.probes)
}

// dialAll opens n connections to addr; the kernel completes the handshake
// even for connections the server has not accepted yet.
func dialAll(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.DialTimeout("tcp", addr, 2*time.Second)
		if err != nil {
			t.Fatalf("dial %s after %d connections: %v", addr, len(conns), err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() { closeAll(conns) })
	return conns
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		c.Close()
	}
}

// TestSlowloris: as many connections as the inbound limit each dribble a
// request header one byte at a time. Health keeps answering at once, the
// server's ReadHeaderTimeout closes every one of them, and then a real
// signed delivery is acknowledged.
func TestSlowloris(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.InboundMaxConns = exhaustMaxConns })
	p := startProber(h.Relay.HealthAddr)
	conns := dialAll(t, h.Relay.InboundAddr, exhaustMaxConns)
	start := time.Now()
	header := []byte("POST /sns HTTP/1.1\r\nHost: relay\r\nContent-Type: text/plain\r\nX-Slow: ")

	// Each attacker writes one byte every 200 ms and watches for the
	// server closing the connection; it gives up after twice the timeout.
	limit := 2 * inbound.ReadHeaderTimeout
	closedAfter := make([]time.Duration, len(conns))
	var wg sync.WaitGroup
	for i, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for j := 0; time.Since(start) < limit; j++ {
				b := byte('a')
				if j < len(header) {
					b = header[j]
				}
				if _, err := c.Write([]byte{b}); err != nil {
					closedAfter[i] = time.Since(start)
					return
				}
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := c.Read(buf); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue
					}
					// EOF or reset: the server hung up (it may answer 408 first).
					closedAfter[i] = time.Since(start)
					return
				}
				// Some bytes (a 408 answer) arrived; the close follows.
			}
		}()
	}
	wg.Wait()
	p.stop(t)
	for i, d := range closedAfter {
		if d == 0 {
			t.Errorf("slowloris connection %d still open after %v", i, limit)
		} else if d < inbound.ReadHeaderTimeout-time.Second {
			t.Errorf("slowloris connection %d closed after %v, before the header timeout", i, d)
		}
	}
	closeAll(conns)
	h.Deliver("after-slowloris", "ses-after-slowloris", testMail(1), "shop@relay.example.com")
	h.WaitSent(1)
}

// TestConnectionFlood: four times the inbound limit of idle connections
// are opened and held. Health keeps answering at once; when the attackers
// go away a real signed delivery is acknowledged and forwarded.
func TestConnectionFlood(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.InboundMaxConns = exhaustMaxConns })
	p := startProber(h.Relay.HealthAddr)
	conns := dialAll(t, h.Relay.InboundAddr, 4*exhaustMaxConns)

	// While the flood holds every slot, a delivery waits for one (it is
	// not refused, and it does not touch health). Give it a short budget.
	client := &http.Client{Timeout: 500 * time.Millisecond}
	body := h.Signer.Notification(testTopic, "flood", "", receivedS3(h, "ses-flood", "shop@relay.example.com"), "2")
	if resp, err := client.Post("http://"+h.Relay.InboundAddr+"/sns", "text/plain", bytes.NewReader(body)); err == nil {
		resp.Body.Close()
		t.Logf("delivery during the flood answered %d", resp.StatusCode)
	}
	time.Sleep(time.Second) // hold the flood while health is probed
	p.stop(t)
	closeAll(conns)

	if err := h.S3.Put(testBucket, "inbound/ses-flood", testMail(2)); err != nil {
		t.Fatal(err)
	}
	// The server may still be reading the closed attackers' connections for
	// a moment: retry like SNS would, a bounded number of times.
	var code int
	for range 20 {
		resp, err := (&http.Client{Timeout: 2 * time.Second}).Post("http://"+h.Relay.InboundAddr+"/sns", "text/plain", bytes.NewReader(body))
		if err == nil {
			code = resp.StatusCode
			resp.Body.Close()
			if code == 200 {
				break
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code != 200 {
		t.Fatalf("delivery after the flood answered %d, want 200", code)
	}
	sent := h.WaitSent(1)
	if len(sent) != 1 {
		t.Fatalf("forwarded %d, want 1", len(sent))
	}
}
