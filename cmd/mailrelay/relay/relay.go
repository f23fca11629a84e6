// Package relay assembles a running relay from its parts: the health
// listener, the spool, the alias table, the AWS clients, the SNS intake, the
// worker pool and the admin API, and drains them in order on shutdown. cmd
// parses configuration and calls Serve; tests, benchmarks and the playground
// call it with stand-ins.
package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/mailrelay/mailrelay/awsclient"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/health"
	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/inbound/admin"
	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sqsintake"
	"github.com/mailrelay/mailrelay/mailproc"
	"github.com/mailrelay/mailrelay/mailproc/feedback"
	"github.com/mailrelay/mailrelay/mailproc/reply"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/mailproc/statedb"
	"github.com/mailrelay/mailrelay/telemetry"
)

// Deps are what Serve takes from outside besides the configuration; tests
// and the playground use them to plug in stand-ins and learn addresses.
type Deps struct {
	Logger  *slog.Logger
	Metrics *telemetry.Metrics
	// AWS overrides the clients built from the SDK's default chain.
	AWS *awsclient.Options
	// Ready, if set, receives the relay once it is serving.
	Ready func(*Relay)
}

// Relay is a running relay, handed to Deps.Ready.
type Relay struct {
	InboundAddr, HealthAddr, AdminAddr string
	Spool                              *spool.Spool
	Metrics                            *telemetry.Metrics
}

// Serve runs the relay until ctx ends (SIGTERM), then drains: readiness
// and new deliveries answer 503 at once, requests in progress finish,
// workers finish what they hold or leave it spooled, and everything closes
// within cfg.ShutdownTimeout. If it cannot start, everything it had started
// is stopped again (listeners closed, spool closed) before it returns the
// error.
func Serve(ctx context.Context, cfg *config.Config, d Deps) error {
	r := &run{cfg: cfg, log: d.Logger, m: d.Metrics, fatal: make(chan error, 1)}
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	if r.m == nil {
		r.m = telemetry.NewMetrics()
	}
	defer r.stopAll()
	if err := r.start(ctx, d.AWS); err != nil {
		return err
	}
	r.log.Info("mailrelay serving", "inbound", r.relay.InboundAddr, "health", r.relay.HealthAddr,
		"admin", r.relay.AdminAddr, "workers", cfg.Workers, "spool", cfg.SpoolDir)
	if d.Ready != nil {
		d.Ready(&r.relay)
	}
	err := r.serveUntil(ctx)
	if err != nil {
		r.log.Error("spool storage failed; stopping so that the process restarts", "err", err)
	}
	r.drain()
	r.log.Info("stopped")
	return err
}

// run is one call of Serve: what it started, in order, and what the drain
// needs to reach.
type run struct {
	cfg *config.Config
	log *slog.Logger
	m   *telemetry.Metrics

	state    atomic.Value // string: "" when ready, else why not
	draining atomic.Bool
	spool    atomic.Pointer[spool.Spool] // the embedded queue, if it is one
	queue    atomic.Value                // queue, once open (read by readiness)
	db       *statedb.DB                 // the shared database (--database-url), else nil
	aliases  *aliasSet
	fb       *feedback.Handler // SES feedback state (feedback.go)
	inbound  *http.Server
	pool     *mailproc.Pool
	sqs      *sqsintake.Queue // nil unless --intake has sqs
	// objects is the S3 client the workers use; deletes batches its
	// deletes (nil with --s3-delete-batch 0), closed after the workers.
	objects mailproc.ObjectStore
	deletes *awsclient.BatchedS3
	hup     chan os.Signal
	fatal   chan error
	// intakeActive counts the SNS deliveries being handled; the workers
	// give way to them when the CPU is short.
	intakeActive func() int64 // the spool failed closed (Options.OnFatal)
	relay        Relay

	// stops undo what was started, in reverse order: on a start-up
	// failure at once, else after the drain.
	stops []func()
}

// onStop registers f to run when Serve returns, before whatever was
// registered earlier.
func (r *run) onStop(f func()) { r.stops = append(r.stops, f) }

func (r *run) stopAll() {
	for _, f := range slices.Backward(r.stops) {
		f()
	}
	r.stops = nil
}

// start brings the relay up: health first, so probes answer (not ready)
// during start-up, then the spool, the aliases, the AWS clients, the SNS
// intake, the admin API and the workers.
func (r *run) start(ctx context.Context, awsOverride *awsclient.Options) error {
	cfg, log, m := r.cfg, r.log, r.m
	r.state.Store("starting")
	healthAddr, err := r.listen("health", cfg.HealthListen, func(ln net.Listener) (func() error, func()) {
		hs := health.New(ln, r.ready, m, log)
		return hs.Serve, func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = hs.Shutdown(sctx)
		}
	})
	if err != nil {
		return err
	}

	s, err := r.openQueue(ctx)
	if err != nil {
		return err
	}
	r.queue.Store(s)
	m.SetQueueStats(func() telemetry.QueueStats {
		st := s.Stats()
		return telemetry.QueueStats{Messages: st.Messages, Bytes: st.Bytes, DeadLetters: st.DeadLetters, Oldest: st.Oldest}
	})

	if r.aliases, err = r.openAliases(ctx); err != nil { // aliases.go
		return err
	}
	if r.fb, err = r.feedback(ctx); err != nil { // feedback.go; before the admin API, which shows it
		return err
	}
	r.observeFeedback(ctx)
	clients, err := awsclient.New(ctx, r.awsOptions(awsOverride))
	if err != nil {
		return fmt.Errorf("aws clients: %w", err)
	}
	r.objects = clients.S3
	if cfg.DeleteS3Objects && cfg.S3DeleteBatch > 0 {
		b := clients.S3.BatchDeletes(cfg.S3DeleteBatch, 0)
		r.objects, r.deletes = b, b
		// Registered before the workers, so it runs after they stopped;
		// after a drain it has nothing left to do.
		r.onStop(func() {
			sctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_ = b.Close(sctx)
		})
	}
	h, verifier, err := r.intake(s)
	if err != nil {
		return err
	}
	r.intakeActive = h.Active
	work, err := r.workQueue(ctx, s, verifier, awsOverride)
	if err != nil {
		return err
	}
	e := inbound.NewServer(m, log.With("component", "inbound"))
	if cfg.HasIntake(config.IntakeHTTP) {
		h.Register(e) // else the listener serves no /sns (404)
	}
	r.inbound = &http.Server{
		Handler:           e,
		ReadHeaderTimeout: inbound.ReadHeaderTimeout,
		ReadTimeout:       inbound.ReadTimeout,
		WriteTimeout:      inbound.WriteTimeout,
		IdleTimeout:       cfg.InboundIdleTimeout,
		MaxHeaderBytes:    inbound.MaxHeaderBytes,
		ErrorLog:          e.Server.ErrorLog,
	}
	// Limited by inbound.LimitListener, not listen's: at the limit, idle
	// and slow connections make room instead of new ones waiting.
	serveInbound := httpServer(r.inbound, (*http.Server).Close)
	inboundAddr, err := r.listen("inbound", cfg.Listen, func(ln net.Listener) (func() error, func()) {
		return serveInbound(inbound.LimitListener(ln, r.inbound, cfg.InboundMaxConns, 0))
	})
	if err != nil {
		return err
	}
	adminAddr := ""
	if cfg.AdminListen != "" {
		if adminAddr, err = r.startAdmin(s, h); err != nil {
			return err
		}
	}

	if err := r.startWorkers(ctx, work, clients); err != nil {
		return err
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	r.onStop(func() { signal.Stop(hup) })
	r.hup = hup
	r.relay = Relay{InboundAddr: inboundAddr, HealthAddr: healthAddr, AdminAddr: adminAddr, Spool: r.spool.Load(), Metrics: m}
	r.state.Store("")
	return nil
}

// startAdmin serves the admin API on cfg.AdminListen; without a token only
// on a loopback address (config.Validate says so first).
func (r *run) startAdmin(s admin.Queue, intake *inbound.Handler) (string, error) {
	cfg := r.cfg
	h, err := admin.New(admin.Config{
		Queue:           s,
		Token:           cfg.AdminToken,
		Loopback:        config.LoopbackListen(cfg.AdminListen),
		Buckets:         cfg.S3Buckets,
		TopicARNs:       cfg.SNSTopicARNs,
		Domains:         func() []string { return r.aliases.file.Table().Domains() },
		Aliases:         feedback.NewAliasAdmin(r.aliases.manager, r.fb),
		Destinations:    r.fb,
		SNS:             intake,
		SNSMaxBodyBytes: cfg.SNSMaxBodyBytes,
		RetryAfter:      cfg.RetryAfter,
		Logger:          r.log.With("component", "admin"),
	})
	if err != nil {
		return "", err
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		WriteTimeout:      60 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    16 << 10,
	}
	return r.listen("admin", cfg.AdminListen, httpServer(srv, (*http.Server).Close))
}

// listen is the one way the relay starts a listener (inbound, health,
// admin): it listens on addr, builds the server with newServer and serves in the background until
// Serve returns or a later start-up step fails. It returns the bound
// address.
func (r *run) listen(what, addr string, newServer func(net.Listener) (serve func() error, stop func())) (string, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s listener: %w", what, err)
	}
	serve, stop := newServer(ln)
	go func() {
		if err := serve(); err != nil && !errors.Is(err, http.ErrServerClosed) {
			r.log.Error(what+" server stopped", "err", err)
		}
	}()
	r.onStop(func() {
		stop()
		_ = ln.Close() // closed now even if serve has not started yet
	})
	return ln.Addr().String(), nil
}

// httpServer adapts srv to listen, stopped with stop.
func httpServer(srv *http.Server, stop func(*http.Server) error) func(net.Listener) (func() error, func()) {
	return func(ln net.Listener) (func() error, func()) {
		return func() error { return srv.Serve(ln) }, func() { _ = stop(srv) }
	}
}

// ready is the readiness probe: not while starting or draining, nor while
// the queue is full or cannot take work (a failed disk, the database
// unreachable); the reason is the probe's body.
func (r *run) ready() (bool, string) {
	if s := r.state.Load().(string); s != "" {
		return false, s
	}
	if q, _ := r.queue.Load().(queue); q != nil {
		if q.Full() {
			if r.spool.Load() != nil {
				return false, "spool full"
			}
			return false, "queue full"
		}
		if err := q.Err(); err != nil {
			return false, err.Error()
		}
	}
	if r.sqs != nil {
		return r.sqs.Ready()
	}
	return true, ""
}

// awsOptions are the AWS client options: the override's (stand-in
// endpoints, credentials) with the configured timeouts and limits.
func (r *run) awsOptions(override *awsclient.Options) awsclient.Options {
	o := awsclient.Options{}
	if override != nil {
		o = *override
	}
	cfg := r.cfg
	o.S3GetTimeout, o.S3DeleteTimeout, o.SESSendTimeout = cfg.S3Timeout, cfg.S3Timeout, cfg.SESTimeout
	o.MaxAttempts = cfg.AWSMaxAttempts
	o.SendMode = cfg.SESAPI
	o.ConfigurationSet = cfg.Feedback.SESConfigurationSet
	o.MaxObjectBytes = cfg.MaxMessageBytes
	o.Metrics, o.Logger = r.m, r.log.With("component", "aws")
	return o
}

// intake is the SNS endpoint's handler, storing into s, and its verifier.
func (r *run) intake(s queue) (*inbound.Handler, *sns.Verifier, error) {
	cfg := r.cfg
	verifier, err := sns.NewVerifier(sns.VerifierOptions{
		CertURLPrefixes: cfg.SNSCertURLPrefixes,
		FetchTimeout:    cfg.SNSCertTimeout,
		MaxAge:          cfg.SNSMaxAge,
		Observe:         inbound.ObserveSNS(r.m),
	})
	if err != nil {
		return nil, nil, fmt.Errorf("sns verifier: %w", err)
	}
	h, err := inbound.New(inbound.Config{
		TopicARNs:    cfg.SNSTopicARNs,
		MaxBodyBytes: cfg.SNSMaxBodyBytes,
		RetryAfter:   cfg.RetryAfter,
		Verifier:     verifier,
		Queue:        s,
		Draining:     r.draining.Load,
		Metrics:      r.m,
		Logger:       r.log.With("component", "inbound"),
		BodyTimeout:  cfg.InboundBodyTimeout,
	})
	return h, verifier, err
}

// startWorkers starts the worker pool on q. Workers run on a context of
// their own, cancelled only once the drain is over.
func (r *run) startWorkers(ctx context.Context, q mailproc.Queue, clients *awsclient.Clients) error {
	cfg := r.cfg
	var replies *reply.Codec
	if cfg.ReplyKey != "" {
		c, err := reply.New([]byte(cfg.ReplyKey), []byte(cfg.ReplyKeyPrevious), cfg.ReplyMaxAge)
		if err != nil {
			return err
		}
		replies = c
	}
	action := func(s string) mailproc.Action {
		a, _ := mailproc.ParseAction(s) // checked by config.Validate
		return a
	}
	pool, err := mailproc.New(mailproc.Config{
		Workers:      cfg.Workers,
		Queue:        q,
		Objects:      r.objects,
		Sender:       clients.SES,
		Aliases:      r.aliases.resolver,
		AliasEvents:  r.aliases.counter,
		Replies:      replies,
		Pacer:        r.pacer(ctx, clients.SES),
		Feedback:     r.fb,
		IntakeActive: r.intakeActive,
		Policy: mailproc.Policy{
			DropSpam:              cfg.DropSpam,
			DropVirus:             cfg.DropVirus,
			DropDMARCReject:       cfg.DropDMARCReject,
			VirusAction:           action(cfg.VirusAction),
			SpamAction:            action(cfg.SpamAction),
			DMARCRejectAction:     action(cfg.DMARCRejectAction),
			DMARCQuarantineAction: action(cfg.DMARCQuarantineAction),
			SPFAction:             action(cfg.SPFAction),
			DKIMAction:            action(cfg.DKIMAction),
			SubjectTag:            cfg.SubjectTag,
			HoldUnverified:        cfg.HoldUnverified,
			DeadLetterUnknown:     cfg.UnknownAlias == "deadletter",
			DeleteObjects:         cfg.DeleteS3Objects,
			MaxMessageBytes:       cfg.MaxMessageBytes,
			DisplaySuffix:         cfg.FromDisplaySuffix,
		},
		RetryMin:      cfg.RetryMin,
		RetryMax:      cfg.RetryMax,
		RetryMaxAge:   cfg.RetryMaxAge,
		InFlightBytes: cfg.InFlightBytes,
		Metrics:       r.m,
		Logger:        r.log.With("component", "mailproc"),
	})
	if err != nil {
		return err
	}
	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	pool.Start(workCtx)
	r.pool = pool
	r.onStop(func() {
		cancelWork()
		pool.Wait()
	})
	return nil
}

// serveUntil reloads the aliases on SIGHUP until ctx ends, or returns the
// spool's storage failure.
func (r *run) serveUntil(ctx context.Context) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-r.fatal:
			return err
		case <-r.hup:
			c, err := r.aliases.file.Reload()
			if err != nil {
				r.log.Error("alias reload failed; keeping the previous table", "err", err)
				continue
			}
			r.log.Info("aliases reloaded", "file", r.cfg.AliasesFile, "added", c.Added, "removed", c.Removed, "total", c.Total)
		}
	}
}

// drain answers readiness and new deliveries 503, lets the deliveries in
// progress finish, then gives the workers the rest of the grace period to
// finish what they hold, and the batched S3 deletes what is left of the
// grace to send their last batch. What was started is stopped afterwards by
// stopAll, in reverse order: workers, admin, inbound, spool, health.
func (r *run) drain() {
	grace := r.cfg.ShutdownTimeout
	r.log.Info("shutting down", "grace", grace)
	r.state.Store("draining")
	r.draining.Store(true)
	gctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	if err := r.inbound.Shutdown(gctx); err != nil {
		r.log.Warn("inbound shutdown", "err", err)
	}
	if err := r.pool.Stop(gctx); err != nil {
		r.log.Warn("workers did not finish in time; their entries stay in the spool", "err", err)
	}
	if r.deletes != nil {
		if err := r.deletes.Close(gctx); err != nil {
			r.log.Warn("batched S3 deletes not finished; the lifecycle expiry removes the rest", "err", err)
		}
	}
}
