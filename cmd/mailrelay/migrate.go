package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay"
	"github.com/mailrelay/mailrelay/telemetry"
)

// migrate applies the database's pending migrations and prints the schema
// version, for operators who start replicas with --database-migrate=false
// (e.g. from a deploy job). Replicas starting at the same time are safe:
// the migrations run under an advisory lock.
func migrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	url := fs.String("database-url", os.Getenv(config.EnvName("database-url")), "PostgreSQL URL (default RELAY_DATABASE_URL)")
	if err := config.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *url == "" || fs.NArg() > 0 {
		return &config.UsageError{Err: errors.New("migrate: --database-url (or RELAY_DATABASE_URL) is required and no arguments are taken")}
	}
	cfg := &config.Config{DatabaseURL: *url, DatabaseMigrate: true, Workers: 1}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	db, err := relay.OpenDatabase(ctx, cfg, telemetry.NewMetrics(), log)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer db.Close()
	v, err := db.Version(ctx) // OpenDatabase applied the migrations
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	fmt.Fprintf(stdout, "database schema at version %d\n", v)
	return nil
}
