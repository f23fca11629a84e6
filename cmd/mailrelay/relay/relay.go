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
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/netutil"

	"github.com/mailrelay/mailrelay/awsclient"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/health"
	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/inbound/admin"
	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/mailproc"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/mailproc/spool"
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
// within cfg.ShutdownTimeout.
func Serve(ctx context.Context, cfg *config.Config, d Deps) error {
	log := d.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := d.Metrics
	if m == nil {
		m = telemetry.NewMetrics()
	}

	// Health first, so probes answer (not ready) during start-up.
	var state atomic.Value // string: "" when ready, else why not
	state.Store("starting")
	var sp atomic.Pointer[spool.Spool]
	ready := func() (bool, string) {
		if s := state.Load().(string); s != "" {
			return false, s
		}
		if s := sp.Load(); s != nil && s.Full() {
			return false, "spool full"
		}
		return true, ""
	}
	healthLn, err := net.Listen("tcp", cfg.HealthListen)
	if err != nil {
		return fmt.Errorf("health listener: %w", err)
	}
	hs := health.New(healthLn, ready, m, log)
	go func() {
		if err := hs.Serve(); err != nil {
			log.Error("health server stopped", "err", err)
		}
	}()
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = hs.Shutdown(sctx)
	}()

	s, err := spool.Open(cfg.SpoolDir, spool.Options{
		MaxMessages: cfg.SpoolMaxMessages,
		MaxBytes:    cfg.SpoolMaxBytes,
		DedupeTTL:   cfg.DedupeTTL,
		Logger:      log.With("component", "spool"),

		MaxDeadLetters:     cfg.DeadLetterMaxMessages,
		MaxDeadLetterBytes: cfg.DeadLetterMaxBytes,
		MaxDeadLetterAge:   cfg.DeadLetterMaxAge,
		OnDeadLettersExpired: telemetry.SpoolMetrics(m, func() telemetry.SpoolStats {
			s := sp.Load()
			if s == nil {
				return telemetry.SpoolStats{StorageOK: true}
			}
			st := s.Stats()
			return telemetry.SpoolStats{DeadLetters: st.DeadLetters, DeadLetterBytes: st.DeadLetterBytes,
				OldestDeadLetter: st.OldestDeadLetter, StorageOK: s.Err() == nil}
		}),
		// Readiness reads s.Full(), which is true while the disk is short
		// of the reserve. A storage failure pebble cannot recover from
		// fails the spool closed; only a new process recovers, so exit
		// (non-zero) for the supervisor to restart it. Acknowledged
		// deliveries are on disk.
		ReserveBytes: cfg.SpoolReserveBytes,
		OnFatal: func(err error) {
			log.Error("spool storage failed; exiting so that the process restarts", "err", err)
			os.Exit(75)
		},
	})
	if err != nil {
		return fmt.Errorf("spool: %w", err)
	}
	defer s.Close()
	sp.Store(s)

	table, err := aliases.NewReloadable(cfg.AliasesFile)
	if err != nil {
		return fmt.Errorf("aliases: %w", err)
	}

	awsOpts := awsclient.Options{}
	if d.AWS != nil {
		awsOpts = *d.AWS
	}
	awsOpts.S3GetTimeout, awsOpts.S3DeleteTimeout, awsOpts.SESSendTimeout = cfg.S3Timeout, cfg.S3Timeout, cfg.SESTimeout
	awsOpts.MaxAttempts = cfg.AWSMaxAttempts
	awsOpts.SendMode = cfg.SESAPI
	awsOpts.MaxObjectBytes = cfg.MaxMessageBytes
	awsOpts.Metrics, awsOpts.Logger = m, log.With("component", "aws")
	clients, err := awsclient.New(ctx, awsOpts)
	if err != nil {
		return fmt.Errorf("aws clients: %w", err)
	}

	verifier, err := sns.NewVerifier(sns.VerifierOptions{
		CertURLPrefixes: cfg.SNSCertURLPrefixes,
		FetchTimeout:    cfg.SNSCertTimeout,
		Observe:         inbound.ObserveSNS(m),
	})
	if err != nil {
		return fmt.Errorf("sns verifier: %w", err)
	}
	var draining atomic.Bool
	h, err := inbound.New(inbound.Config{
		TopicARNs:    cfg.SNSTopicARNs,
		MaxBodyBytes: cfg.SNSMaxBodyBytes,
		RetryAfter:   cfg.RetryAfter,
		Verifier:     verifier,
		Store:        s,
		Draining:     draining.Load,
		Metrics:      m,
		Logger:       log.With("component", "inbound"),
	})
	if err != nil {
		return err
	}
	inboundLn, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("inbound listener: %w", err)
	}
	e := inbound.NewServer(m, log.With("component", "inbound"))
	h.Register(e)
	inboundSrv := &http.Server{
		Handler:           e,
		ReadHeaderTimeout: inbound.ReadHeaderTimeout,
		ReadTimeout:       inbound.ReadTimeout,
		WriteTimeout:      inbound.WriteTimeout,
		IdleTimeout:       inbound.IdleTimeout,
		MaxHeaderBytes:    inbound.MaxHeaderBytes,
		ErrorLog:          e.Server.ErrorLog,
	}
	go func() {
		if err := inboundSrv.Serve(netutil.LimitListener(inboundLn, cfg.InboundMaxConns)); !errors.Is(err, http.ErrServerClosed) {
			log.Error("inbound server stopped", "err", err)
		}
	}()

	var adminSrv *http.Server
	adminAddr := ""
	if cfg.AdminListen != "" {
		ln, err := net.Listen("tcp", cfg.AdminListen)
		if err != nil {
			return fmt.Errorf("admin listener: %w", err)
		}
		adminAddr = ln.Addr().String()
		adminSrv = &http.Server{Handler: admin.Handler(s, log.With("component", "admin")), ReadHeaderTimeout: 5 * time.Second}
		go func() { _ = adminSrv.Serve(ln) }()
	}

	workCtx, cancelWork := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelWork()
	pool, err := mailproc.New(mailproc.Config{
		Workers: cfg.Workers,
		Queue:   s,
		Store:   clients.S3,
		Sender:  clients.SES,
		Aliases: table,
		Policy: mailproc.Policy{
			DropSpam:          cfg.DropSpam,
			DropVirus:         cfg.DropVirus,
			DropDMARCReject:   cfg.DropDMARCReject,
			DeadLetterUnknown: cfg.UnknownAlias == "deadletter",
			DeleteObjects:     cfg.DeleteS3Objects,
			MaxMessageBytes:   cfg.MaxMessageBytes,
			DisplaySuffix:     cfg.FromDisplaySuffix,
		},
		RetryMin:      cfg.RetryMin,
		RetryMax:      cfg.RetryMax,
		RetryMaxAge:   cfg.RetryMaxAge,
		InFlightBytes: cfg.InFlightBytes,
		Metrics:       m,
		Logger:        log.With("component", "mailproc"),
	})
	if err != nil {
		return err
	}
	pool.Start(workCtx)

	statsDone := make(chan struct{})
	go func() {
		defer close(statsDone)
		t := time.NewTicker(500 * time.Millisecond)
		defer t.Stop()
		for {
			publishStats(s, m)
			select {
			case <-workCtx.Done():
				return
			case <-t.C:
			}
		}
	}()

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	state.Store("")
	log.Info("mailrelay serving", "inbound", inboundLn.Addr().String(), "health", healthLn.Addr().String(),
		"admin", adminAddr, "workers", cfg.Workers, "spool", cfg.SpoolDir)
	if d.Ready != nil {
		d.Ready(&Relay{InboundAddr: inboundLn.Addr().String(), HealthAddr: healthLn.Addr().String(),
			AdminAddr: adminAddr, Spool: s, Metrics: m})
	}

wait:
	for {
		select {
		case <-ctx.Done():
			break wait
		case <-hup:
			if err := table.Reload(); err != nil {
				log.Error("alias reload failed; keeping the previous table", "err", err)
			} else {
				log.Info("aliases reloaded")
			}
		}
	}

	// Drain.
	log.Info("shutting down", "grace", cfg.ShutdownTimeout)
	state.Store("draining")
	draining.Store(true)
	grace, cancelGrace := context.WithTimeout(context.Background(), cfg.ShutdownTimeout)
	defer cancelGrace()
	if err := inboundSrv.Shutdown(grace); err != nil {
		log.Warn("inbound shutdown", "err", err)
	}
	if err := pool.Stop(grace); err != nil {
		log.Warn("workers did not finish in time; their entries stay in the spool", "err", err)
	}
	cancelWork()
	pool.Wait()
	<-statsDone
	if adminSrv != nil {
		_ = adminSrv.Close()
	}
	log.Info("stopped")
	return nil
}

func publishStats(s *spool.Spool, m *telemetry.Metrics) {
	st := s.Stats()
	m.QueueMessages.Set(float64(st.Messages))
	m.QueueBytes.Set(float64(st.Bytes))
	m.DeadLetterMessages.Set(float64(st.DeadLetters))
	age := 0.0
	if !st.Oldest.IsZero() {
		age = time.Since(st.Oldest).Seconds()
	}
	m.QueueOldestAge.Set(age)
}
