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
	"os"
	"strings"
	"syscall"
	"time"

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

// defaultAdminURL is where the CLI looks for the admin API by default.
const defaultAdminURL = "http://127.0.0.1:8082"

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
	base := os.Getenv("RELAY_ADMIN_URL")
	if base == "" {
		base = defaultAdminURL
	}
	adminURL := fs.String("admin-url", base, "admin API of the running relay (RELAY_ADMIN_URL)")
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
	c := aliasClient{base: strings.TrimRight(*adminURL, "/"), token: os.Getenv("RELAY_ADMIN_TOKEN")}
	path := "/aliases/" + url.PathEscape(target)
	var body []byte
	var err error
	switch sub {
	case "create":
		if len(to) == 0 {
			return &config.UsageError{Err: errors.New("alias create: --to is required")}
		}
		req, _ := json.Marshal(admin.CreateAliasRequest{To: admin.Destinations(to), Domain: *domain, Address: *address, Description: *description})
		body, err = c.do(ctx, http.MethodPost, "/aliases", req)
	case "list":
		body, err = c.do(ctx, http.MethodGet, "/aliases", nil)
	case "show":
		body, err = c.do(ctx, http.MethodGet, path, nil)
	case "delete":
		body, err = c.do(ctx, http.MethodDelete, path, nil)
	default: // disable, enable, block-promotional
		body, err = c.do(ctx, http.MethodPost, path+"/"+sub, nil)
	}
	if err != nil {
		return err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(body), "", "  "); err != nil {
		return fmt.Errorf("admin API: the answer is not JSON: %w", err)
	}
	out.WriteByte('\n')
	_, err = stdout.Write(out.Bytes())
	return err
}

// aliasClient calls the alias endpoints of the admin API.
type aliasClient struct {
	base, token string
}

// do sends one request and returns the body of a 2xx answer; any other
// answer is an error carrying the API's message.
func (c aliasClient) do(ctx context.Context, method, path string, body []byte) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("admin API URL %q: %w", c.base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		if errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("admin API: nothing answers at %s: is a relay running with its admin listener there? Set RELAY_ADMIN_URL (%w)", c.base, err)
		}
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e admin.ErrorResponse
		msg := strings.TrimSpace(string(data))
		if json.Unmarshal(data, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		if resp.StatusCode == http.StatusUnauthorized && c.token == "" {
			msg += " (set RELAY_ADMIN_TOKEN)"
		}
		return nil, fmt.Errorf("admin API: %s: %s", resp.Status, msg)
	}
	return data, nil
}
