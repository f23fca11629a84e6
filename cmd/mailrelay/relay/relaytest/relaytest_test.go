package relaytest

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

const mail = "From: Dora <dora@example.net>\r\nTo: shop@relay.example.com\r\nSubject: hi\r\nMessage-ID: <m1@example.net>\r\n\r\nbody\r\n"

// A delivery is stored, acknowledged and forwarded; after a restart on the
// same spool with another SES stand-in, the relay serves again and sends
// there.
func TestDeliverRestartUseSES(t *testing.T) {
	var mutated bool
	h := Start(t, Options{Config: func(c *config.Config) { mutated = true }})
	if !mutated || h.Config.Workers != 4 {
		t.Errorf("config: mutate called %v, workers %d (TestArgs say 4)", mutated, h.Config.Workers)
	}
	h.Deliver("sns-1", "ses-1", []byte(mail), "shop@relay.example.com")
	if sent := h.WaitSent(1); sent[0].Destinations[0] != "alice@example.org" {
		t.Errorf("sent to %v", sent[0].Destinations)
	}
	WaitFor(t, "object deleted", func() bool { return !h.S3.Has(h.Bucket, Key("ses-1")) })

	h.Shutdown()
	select {
	case <-h.Served():
	default:
		t.Error("Served not closed after Shutdown")
	}
	second := h.NewSES(fakes.SESOptions{})
	if h.SES != second {
		t.Fatal("NewSES did not make the new stand-in current")
	}
	h.Restart()
	h.Deliver("sns-2", "ses-2", []byte(mail), "news@relay.example.com")
	if sent := h.WaitSent(1); len(sent) != 1 || len(sent[0].Destinations) != 2 {
		t.Errorf("second SES got %+v", sent)
	}
	// The same SNS message again is a duplicate the spool remembers
	// across the restart: acknowledged, not forwarded again.
	if code := h.Post(h.Sign("sns-1", h.Received("ses-1", "shop@relay.example.com"))); code != http.StatusOK {
		t.Errorf("duplicate answered %d", code)
	}
}

// Fronts sit between the relay and the stand-ins; Post sends SNS's headers.
func TestFrontsAndPostHeaders(t *testing.T) {
	var s3Calls atomic.Int64
	front := func(target string) (string, func(), error) {
		u, err := url.Parse(target)
		if err != nil {
			return "", nil, err
		}
		proxy := httputil.NewSingleHostReverseProxy(u)
		p := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s3Calls.Add(1)
			proxy.ServeHTTP(w, r)
		}))
		return p.URL, p.Close, nil
	}
	h := Start(t, Options{FrontS3: func(s3 *fakes.S3) (string, func(), error) { return front(s3.URL()) }})
	if h.S3Endpoint == h.S3.URL() {
		t.Fatal("S3 endpoint is the stand-in, not its front")
	}
	h.Deliver("sns-1", "ses-1", []byte(mail), "shop@relay.example.com")
	h.WaitSent(1)
	if s3Calls.Load() == 0 {
		t.Error("no S3 call went through the front")
	}

	// A body that is no SNS message is still posted, and refused.
	if code := h.Post([]byte("not json")); code == http.StatusOK {
		t.Errorf("garbage answered %d", code)
	}
}

// NewEnv closes whatever it started when a later step fails.
func TestNewEnvCleansUpOnError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s3Addr := ln.Addr().String()
	ln.Close()
	_, err = NewEnv(Options{Dir: t.TempDir(), S3Addr: s3Addr, Args: []string{"--workers", "0"}})
	if err == nil || !strings.Contains(err.Error(), "workers") {
		t.Fatalf("NewEnv with --workers 0: %v", err)
	}
	ln, err = net.Listen("tcp", s3Addr)
	if err != nil {
		t.Fatalf("S3 stand-in still listening after a failed NewEnv: %v", err)
	}
	ln.Close()
}

// Received is what Put stored: the S3 action at Key, every verdict PASS.
func TestReceived(t *testing.T) {
	e, err := NewEnv(Options{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	n, err := sesnotify.Parse(e.Received("ses-9", "a@relay.example.com").JSON())
	if err != nil {
		t.Fatal(err)
	}
	a := n.Receipt.Action
	if a.BucketName != Bucket || a.ObjectKey != Key("ses-9") || a.TopicArn != TopicARN || n.Receipt.SpamVerdict.Status != sesnotify.StatusPass {
		t.Errorf("notification %+v", n.Receipt)
	}
}
