package inbound_test

import (
	"bytes"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
)

// 200 forged deliveries, each naming a new certificate path under an
// allowed prefix, cost at most the download limit's GETs; the others are
// answered 503 with Retry-After (a genuine new certificate is fetched on
// SNS's retry), never a download each.
func TestCertDownloadsLimited(t *testing.T) {
	e := newEnv(t, snstest.New(t), envOptions{})
	prefix := strings.SplitN(e.confirmURL, "?", 2)[0] + "sns/"
	start := time.Now()
	codes := map[int]int{}
	const n = 200
	for i := range n {
		body := tamper(t, e.signer.Notification(topic, fmt.Sprintf("m-forged-%d", i), subject, sesS3, "2"), func(m *sns.Message) {
			m.SigningCertURL = fmt.Sprintf("%sforged-%d.pem", prefix, i)
		})
		code, retryAfter := e.post(t, bytes.NewReader(body))
		if code == http.StatusServiceUnavailable && retryAfter == "" {
			t.Fatalf("503 without Retry-After")
		}
		codes[code]++
	}
	elapsed := time.Since(start)
	gets := e.confirmHits.Load()
	t.Logf("%d deliveries with distinct certificate paths in %v: %d GETs, answers %v", n, elapsed.Round(time.Millisecond), gets, codes)
	if max := int64(sns.DefaultCertFetchBurst + sns.DefaultCertFetchRate*elapsed.Seconds() + 1); gets > max {
		t.Errorf("%d certificate GETs, want at most %d", gets, max)
	}
	// A downloaded non-certificate is refused for good; the rest wait.
	if codes[http.StatusForbidden] != int(gets) || codes[http.StatusServiceUnavailable] != n-int(gets) {
		t.Errorf("answers %v, want %d × 403 and the rest 503", codes, gets)
	}
	if !strings.Contains(e.logs.String(), `"reason":"cert_fetch_limited"`) {
		t.Error("no cert_fetch_limited reason logged")
	}
}
