package relay_test

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
)

// postResult is one delivery attempt of the shutdown sender.
type postResult struct {
	i       int
	started time.Time
	code    int // 0: no answer (connection refused or reset)
}

// TestShutdownUnderLoad is SIGTERM (the Serve context ending) while a
// sender posts signed notifications continuously and SES is slow or hangs:
// readiness answers 503 before Serve returns, deliveries that start after
// that are never answered 200, Serve returns within ShutdownTimeout, and
// after a restart every delivery that was answered 200 is forwarded
// exactly once.
func TestShutdownUnderLoad(t *testing.T) {
	tests := []struct {
		name       string
		latency    time.Duration // of every SES answer before the shutdown
		sesTimeout time.Duration
	}{
		{"slow ses", 200 * time.Millisecond, 2 * time.Second},
		{"hung ses", 30 * time.Second, 20 * time.Second}, // sends outlast the grace period
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			const grace = 2 * time.Second
			h := newHarness(t, func(c *config.Config) { c.ShutdownTimeout, c.SESTimeout = grace, tt.sesTimeout })
			h.Shutdown()
			slow := h.NewSES(fakes.SESOptions{Latency: tt.latency})
			h.Restart()

			// The sender: one signed delivery every 5 ms, each answer recorded.
			var (
				mu      sync.Mutex
				results []postResult
			)
			sendCtx, stopSend := context.WithCancel(context.Background())
			senderDone := make(chan struct{})
			client := &http.Client{Timeout: 5 * time.Second}
			go func() {
				defer close(senderDone)
				for i := 0; i < 2000 && sendCtx.Err() == nil; i++ {
					sesID := fmt.Sprintf("ses-sd-%d", i)
					if err := h.S3.Put(testBucket, "inbound/"+sesID, testMail(i)); err != nil {
						t.Error(err)
						return
					}
					body := h.Signer.Notification(testTopic, fmt.Sprintf("sd-%d", i), "", receivedS3(h, sesID, "shop@relay.example.com"), "2")
					r := postResult{i: i, started: time.Now()}
					if resp, err := client.Post("http://"+h.Relay.InboundAddr+"/sns", "text/plain", bytes.NewReader(body)); err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						r.code = resp.StatusCode
					}
					mu.Lock()
					results = append(results, r)
					mu.Unlock()
					time.Sleep(5 * time.Millisecond)
				}
			}()
			acks := func() int {
				mu.Lock()
				defer mu.Unlock()
				n := 0
				for _, r := range results {
					if r.code == 200 {
						n++
					}
				}
				return n
			}
			waitFor(t, "30 acknowledged deliveries", func() bool { return acks() >= 30 })

			// A delivery in progress: headers and half its body are sent
			// before the cancel, the rest after readiness went 503.
			straddler, err := net.Dial("tcp", h.Relay.InboundAddr)
			if err != nil {
				t.Fatal(err)
			}
			defer straddler.Close()
			lateBody := h.Signer.Notification(testTopic, "sd-late", "", receivedS3(h, "ses-sd-late", "shop@relay.example.com"), "2")
			fmt.Fprintf(straddler, "POST /sns HTTP/1.1\r\nHost: relay\r\nContent-Type: text/plain\r\nContent-Length: %d\r\n\r\n", len(lateBody))
			half := len(lateBody) / 2
			if _, err := straddler.Write(lateBody[:half]); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond) // the server reads the headers and starts the handler

			// SIGTERM. Readiness must go 503 while Serve is still draining.
			h.Stop()
			cancelled := time.Now()
			probe := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
			var drainSeen time.Time
			var served error
			returned := false
			for range 500 {
				select {
				case <-h.Served():
					served = h.Env.Shutdown() // returned: collects Serve's error
					returned = true
				default:
				}
				if returned {
					break
				}
				resp, err := probe.Get("http://" + h.Relay.HealthAddr + "/readyz")
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == 503 {
						drainSeen = time.Now()
						break
					}
				}
				time.Sleep(2 * time.Millisecond)
			}
			if drainSeen.IsZero() {
				t.Fatalf("readiness never answered 503 before Serve returned (returned %v)", returned)
			}
			t.Logf("readyz 503 %v after the cancel", drainSeen.Sub(cancelled).Round(time.Microsecond))

			// The delivery in progress completes only now: it is refused.
			if _, err := straddler.Write(lateBody[half:]); err != nil {
				t.Fatal(err)
			}
			straddler.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(straddler), nil)
			if err != nil {
				t.Fatalf("delivery completed during the drain: %v", err)
			}
			resp.Body.Close()
			if resp.StatusCode != 503 || resp.Header.Get("Retry-After") == "" {
				t.Errorf("delivery completed during the drain answered %d (Retry-After %q), want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"))
			}
			straddler.Close()

			// Keep posting while the relay drains, then wait for Serve.
			time.Sleep(300 * time.Millisecond)
			stopSend()
			<-senderDone
			if !returned {
				select {
				case <-h.Served():
					served = h.Env.Shutdown()
				case <-time.After(grace + 3*time.Second):
					t.Fatalf("Serve did not return within %v of the cancel", grace+3*time.Second)
				}
			}
			took := time.Since(cancelled)
			if served != nil {
				t.Errorf("Serve returned %v", served)
			}
			if took > grace+time.Second {
				t.Errorf("Serve returned %v after the cancel, grace is %v", took, grace)
			}

			mu.Lock()
			acked := map[int]bool{}
			var during, after200, after503, afterNone int
			for _, r := range results {
				if r.code == 200 {
					acked[r.i] = true
				}
				if r.started.After(drainSeen) {
					switch r.code {
					case 200:
						after200++
					case 503:
						after503++
					case 0:
						afterNone++
					default:
						t.Errorf("delivery %d during the drain answered %d", r.i, r.code)
					}
				} else if r.started.After(cancelled) {
					during++
				}
				if r.code != 200 && r.code != 503 && r.code != 0 {
					t.Errorf("delivery %d answered %d", r.i, r.code)
				}
			}
			mu.Unlock()
			t.Logf("Serve returned after %v; %d acknowledged; %d posted between the cancel and the 503; after readiness went 503: %d answered 503, %d unanswered, %d answered 200",
				took.Round(time.Millisecond), len(acked), during, after503, afterNone, after200)
			if after200 > 0 {
				t.Errorf("%d deliveries started after readiness went 503 were answered 200", after200)
			}
			if after503+afterNone == 0 {
				t.Error("no delivery was attempted during the drain")
			}

			// Restart with a healthy SES: everything acknowledged goes out once.
			fast := h.NewSES(fakes.SESOptions{})
			h.Restart()
			waitFor(t, "spool drained after the restart", func() bool { return h.Relay.Spool.Stats().Messages == 0 })
			time.Sleep(100 * time.Millisecond) // room for a wrong extra send
			sent := map[string]int{}
			for _, s := range append(slow.Sent(), fast.Sent()...) {
				hdr, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(s.Raw)))
				if err != nil {
					t.Fatal(err)
				}
				sent[strings.Trim(hdr.Get("Message-Id"), "<>")]++
			}
			for i := range acked {
				if n := sent[fmt.Sprintf("m%d@example.net", i)]; n != 1 {
					t.Errorf("acknowledged delivery %d forwarded %d times, want once", i, n)
				}
			}
			for id, n := range sent {
				if n > 1 {
					t.Errorf("%s forwarded %d times", id, n)
				}
			}
			if st := h.Relay.Spool.Stats(); st.DeadLetters != 0 {
				t.Errorf("%d dead letters", st.DeadLetters)
			}
			t.Logf("forwarded before the shutdown %d, after the restart %d", len(slow.Sent()), len(fast.Sent()))
		})
	}
}
