package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	awsconfig "github.com/aws/aws-sdk-go-v2/config"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
	"github.com/mailrelay/mailrelay/telemetry"
)

// serve checks the whole configuration and what it points at (alias file,
// AWS region, spool lock, listener ports) and reports every problem at
// once before it creates a file or keeps a port; only then it runs the relay.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	cfg, cfgErr := config.Load(args, os.LookupEnv, stdout)
	if cfg == nil {
		return cfgErr // --help, or a flag that does not parse
	}
	log, err := telemetry.NewLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	if err != nil {
		cfgErr = errors.Join(cfgErr, &config.UsageError{Err: fmt.Errorf("--log-level / --log-format: %w", err)})
	}
	if err := errors.Join(cfgErr, preflight(ctx, cfg, os.LookupEnv)); err != nil {
		return err
	}
	err = relay.Serve(ctx, cfg, relay.Deps{Logger: log})
	return explainServeError(err, cfg)
}

// preflight checks what Validate cannot without I/O, read-only: the alias
// file parses, AWS has a region, no other relay holds the spool, and the
// listeners' ports are free.
func preflight(ctx context.Context, cfg *config.Config, lookup func(string) (string, bool)) error {
	var errs []error
	if err := checkAliases(cfg.AliasesFile); err != nil {
		errs = append(errs, fmt.Errorf("%s: %w", config.Setting("aliases-file"), err))
	}
	if err := checkRegion(ctx, lookup); err != nil {
		errs = append(errs, err)
	}
	if err := checkSpoolLock(cfg.SpoolDir); err != nil {
		errs = append(errs, err)
	}
	for _, l := range []struct{ name, addr string }{
		{"listen", cfg.Listen}, {"health-listen", cfg.HealthListen}, {"admin-listen", cfg.AdminListen},
	} {
		if err := checkPortFree(l.name, l.addr); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// checkAliases loads and validates the alias file as the relay will.
func checkAliases(path string) error {
	if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		abs, _ := filepath.Abs(path)
		return fmt.Errorf("no alias file at %s (write one: see README, \"alias file\"; `bin/mailrelay dev` writes an example)", abs)
	}
	_, err := aliases.Load(path)
	return err
}

// checkRegion fails when the AWS SDK would find no region.
func checkRegion(ctx context.Context, lookup func(string) (string, bool)) error {
	for _, k := range []string{"AWS_REGION", "AWS_DEFAULT_REGION"} {
		if v, ok := lookup(k); ok && v != "" {
			return nil
		}
	}
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return fmt.Errorf("AWS configuration: %w", err)
	}
	if cfg.Region == "" {
		return errors.New("AWS_REGION is not set (the AWS SDK's variable, e.g. AWS_REGION=us-east-1, or region in ~/.aws/config)")
	}
	return nil
}

// checkSpoolLock reports another process holding the spool's LOCK file. It
// only reads (stat and /proc/locks): opening and closing the LOCK file
// would drop a POSIX lock held by this very process.
func checkSpoolLock(dir string) error {
	pid, held := lockHolder(filepath.Join(dir, "LOCK"))
	if !held {
		return nil
	}
	return spoolLockedError(dir, pid)
}

func spoolLockedError(dir string, pid int) error {
	lock := filepath.Join(dir, "LOCK")
	who := "another relay"
	if pid > 0 {
		who = "another relay (pid " + strconv.Itoa(pid) + ")"
	}
	return fmt.Errorf("%s: %s holds the spool %s (lock file %s; find it with `fuser %s` or `lsof %s`); stop it or give this one its own --spool-dir",
		config.Setting("spool-dir"), who, dir, lock, lock, lock)
}

// lockHolder looks lock up in /proc/locks (Linux); held is false when it
// cannot tell.
func lockHolder(lock string) (pid int, held bool) {
	var st syscall.Stat_t
	if err := syscall.Stat(lock, &st); err != nil {
		return 0, false
	}
	f, err := os.Open("/proc/locks")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	ino := strconv.FormatUint(st.Ino, 10)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// 1: POSIX  ADVISORY  WRITE 1234 08:01:5678 0 EOF
		fields := strings.Fields(sc.Text())
		if len(fields) < 6 || fields[1] == "->" {
			continue
		}
		id := strings.Split(fields[5], ":")
		if len(id) != 3 || id[2] != ino {
			continue
		}
		pid, _ = strconv.Atoi(fields[4])
		return pid, true
	}
	return 0, false
}

// checkPortFree binds addr for a moment to learn whether it is free.
func checkPortFree(flagName, addr string) error {
	if _, port, err := net.SplitHostPort(addr); err != nil || port == "0" {
		return nil // empty (disabled), malformed (Validate says so) or any free port
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		if errors.Is(err, syscall.EADDRINUSE) {
			_, port, _ := net.SplitHostPort(addr)
			return fmt.Errorf("%s: %s is in use (another relay or `bin/mailrelay dev`? find it with `lsof -i :%s`)", config.Setting(flagName), addr, port)
		}
		return fmt.Errorf("%s: %w", config.Setting(flagName), err)
	}
	return ln.Close()
}

// explainServeError words the relay's start-up errors for people; the
// preflight catches most of them first, but a race can still land here.
func explainServeError(err error, cfg *config.Config) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	if strings.HasPrefix(msg, "spool:") && (errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EWOULDBLOCK) ||
		strings.Contains(msg, "resource temporarily unavailable") || strings.Contains(msg, "lock held by current process")) {
		pid, _ := lockHolder(filepath.Join(cfg.SpoolDir, "LOCK"))
		return spoolLockedError(cfg.SpoolDir, pid)
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w (another relay or `bin/mailrelay dev`? check the --listen, --health-listen and --admin-listen ports with `lsof -i`)", err)
	}
	return err
}
