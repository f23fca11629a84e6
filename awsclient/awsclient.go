// Package awsclient holds the relay's S3 and SES clients, built on
// aws-sdk-go-v2 to fail fast: every call has its own deadline, the SDK makes
// at most two attempts, each dependency has its own HTTP transport (dial, TLS
// and response-header timeouts) and its own circuit breaker, and every call is
// timed into mailrelay_external_call_duration_seconds.
//
// This is the answer to incident 004: a slow S3 must show up as fast,
// classified, transient errors (and an open breaker), never as goroutines
// stuck in hidden SDK retries.
//
// Configuration is the SDK's own: config.LoadDefaultConfig reads AWS_REGION,
// the credential chain, AWS_ENDPOINT_URL and the per-service
// AWS_ENDPOINT_URL_S3, AWS_ENDPOINT_URL_SES and AWS_ENDPOINT_URL_SESV2 (the
// service clients resolve these themselves). Retry settings from the
// environment (AWS_MAX_ATTEMPTS, AWS_RETRY_MODE) are overridden: the relay's
// own retries are the spool's, with backoff measured in seconds to hours.
package awsclient

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/ses"
	"github.com/aws/aws-sdk-go-v2/service/sesv2"
	"github.com/aws/smithy-go/middleware"

	"github.com/mailrelay/mailrelay/telemetry"
)

// Send modes: which SES API SendRaw uses.
const (
	SendModeSES   = "ses"   // SES v1 SendRawEmail (default)
	SendModeSESv2 = "sesv2" // SES v2 SendEmail with Content.Raw
)

// Defaults applied by New for zero option values.
const (
	DefaultConnectTimeout        = 2 * time.Second
	DefaultResponseHeaderTimeout = 5 * time.Second
	DefaultS3GetTimeout          = 10 * time.Second
	DefaultS3DeleteTimeout       = 5 * time.Second
	DefaultSESSendTimeout        = 10 * time.Second
	DefaultMaxAttempts           = 2
	DefaultMaxIdleConnsPerHost   = 16
	DefaultIdleConnTimeout       = 60 * time.Second
	// DefaultMaxObjectBytes is SES receiving's own limit for one message
	// (40 MB including headers); a bigger object was not put there by SES.
	DefaultMaxObjectBytes int64 = 40 << 20

	DefaultBreakerFailures    = 5
	DefaultBreakerOpenTimeout = 10 * time.Second
	DefaultBreakerHalfOpenMax = 1

	// maxAttemptsCap is the hard ceiling on SDK attempts per call.
	maxAttemptsCap = 2
	// maxRetryBackoff bounds the SDK's sleep before its one retry, so that
	// the retry fits in the per-operation budget.
	maxRetryBackoff = 200 * time.Millisecond
)

// BreakerSettings configures the circuit breaker of one dependency.
type BreakerSettings struct {
	// Failures is the number of consecutive failed calls that opens the
	// breaker (default DefaultBreakerFailures). A failed call is a transient error; permanent
	// errors (404, rejected mail) and calls whose caller went away do not
	// count.
	Failures uint32
	// OpenTimeout is how long the breaker stays open before letting trial
	// calls through (half-open; default DefaultBreakerOpenTimeout).
	OpenTimeout time.Duration
	// HalfOpenMaxRequests is the number of trial calls allowed while
	// half-open; that many consecutive successes close the breaker
	// (default DefaultBreakerHalfOpenMax).
	HalfOpenMaxRequests uint32
}

// Options configures New. Zero values take the Default* constants above,
// which cmd's configuration uses as its defaults too.
type Options struct {
	// Region overrides the region from the environment (AWS_REGION) and
	// shared config.
	Region string

	// ConnectTimeout bounds dialing a connection (default 2s).
	ConnectTimeout time.Duration
	// TLSHandshakeTimeout bounds the TLS handshake (default: ConnectTimeout).
	TLSHandshakeTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for response headers after the
	// request was written, per attempt (default 5s).
	ResponseHeaderTimeout time.Duration
	// MaxIdleConnsPerHost and IdleConnTimeout size each dependency's
	// connection pool (defaults 16 and 60s).
	MaxIdleConnsPerHost int
	IdleConnTimeout     time.Duration

	// S3GetTimeout bounds one S3 Get including all attempts and reading the
	// body (default 10s). S3DeleteTimeout and SESSendTimeout likewise for
	// Delete (default 5s) and SendRaw (default 10s).
	S3GetTimeout    time.Duration
	S3DeleteTimeout time.Duration
	SESSendTimeout  time.Duration

	// MaxAttempts is the number of SDK attempts per call: 1 (no retry) or 2
	// (the default; larger values are capped at 2).
	MaxAttempts int

	// SendMode is SendModeSES (default) or SendModeSESv2.
	SendMode string

	// ConfigurationSet, if set, is the SES configuration set named on
	// every send (event publishing, reputation metrics), which then also
	// carries the message tag TagAlias (see AliasTag).
	ConfigurationSet string

	// Breaker configures both dependencies' circuit breakers.
	Breaker BreakerSettings

	// MaxObjectBytes is the largest S3 object Get accepts (default 40 MiB);
	// larger objects fail permanently with reason failure.ReasonMessageTooLarge
	// without being read.
	MaxObjectBytes int64

	// S3Endpoint and SESEndpoint override the endpoints the SDK would
	// resolve (from AWS_ENDPOINT_URL*, shared config, or the region). Used
	// by tests and the dev playground; production leaves them empty.
	S3Endpoint  string
	SESEndpoint string

	// AWSConfig, when set, is used instead of config.LoadDefaultConfig (its
	// credentials, region, base endpoint); tests use it to stay independent
	// of the machine's environment. LoadOptions are passed to
	// config.LoadDefaultConfig otherwise.
	AWSConfig   *aws.Config
	LoadOptions []func(*config.LoadOptions) error

	// Metrics receives call durations and breaker states (nil: a private,
	// unexported set). Logger receives breaker state changes (nil: discard).
	Metrics *telemetry.Metrics
	Logger  *slog.Logger
}

func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.ConnectTimeout, DefaultConnectTimeout)
	def(&o.TLSHandshakeTimeout, o.ConnectTimeout)
	def(&o.ResponseHeaderTimeout, DefaultResponseHeaderTimeout)
	def(&o.IdleConnTimeout, DefaultIdleConnTimeout)
	def(&o.S3GetTimeout, DefaultS3GetTimeout)
	def(&o.S3DeleteTimeout, DefaultS3DeleteTimeout)
	def(&o.SESSendTimeout, DefaultSESSendTimeout)
	def(&o.Breaker.OpenTimeout, DefaultBreakerOpenTimeout)
	if o.MaxIdleConnsPerHost <= 0 {
		o.MaxIdleConnsPerHost = DefaultMaxIdleConnsPerHost
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = DefaultMaxAttempts
	}
	o.MaxAttempts = min(o.MaxAttempts, maxAttemptsCap)
	if o.SendMode == "" {
		o.SendMode = SendModeSES
	}
	if o.Breaker.Failures == 0 {
		o.Breaker.Failures = DefaultBreakerFailures
	}
	if o.Breaker.HalfOpenMaxRequests == 0 {
		o.Breaker.HalfOpenMaxRequests = DefaultBreakerHalfOpenMax
	}
	if o.MaxObjectBytes <= 0 {
		o.MaxObjectBytes = DefaultMaxObjectBytes
	}
	if o.Metrics == nil {
		o.Metrics = telemetry.NewMetrics()
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// Clients are the relay's two AWS dependencies.
type Clients struct {
	S3  *S3
	SES *SES
}

// New builds the S3 and SES clients. It loads the AWS configuration (unless
// opts.AWSConfig is set) but makes no request.
func New(ctx context.Context, opts Options) (*Clients, error) {
	opts = opts.withDefaults()
	if opts.SendMode != SendModeSES && opts.SendMode != SendModeSESv2 {
		return nil, fmt.Errorf("awsclient: send mode %q: want %q or %q", opts.SendMode, SendModeSES, SendModeSESv2)
	}

	cfg, err := loadConfig(ctx, opts)
	if err != nil {
		return nil, err
	}

	s3dep := newDependency(ServiceS3, opts)
	sesdep := newDependency(ServiceSES, opts)

	s3c := s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.HTTPClient = newHTTPClient(opts)
		o.Retryer = newRetryer(opts.MaxAttempts)
		o.RetryMaxAttempts = opts.MaxAttempts
		o.APIOptions = append(slices.Clip(o.APIOptions), s3dep.timer.add)
		o.EndpointResolverV2 = newS3EndpointCache(o.EndpointResolverV2)
		if opts.S3Endpoint != "" {
			o.BaseEndpoint = aws.String(opts.S3Endpoint)
		}
		// Any endpoint override (AWS_ENDPOINT_URL, AWS_ENDPOINT_URL_S3,
		// shared config endpoint_url, S3Endpoint) means a stand-in such
		// as LocalStack: those need path-style addressing. The SDK has
		// resolved BaseEndpoint before this option function runs.
		if o.BaseEndpoint != nil {
			o.UsePathStyle = true
		}
	})

	sc := &SES{dep: sesdep, timeout: opts.SESSendTimeout, mode: opts.SendMode, configSet: opts.ConfigurationSet}
	switch opts.SendMode {
	case SendModeSES:
		sc.v1 = ses.NewFromConfig(cfg, func(o *ses.Options) {
			o.HTTPClient = newHTTPClient(opts)
			o.Retryer = newSESRetryer(opts.MaxAttempts)
			o.RetryMaxAttempts = opts.MaxAttempts
			o.APIOptions = append(slices.Clip(o.APIOptions), sesdep.timer.add)
			if opts.SESEndpoint != "" {
				o.BaseEndpoint = aws.String(opts.SESEndpoint)
			}
		})
	case SendModeSESv2:
		sc.v2 = sesv2.NewFromConfig(cfg, func(o *sesv2.Options) {
			o.HTTPClient = newHTTPClient(opts)
			o.Retryer = newSESRetryer(opts.MaxAttempts)
			o.RetryMaxAttempts = opts.MaxAttempts
			o.APIOptions = append(slices.Clip(o.APIOptions), sesdep.timer.add)
			if opts.SESEndpoint != "" {
				o.BaseEndpoint = aws.String(opts.SESEndpoint)
			}
		})
	}

	return &Clients{
		S3: &S3{
			client:        s3c,
			dep:           s3dep,
			getTimeout:    opts.S3GetTimeout,
			deleteTimeout: opts.S3DeleteTimeout,
			maxBytes:      opts.MaxObjectBytes,
		},
		SES: sc,
	}, nil
}

// loadConfig is the AWS configuration every client starts from: opts's
// AWSConfig or the SDK's default chain, the region, bounded retries and
// checksums only where required.
func loadConfig(ctx context.Context, opts Options) (aws.Config, error) {
	var cfg aws.Config
	if opts.AWSConfig != nil {
		cfg = opts.AWSConfig.Copy()
	} else {
		lo := slices.Clone(opts.LoadOptions)
		if opts.Region != "" {
			lo = append(lo, config.WithRegion(opts.Region))
		}
		var err error
		cfg, err = config.LoadDefaultConfig(ctx, lo...)
		if err != nil {
			return aws.Config{}, fmt.Errorf("awsclient: loading aws config: %w", err)
		}
	}
	if opts.Region != "" {
		cfg.Region = opts.Region
	}
	if cfg.Region == "" {
		return aws.Config{}, errors.New("awsclient: no region: set AWS_REGION")
	}

	// Retries: the standard retryer, at most two attempts, short backoff.
	// RetryMaxAttempts is set too, because the service clients wrap any
	// retryer with cfg.RetryMaxAttempts, which AWS_MAX_ATTEMPTS feeds.
	cfg.Retryer = func() aws.Retryer { return newRetryer(opts.MaxAttempts) }
	cfg.RetryMaxAttempts = opts.MaxAttempts
	cfg.RetryMode = aws.RetryModeStandard
	// Checksums only where the API requires them: we never ask for
	// response validation, and stand-ins (gofakes3, LocalStack) choke on
	// the trailing-checksum encodings newer SDKs send by default.
	cfg.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	cfg.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired

	return cfg, nil
}

// newRetryer is the SDK's standard retryer limited to maxAttempts, with a
// backoff short enough that the retry fits in the operation's deadline.
func newRetryer(maxAttempts int) aws.Retryer {
	return retry.NewStandard(func(so *retry.StandardOptions) {
		so.MaxAttempts = maxAttempts
		so.MaxBackoff = maxRetryBackoff
	})
}

// newHTTPClient returns an HTTP client with its own transport (and so its
// own connection pool) for one dependency. It is frozen so that the SDK's
// defaults mode (AWS_DEFAULTS_MODE) cannot replace our timeouts.
func newHTTPClient(o Options) aws.HTTPClient {
	return awshttp.NewBuildableClient().
		WithDialerOptions(func(d *net.Dialer) {
			d.Timeout = o.ConnectTimeout
		}).
		WithTransportOptions(func(t *http.Transport) {
			t.TLSHandshakeTimeout = o.TLSHandshakeTimeout
			t.ResponseHeaderTimeout = o.ResponseHeaderTimeout
			t.MaxIdleConnsPerHost = o.MaxIdleConnsPerHost
			t.IdleConnTimeout = o.IdleConnTimeout
		}).
		Freeze()
}

// add adds the call timer to a service client's middleware stack.
func (t *callTimer) add(stack *middleware.Stack) error {
	return stack.Initialize.Add(t, middleware.Before)
}
