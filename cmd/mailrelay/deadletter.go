package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"text/tabwriter"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/inbound/admin"
)

func deadletter(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return errors.New("deadletter: want list or redrive")
	}
	fs := flag.NewFlagSet("deadletter "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	def := os.Getenv(config.EnvName("admin-listen"))
	if def == "" {
		def = "127.0.0.1:8082"
	}
	addr := fs.String("admin", def, "admin listener of the running relay (RELAY_ADMIN_LISTEN)")
	limit := fs.Int("limit", 1000, "list at most this many")
	all := fs.Bool("all", false, "redrive every dead letter")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	c := &admin.Client{BaseURL: "http://" + *addr}
	switch args[0] {
	case "list":
		items, err := c.List(ctx, *limit)
		if err != nil {
			return err
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tKIND\tDEAD AT\tATTEMPTS\tBYTES\tREASON")
		for _, it := range items {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%s\n", it.ID, it.Kind, it.DeadAt.Format("2006-01-02T15:04:05Z07:00"), it.Attempts, it.Bytes, it.Reason)
		}
		return tw.Flush()
	case "redrive":
		if *all == (fs.NArg() > 0) {
			return errors.New("deadletter redrive: give ids or --all")
		}
		resp, err := c.Redrive(ctx, fs.Args(), *all)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "redriven: %d\n", resp.Redriven)
		if resp.NotFound != "" {
			return errors.New(resp.NotFound)
		}
		return nil
	}
	return fmt.Errorf("deadletter: unknown subcommand %q", args[0])
}

func printConfig(w io.Writer) error {
	_, err := io.WriteString(w, config.MarkdownTable())
	return err
}
