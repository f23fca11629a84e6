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
	"github.com/mailrelay/mailrelay/inbound/admin"
)

const aliasUsage = `usage: mailrelay alias create --to ADDR [--to ADDR...] [--domain D] [--address ALIAS] [--description TEXT]
       mailrelay alias list
       mailrelay alias show ALIAS
       mailrelay alias disable ALIAS
       mailrelay alias enable ALIAS
       mailrelay alias block-promotional ALIAS
       mailrelay alias delete ALIAS

Manages aliases through a running relay's admin API: RELAY_ADMIN_URL
(default http://127.0.0.1:8082), with RELAY_ADMIN_TOKEN sent as a bearer
token. Prints the alias as one JSON object (list: a JSON array). Without
--address, create makes a random, unguessable alias on --domain (default:
the first relay domain). Aliases of the alias file are shown but read-only.

`

// destinationsFlag collects --to (repeatable, or comma-separated).
type destinationsFlag []string

func (d *destinationsFlag) String() string { return strings.Join(*d, ",") }

func (d *destinationsFlag) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*d = append(*d, s)
		}
	}
	return nil
}

func alias(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, aliasUsage)
		return &config.UsageError{Err: errors.New("alias: want create, list, show, disable, enable, block-promotional or delete")}
	}
	sub := args[0]
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprint(stdout, aliasUsage)
		return flag.ErrHelp
	case "create", "list", "show", "disable", "enable", "block-promotional", "delete":
	default:
		return &config.UsageError{Err: fmt.Errorf("alias: unknown subcommand %q (want create, list, show, disable, enable, block-promotional or delete)", sub)}
	}
	fs := flag.NewFlagSet("alias "+sub, flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), aliasUsage+"flags of 'mailrelay alias "+sub+"':\n")
		fs.PrintDefaults()
	}
	adminURL := adminFlag(fs, "")
	var to destinationsFlag
	var domain, address, description *string
	if sub == "create" {
		fs.Var(&to, "to", "destination address (repeat the flag, or separate with commas, for several)")
		domain = fs.String("domain", "", "relay domain of the new alias (default: the first relay domain)")
		address = fs.String("address", "", "the alias address (default: a random one)")
		description = fs.String("description", "", "what the alias is for")
	}
	// The alias may come before or after the flags.
	var target string
	rest := args[1:]
	if sub != "create" && sub != "list" && len(rest) > 0 && !strings.HasPrefix(rest[0], "-") {
		target, rest = rest[0], rest[1:]
	}
	if err := config.ParseFlags(fs, rest, stdout); err != nil {
		return err
	}
	switch {
	case sub == "create" || sub == "list":
		if fs.NArg() > 0 {
			return &config.UsageError{Err: fmt.Errorf("alias %s: unexpected arguments %q", sub, fs.Args())}
		}
	case target == "" && fs.NArg() == 1:
		target = fs.Arg(0)
	case target == "" || fs.NArg() > 0:
		return &config.UsageError{Err: fmt.Errorf("alias %s: want exactly one alias address", sub)}
	}
	c := adminClientOS(*adminURL)
	path := "/aliases/" + url.PathEscape(target)
	var body json.RawMessage
	var err error
	switch sub {
	case "create":
		if len(to) == 0 {
			return &config.UsageError{Err: errors.New("alias create: --to is required")}
		}
		req := admin.CreateAliasRequest{To: admin.Destinations(to), Domain: *domain, Address: *address, Description: *description}
		err = c.Do(ctx, http.MethodPost, "/aliases", req, &body)
	case "list":
		err = c.Do(ctx, http.MethodGet, "/aliases", nil, &body)
	case "show":
		err = c.Do(ctx, http.MethodGet, path, nil, &body)
	case "delete":
		err = c.Do(ctx, http.MethodDelete, path, nil, &body)
	default: // disable, enable, block-promotional
		err = c.Do(ctx, http.MethodPost, path+"/"+sub, nil, &body)
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
