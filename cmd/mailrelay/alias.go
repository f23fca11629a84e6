package main

import (
	"context"
	"errors"
	"flag"
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
	var to destinationsFlag
	var domain, address, description *string
	cmd := adminCommand{
		noun: "alias", usage: aliasUsage, target: "alias address",
		verbs:      []string{"create", "list", "show", "disable", "enable", "block-promotional", "delete"},
		untargeted: []string{"create", "list"},
		flags: func(verb string, fs *flag.FlagSet) {
			if verb != "create" {
				return
			}
			fs.Var(&to, "to", "destination address (repeat the flag, or separate with commas, for several)")
			domain = fs.String("domain", "", "relay domain of the new alias (default: the first relay domain)")
			address = fs.String("address", "", "the alias address (default: a random one)")
			description = fs.String("description", "", "what the alias is for")
		},
	}
	call, err := cmd.parse(args, stdout, stderr)
	if err != nil {
		return err
	}
	path := "/aliases/" + url.PathEscape(call.target)
	switch call.verb {
	case "create":
		if len(to) == 0 {
			return &config.UsageError{Err: errors.New("alias create: --to is required")}
		}
		req := admin.CreateAliasRequest{To: admin.Destinations(to), Domain: *domain, Address: *address, Description: *description}
		return call.do(ctx, stdout, http.MethodPost, "/aliases", req)
	case "list":
		return call.do(ctx, stdout, http.MethodGet, "/aliases", nil)
	case "show":
		return call.do(ctx, stdout, http.MethodGet, path, nil)
	case "delete":
		return call.do(ctx, stdout, http.MethodDelete, path, nil)
	default: // disable, enable, block-promotional
		return call.do(ctx, stdout, http.MethodPost, path+"/"+call.verb, nil)
	}
}
