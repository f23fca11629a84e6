package inbound_test

import (
	"bytes"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

// A stalled disk must not hold inbound connections (incident 004): the
// request is answered 503 after PutTimeout, the write finishes in the
// background, and SNS's retry then finds a duplicate.
func TestStalledStoreAnswers503ThenDuplicate(t *testing.T) {
	signer := snstest.New(t)
	e := newEnv(t, signer, envOptions{putTimeout: 50 * time.Millisecond, maxPending: 2})
	block := make(chan struct{})
	e.queue.mu.Lock()
	e.queue.block = block
	e.queue.mu.Unlock()

	body := func(id string) []byte { return signer.Notification(topic, id, subject, sesS3, "2") }
	start := time.Now()
	code, retryAfter := e.post(t, bytes.NewReader(body("slow-1")))
	if code != http.StatusServiceUnavailable || retryAfter == "" {
		t.Fatalf("stalled store: %d (Retry-After %q), want 503 with Retry-After", code, retryAfter)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("answer took %v: the stalled write held the request", d)
	}
	// A second stalled write fills the budget of 2; a third is refused at once.
	if code, _ := e.post(t, bytes.NewReader(body("slow-2"))); code != http.StatusServiceUnavailable {
		t.Fatalf("second: %d", code)
	}
	if code, _ := e.post(t, bytes.NewReader(body("slow-3"))); code != http.StatusServiceUnavailable {
		t.Fatalf("third: %d", code)
	}
	e.queue.mu.Lock()
	puts := e.queue.puts
	e.queue.mu.Unlock()
	if puts != 0 {
		t.Fatalf("puts finished while blocked: %d", puts)
	}

	close(block) // the disk recovers; the background writes complete
	e.queue.mu.Lock()
	e.queue.block = nil
	e.queue.mu.Unlock()
	deadline := time.Now().Add(5 * time.Second)
	for len(e.queue.stored()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := len(e.queue.stored()); got != 2 {
		t.Fatalf("stored %d after recovery, want the 2 writes that were under way", got)
	}
	for _, id := range []string{"slow-1", "slow-2", "slow-3"} {
		if code, _ := e.post(t, bytes.NewReader(body(id))); code != http.StatusOK {
			t.Errorf("SNS retry of %s: %d", id, code)
		}
	}
	if got := len(e.queue.stored()); got != 3 {
		t.Errorf("stored %d, want 3", got)
	}
}

func TestInvalidMessageIDIsFinal(t *testing.T) {
	signer := snstest.New(t)
	e := newEnv(t, signer, envOptions{})
	e.queue.mu.Lock()
	e.queue.err = fmt.Errorf("wrapped: %w", spool.ErrInvalidID)
	e.queue.mu.Unlock()
	if code, _ := e.post(t, bytes.NewReader(signer.Notification(topic, "x", subject, sesS3, "2"))); code != http.StatusBadRequest {
		t.Fatalf("invalid id answered %d, want 400 (SNS must not retry it for an hour)", code)
	}
}
