// Package relaytest runs the real relay (relay.Serve) in-process against
// stand-ins for everything outside it, and drives it the way SES and SNS
// do. It is the one relay harness: the relay's own tests, the deploy checks,
// the incident replay of mailrelay-load and the `mailrelay dev` playground
// all start the relay through it.
//
// The core is Env, built from plain Options and reporting errors, so that
// programs (the replay, the playground) can use it; Start wraps it for a
// test, failing the test instead of returning errors and stopping
// everything when the test ends.
//
// An Env owns:
//   - an SNS signer (snstest) whose certificate is served on 127.0.0.1, the
//     only certificate URL prefix the relay accepts;
//   - the S3 stand-in (fakes.S3, gofakes3 in memory) and the SES stand-in
//     (fakes.SES, recording every send), each optionally behind a front
//     (Options.FrontS3, FrontSES) such as a fault injector;
//   - a directory with the alias file and the spool, so that the relay can
//     be stopped and started again on the same spool (Shutdown, Start);
//   - the relay's configuration, parsed from `mailrelay serve` flags as cmd
//     parses them.
package relaytest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/mailrelay/mailrelay/awsclient"
	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
	"github.com/mailrelay/mailrelay/telemetry"
)

// Defaults of Options.
const (
	TopicARN = "arn:aws:sns:us-east-1:123456789012:mailrelay-inbound"
	Bucket   = "mailrelay-inbound"
	Region   = "us-east-1"
	// KeyPrefix is the S3 action's object key prefix: a mail's key is
	// KeyPrefix + its SES message id, as SES names them.
	KeyPrefix = "inbound/"
	// Subject is the SNS subject of SES receipt notifications.
	Subject = "Amazon SES Email Receipt Notification"
	// DefaultStartTimeout bounds the wait for the relay to serve.
	DefaultStartTimeout = 20 * time.Second
)

// DefaultAliases is the alias file of an Env whose Options name none.
const DefaultAliases = `domains: [relay.example.com]
aliases:
  - address: shop@relay.example.com
    forward_to: [alice@example.org]
  - address: news@relay.example.com
    forward_to: [bob@example.org, carol@example.org]
`

// Options configure an Env. Zero values take the defaults.
type Options struct {
	// Dir holds aliases.yaml and spool/ (default: a fresh temporary
	// directory, removed by Close).
	Dir string
	// Aliases is written to Dir/aliases.yaml unless that file exists
	// (default DefaultAliases).
	Aliases string
	// TopicARN is the topic the relay accepts and notifications come from
	// (default TopicARN); Bucket is the S3 action's bucket (default Bucket).
	TopicARN, Bucket string
	// Args are `mailrelay serve` flags applied after the Env's own, which
	// are only what it must set: every listener on 127.0.0.1:0, the topic,
	// the signer's certificate URL prefix, the spool and the alias file.
	// Everything else is the relay's default unless set here. The
	// environment is not read.
	Args []string
	// Config, when set, changes the parsed configuration.
	Config func(*config.Config)

	// S3Addr and SESAddr are the stand-ins' listen addresses (default
	// 127.0.0.1 on a free port).
	S3Addr, SESAddr string
	// SES configures the SES stand-in (OnSend, Latency, EMLDir, ...).
	SES fakes.SESOptions
	// FrontS3 and FrontSES, when set, put something between the relay and
	// a stand-in (a fault injector, a proxy): given the stand-in, they
	// return the endpoint the relay is to use instead and a func that stops
	// what they started, called by Close.
	FrontS3  func(*fakes.S3) (endpoint string, stop func(), err error)
	FrontSES func(*fakes.SES) (endpoint string, stop func(), err error)
	// Breaker configures the relay's circuit breakers.
	Breaker awsclient.BreakerSettings

	// Logger receives the relay's log (default: discarded).
	Logger *slog.Logger
	// Metrics, when set, is used by every run of the relay; else each run
	// has fresh metrics (Env.Relay.Metrics).
	Metrics *telemetry.Metrics
	// StartTimeout bounds the wait for the relay to serve
	// (DefaultStartTimeout).
	StartTimeout time.Duration
}

func (o Options) withDefaults() Options {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Aliases, DefaultAliases)
	def(&o.TopicARN, TopicARN)
	def(&o.Bucket, Bucket)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.StartTimeout <= 0 {
		o.StartTimeout = DefaultStartTimeout
	}
	return o
}

// Env is a relay with its stand-ins. Its fields are set by NewEnv; Relay by
// every Start.
type Env struct {
	// Dir holds aliases.yaml (AliasesFile) and spool/; TopicARN and Bucket
	// are those of Options.
	Dir, AliasesFile, TopicARN, Bucket string
	// Config is the relay's configuration, used by every Start; it may be
	// changed between runs.
	Config *config.Config
	// Signer signs SNS messages as the topic's SNS would.
	Signer *snstest.Signer
	// S3 and SES are the stand-ins.
	S3  *fakes.S3
	SES *fakes.SES
	// S3Endpoint and SESEndpoint are where the relay sends its S3 and SES
	// calls: the stand-ins' URLs, or their fronts'.
	S3Endpoint, SESEndpoint string
	// Relay is the current run's listener addresses, spool and metrics
	// (nil before the first Start).
	Relay *relay.Relay

	opts     Options
	http     *http.Client
	cleanups []func()

	mu  sync.Mutex // guards run: Stop and Served may be called from any goroutine
	run *run
}

// run is one call of relay.Serve.
type run struct {
	stop context.CancelFunc
	done chan struct{}
	err  error // Serve's, valid once done is closed
}

// NewEnv writes the alias file, starts the signer's certificate server and
// the stand-ins, and parses the relay's configuration. The relay itself
// starts with Start. On error, whatever was started is stopped again.
func NewEnv(opts Options) (_ *Env, err error) {
	opts = opts.withDefaults()
	e := &Env{
		TopicARN: opts.TopicARN,
		Bucket:   opts.Bucket,
		opts:     opts,
		http:     &http.Client{Timeout: 30 * time.Second},
	}
	defer func() {
		if err != nil {
			e.closeAll()
		}
	}()
	if e.Dir = opts.Dir; e.Dir == "" {
		if e.Dir, err = os.MkdirTemp("", "mailrelay-relaytest-"); err != nil {
			return nil, fmt.Errorf("relaytest: %w", err)
		}
		tmp := e.Dir
		e.onClose(func() { os.RemoveAll(tmp) })
	}
	e.AliasesFile = filepath.Join(e.Dir, "aliases.yaml")
	if err := writeIfAbsent(e.AliasesFile, []byte(opts.Aliases)); err != nil {
		return nil, err
	}

	if e.Signer, err = snstest.NewSigner(); err != nil {
		return nil, fmt.Errorf("relaytest: sns signer: %w", err)
	}
	certPrefix, closeCert := e.Signer.Serve()
	e.onClose(closeCert)
	if e.S3, err = fakes.NewS3On(opts.S3Addr); err != nil {
		return nil, err
	}
	e.onClose(e.S3.Close)
	e.SES = fakes.NewSES(opts.SES)
	if err := e.SES.Start(opts.SESAddr); err != nil {
		return nil, err
	}
	e.onClose(e.SES.Close)
	if e.S3Endpoint, err = e.front(e.S3.URL(), func() (string, func(), error) { return opts.FrontS3(e.S3) }, opts.FrontS3 != nil); err != nil {
		return nil, fmt.Errorf("relaytest: s3 front: %w", err)
	}
	if e.SESEndpoint, err = e.front(e.SES.URL(), func() (string, func(), error) { return opts.FrontSES(e.SES) }, opts.FrontSES != nil); err != nil {
		return nil, fmt.Errorf("relaytest: ses front: %w", err)
	}

	args := []string{
		"--listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0",
		"--sns-topic-arns", opts.TopicARN, "--sns-cert-url-prefixes", certPrefix, "--s3-buckets", opts.Bucket,
		"--spool-dir", filepath.Join(e.Dir, "spool"), "--aliases-file", e.AliasesFile,
	}
	var usage bytes.Buffer
	if e.Config, err = config.Load(append(args, opts.Args...), func(string) (string, bool) { return "", false }, &usage); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, fmt.Errorf("relay flags:\n%s", usage.String())
		}
		return nil, fmt.Errorf("relay flags: %w", err)
	}
	if opts.Config != nil {
		opts.Config(e.Config)
	}
	return e, nil
}

// front returns the endpoint of a stand-in at url: url itself, or that of
// the front start puts before it.
func (e *Env) front(url string, start func() (string, func(), error), set bool) (string, error) {
	if !set {
		return url, nil
	}
	endpoint, stop, err := start()
	if stop != nil {
		e.onClose(stop)
	}
	return endpoint, err
}

func (e *Env) onClose(f func()) { e.cleanups = append(e.cleanups, f) }

func (e *Env) closeAll() {
	for _, f := range slices.Backward(e.cleanups) {
		f()
	}
	e.cleanups = nil
}

// RelayLabel is the profiler label (key and value) on the relay's goroutines.
const RelayLabel = "relay"

// Start runs the relay (again, after Shutdown: on the same spool) and
// returns once it serves. ctx bounds the wait; the relay runs until
// Stop, Shutdown or Close, not until ctx ends. If Serve fails, Start returns
// its error.
func (e *Env) Start(ctx context.Context) error {
	if e.current() != nil {
		return errors.New("relaytest: the relay is already running")
	}
	rctx, stop := context.WithCancel(context.WithoutCancel(ctx))
	r := &run{stop: stop, done: make(chan struct{})}
	ready := make(chan *relay.Relay, 1)
	deps := relay.Deps{
		Logger:  e.opts.Logger,
		Metrics: e.opts.Metrics,
		AWS: &awsclient.Options{
			AWSConfig: &aws.Config{
				Region:      Region,
				Credentials: credentials.NewStaticCredentialsProvider("relaytest", "relaytest", ""),
			},
			S3Endpoint:  e.S3Endpoint,
			SESEndpoint: e.SESEndpoint,
			Breaker:     e.opts.Breaker,
		},
		Ready: func(rl *relay.Relay) { ready <- rl },
	}
	go func() {
		defer close(r.done)
		// Every goroutine of the relay (and of its HTTP clients) carries
		// the profiler label RelayLabel, so that a CPU profile of a run
		// with the stand-ins and a load generator in the same process can
		// tell the relay's own CPU time apart (BenchmarkIntakePaced).
		pprof.SetGoroutineLabels(pprof.WithLabels(rctx, pprof.Labels(RelayLabel, RelayLabel)))
		r.err = relay.Serve(rctx, e.Config, deps)
	}()
	fail := func(err error) error {
		stop()
		<-r.done // Serve is bounded by Config.ShutdownTimeout
		return err
	}
	select {
	case e.Relay = <-ready:
		e.mu.Lock()
		e.run = r
		e.mu.Unlock()
		return nil
	case <-r.done:
		stop()
		return fmt.Errorf("relay did not start: %w", r.err)
	case <-time.After(e.opts.StartTimeout):
		return fail(fmt.Errorf("relay did not start in %v", e.opts.StartTimeout))
	case <-ctx.Done():
		return fail(ctx.Err())
	}
}

// Stop ends the relay's context, as SIGTERM does, and returns at once;
// Served is closed once Serve has returned.
func (e *Env) Stop() {
	if r := e.current(); r != nil {
		r.stop()
	}
}

func (e *Env) current() *run {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.run
}

// Served is closed once the current run of the relay has returned (at once
// if none runs).
func (e *Env) Served() <-chan struct{} {
	r := e.current()
	if r == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	return r.done
}

// Shutdown stops the relay as SIGTERM does and waits until Serve returns,
// returning its error. The stand-ins stay up; Start runs the relay again.
func (e *Env) Shutdown() error {
	r := e.current()
	if r == nil {
		return nil
	}
	r.stop()
	<-r.done
	e.mu.Lock()
	if e.run == r {
		e.run = nil
	}
	e.mu.Unlock()
	return r.err
}

// Close shuts the relay down and stops everything else NewEnv started
// (removing Dir if it was temporary). It returns Serve's error.
func (e *Env) Close() error {
	err := e.Shutdown()
	e.closeAll()
	return err
}

// UseSES makes the relay send to ses from its next Start on (ses must be
// started; the front of Options.FrontSES is not put before it). The
// earlier stand-in stays up until Close.
func (e *Env) UseSES(ses *fakes.SES) {
	e.SES, e.SESEndpoint = ses, ses.URL()
}

// Key is the object key of the mail with SES message id sesID.
func Key(sesID string) string { return KeyPrefix + sesID }

// Put stores mail in the bucket as SES's S3 action does, under Key(sesID).
func (e *Env) Put(sesID string, mail []byte) error {
	return e.S3.Put(e.Bucket, Key(sesID), mail)
}

// Received is the Received notification SES publishes for the mail with
// SES message id sesID stored by Put, for recipients, every verdict PASS.
func (e *Env) Received(sesID string, recipients ...string) *sesnotify.Notification {
	return sesnotify.Received(sesID, time.Now(), recipients, sesnotify.S3Action(e.TopicARN, e.Bucket, Key(sesID))).Pass()
}

// Sign is n as SNS delivers it from the topic: a Notification with message
// id snsID, signed with signature version 2.
func (e *Env) Sign(snsID string, n *sesnotify.Notification) []byte {
	return e.Signer.Notification(e.TopicARN, snsID, Subject, string(n.JSON()), "2")
}

// Post delivers body to the relay's /sns as SNS does (its headers are taken
// from body when it is an SNS message) and returns the relay's status code
// and, unless 200, the start of its answer.
func (e *Env) Post(ctx context.Context, body []byte) (code int, answer string, err error) {
	if e.Relay == nil {
		return 0, "", errors.New("relaytest: the relay has not started")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+e.Relay.InboundAddr+"/sns", bytes.NewReader(body))
	if err != nil {
		return 0, "", err
	}
	req.Header.Set("Content-Type", "text/plain; charset=UTF-8")
	req.Header.Set("User-Agent", "Amazon Simple Notification Service Agent")
	var m struct{ Type, MessageId, TopicArn string }
	if json.Unmarshal(body, &m) == nil && m.Type != "" {
		req.Header.Set("x-amz-sns-message-type", m.Type)
		req.Header.Set("x-amz-sns-message-id", m.MessageId)
		req.Header.Set("x-amz-sns-topic-arn", m.TopicArn)
		req.Header.Set("x-amz-sns-subscription-arn", m.TopicArn+":00000000-0000-4000-8000-000000000000")
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, "", fmt.Errorf("delivering to the relay: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, resp.Body)
	if resp.StatusCode == http.StatusOK {
		return resp.StatusCode, "", nil
	}
	return resp.StatusCode, strings.TrimSpace(string(b)), nil
}

// Deliver does what SES and SNS do when mail arrives: it stores mail under
// Key(sesID), then posts the signed Received notification for recipients
// with SNS message id snsID. It returns the relay's answer as Post does.
func (e *Env) Deliver(ctx context.Context, snsID, sesID string, mail []byte, recipients ...string) (code int, answer string, err error) {
	if err := e.Put(sesID, mail); err != nil {
		return 0, "", err
	}
	return e.Post(ctx, e.Sign(snsID, e.Received(sesID, recipients...)))
}

// writeIfAbsent creates path with data unless it exists.
func writeIfAbsent(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if errors.Is(err, fs.ErrExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	_, err = f.Write(data)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
