package relay_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/telemetry"
)

// s3Calls is how many S3 calls of op answered ok.
func s3Calls(t *testing.T, m *telemetry.Metrics, op string) uint64 {
	t.Helper()
	var d dto.Metric
	if err := m.ExternalCallDuration.WithLabelValues("s3", op, telemetry.OutcomeOK).(prometheus.Metric).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}

// TestS3DeleteBatch: with --s3-delete-batch the finished mail's object
// waits for its batch (here the drain's, the interval being long) and goes
// in a DeleteObjects; with 0 the worker deletes it with DeleteObject.
func TestS3DeleteBatch(t *testing.T) {
	for _, tc := range []struct {
		name     string
		interval time.Duration
		wantOp   string
	}{
		{"batched, sent by the drain", time.Minute, "DeleteObjects"},
		{"one per mail", 0, "DeleteObject"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t, func(c *config.Config) { c.S3DeleteBatch = tc.interval })
			m := h.Relay.Metrics
			h.Deliver("sns-1", "ses-1", testMail(1), "shop@relay.example.com")
			waitFor(t, "forward counted", func() bool {
				return testutil.ToFloat64(m.Messages.WithLabelValues("forwarded", "ok")) == 1
			})
			if tc.interval > 0 && !h.S3.Has(testBucket, "inbound/ses-1") {
				t.Fatal("object deleted before its batch was due")
			}
			h.Shutdown()
			if h.S3.Has(testBucket, "inbound/ses-1") {
				t.Error("object still there after the drain")
			}
			for _, op := range []string{"DeleteObjects", "DeleteObject"} {
				want := uint64(0)
				if op == tc.wantOp {
					want = 1
				}
				if n := s3Calls(t, m, op); n != want {
					t.Errorf("%s observed %d times, want %d", op, n, want)
				}
			}
		})
	}
}
