package relay_test

import (
	"fmt"
	"testing"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
)

// The relay's tests run it through relaytest: the real relay.Serve with
// stand-ins for S3, SES and SNS's signing, driven through its HTTP
// endpoints. These are the short names they use.

const (
	testTopic  = relaytest.TopicARN
	testBucket = relaytest.Bucket
)

type harness = relaytest.Harness

// newHarness starts a relay for t with relaytest's test settings and the
// default aliases (shop@ to alice@example.org, news@ to bob@ and carol@),
// changing the configuration with mutate if set.
func newHarness(t testing.TB, mutate func(*config.Config)) *harness {
	t.Helper()
	return relaytest.Start(t, relaytest.Options{Config: mutate})
}

// benchSendRate is the SES stand-in's sending quota in the benchmarks:
// an account far above their rates ("fast SES"), so that the relay's pace
// (which keeps to the account's MaxSendRate, 1,000/s by default in the
// stand-in) does not bound how fast the workers drain.
const benchSendRate = 50000

// newBenchHarness is newHarness for a benchmark: the SES stand-in's quota
// is benchSendRate.
func newBenchHarness(b *testing.B) *harness {
	b.Helper()
	return relaytest.Start(b, relaytest.Options{SES: fakes.SESOptions{Quota: fakes.Quota{MaxSendRate: benchSendRate}}})
}

// receivedS3 is the JSON of the Received notification (every verdict PASS)
// of the mail sesID stored at relaytest.Key(sesID).
func receivedS3(h *harness, sesID string, recipients ...string) string {
	return string(h.Received(sesID, recipients...).JSON())
}

// waitFor polls cond until true or 20 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	relaytest.WaitFor(t, what, cond)
}

func testMail(i int) []byte {
	return []byte(fmt.Sprintf("From: Dora Sender <dora@example.net>\r\nTo: shop@relay.example.com\r\nSubject: test %d\r\n"+
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <m%d@example.net>\r\nDKIM-Signature: v=1; a=rsa-sha256; d=example.net\r\n"+
		"Return-Path: <bounce@example.net>\r\n\r\nbody %d\r\n", i, i, i))
}
