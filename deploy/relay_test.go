package deploy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/mailrelay/mailrelay/awsclient"
	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/telemetry"
)

// exported maps each metric family a running relay exports to its label
// names (le for histograms).
type exported map[string]map[string]bool

// scrapeRelay starts the real relay in-process with the stand-ins of
// relay/harness_test.go (S3, SES, SNS signer), records one sample into
// every labelled metric so that it appears, scrapes its /metrics and stops
// it.
func scrapeRelay(t *testing.T) exported {
	t.Helper()
	signer := snstest.New(t)
	prefix, closeCert := signer.Serve()
	t.Cleanup(closeCert)
	s3, err := fakes.NewS3()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s3.Close)
	ses := fakes.NewSES(fakes.SESOptions{})
	if err := ses.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ses.Close)

	dir := t.TempDir()
	aliasFile := filepath.Join(dir, "aliases.yaml")
	if err := os.WriteFile(aliasFile, []byte("domains: [relay.example.com]\naliases:\n  - address: shop@relay.example.com\n    forward_to: [alice@example.org]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load([]string{
		"--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--sns-topic-arns", "arn:aws:sns:us-east-1:123456789012:mailrelay-inbound", "--sns-cert-url-prefixes", prefix,
		"--spool-dir", filepath.Join(dir, "spool"), "--aliases-file", aliasFile, "--shutdown-timeout", "5s",
	}, func(string) (string, bool) { return "", false }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	awsOpts := &awsclient.Options{
		AWSConfig: &aws.Config{
			Region:      "us-east-1",
			Credentials: credentials.NewStaticCredentialsProvider("test", "test", ""),
		},
		S3Endpoint:  s3.URL(),
		SESEndpoint: ses.URL(),
	}

	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan *relay.Relay, 1)
	done := make(chan error, 1)
	go func() {
		done <- relay.Serve(ctx, cfg, relay.Deps{Logger: slog.New(slog.DiscardHandler), AWS: awsOpts, Ready: func(r *relay.Relay) { ready <- r }})
	}()
	var r *relay.Relay
	select {
	case r = <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("relay did not start: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("relay did not start in 20s")
	}
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("relay exited with %v", err)
			}
		case <-time.After(20 * time.Second):
			t.Error("relay did not stop in 20s")
		}
	}()

	// Vectors appear only once a label combination is used.
	m := r.Metrics
	m.ExternalCallDuration.WithLabelValues("s3", "GetObject", telemetry.OutcomeOK).Observe(0.01)
	m.InboundRequests.WithLabelValues("Notification", "200").Inc()
	m.BreakerState.WithLabelValues("s3").Set(0)
	m.Messages.WithLabelValues(telemetry.MsgForwarded, "ok").Inc()
	m.Panics.WithLabelValues("worker").Add(0)
	m.HealthRequests.WithLabelValues("/livez").Observe(0.001)
	m.AckDuration.Observe(0.001)
	m.ProcessDuration.Observe(0.01)

	resp, err := http.Get("http://" + r.HealthAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics answered %d", resp.StatusCode)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parsing /metrics: %v", err)
	}
	out := exported{}
	for name, f := range fams {
		labels := map[string]bool{}
		for _, mm := range f.GetMetric() {
			for _, l := range mm.GetLabel() {
				labels[l.GetName()] = true
			}
		}
		switch f.GetType() {
		case dto.MetricType_HISTOGRAM:
			labels["le"] = true
		case dto.MetricType_SUMMARY:
			labels["quantile"] = true
		}
		out[name] = labels
	}
	return out
}

// TestScrapeRelay makes sure the scrape sees the operator contract's metrics, so that the
// dashboard and alert checks compare against something real.
func TestScrapeRelay(t *testing.T) {
	got := scrapeRelay(t)
	for name, labels := range map[string][]string{
		"mailrelay_external_call_duration_seconds": {"service", "operation", "outcome", "le"},
		"mailrelay_inbound_requests_total":         {"type", "code"},
		"mailrelay_ack_duration_seconds":           {"le"},
		"mailrelay_queue_messages":                 nil,
		"mailrelay_breaker_state":                  {"dependency"},
		"mailrelay_messages_total":                 {"outcome", "reason"},
	} {
		l, ok := got[name]
		if !ok {
			t.Errorf("relay does not export %s", name)
			continue
		}
		for _, want := range labels {
			if !l[want] {
				t.Errorf("%s has no label %s (has %v)", name, want, l)
			}
		}
	}
}
