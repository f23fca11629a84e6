package relay_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/inbound/admin"
)

// A mail object the relay never heard of (its SNS notification was lost) is
// handed over by reference through the admin API, forwarded once, and a
// second hand-over of the same object changes nothing.
func TestReconcileHandOver(t *testing.T) {
	h := newHarness(t, nil)
	key := "inbound/lost-1"
	if err := h.S3.Put(testBucket, key, testMail(42)); err != nil {
		t.Fatal(err)
	}
	c := &admin.Client{BaseURL: "http://" + h.Relay.AdminAddr}
	at := time.Now().Add(-time.Hour)
	ref := admin.ReconcileRequest{Bucket: testBucket, Key: key, Recipients: []string{"Shop@relay.example.com"}, Timestamp: &at}
	ctx := context.Background()
	if resp, err := c.Reconcile(ctx, ref); err != nil || resp.Duplicate || resp.ID != "reconcile:"+testBucket+"/"+key {
		t.Fatalf("%+v %v", resp, err)
	}
	sent := h.WaitSent(1)
	if sent[0].Source != "shop@relay.example.com" {
		t.Errorf("sent as %q", sent[0].Source)
	}
	waitFor(t, "object deleted", func() bool { return !h.S3.Has(testBucket, key) })
	if resp, err := c.Reconcile(ctx, ref); err != nil || !resp.Duplicate {
		t.Fatalf("second hand-over: %+v %v", resp, err)
	}
	time.Sleep(200 * time.Millisecond)
	if n := len(h.SES.Sent()); n != 1 {
		t.Errorf("forwarded %d times, want once", n)
	}
}

// With --hold-unverified the relay's own notification (every verdict
// PROCESSING_FAILED) makes the handed-over mail a dead letter (unverified),
// not a forward: the verdict policy applies to reconciled mail.
func TestReconcileKeepsVerdictPolicy(t *testing.T) {
	h := newHarness(t, func(c *config.Config) { c.HoldUnverified = true })
	key := "inbound/lost-2"
	if err := h.S3.Put(testBucket, key, testMail(43)); err != nil {
		t.Fatal(err)
	}
	c := &admin.Client{BaseURL: "http://" + h.Relay.AdminAddr}
	if _, err := c.Reconcile(context.Background(), admin.ReconcileRequest{Bucket: testBucket, Key: key, Recipients: []string{"shop@relay.example.com"}}); err != nil {
		t.Fatal(err)
	}
	var items []admin.Item
	waitFor(t, "dead letter", func() bool {
		var err error
		items, err = c.List(context.Background(), 10)
		return err == nil && len(items) == 1
	})
	if !strings.HasPrefix(items[0].Reason, "unverified") {
		t.Errorf("reason %q, want unverified", items[0].Reason)
	}
	if n := len(h.SES.Sent()); n != 0 {
		t.Errorf("sent %d", n)
	}
	// A bucket the relay is not configured for is refused.
	_, err := c.Reconcile(context.Background(), admin.ReconcileRequest{Bucket: "someone-elses", Key: key, Recipients: []string{"shop@relay.example.com"}})
	var se *admin.StatusError
	if !errors.As(err, &se) || se.Code != http.StatusForbidden {
		t.Errorf("foreign bucket: %v", err)
	}
}
