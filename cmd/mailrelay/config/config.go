// Package config is the relay's configuration: one struct, loaded once from
// flags and environment variables. Every flag --some-name has the variable
// RELAY_SOME_NAME of the same meaning; a flag given on the command line wins
// over the variable, which wins over the default. AWS settings are not here:
// the SDK reads its own standard variables (AWS_REGION, AWS_ENDPOINT_URL, ...).
package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/mailrelay/mailrelay/awsclient"
	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/mailproc"
	"github.com/mailrelay/mailrelay/mailproc/rewrite"
)

// Config is everything `mailrelay serve` needs.
type Config struct {
	Listen       string // inbound SNS listener
	HealthListen string // /livez, /readyz, /metrics
	AdminListen  string // dead-letter admin API ("" disables)

	SNSTopicARNs       []string
	SNSCertURLPrefixes []string
	SNSMaxBodyBytes    int64
	SNSCertTimeout     time.Duration

	SpoolDir         string
	SpoolMaxMessages int
	SpoolMaxBytes    int64
	DedupeTTL        time.Duration

	AliasesFile string
	Workers     int

	SESAPI            string // "ses" (SendRawEmail) or "sesv2" (SendEmail raw)
	DeleteS3Objects   bool
	MaxMessageBytes   int64
	InFlightBytes     int64
	S3Timeout         time.Duration
	SESTimeout        time.Duration
	AWSMaxAttempts    int
	DropSpam          bool
	DropVirus         bool
	DropDMARCReject   bool
	UnknownAlias      string // "drop" or "deadletter"
	FromDisplaySuffix string

	RetryMin    time.Duration
	RetryMax    time.Duration
	RetryMaxAge time.Duration

	InboundMaxConns int
	RetryAfter      time.Duration
	ShutdownTimeout time.Duration
	LogLevel        string
	LogFormat       string

	InboundIdleTimeout time.Duration // idle keep-alive connections closed after
	InboundBodyTimeout time.Duration // a request body must arrive within
	SNSMaxAge          time.Duration // oldest SNS Timestamp accepted
}

// Flag describes one setting, for documentation.
type Flag struct {
	Name, Env, Default, Usage string
}

// EnvName is the environment variable of a flag name.
func EnvName(flagName string) string {
	return "RELAY_" + strings.ToUpper(strings.ReplaceAll(flagName, "-", "_"))
}

// newFlagSet binds every setting of c to a flag with its default.
func newFlagSet(name string, c *Config) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.StringVar(&c.Listen, "listen", "127.0.0.1:8080", "inbound listener for SNS deliveries (POST /sns)")
	fs.StringVar(&c.HealthListen, "health-listen", "127.0.0.1:8081", "health listener: /livez, /readyz, /metrics")
	fs.StringVar(&c.AdminListen, "admin-listen", "127.0.0.1:8082", "admin API listener for dead letters (empty disables)")
	fs.Func("sns-topic-arns", "comma-separated allow-list of SNS topic ARNs (required)", listSetter(&c.SNSTopicARNs))
	fs.Func("sns-cert-url-prefixes", "comma-separated allowed signing-cert URL prefixes (empty: https://sns.<region>.amazonaws.com[.cn]/ only)", listSetter(&c.SNSCertURLPrefixes))
	fs.Int64Var(&c.SNSMaxBodyBytes, "sns-max-body-bytes", inbound.DefaultMaxBodyBytes, "largest SNS delivery body accepted (413 above); SNS caps the Message at 256 KiB, the JSON envelope and escaping add to it")
	fs.DurationVar(&c.SNSCertTimeout, "sns-cert-timeout", sns.DefaultFetchTimeout, "timeout to download an SNS signing certificate or confirm a subscription")
	fs.StringVar(&c.SpoolDir, "spool-dir", "data/spool", "directory of the durable spool")
	fs.IntVar(&c.SpoolMaxMessages, "spool-max-messages", 100000, "bound on unfinished notifications; above it /sns answers 503")
	fs.Int64Var(&c.SpoolMaxBytes, "spool-max-bytes", 1<<30, "bound on bytes of unfinished notifications")
	fs.DurationVar(&c.DedupeTTL, "dedupe-ttl", 24*time.Hour, "how long a finished SNS MessageId is remembered to drop redeliveries")
	fs.StringVar(&c.AliasesFile, "aliases-file", "aliases.yaml", "alias file (YAML); reloaded on SIGHUP")
	fs.IntVar(&c.Workers, "workers", 8, "size of the worker pool")
	fs.StringVar(&c.SESAPI, "ses-api", awsclient.SendModeSES, "how to send: ses (SendRawEmail) or sesv2 (SendEmail with raw content)")
	fs.BoolVar(&c.DeleteS3Objects, "delete-s3-objects", true, "delete the mail object from S3 once it is forwarded or dropped")
	fs.Int64Var(&c.MaxMessageBytes, "max-message-bytes", mailproc.DefaultMaxMessageBytes, "largest mail forwarded (SES v1 limit: 10 MiB); larger ones are dead-lettered")
	fs.Int64Var(&c.InFlightBytes, "inflight-bytes", 256<<20, "budget of raw mail bytes held by all workers at once")
	fs.DurationVar(&c.S3Timeout, "s3-timeout", awsclient.DefaultS3GetTimeout, "timeout of one S3 operation (all attempts)")
	fs.DurationVar(&c.SESTimeout, "ses-timeout", awsclient.DefaultSESSendTimeout, "timeout of one SES send (all attempts)")
	fs.IntVar(&c.AWSMaxAttempts, "aws-max-attempts", awsclient.DefaultMaxAttempts, "SDK attempts per AWS call (1 or 2; the spool retries the rest)")
	fs.BoolVar(&c.DropSpam, "drop-spam", true, "drop mail whose SES spam verdict is FAIL")
	fs.BoolVar(&c.DropVirus, "drop-virus", true, "drop mail whose SES virus verdict is FAIL")
	fs.BoolVar(&c.DropDMARCReject, "drop-dmarc-reject", true, "drop mail that fails DMARC when the sender's policy is reject")
	fs.StringVar(&c.UnknownAlias, "unknown-alias", "drop", "what to do with mail for no known alias: drop (counted) or deadletter")
	fs.StringVar(&c.FromDisplaySuffix, "from-display-suffix", rewrite.DefaultDisplaySuffix, "appended to the original sender's name in the rewritten From")
	fs.DurationVar(&c.RetryMin, "retry-min", mailproc.DefaultRetryMin, "first retry delay after a transient failure")
	fs.DurationVar(&c.RetryMax, "retry-max", mailproc.DefaultRetryMax, "largest retry delay")
	fs.DurationVar(&c.RetryMaxAge, "retry-max-age", mailproc.DefaultRetryMaxAge, "after this long in the spool a failing message is dead-lettered")
	fs.IntVar(&c.InboundMaxConns, "inbound-max-conns", 512, "concurrent connections on the inbound listener")
	fs.DurationVar(&c.RetryAfter, "retry-after", inbound.DefaultRetryAfter, "Retry-After sent with 503 answers")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 25*time.Second, "how long SIGTERM waits for in-flight work")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or text")
	fs.DurationVar(&c.InboundIdleTimeout, "inbound-idle-timeout", inbound.IdleTimeout, "idle keep-alive connections on the inbound listener are closed after this")
	fs.DurationVar(&c.InboundBodyTimeout, "inbound-body-timeout", inbound.DefaultBodyTimeout, "a delivery's body must arrive within this once its headers are read (a slower one is cut, 503)")
	fs.DurationVar(&c.SNSMaxAge, "sns-max-age", sns.DefaultMaxAge, "deliveries whose signed SNS Timestamp is older are refused (403, a replay); SNS retries for at most an hour")
	return fs
}

func listSetter(dst *[]string) func(string) error {
	return func(s string) error {
		*dst = SplitList(s)
		return nil
	}
}

// SplitList splits a comma-separated list, trimming blanks and empty items.
func SplitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// Load parses args (without the program and command name) and the
// environment (lookup, normally os.LookupEnv) into a validated Config.
func Load(args []string, lookup func(string) (string, bool), usage io.Writer) (*Config, error) {
	c := &Config{}
	fs := newFlagSet("serve", c)
	fs.SetOutput(usage)
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := lookup(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%q: %w", EnvName(f.Name), v, err))
			}
		}
	})
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, c.Validate()
}

// LoadOS is Load with the process's environment.
func LoadOS(args []string) (*Config, error) { return Load(args, os.LookupEnv, os.Stderr) }

// Validate checks the settings that can be checked without I/O.
func (c *Config) Validate() error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	for name, addr := range map[string]string{"listen": c.Listen, "health-listen": c.HealthListen} {
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad("--%s %q: %v", name, addr, err)
		}
	}
	if c.Listen == c.HealthListen && !anyPort(c.Listen) {
		bad("--listen and --health-listen must differ: health needs its own listener")
	}
	if c.AdminListen != "" && !anyPort(c.AdminListen) && (c.AdminListen == c.Listen || c.AdminListen == c.HealthListen) {
		bad("--admin-listen must differ from the other listeners")
	}
	if len(c.SNSTopicARNs) == 0 {
		bad("--sns-topic-arns (%s) is required", EnvName("sns-topic-arns"))
	}
	for _, arn := range c.SNSTopicARNs {
		if !strings.HasPrefix(arn, "arn:") {
			bad("topic %q is not an ARN", arn)
		}
	}
	if c.SpoolDir == "" {
		bad("--spool-dir is required")
	}
	if c.Workers < 1 || c.Workers > 1024 {
		bad("--workers %d: want 1..1024", c.Workers)
	}
	if c.SESAPI != "ses" && c.SESAPI != "sesv2" {
		bad("--ses-api %q: want ses or sesv2", c.SESAPI)
	}
	if c.UnknownAlias != "drop" && c.UnknownAlias != "deadletter" {
		bad("--unknown-alias %q: want drop or deadletter", c.UnknownAlias)
	}
	if c.AWSMaxAttempts < 1 || c.AWSMaxAttempts > 2 {
		bad("--aws-max-attempts %d: want 1 or 2 (hidden retries caused the incident)", c.AWSMaxAttempts)
	}
	if c.SpoolMaxMessages < 1 || c.SpoolMaxBytes < 1 || c.SNSMaxBodyBytes < 1 || c.MaxMessageBytes < 1 {
		bad("sizes and bounds must be positive")
	}
	if c.InFlightBytes < c.MaxMessageBytes {
		bad("--inflight-bytes %d must be at least --max-message-bytes %d", c.InFlightBytes, c.MaxMessageBytes)
	}
	if c.RetryMin <= 0 || c.RetryMax < c.RetryMin || c.RetryMax > 24*time.Hour || c.RetryMaxAge <= 0 {
		bad("retry durations: want 0 < retry-min <= retry-max <= 24h and retry-max-age > 0")
	}
	if c.InboundMaxConns < 1 {
		bad("--inbound-max-conns must be positive")
	}
	if c.InboundIdleTimeout <= 0 || c.InboundBodyTimeout <= 0 || c.SNSMaxAge <= 0 {
		bad("--inbound-idle-timeout, --inbound-body-timeout and --sns-max-age must be positive")
	}
	return errors.Join(errs...)
}

// anyPort reports whether addr asks for any free port (":0"), which never
// collides with another listener.
func anyPort(addr string) bool {
	_, port, err := net.SplitHostPort(addr)
	return err == nil && port == "0"
}

// Flags lists every setting with its variable and default, sorted by name.
func Flags() []Flag {
	fs := newFlagSet("serve", &Config{})
	var out []Flag
	fs.VisitAll(func(f *flag.Flag) {
		out = append(out, Flag{Name: f.Name, Env: EnvName(f.Name), Default: f.DefValue, Usage: f.Usage})
	})
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// MarkdownTable renders Flags as the README's configuration table.
func MarkdownTable() string {
	var b strings.Builder
	b.WriteString("| flag | variable | default | meaning |\n|---|---|---|---|\n")
	for _, f := range Flags() {
		def := f.Default
		if def == "" {
			def = "—"
		} else {
			def = "`" + def + "`"
		}
		fmt.Fprintf(&b, "| `--%s` | `%s` | %s | %s |\n", f.Name, f.Env, def, f.Usage)
	}
	return b.String()
}
