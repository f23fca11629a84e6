// Command mailrelay forwards mail that Amazon SES received for relay
// domains: SNS notifies it, it spools the notification durably, and a
// bounded worker pool fetches, rewrites and re-sends each mail through SES.
//
//	mailrelay serve                       run the relay (flags or RELAY_* variables)
//	mailrelay dev                         the local playground with in-process S3/SNS/SES stand-ins
//	mailrelay dev send FILE.eml...        push mail through a running playground
//	mailrelay deadletter list             list dead letters of a running relay
//	mailrelay deadletter redrive ID...    put dead letters back into the spool (--all for all)
//	mailrelay alias create --to ADDR      create, list, show, disable, enable, block-promotional, delete aliases
//	mailrelay config                      print the configuration table
//	mailrelay migrate                     apply the database's migrations (RELAY_DATABASE_URL)
//	mailrelay redrive-sns-dlq --queue-url URL  re-POST the SNS dead-letter queue to the relay
//	mailrelay reconcile --bucket B --since T   find mail in S3 the relay never processed
//
// Exit codes: 0 success (also a clean stop on SIGINT/SIGTERM), 1 failure,
// 2 a mistake in flags, variables or settings.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/mailproc/spool"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(report(err, os.Args[1:], os.Stderr))
}

// report prints err for people and returns the exit code: 0 for none (or
// --help), 2 for a usage mistake (with a pointer to --help instead of the
// whole usage), 1 otherwise. Several problems are listed one per line.
func report(err error, args []string, stderr io.Writer) int {
	if err == nil || errors.Is(err, flag.ErrHelp) {
		return 0
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) == 1 {
		fmt.Fprintln(stderr, "mailrelay:", lines[0])
	} else {
		fmt.Fprintf(stderr, "mailrelay: %d problems:\n", len(lines))
		for _, l := range lines {
			fmt.Fprintln(stderr, "  -", l)
		}
	}
	if errors.Is(err, spool.ErrStorage) {
		return exitStorage
	}
	var ue *config.UsageError
	if !errors.As(err, &ue) {
		return 1
	}
	cmd := "mailrelay"
	if len(args) > 0 && knownCommand(args[0]) {
		cmd += " " + args[0]
		if args[0] == "deadletter" && len(args) > 1 && (args[1] == "list" || args[1] == "redrive") {
			cmd += " " + args[1]
		}
		if (args[0] == "alias" || args[0] == "destination") && len(args) > 1 && !strings.HasPrefix(args[1], "-") {
			cmd += " " + args[1]
		}
	}
	fmt.Fprintf(stderr, "Run '%s --help' for the flags.\n", cmd)
	return 2
}

// exitStorage is the exit code after the spool's storage failed in a way
// only a new process recovers from (EX_TEMPFAIL): the supervisor restarts
// the relay, which finds every acknowledged delivery on disk.
const exitStorage = 75

const usage = `usage: mailrelay <command> [flags]

commands:
  serve                        run the relay (see 'mailrelay config' for settings)
  deadletter list              list dead letters of a running relay
  deadletter redrive ID...     redrive dead letters (--all: every one)
  alias create --to ADDR       create an alias (a random one unless --address)
  alias list | show ALIAS      list the aliases, or show one
  alias disable|enable|block-promotional|delete ALIAS
                               change the state of a managed alias, or remove it
  destination list | show ADDR | unpause ADDR
                               destinations paused by SES bounces; end a pause
  config                       print every setting with its RELAY_* variable
  migrate                      apply the PostgreSQL schema's migrations (RELAY_DATABASE_URL)
  dev [send FILE.eml...]       local playground with stand-ins for S3/SES/SNS; send pushes mail through
  redrive-sns-dlq --queue-url URL
                               re-POST the SNS subscription's dead-letter SQS queue to the relay
  reconcile --bucket B --since T
                               list mail objects in S3 the relay never processed (--submit: hand them over)

'mailrelay <command> --help' lists a command's flags.
`

func knownCommand(name string) bool {
	switch name {
	case "serve", "deadletter", "alias", "destination", "config", "dev", "redrive-sns-dlq", "reconcile", "migrate":
		return true
	}
	return false
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return &config.UsageError{Err: errors.New("no command")}
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stdout, stderr)
	case "deadletter":
		return deadletter(ctx, args[1:], stdout, stderr)
	case "alias":
		return alias(ctx, args[1:], stdout, stderr)
	case "destination":
		return destination(ctx, args[1:], stdout, stderr)
	case "config":
		return printConfig(stdout)
	case "dev":
		return dev(ctx, args[1:], stdout, stderr)
	case "redrive-sns-dlq":
		return redriveSNSDLQ(ctx, args[1:], stdout, stderr)
	case "reconcile":
		return reconcile(ctx, args[1:], stdout, stderr)
	case "migrate":
		return migrate(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	return &config.UsageError{Err: fmt.Errorf("unknown command %q (commands: serve, dev, deadletter, alias, config, migrate, redrive-sns-dlq, reconcile)", args[0])}
}
