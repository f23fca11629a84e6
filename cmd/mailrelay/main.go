// Command mailrelay forwards mail that Amazon SES received for relay
// domains: SNS notifies it, it spools the notification durably, and a
// bounded worker pool fetches, rewrites and re-sends each mail through SES.
//
//	mailrelay serve                       run the relay (flags or RELAY_* variables)
//	mailrelay dev                         the local playground with in-process S3/SNS/SES stand-ins
//	mailrelay dev send FILE.eml...        push mail through a running playground
//	mailrelay deadletter list             list dead letters of a running relay
//	mailrelay deadletter redrive ID...    put dead letters back into the spool (--all for all)
//	mailrelay config                      print the configuration table
//	mailrelay redrive-sns-dlq --queue-url URL  re-POST the SNS dead-letter queue to the relay
//	mailrelay reconcile --bucket B --since T   find mail in S3 the relay never processed
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	switch {
	case errors.Is(err, flag.ErrHelp):
		os.Exit(0)
	case err != nil:
		fmt.Fprintln(os.Stderr, "mailrelay:", err)
		os.Exit(1)
	}
}

const usage = `usage: mailrelay <command> [flags]

commands:
  serve                        run the relay (see 'mailrelay config' for settings)
  deadletter list              list dead letters of a running relay
  deadletter redrive ID...     redrive dead letters (--all: every one)
  config                       print every setting with its RELAY_* variable
  dev [send FILE.eml...]       local playground with stand-ins for S3/SES/SNS; send pushes mail through
  redrive-sns-dlq --queue-url URL
                               re-POST the SNS subscription's dead-letter SQS queue to the relay
  reconcile --bucket B --since T
                               list mail objects in S3 the relay never processed (--submit: hand them over)
`

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errors.New("no command")
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], stderr)
	case "deadletter":
		return deadletter(ctx, args[1:], stdout, stderr)
	case "config":
		return printConfig(stdout)
	case "dev":
		return dev(ctx, args[1:], stdout, stderr)
	case "redrive-sns-dlq":
		return redriveSNSDLQ(ctx, args[1:], stdout, stderr)
	case "reconcile":
		return reconcile(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprint(stderr, usage)
	return fmt.Errorf("unknown command %q", args[0])
}
