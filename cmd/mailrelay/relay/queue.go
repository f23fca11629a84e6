package relay

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/inbound/admin"
	"github.com/mailrelay/mailrelay/mailproc"
	"github.com/mailrelay/mailrelay/mailproc/pgqueue"
	"github.com/mailrelay/mailrelay/mailproc/spool"
	"github.com/mailrelay/mailrelay/mailproc/statedb"
	"github.com/mailrelay/mailrelay/telemetry"
)

// queue is where acknowledged notifications wait for the workers: the
// embedded spool (one process) or PostgreSQL shared by every replica
// (--database-url). The intake, the workers and the admin API see only
// their own small interfaces of it.
type queue interface {
	inbound.Queue
	mailproc.Queue
	admin.Queue
	Stats() spool.Stats
	Full() bool
	// Err is why the queue cannot take work now (nil when it can).
	Err() error
	Close() error
}

var (
	_ queue = (*spool.Spool)(nil)
	_ queue = (*pgqueue.Queue)(nil)
)

// migrateTimeout bounds the start-up wait for the database's migrations
// (another replica may hold the migration lock meanwhile).
const migrateTimeout = time.Minute

// openQueue opens the queue the configuration names and registers its
// close. With a database, start-up fails if the migrations cannot be
// applied (or, with --database-migrate=false, are missing): a replica on an
// older schema must not take work.
func (r *run) openQueue(ctx context.Context) (queue, error) {
	cfg := r.cfg
	if cfg.DatabaseURL == "" {
		s, err := r.openSpool()
		if err != nil {
			return nil, err
		}
		r.spool.Store(s)
		return s, nil
	}
	db, err := OpenDatabase(ctx, cfg, r.m, r.log)
	if err != nil {
		return nil, err
	}
	r.onStop(db.Close)
	r.db = db
	q := pgqueue.New(db, pgqueue.Options{
		Lease:       cfg.DatabaseLease,
		MaxMessages: cfg.SpoolMaxMessages,
		MaxBytes:    cfg.SpoolMaxBytes,
		DedupeTTL:   cfg.DedupeTTL,
		// Dead letters expire by age; the count and byte bounds are the
		// queue's own (shared with pending work).
		MaxDeadLetterAge: cfg.DeadLetterMaxAge,
		Logger:           r.log.With("component", "pgqueue"),
	})
	// Closed before the pool: its claims are released for other replicas.
	r.onStop(func() { _ = q.Close() })
	r.log.Info("queue in PostgreSQL", "replica", q.Replica(), "lease", cfg.DatabaseLease)
	return q, nil
}

// OpenDatabase opens the database of cfg and, unless cfg.DatabaseMigrate
// is false, applies its migrations (waiting up to a minute for a replica
// that holds the migration lock or a database that is still starting).
// With migrations off, it checks that none is pending.
func OpenDatabase(ctx context.Context, cfg *config.Config, m *telemetry.Metrics, log *slog.Logger) (*statedb.DB, error) {
	o := statedb.Options{URL: cfg.DatabaseURL, Workers: cfg.Workers, Metrics: m, Logger: log.With("component", "statedb")}
	db, err := statedb.Open(ctx, o)
	if err != nil {
		return nil, fmt.Errorf("database: %w", err)
	}
	mctx, cancel := context.WithTimeout(ctx, migrateTimeout)
	defer cancel()
	for {
		if cfg.DatabaseMigrate {
			_, err = db.Migrate(mctx)
		} else {
			err = db.CheckMigrated(mctx)
		}
		if err == nil || errors.Is(err, statedb.ErrSchemaBehind) {
			break
		}
		log.Warn("database not ready; trying again", "err", err)
		select {
		case <-mctx.Done():
			db.Close()
			return nil, fmt.Errorf("database: migrations: %w (is PostgreSQL reachable at --database-url?)", err)
		case <-time.After(2 * time.Second):
		}
	}
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("database: %w: run 'mailrelay migrate' or start with --database-migrate=true", err)
	}
	return db, nil
}

// openSpool opens the embedded spool in cfg.SpoolDir.
func (r *run) openSpool() (*spool.Spool, error) {
	cfg, log, m := r.cfg, r.log, r.m
	s, err := spool.Open(cfg.SpoolDir, spool.Options{
		MaxMessages: cfg.SpoolMaxMessages,
		MaxBytes:    cfg.SpoolMaxBytes,
		DedupeTTL:   cfg.DedupeTTL,
		Logger:      log.With("component", "spool"),

		MaxDeadLetters:     cfg.DeadLetterMaxMessages,
		MaxDeadLetterBytes: cfg.DeadLetterMaxBytes,
		MaxDeadLetterAge:   cfg.DeadLetterMaxAge,
		OnDeadLettersExpired: telemetry.SpoolMetrics(m, func() telemetry.SpoolStats {
			s := r.spool.Load()
			if s == nil {
				return telemetry.SpoolStats{StorageOK: true}
			}
			st := s.Stats()
			return telemetry.SpoolStats{DeadLetters: st.DeadLetters, DeadLetterBytes: st.DeadLetterBytes,
				OldestDeadLetter: st.OldestDeadLetter, StorageOK: s.Err() == nil}
		}),
		// Readiness reads s.Full(), which is true while the disk is short
		// of the reserve. A storage failure pebble cannot recover from
		// fails the spool closed; only a new process recovers, so Serve
		// drains and returns the error (the binary exits non-zero for the
		// supervisor to restart it). Acknowledged deliveries are on disk.
		ReserveBytes: cfg.SpoolReserveBytes,
		OnFatal: func(err error) {
			select {
			case r.fatal <- fmt.Errorf("%w: %w", spool.ErrStorage, err):
			default:
			}
		},
	})
	if err != nil {
		return nil, fmt.Errorf("spool: %w", err)
	}
	r.onStop(func() { _ = s.Close() })
	return s, nil
}
