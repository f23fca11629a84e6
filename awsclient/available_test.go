package awsclient

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sony/gobreaker/v2"
)

// Available is false while the breaker is open and while the half-open
// trial is under way (others would only be refused), true otherwise.
func TestAvailable(t *testing.T) {
	var mode atomic.Int32 // 0 fail, 1 hang until released, 2 healthy
	release := make(chan struct{})
	srv, counter := standIn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case 0:
			s3Error(500, "InternalError")(w, r)
		case 1:
			<-release
			w.Write([]byte("mail"))
		default:
			w.Write([]byte("mail"))
		}
	}))
	o := testOptions(srv.URL, "")
	o.MaxAttempts = 1
	o.Breaker = BreakerSettings{Failures: 2, OpenTimeout: 50 * time.Millisecond}
	c := newClients(t, o)
	ctx := context.Background()
	if !c.S3.Available() {
		t.Fatal("closed breaker not available")
	}
	for range 2 {
		c.S3.Get(ctx, "b", "k")
	}
	if c.S3.Available() {
		t.Fatal("open breaker available")
	}
	waitState(t, c.S3.BreakerState, gobreaker.StateHalfOpen)
	if !c.S3.Available() {
		t.Fatal("half-open breaker with a free trial slot not available")
	}
	mode.Store(1)
	before := counter.Requests()
	done := make(chan error, 1)
	go func() { _, err := c.S3.Get(ctx, "b", "k"); done <- err }()
	deadline := time.Now().Add(5 * time.Second)
	for counter.Requests() == before && time.Now().Before(deadline) {
		time.Sleep(2 * time.Millisecond)
	}
	if c.S3.Available() {
		t.Error("available while the half-open trial is in flight")
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("trial: %v", err)
	}
	if s := c.S3.BreakerState(); s != gobreaker.StateClosed || !c.S3.Available() {
		t.Errorf("after a good trial: %v, available %v", s, c.S3.Available())
	}
}
