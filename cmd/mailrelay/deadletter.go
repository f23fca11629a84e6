package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
)

const deadletterUsage = `usage: mailrelay deadletter list [--admin ADDR] [--limit N]
       mailrelay deadletter redrive [--admin ADDR] ID... | --all

Talks to a running relay's admin API: --admin, else RELAY_ADMIN_URL, else
RELAY_ADMIN_LISTEN, else http://127.0.0.1:8082 ('bin/mailrelay dev' serves
it too), with the bearer token of RELAY_ADMIN_TOKEN.

`

func deadletter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || (args[0] != "list" && args[0] != "redrive") {
		if len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "help") {
			fmt.Fprint(stdout, deadletterUsage)
			return flag.ErrHelp
		}
		if len(args) == 0 {
			return &config.UsageError{Err: errors.New("deadletter: want list or redrive")}
		}
		return &config.UsageError{Err: fmt.Errorf("deadletter: unknown subcommand %q (want list or redrive)", args[0])}
	}
	fs := flag.NewFlagSet("deadletter "+args[0], flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), deadletterUsage+"flags of 'mailrelay deadletter "+args[0]+"':\n")
		fs.PrintDefaults()
	}
	addr := adminFlag(fs, "")
	var limit *int
	var all *bool
	if args[0] == "list" {
		limit = fs.Int("limit", 1000, "list at most this many")
	} else {
		all = fs.Bool("all", false, "redrive every dead letter")
	}
	if err := config.ParseFlags(fs, args[1:], stdout); err != nil {
		return err
	}
	c := adminClientOS(*addr)
	if args[0] == "list" {
		if fs.NArg() > 0 {
			return &config.UsageError{Err: fmt.Errorf("deadletter list: unexpected arguments %q", fs.Args())}
		}
		items, err := c.List(ctx, *limit)
		if err != nil {
			return adminError(err, c)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tDEAD AT\tATTEMPTS\tBYTES\tREASON")
		for _, it := range items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", it.ID, it.Kind, it.DeadAt.Format("2006-01-02T15:04:05Z07:00"), it.Attempts, it.Bytes, it.Reason)
		}
		return tw.Flush()
	}
	if *all == (fs.NArg() > 0) {
		return &config.UsageError{Err: errors.New("deadletter redrive: give ids or --all")}
	}
	resp, err := c.Redrive(ctx, fs.Args(), *all)
	if err != nil {
		return adminError(err, c)
	}
	fmt.Fprintf(stdout, "redriven: %d\n", resp.Redriven)
	if resp.NotFound != "" {
		return errors.New(resp.NotFound)
	}
	return nil
}

func printConfig(w io.Writer) error {
	_, err := io.WriteString(w, config.MarkdownTable())
	return err
}
