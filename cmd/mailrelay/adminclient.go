package main

// The admin API client shared by every command that talks to a running
// relay (deadletter, reconcile --submit, redrive-sns-dlq, alias).

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/recovery"
	"github.com/mailrelay/mailrelay/inbound/admin"
)

// Admin API client settings, from the environment.
const (
	envAdminURL   = "RELAY_ADMIN_URL"
	envAdminToken = "RELAY_ADMIN_TOKEN"
	// defaultAdminURL is the relay's default admin listener.
	defaultAdminURL = "http://127.0.0.1:8082"
)

// adminFlag registers --admin on fs: the admin API's host:port or URL;
// unset, RELAY_ADMIN_URL, else RELAY_ADMIN_LISTEN, else the default.
func adminFlag(fs *flag.FlagSet, what string) *string {
	return fs.String("admin", "", "admin API of the running relay, host:port or URL"+what+
		" (default: "+envAdminURL+", else http://"+config.EnvName("admin-listen")+", else "+defaultAdminURL+"; the token is "+envAdminToken+")")
}

// adminClient is the client for the admin API named by flagValue (see
// adminFlag) with the token of RELAY_ADMIN_TOKEN.
func adminClient(flagValue string, lookup func(string) (string, bool)) *admin.Client {
	base := flagValue
	if base == "" {
		if v, ok := lookup(envAdminURL); ok && v != "" {
			base = v
		} else if v, ok := lookup(config.EnvName("admin-listen")); ok && v != "" {
			base = v
		} else {
			base = defaultAdminURL
		}
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	token, _ := lookup(envAdminToken)
	return &admin.Client{BaseURL: strings.TrimSuffix(base, "/"), Token: strings.TrimSpace(token), HTTP: &http.Client{Timeout: 30 * time.Second}}
}

// adminClientOS is adminClient with the process's environment.
func adminClientOS(flagValue string) *admin.Client { return adminClient(flagValue, os.LookupEnv) }

// adminError explains an admin API that does not answer, or refuses the
// request itself.
func adminError(err error, c *admin.Client) error {
	var op *net.OpError
	var se *admin.StatusError
	switch {
	case errors.Is(err, syscall.ECONNREFUSED) || (errors.As(err, &op) && op.Op == "dial"):
		return fmt.Errorf("admin API: nothing answers at %s: is a relay running with its admin listener there? Start one ('bin/mailrelay dev' or 'bin/mailrelay serve') or point --admin or %s at its admin listener (%w)", c.BaseURL, envAdminURL, err)
	case errors.As(err, &se) && se.Code == http.StatusUnauthorized && c.Token == "":
		return fmt.Errorf("the admin API wants RELAY_ADMIN_TOKEN: set it to the relay's token (%w)", err)
	case errors.As(err, &se) && se.Code == http.StatusUnauthorized:
		return fmt.Errorf("the admin API refused RELAY_ADMIN_TOKEN: it is not the relay's token (%w)", err)
	}
	return err
}

// adminSubmitter is recovery.Submitter on the admin API's POST /reconcile.
type adminSubmitter struct{ c *admin.Client }

func (s adminSubmitter) Submit(ctx context.Context, ref recovery.Reference) error {
	req := admin.ReconcileRequest{Bucket: ref.Bucket, Key: ref.Key, Recipients: ref.Recipients, TopicARN: ref.TopicARN}
	if !ref.Timestamp.IsZero() {
		ts := ref.Timestamp
		req.Timestamp = &ts
	}
	_, err := s.c.Reconcile(ctx, req)
	return adminError(err, s.c)
}

// adminPoster is recovery.Poster on the admin API's POST /sns/redrive: the
// status is the SNS checks' (200 stored or duplicate, 4xx final, 503
// retry); a refusal by the admin API itself (token, JSON) is an error that
// stops the run.
type adminPoster struct{ c *admin.Client }

func (p adminPoster) Post(ctx context.Context, body []byte) (int, error) {
	_, err := p.c.RedriveSNS(ctx, body)
	var se *admin.StatusError
	switch {
	case err == nil:
		return http.StatusOK, nil
	case errors.As(err, &se) && (se.Reason != "" || se.Code == http.StatusRequestEntityTooLarge):
		return se.Code, nil // the message's fate: /sns would answer the same
	}
	return 0, adminError(err, p.c)
}
