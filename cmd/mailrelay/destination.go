package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
)

const destinationUsage = `usage: mailrelay destination list
       mailrelay destination show ADDR
       mailrelay destination unpause ADDR

Shows the destination addresses SES bounces paused, through a running
relay's admin API: RELAY_ADMIN_URL (default http://127.0.0.1:8082), with
RELAY_ADMIN_TOKEN sent as a bearer token. list prints the paused ones as a
JSON array; show prints one as a JSON object ("paused": false when it is
not); unpause ends a pause at once (an error when there is none). Mail held
for a paused destination is dead-lettered (reason destination_paused):
redrive it with 'mailrelay deadletter redrive' after the unpause.

`

func destination(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, destinationUsage)
		return &config.UsageError{Err: errors.New("destination: want list, show or unpause")}
	}
	sub := args[0]
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, destinationUsage)
		return flag.ErrHelp
	case "list", "show", "unpause":
	default:
		return &config.UsageError{Err: fmt.Errorf("destination: unknown subcommand %q (want list, show or unpause)", sub)}
	}
	fs := flag.NewFlagSet("destination "+sub, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), destinationUsage+"flags of 'mailrelay destination "+sub+"':\n")
		fs.PrintDefaults()
	}
	adminURL := adminFlag(fs, "")
	// The address may come before or after the flags.
	var target string
	rest := args[1:]
	if sub != "list" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		target, rest = rest[0], rest[1:]
	}
	if err := config.ParseFlags(fs, rest, stdout); err != nil {
		return err
	}
	switch {
	case sub == "list":
		if fs.NArg() > 0 {
			return &config.UsageError{Err: fmt.Errorf("destination list: unexpected arguments %q", fs.Args())}
		}
	case target == "" && fs.NArg() == 1:
		target = fs.Arg(0)
	case target == "" || fs.NArg() > 0:
		return &config.UsageError{Err: fmt.Errorf("destination %s: want exactly one destination address", sub)}
	}
	c := adminClientOS(*adminURL)
	var body json.RawMessage
	var err error
	switch sub {
	case "list":
		err = c.Do(ctx, http.MethodGet, "/destinations", nil, &body)
	case "show":
		err = c.Do(ctx, http.MethodGet, "/destinations/"+url.PathEscape(target), nil, &body)
	case "unpause":
		err = c.Do(ctx, http.MethodPost, "/destinations/"+url.PathEscape(target)+"/unpause", nil, &body)
	}
	if err != nil {
		return adminError(err, c)
	}
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(body), "", "  "); err != nil {
		return fmt.Errorf("admin API: the answer is not JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = stdout.Write(out.Bytes())
	return err
}
