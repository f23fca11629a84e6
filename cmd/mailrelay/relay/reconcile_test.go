package relay_test

import (
	"context"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/recovery"
)

// A mail object the relay never heard of (its SNS notification was lost) is
// handed over by reconcile through the admin API, forwarded once, and a
// second hand-over of the same object changes nothing.
func TestReconcileHandOver(t *testing.T) {
	h := newHarness(t, nil)
	key := "inbound/lost-1"
	if err := h.S3.Put(testBucket, key, testMail(42)); err != nil {
		t.Fatal(err)
	}
	obj := recovery.Object{Key: key, LastModified: time.Now().Add(-time.Hour), Size: int64(len(testMail(42)))}
	note := recovery.ReceivedNotification(testBucket, obj, []string{"shop@relay.example.com"}, testTopic)
	sub := &recovery.HTTPSubmitter{URL: "http://" + h.Relay.AdminAddr + "/reconcile"}
	ctx := context.Background()
	if err := sub.Submit(ctx, note); err != nil {
		t.Fatal(err)
	}
	sent := h.WaitSent(1)
	if sent[0].Source != "shop@relay.example.com" {
		t.Errorf("sent as %q", sent[0].Source)
	}
	waitFor(t, "object deleted", func() bool { return !h.S3.Has(testBucket, key) })
	if err := sub.Submit(ctx, note); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(h.SES.Sent()); n != 1 {
		t.Errorf("forwarded %d times, want once", n)
	}
}
