package awsclient

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/sony/gobreaker/v2"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/mailproc/failure"
	"github.com/mailrelay/mailrelay/telemetry"
)

// testOptions returns Options independent of the machine's environment:
// a hand-made aws.Config with static credentials and explicit endpoints.
func testOptions(s3URL, sesURL string) Options {
	return Options{
		AWSConfig: &aws.Config{
			Region:      "us-east-1",
			Credentials: credentials.NewStaticCredentialsProvider("AKIDTEST", "secret", ""),
		},
		S3Endpoint:            s3URL,
		SESEndpoint:           sesURL,
		ResponseHeaderTimeout: 2 * time.Second,
		S3GetTimeout:          5 * time.Second,
		S3DeleteTimeout:       5 * time.Second,
		SESSendTimeout:        5 * time.Second,
		Metrics:               telemetry.NewMetrics(),
	}
}

func newClients(t *testing.T, o Options) *Clients {
	t.Helper()
	c, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// calls is the number of observations of one call series.
func calls(t *testing.T, m *telemetry.Metrics, service, op, outcome string) uint64 {
	t.Helper()
	var d dto.Metric
	if err := m.ExternalCallDuration.WithLabelValues(service, op, outcome).(prometheus.Metric).Write(&d); err != nil {
		t.Fatal(err)
	}
	return d.GetHistogram().GetSampleCount()
}

func breakerGauge(m *telemetry.Metrics, dep string) float64 {
	return testutil.ToFloat64(m.BreakerState.WithLabelValues(dep))
}

// wantFailure checks err's class and reason.
func wantFailure(t *testing.T, err error, permanent bool, reason failure.Reason) {
	t.Helper()
	if err == nil {
		t.Fatalf("no error, want %s", reason)
	}
	if failure.IsPermanent(err) != permanent || failure.ReasonOf(err) != reason {
		t.Fatalf("error %v: class %v reason %q, want permanent=%v reason %q", err, failure.ClassOf(err), failure.ReasonOf(err), permanent, reason)
	}
}

// standIn serves h on 127.0.0.1 behind a request counter.
func standIn(t *testing.T, h http.Handler) (*httptest.Server, *fakes.Faults) {
	t.Helper()
	f := &fakes.Faults{}
	srv := httptest.NewServer(f.Wrap(h))
	t.Cleanup(srv.Close)
	return srv, f
}

// hang blocks until the client gives up, or for 30s: if a client timeout
// failed to fire, the test gets a wrong answer rather than hanging. It
// reads the request body first: only then does net/http notice a client
// hanging up.
func hang(w http.ResponseWriter, r *http.Request) {
	io.Copy(io.Discard, r.Body)
	t := time.NewTimer(30 * time.Second)
	defer t.Stop()
	select {
	case <-r.Context().Done():
	case <-t.C:
	}
}

func s3Error(status int, code string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>` + code + `</Code><Message>m</Message><RequestId>r</RequestId></Error>`))
	}
}

func newFakeS3(t *testing.T) *fakes.S3 {
	t.Helper()
	fs, err := fakes.NewS3()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(fs.Close)
	return fs
}

const mail = "From: a@example.org\r\nSubject: x\r\n\r\nbody\r\n"

func TestS3GetDeleteFake(t *testing.T) {
	fs := newFakeS3(t)
	if err := fs.Put("inbound", "m/1", []byte(mail)); err != nil {
		t.Fatal(err)
	}
	o := testOptions(fs.URL(), "")
	c := newClients(t, o)
	ctx := context.Background()

	got, err := c.S3.Get(ctx, "inbound", "m/1")
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != mail {
		t.Errorf("got %q", got)
	}
	if err := c.S3.Delete(ctx, "inbound", "m/1"); err != nil {
		t.Fatal(err)
	}
	if fs.Has("inbound", "m/1") {
		t.Error("object still there after Delete")
	}
	before := fs.Faults().Requests()
	_, err = c.S3.Get(ctx, "inbound", "m/1")
	wantFailure(t, err, true, "s3_not_found")
	if n := fs.Faults().Requests() - before; n != 1 {
		t.Errorf("not found took %d attempts, want 1", n)
	}
	_, err = c.S3.Get(ctx, "nobucket", "m/1")
	wantFailure(t, err, true, "s3_not_found")

	m := o.Metrics
	if n := calls(t, m, "s3", "GetObject", "ok"); n != 1 {
		t.Errorf("GetObject ok observed %d times, want 1", n)
	}
	if n := calls(t, m, "s3", "DeleteObject", "ok"); n != 1 {
		t.Errorf("DeleteObject ok observed %d times, want 1", n)
	}
	if n := calls(t, m, "s3", "GetObject", "error"); n != 2 {
		t.Errorf("GetObject error observed %d times, want 2", n)
	}
}

func TestS3TooLarge(t *testing.T) {
	fs := newFakeS3(t)
	fs.Put("b", "big", bytes.Repeat([]byte("x"), 11))
	fs.Put("b", "fits", bytes.Repeat([]byte("x"), 10))
	o := testOptions(fs.URL(), "")
	o.MaxObjectBytes = 10
	c := newClients(t, o)
	ctx := context.Background()
	_, err := c.S3.Get(ctx, "b", "big")
	wantFailure(t, err, true, "message_too_large")
	if got, err := c.S3.Get(ctx, "b", "fits"); err != nil || len(got) != 10 {
		t.Fatalf("fits: %d bytes, %v", len(got), err)
	}

	// A response without Content-Length is cut by the limited reader.
	srv, _ := standIn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush() // chunked: no Content-Length
		w.Write(bytes.Repeat([]byte("y"), 100))
	}))
	o2 := testOptions(srv.URL, "")
	o2.MaxObjectBytes = 10
	c = newClients(t, o2)
	_, err = c.S3.Get(ctx, "b", "chunked")
	wantFailure(t, err, true, "message_too_large")
	if c.S3.BreakerState() != gobreaker.StateClosed {
		t.Error("permanent failure affected the breaker")
	}
}

// TestS3Hang is incident 004: S3 stops answering. Calls must end by their
// own deadline, as timeouts, after at most two attempts.
func TestS3Hang(t *testing.T) {

	tests := []struct {
		name         string
		headerTO, op time.Duration
		attempts     int64
	}{
		// Each attempt hits the response-header timeout; one retry.
		{"header timeout", 50 * time.Millisecond, 5 * time.Second, 2},
		// The operation deadline ends the first attempt; no retry after it.
		{"operation deadline", 5 * time.Second, 100 * time.Millisecond, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, counter := standIn(t, http.HandlerFunc(hang))
			o := testOptions(srv.URL, "")
			o.ResponseHeaderTimeout = tt.headerTO
			o.S3GetTimeout = tt.op
			c := newClients(t, o)
			_, err := c.S3.Get(context.Background(), "b", "k")
			wantFailure(t, err, false, "s3_timeout")
			if n := counter.Requests(); n != tt.attempts {
				t.Errorf("%d attempts, want %d", n, tt.attempts)
			}
			if n := calls(t, o.Metrics, "s3", "GetObject", "timeout"); n != 1 {
				t.Errorf("timeout observed %d times, want 1", n)
			}
		})
	}

	t.Run("body stalls", func(t *testing.T) {
		srv, counter := standIn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(200)
			w.Write([]byte("partial"))
			w.(http.Flusher).Flush()
			hang(w, r)
		}))
		o := testOptions(srv.URL, "")
		o.S3GetTimeout = 100 * time.Millisecond
		c := newClients(t, o)
		_, err := c.S3.Get(context.Background(), "b", "k")
		wantFailure(t, err, false, "s3_timeout")
		if n := counter.Requests(); n != 1 {
			t.Errorf("%d attempts, want 1", n)
		}
		if n := calls(t, o.Metrics, "s3", "GetObject", "timeout"); n != 1 {
			t.Errorf("timeout observed %d times, want 1", n)
		}
		if n := calls(t, o.Metrics, "s3", "GetObject", "ok"); n != 0 {
			t.Errorf("stalled body observed as ok")
		}
	})
}

func TestS3ServerErrors(t *testing.T) {
	tests := []struct {
		name        string
		maxAttempts int
		handler     http.HandlerFunc
		reason      failure.Reason
		attempts    int64
	}{
		{"500 default attempts", 0, s3Error(500, "InternalError"), "s3_5xx", 2},
		{"500 no retry", 1, s3Error(500, "InternalError"), "s3_5xx", 1},
		{"500 capped at two", 5, s3Error(500, "InternalError"), "s3_5xx", 2},
		{"503 SlowDown", 2, s3Error(503, "SlowDown"), "s3_throttled", 2},
		{"403 AccessDenied", 2, s3Error(403, "AccessDenied"), "s3_access_denied", 1},
		{"502 without body", 2, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(502) }, "s3_5xx", 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, counter := standIn(t, tt.handler)
			o := testOptions(srv.URL, "")
			o.MaxAttempts = tt.maxAttempts
			c := newClients(t, o)
			_, err := c.S3.Get(context.Background(), "b", "k")
			wantFailure(t, err, false, tt.reason)
			if n := counter.Requests(); n != tt.attempts {
				t.Errorf("%d attempts, want %d", n, tt.attempts)
			}
			if n := calls(t, o.Metrics, "s3", "GetObject", "error"); n != 1 {
				t.Errorf("error observed %d times, want 1 (one per operation)", n)
			}
		})
	}

	t.Run("retry recovers", func(t *testing.T) {
		fs := newFakeS3(t)
		fs.Put("b", "k", []byte(mail))
		fs.Faults().Next(1, fakes.FaultInternalError)
		c := newClients(t, testOptions(fs.URL(), ""))
		if got, err := c.S3.Get(context.Background(), "b", "k"); err != nil || string(got) != mail {
			t.Fatalf("got %q, %v", got, err)
		}
		if n := fs.Faults().Requests(); n != 2 {
			t.Errorf("%d attempts, want 2", n)
		}
	})
}

// waitState polls the breaker (which moves from open to half-open when
// asked after its timeout), bounded.
func waitState(t *testing.T, get func() gobreaker.State, want gobreaker.State) {
	t.Helper()
	for range 1000 {
		if get() == want {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("breaker state %v, want %v", get(), want)
}

func TestBreaker(t *testing.T) {
	var healthy atomic.Bool
	srv, counter := standIn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			s3Error(500, "InternalError")(w, r)
			return
		}
		w.Write([]byte(mail))
	}))
	o := testOptions(srv.URL, "")
	o.MaxAttempts = 1
	o.Breaker = BreakerSettings{Failures: 3, OpenTimeout: 50 * time.Millisecond}
	c := newClients(t, o)
	ctx := context.Background()

	for range 3 {
		_, err := c.S3.Get(ctx, "b", "k")
		wantFailure(t, err, false, "s3_5xx")
	}
	if s := c.S3.BreakerState(); s != gobreaker.StateOpen {
		t.Fatalf("after 3 failures breaker is %v", s)
	}
	if g := breakerGauge(o.Metrics, "s3"); g != 2 {
		t.Errorf("breaker gauge %v, want 2", g)
	}
	if g := breakerGauge(o.Metrics, "ses"); g != 0 {
		t.Errorf("ses breaker gauge %v, want 0", g)
	}

	_, err := c.S3.Get(ctx, "b", "k")
	wantFailure(t, err, false, "breaker_open")
	if !errors.Is(err, gobreaker.ErrOpenState) {
		t.Errorf("error %v does not wrap ErrOpenState", err)
	}
	if n := counter.Requests(); n != 3 {
		t.Errorf("server saw %d requests, want 3 (none while open)", n)
	}
	if n := calls(t, o.Metrics, "s3", "GetObject", "breaker_open"); n != 1 {
		t.Errorf("breaker_open observed %d times, want 1", n)
	}

	healthy.Store(true)
	waitState(t, c.S3.BreakerState, gobreaker.StateHalfOpen)
	if g := breakerGauge(o.Metrics, "s3"); g != 1 {
		t.Errorf("breaker gauge %v, want 1", g)
	}
	if got, err := c.S3.Get(ctx, "b", "k"); err != nil || string(got) != mail {
		t.Fatalf("half-open trial: %q, %v", got, err)
	}
	if s := c.S3.BreakerState(); s != gobreaker.StateClosed {
		t.Errorf("after successful trial breaker is %v", s)
	}
	if g := breakerGauge(o.Metrics, "s3"); g != 0 {
		t.Errorf("breaker gauge %v, want 0", g)
	}

	// A failed trial opens it again.
	healthy.Store(false)
	for range 3 {
		c.S3.Get(ctx, "b", "k")
	}
	waitState(t, c.S3.BreakerState, gobreaker.StateHalfOpen)
	c.S3.Get(ctx, "b", "k")
	if s := c.S3.BreakerState(); s != gobreaker.StateOpen {
		t.Errorf("after failed trial breaker is %v", s)
	}
}

// TestBreakerIgnores: callers going away and permanent errors say nothing
// about the dependency's health.
func TestBreakerIgnores(t *testing.T) {
	arrived := make(chan struct{}, 10)
	srv, counter := standIn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/missing") {
			s3Error(404, "NoSuchKey")(w, r)
			return
		}
		arrived <- struct{}{}
		hang(w, r)
	}))
	o := testOptions(srv.URL, "")
	o.Breaker = BreakerSettings{Failures: 2, OpenTimeout: time.Hour}
	c := newClients(t, o)

	for range 4 {
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			<-arrived
			cancel()
		}()
		_, err := c.S3.Get(ctx, "b", "k")
		wantFailure(t, err, false, "s3_canceled")
		cancel()
	}
	for range 4 {
		_, err := c.S3.Get(context.Background(), "b", "missing")
		wantFailure(t, err, true, "s3_not_found")
	}
	if s := c.S3.BreakerState(); s != gobreaker.StateClosed {
		t.Errorf("breaker %v after cancellations and 404s", s)
	}

	// A caller already gone makes no request at all.
	before := counter.Requests()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := c.S3.Get(ctx, "b", "k")
	wantFailure(t, err, false, "s3_canceled")
	if counter.Requests() != before {
		t.Error("request made for a canceled context")
	}
}

func startSES(t *testing.T) (*fakes.SES, *httptest.Server, *fakes.Faults) {
	t.Helper()
	s := fakes.NewSES(fakes.SESOptions{})
	srv, counter := standIn(t, s)
	return s, srv, counter
}

func TestSESSendRaw(t *testing.T) {
	for _, mode := range []string{SendModeSES, SendModeSESv2} {
		t.Run(mode, func(t *testing.T) {
			fake, srv, counter := startSES(t)
			o := testOptions("", srv.URL)
			o.SendMode = mode
			c := newClients(t, o)
			ctx := context.Background()
			op := map[string]string{SendModeSES: "SendRawEmail", SendModeSESv2: "SendEmail"}[mode]

			id, err := c.SES.SendRaw(ctx, "shop@relay.example.com", []string{"alice@example.org", "bob@example.org"}, []byte(mail))
			if err != nil {
				t.Fatal(err)
			}
			sent := fake.Sent()
			if len(sent) != 1 || sent[0].ID != id || string(sent[0].Raw) != mail || sent[0].Source != "shop@relay.example.com" ||
				strings.Join(sent[0].Destinations, ",") != "alice@example.org,bob@example.org" || sent[0].API != mode {
				t.Fatalf("sent %+v, id %q", sent, id)
			}
			if n := calls(t, o.Metrics, "ses", op, "ok"); n != 1 {
				t.Errorf("%s ok observed %d times", op, n)
			}

			// Throttling is not retried by the SDK: the caller's pacer
			// slows down and sends again after a token.
			fake.Fail(fakes.ErrThrottling)
			before := counter.Requests()
			_, err = c.SES.SendRaw(ctx, "", []string{"a@example.org"}, []byte(mail))
			wantFailure(t, err, false, "ses_throttled")
			if n := counter.Requests() - before; n != 1 {
				t.Errorf("a throttled send took %d attempts, want 1", n)
			}
			if _, err := c.SES.SendRaw(ctx, "", []string{"a@example.org"}, []byte(mail)); err != nil {
				t.Fatalf("after one throttle: %v", err)
			}

			tests := []struct {
				errs      []error
				permanent bool
				reason    failure.Reason
				attempts  int64
			}{
				{[]error{fakes.ErrThrottling}, false, "ses_throttled", 1},
				{[]error{fakes.ErrMessageRejected}, true, "ses_rejected", 1},
				{[]error{fakes.ErrInvalidParameter}, true, "ses_invalid_parameter", 1},
				{[]error{fakes.ErrMailFromNotVerified}, true, "ses_mail_from_not_verified", 1},
				{[]error{fakes.ErrAccessDenied}, false, "ses_access_denied", 1},
				{[]error{fakes.ErrInternal, fakes.ErrInternal}, false, "ses_5xx", 2},
			}
			for _, tt := range tests {
				fake.Fail(tt.errs...)
				before := counter.Requests()
				_, err := c.SES.SendRaw(ctx, "", []string{"a@example.org"}, []byte(mail))
				wantFailure(t, err, tt.permanent, tt.reason)
				if n := counter.Requests() - before; n != tt.attempts {
					t.Errorf("%s: %d attempts, want %d", tt.reason, n, tt.attempts)
				}
			}
			if n := len(fake.Sent()); n != 2 {
				t.Errorf("%d mails recorded, want 2", n)
			}
			_, err = c.SES.SendRaw(ctx, "", nil, []byte(mail))
			wantFailure(t, err, true, "ses_invalid_parameter")
		})
	}
}

func TestSESHang(t *testing.T) {
	srv, counter := standIn(t, http.HandlerFunc(hang))
	o := testOptions("", srv.URL)
	o.SESSendTimeout = 100 * time.Millisecond
	c := newClients(t, o)
	_, err := c.SES.SendRaw(context.Background(), "", []string{"a@example.org"}, []byte(mail))
	wantFailure(t, err, false, "ses_timeout")
	if n := counter.Requests(); n != 1 {
		t.Errorf("%d attempts, want 1", n)
	}
	if n := calls(t, o.Metrics, "ses", "SendRawEmail", "timeout"); n != 1 {
		t.Errorf("timeout observed %d times, want 1", n)
	}
}

func TestNewOptions(t *testing.T) {
	o := testOptions("", "")
	o.SendMode = "smtp"
	if _, err := New(context.Background(), o); err == nil {
		t.Error("unknown send mode accepted")
	}
	o = testOptions("", "")
	o.AWSConfig.Region = ""
	if _, err := New(context.Background(), o); err == nil {
		t.Error("missing region accepted")
	}
	o.Region = "eu-west-1"
	if _, err := New(context.Background(), o); err != nil {
		t.Errorf("region from options: %v", err)
	}
	d := Options{}.withDefaults()
	if d.MaxAttempts != 2 || d.ConnectTimeout != 2*time.Second || d.ResponseHeaderTimeout != 5*time.Second ||
		d.S3GetTimeout != 10*time.Second || d.SESSendTimeout != 10*time.Second || d.SendMode != SendModeSES ||
		d.Metrics == nil || d.Logger == nil || d.MaxObjectBytes != DefaultMaxObjectBytes {
		t.Errorf("defaults %+v", d)
	}
	if (Options{MaxAttempts: 9}).withDefaults().MaxAttempts != 2 {
		t.Error("MaxAttempts not capped at 2")
	}
}

// setenv sets (or, with unset, removes) environment variables for the
// test, restoring them afterwards.
func setenv(t *testing.T, kv map[string]string, unset ...string) {
	for k, v := range kv {
		t.Setenv(k, v)
	}
	for _, k := range unset {
		t.Setenv(k, "") // registers the restore
		os.Unsetenv(k)
	}
}

// cleanAWSEnv isolates LoadDefaultConfig from the machine: static
// credentials from the environment, no shared files, no IMDS.
func cleanAWSEnv(t *testing.T) {
	dir := t.TempDir()
	setenv(t, map[string]string{
		"AWS_REGION":                  "us-east-1",
		"AWS_ACCESS_KEY_ID":           "AKIDENV",
		"AWS_SECRET_ACCESS_KEY":       "secret",
		"AWS_CONFIG_FILE":             dir + "/config",
		"AWS_SHARED_CREDENTIALS_FILE": dir + "/credentials",
		"AWS_EC2_METADATA_DISABLED":   "true",
	}, "AWS_PROFILE", "AWS_DEFAULT_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3",
		"AWS_ENDPOINT_URL_SES", "AWS_ENDPOINT_URL_SESV2", "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS",
		"AWS_MAX_ATTEMPTS", "AWS_RETRY_MODE", "AWS_DEFAULTS_MODE", "AWS_ROLE_ARN", "AWS_WEB_IDENTITY_TOKEN_FILE")
}

// TestEnvironment checks that the SDK's own environment handling reaches
// our clients: per-service and global endpoint URLs, region, credentials;
// and that AWS_MAX_ATTEMPTS cannot raise the attempt ceiling.
func TestEnvironment(t *testing.T) {
	fs := newFakeS3(t)
	fs.Put("inbound", "k", []byte(mail))
	fake, sesSrv, _ := startSES(t)
	ctx := context.Background()

	t.Run("per-service endpoints", func(t *testing.T) {
		cleanAWSEnv(t)
		setenv(t, map[string]string{
			"AWS_ENDPOINT_URL_S3":  fs.URL(),
			"AWS_ENDPOINT_URL_SES": sesSrv.URL,
			"AWS_MAX_ATTEMPTS":     "7",
			"AWS_RETRY_MODE":       "adaptive",
			"AWS_DEFAULTS_MODE":    "standard",
		})
		c := newClients(t, Options{})
		if got, err := c.S3.Get(ctx, "inbound", "k"); err != nil || string(got) != mail {
			t.Fatalf("S3 via AWS_ENDPOINT_URL_S3: %q, %v", got, err)
		}
		if _, err := c.SES.SendRaw(ctx, "", []string{"a@example.org"}, []byte(mail)); err != nil {
			t.Fatalf("SES via AWS_ENDPOINT_URL_SES: %v", err)
		}
		before := fs.Faults().Requests()
		fs.Faults().Next(10, fakes.FaultInternalError)
		defer fs.Faults().Clear()
		_, err := c.S3.Get(ctx, "inbound", "k")
		wantFailure(t, err, false, "s3_5xx")
		if n := fs.Faults().Requests() - before; n != 2 {
			t.Errorf("AWS_MAX_ATTEMPTS=7: %d attempts, want 2", n)
		}
	})

	t.Run("global endpoint", func(t *testing.T) {
		cleanAWSEnv(t)
		setenv(t, map[string]string{"AWS_ENDPOINT_URL": fs.URL()})
		c := newClients(t, Options{})
		if got, err := c.S3.Get(ctx, "inbound", "k"); err != nil || string(got) != mail {
			t.Fatalf("S3 via AWS_ENDPOINT_URL: %q, %v", got, err)
		}
	})

	t.Run("sesv2 endpoint", func(t *testing.T) {
		cleanAWSEnv(t)
		// AWS_ENDPOINT_URL_SES is not read by the SESv2 client: its
		// service id is "SESv2", so the variable is AWS_ENDPOINT_URL_SESV2.
		setenv(t, map[string]string{"AWS_ENDPOINT_URL_SESV2": sesSrv.URL})
		n := len(fake.Sent())
		c := newClients(t, Options{SendMode: SendModeSESv2})
		if _, err := c.SES.SendRaw(ctx, "", []string{"a@example.org"}, []byte(mail)); err != nil {
			t.Fatalf("SESv2 via AWS_ENDPOINT_URL_SESV2: %v", err)
		}
		if got := fake.Sent(); len(got) != n+1 || got[n].API != "sesv2" {
			t.Errorf("sent %+v", got)
		}
	})

	t.Run("no region", func(t *testing.T) {
		cleanAWSEnv(t)
		setenv(t, nil, "AWS_REGION", "AWS_DEFAULT_REGION")
		if _, err := New(ctx, Options{}); err == nil {
			t.Error("New without a region succeeded")
		}
	})
}

// TestS3PathStyle: with an endpoint override S3 requests are path-style
// (http://host/bucket/key), which stand-ins need. The endpoint is named
// "localhost" because the SDK never uses virtual hosts for IP addresses.
func TestS3PathStyle(t *testing.T) {
	type seen struct{ host, path string }
	got := make(chan seen, 10)
	srv, _ := standIn(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.Host, r.URL.Path}
		w.Write([]byte(mail))
	}))
	endpoint := strings.Replace(srv.URL, "127.0.0.1", "localhost", 1)
	check := func(t *testing.T, c *Clients) {
		t.Helper()
		if _, err := c.S3.Get(context.Background(), "inbound", "m/1"); err != nil {
			t.Fatal(err)
		}
		s := <-got
		if s.path != "/inbound/m/1" || strings.HasPrefix(s.host, "inbound.") {
			t.Errorf("request to host %q path %q, want path-style /inbound/m/1", s.host, s.path)
		}
	}
	t.Run("option", func(t *testing.T) {
		check(t, newClients(t, testOptions(endpoint, "")))
	})
	t.Run("environment", func(t *testing.T) {
		cleanAWSEnv(t)
		setenv(t, map[string]string{"AWS_ENDPOINT_URL_S3": endpoint})
		check(t, newClients(t, Options{}))
	})
}

// BenchmarkS3Get measures one Get of a 64 KiB mail from gofakes3 on
// loopback: the client's overhead (signing, breaker, timing) plus the fake.
func BenchmarkS3Get(b *testing.B) {
	fs, err := fakes.NewS3()
	if err != nil {
		b.Fatal(err)
	}
	defer fs.Close()
	fs.Put("b", "k", bytes.Repeat([]byte("x"), 64<<10))
	c, err := New(context.Background(), testOptions(fs.URL(), ""))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	for b.Loop() {
		if _, err := c.S3.Get(ctx, "b", "k"); err != nil {
			b.Fatal(err)
		}
	}
}
