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
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/mailrelay/mailrelay/awsclient"
	"github.com/mailrelay/mailrelay/inbound"
	"github.com/mailrelay/mailrelay/inbound/admin"
	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/mailproc"
	"github.com/mailrelay/mailrelay/mailproc/pgqueue"
	"github.com/mailrelay/mailrelay/mailproc/reply"
	"github.com/mailrelay/mailrelay/mailproc/rewrite"
)

// Config is everything `mailrelay serve` needs.
type Config struct {
	Listen       string // inbound SNS listener
	HealthListen string // /livez, /readyz, /metrics
	AdminListen  string // dead-letter admin API ("" disables)
	// AdminToken is the admin API's bearer token: from the environment
	// only (RELAY_ADMIN_TOKEN, a Kubernetes Secret); never logged.
	AdminToken string
	S3Buckets  []string // buckets SES stores mail in (POST /reconcile)

	SNSTopicARNs       []string
	SNSCertURLPrefixes []string
	SNSMaxBodyBytes    int64
	SNSCertTimeout     time.Duration

	SpoolDir         string
	SpoolMaxMessages int
	SpoolMaxBytes    int64
	DedupeTTL        time.Duration

	AliasesFile string
	// AliasDB is the SQLite file of the managed aliases ("" : aliases.db
	// next to SpoolDir); with DatabaseURL they live in PostgreSQL instead.
	AliasDB string
	Workers int

	SESAPI          string // "ses" (SendRawEmail) or "sesv2" (SendEmail raw)
	DeleteS3Objects bool
	// S3DeleteBatch is how often the objects of finished mail are deleted
	// together (DeleteObjects per bucket); 0: one DeleteObject per mail.
	S3DeleteBatch     time.Duration
	MaxMessageBytes   int64
	InFlightBytes     int64
	S3Timeout         time.Duration
	SESTimeout        time.Duration
	AWSMaxAttempts    int
	DropSpam          bool
	DropVirus         bool
	DropDMARCReject   bool
	HoldUnverified    bool
	UnknownAlias      string // "drop" or "deadletter"
	FromDisplaySuffix string

	// Verdict actions (forward, tag, drop; "" for virus, spam and DMARC
	// reject: the matching Drop* decides) and the tag of tagged mail.
	VirusAction           string
	SpamAction            string
	DMARCRejectAction     string
	DMARCQuarantineAction string
	SPFAction             string
	DKIMAction            string
	SubjectTag            string

	// Reply addresses: the key (empty: off), the previous key accepted
	// during a rotation, and how long a reply address is accepted.
	ReplyKey         string
	ReplyKeyPrevious string
	ReplyMaxAge      time.Duration

	RetryMin    time.Duration
	RetryMax    time.Duration
	RetryMaxAge time.Duration

	InboundMaxConns int
	RetryAfter      time.Duration
	ShutdownTimeout time.Duration
	LogLevel        string
	LogFormat       string

	DeadLetterMaxMessages int
	DeadLetterMaxBytes    int64
	DeadLetterMaxAge      time.Duration
	SpoolReserveBytes     int64
	InboundIdleTimeout    time.Duration // idle keep-alive connections closed after
	InboundBodyTimeout    time.Duration // a request body must arrive within
	SNSMaxAge             time.Duration // oldest SNS Timestamp accepted

	DatabaseURL     string        // PostgreSQL shared by replicas ("" = embedded spool)
	DatabaseMigrate bool          // apply migrations at start-up
	DatabaseLease   time.Duration // how long a dead replica's claims are held

	Intake               []string // "http", "sqs" or both (IntakeHTTP, IntakeSQS)
	SQSQueueURL          string
	SQSVisibilityTimeout time.Duration
	SQSMaxMessages       int

	Pace     Pace     // sending pace (pace.go)
	Feedback Feedback // SES feedback (feedback.go)
}

// DefaultS3DeleteBatch is --s3-delete-batch's default; MaxS3DeleteBatch
// bounds it (what a crash leaves in the bucket grows with it).
const (
	DefaultS3DeleteBatch = 200 * time.Millisecond
	MaxS3DeleteBatch     = time.Minute
)

// Intakes of --intake.
const (
	IntakeHTTP = "http"
	IntakeSQS  = "sqs"
)

// HasIntake reports whether intake (IntakeHTTP, IntakeSQS) is on.
func (c *Config) HasIntake(intake string) bool {
	for _, i := range c.Intake {
		if i == intake {
			return true
		}
	}
	return false
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
	fs.StringVar(&c.AdminListen, "admin-listen", "127.0.0.1:8082", "admin API listener: dead letters, reconcile, SNS DLQ redrive (empty disables; not loopback only with --admin-token)")
	fs.StringVar(&c.AdminToken, "admin-token", "", "bearer token of the admin API; set RELAY_ADMIN_TOKEN from a Secret, never on the command line (refused there); required unless --admin-listen is loopback")
	fs.Func("s3-buckets", "comma-separated S3 buckets SES stores mail in; POST /reconcile takes objects in these only (empty: reconcile refused)", listSetter(&c.S3Buckets))
	fs.Func("sns-topic-arns", "comma-separated allow-list of SNS topic ARNs (required)", listSetter(&c.SNSTopicARNs))
	fs.Func("sns-cert-url-prefixes", "comma-separated allowed signing-cert URL prefixes (empty: https://sns.<region>.amazonaws.com[.cn]/ only)", listSetter(&c.SNSCertURLPrefixes))
	fs.Int64Var(&c.SNSMaxBodyBytes, "sns-max-body-bytes", inbound.DefaultMaxBodyBytes, "largest SNS delivery body accepted (413 above); SNS caps the Message at 256 KiB, the JSON envelope and escaping add to it")
	fs.DurationVar(&c.SNSCertTimeout, "sns-cert-timeout", sns.DefaultFetchTimeout, "timeout to download an SNS signing certificate or confirm a subscription")
	fs.StringVar(&c.SpoolDir, "spool-dir", "data/spool", "directory of the durable spool")
	fs.IntVar(&c.SpoolMaxMessages, "spool-max-messages", 100000, "bound on unfinished notifications; above it /sns answers 503")
	fs.Int64Var(&c.SpoolMaxBytes, "spool-max-bytes", 1<<30, "bound on bytes of unfinished notifications")
	fs.DurationVar(&c.DedupeTTL, "dedupe-ttl", 24*time.Hour, "how long a finished SNS MessageId is remembered to drop redeliveries")
	fs.StringVar(&c.AliasesFile, "aliases-file", "aliases.yaml", "alias file (YAML, read-only at run time); reloaded when it changes and on SIGHUP")
	fs.StringVar(&c.AliasDB, "alias-db", "", "SQLite file of the managed aliases without --database-url (empty: aliases.db next to --spool-dir)")
	fs.IntVar(&c.Workers, "workers", 8, "size of the worker pool")
	fs.StringVar(&c.SESAPI, "ses-api", awsclient.SendModeSES, "how to send: ses (SendRawEmail) or sesv2 (SendEmail with raw content)")
	fs.BoolVar(&c.DeleteS3Objects, "delete-s3-objects", true, "delete the mail object from S3 once it is forwarded or dropped")
	fs.DurationVar(&c.S3DeleteBatch, "s3-delete-batch", DefaultS3DeleteBatch, "with --delete-s3-objects: delete the objects of finished mail together, one S3 DeleteObjects per bucket this often (0: one DeleteObject per mail); a crash leaves the last interval's objects to the bucket's lifecycle expiry")
	fs.Int64Var(&c.MaxMessageBytes, "max-message-bytes", mailproc.DefaultMaxMessageBytes, "largest mail forwarded (SES v1 limit: 10 MiB); larger ones are dead-lettered")
	fs.Int64Var(&c.InFlightBytes, "inflight-bytes", 256<<20, "budget of raw mail bytes held by all workers at once")
	fs.DurationVar(&c.S3Timeout, "s3-timeout", awsclient.DefaultS3GetTimeout, "timeout of one S3 operation (all attempts)")
	fs.DurationVar(&c.SESTimeout, "ses-timeout", awsclient.DefaultSESSendTimeout, "timeout of one SES send (all attempts)")
	fs.IntVar(&c.AWSMaxAttempts, "aws-max-attempts", awsclient.DefaultMaxAttempts, "SDK attempts per AWS call (1 or 2; the spool retries the rest)")
	fs.BoolVar(&c.DropSpam, "drop-spam", true, "drop mail whose SES spam verdict is FAIL")
	fs.BoolVar(&c.DropVirus, "drop-virus", true, "drop mail whose SES virus verdict is FAIL")
	fs.BoolVar(&c.HoldUnverified, "hold-unverified", mailproc.DefaultHoldUnverified, "dead-letter (reason unverified) mail whose verdict is missing or PROCESSING_FAILED for a check whose action is drop (virus, spam, DMARC, SPF, DKIM) instead of forwarding it")
	fs.BoolVar(&c.DropDMARCReject, "drop-dmarc-reject", true, "drop mail that fails DMARC when the sender's policy is reject")
	fs.StringVar(&c.UnknownAlias, "unknown-alias", "drop", "what to do with mail for no known alias: drop (counted) or deadletter")
	fs.StringVar(&c.FromDisplaySuffix, "from-display-suffix", rewrite.DefaultDisplaySuffix, "appended to the original sender's name in the rewritten From")
	fs.StringVar(&c.VirusAction, "virus-action", "", "forward, tag or drop mail whose virus verdict is FAIL (empty: drop, or forward with --drop-virus=false)")
	fs.StringVar(&c.SpamAction, "spam-action", "", "forward, tag or drop mail whose spam verdict is FAIL (empty: drop, or forward with --drop-spam=false)")
	fs.StringVar(&c.DMARCRejectAction, "dmarc-reject-action", "", "forward, tag or drop mail that fails DMARC when the sender's policy is reject (empty: drop, or forward with --drop-dmarc-reject=false)")
	fs.StringVar(&c.DMARCQuarantineAction, "dmarc-quarantine-action", string(mailproc.ActionTag), "forward, tag or drop mail that fails DMARC when the sender's policy is quarantine")
	fs.StringVar(&c.SPFAction, "spf-action", string(mailproc.ActionForward), "forward, tag or drop mail whose SPF verdict is FAIL")
	fs.StringVar(&c.DKIMAction, "dkim-action", string(mailproc.ActionForward), "forward, tag or drop mail whose DKIM verdict is FAIL")
	fs.StringVar(&c.SubjectTag, "subject-tag", mailproc.DefaultSubjectTag, "put in front of the Subject of mail tagged by a verdict action")
	fs.StringVar(&c.ReplyKey, "reply-key", "", "secret key (at least 32 bytes) of reply addresses; empty: Reply-To is the original sender and replies through the relay are off")
	fs.StringVar(&c.ReplyKeyPrevious, "reply-key-previous", "", "the previous --reply-key, still accepted for reply addresses during a key rotation")
	fs.DurationVar(&c.ReplyMaxAge, "reply-max-age", reply.DefaultMaxAge, "how long a reply address is accepted after the mail that carried it was forwarded")
	fs.DurationVar(&c.RetryMin, "retry-min", mailproc.DefaultRetryMin, "first retry delay after a transient failure")
	fs.DurationVar(&c.RetryMax, "retry-max", mailproc.DefaultRetryMax, "largest retry delay")
	fs.DurationVar(&c.RetryMaxAge, "retry-max-age", mailproc.DefaultRetryMaxAge, "after this long in the spool a failing message is dead-lettered")
	fs.IntVar(&c.InboundMaxConns, "inbound-max-conns", 512, "concurrent connections on the inbound listener")
	fs.DurationVar(&c.RetryAfter, "retry-after", inbound.DefaultRetryAfter, "Retry-After sent with 503 answers")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 25*time.Second, "how long SIGTERM waits for in-flight work")
	fs.StringVar(&c.LogLevel, "log-level", "info", "debug, info, warn or error")
	fs.StringVar(&c.LogFormat, "log-format", "json", "json or text")
	fs.IntVar(&c.DeadLetterMaxMessages, "deadletter-max-messages", 10000, "bound on dead letters; over it the oldest are deleted (they count toward --spool-max-messages too)")
	fs.Int64Var(&c.DeadLetterMaxBytes, "deadletter-max-bytes", 256<<20, "bound on payload bytes of dead letters; over it the oldest are deleted")
	fs.DurationVar(&c.DeadLetterMaxAge, "deadletter-max-age", 14*24*time.Hour, "dead letters older than this are deleted")
	fs.Int64Var(&c.SpoolReserveBytes, "spool-reserve-bytes", 64<<20, "disk space kept free for the spool (a ballast file of this size; negative disables); below it /sns answers 503 and /readyz fails")
	fs.DurationVar(&c.InboundIdleTimeout, "inbound-idle-timeout", inbound.IdleTimeout, "idle keep-alive connections on the inbound listener are closed after this")
	fs.DurationVar(&c.InboundBodyTimeout, "inbound-body-timeout", inbound.DefaultBodyTimeout, "a delivery's body must arrive within this once its headers are read (a slower one is cut, 503)")
	fs.DurationVar(&c.SNSMaxAge, "sns-max-age", sns.DefaultMaxAge, "deliveries whose signed SNS Timestamp is older are refused (403, a replay); SNS retries for at most an hour")
	fs.StringVar(&c.DatabaseURL, "database-url", "", "PostgreSQL URL (postgres://…) shared by every replica: queue, de-duplication and sent-record live there; empty keeps everything in the embedded spool (one process)")
	fs.BoolVar(&c.DatabaseMigrate, "database-migrate", true, "apply the database's migrations at start-up (safe with several replicas starting at once); false: run 'mailrelay migrate' yourself")
	fs.DurationVar(&c.DatabaseLease, "database-lease", pgqueue.DefaultLease, "with a database: how long a replica's claim on a mail lasts without its heartbeat, i.e. how soon the work of a replica that died is taken over")
	c.Intake = []string{IntakeHTTP}
	fs.Func("intake", "where notifications come from: http (POST /sns), sqs (an SQS queue the SNS topic delivers to), or http,sqs", listSetter(&c.Intake))
	fs.Lookup("intake").DefValue = IntakeHTTP
	fs.StringVar(&c.SQSQueueURL, "sqs-queue-url", "", "URL of the SQS queue read with --intake sqs (required then)")
	fs.DurationVar(&c.SQSVisibilityTimeout, "sqs-visibility-timeout", 30*time.Second, "how long a received SQS message stays invisible; extended every third of it while a mail is worked on, so a crashed replica's messages come back after at most this")
	fs.IntVar(&c.SQSMaxMessages, "sqs-max-messages", 10, "messages asked for by one SQS receive (1..10)")
	c.Pace.flags(fs)
	c.Feedback.flags(fs)
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

// UsageError is a mistake on the command line or in a RELAY_* variable:
// an unknown flag, an unparsable value, a stray argument (one line), or
// settings that Validate refuses (one line each).
// Commands exit 2 and point at --help.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usage is the help text of `mailrelay serve` (printed for --help).
const Usage = `usage: mailrelay serve [flags]

Runs the relay. Every flag --some-name has the environment variable
RELAY_SOME_NAME of the same meaning; a flag on the command line wins.
AWS settings are the SDK's own variables (AWS_REGION, AWS_ENDPOINT_URL, ...).
Required: --sns-topic-arns (RELAY_SNS_TOPIC_ARNS), an alias file
(--aliases-file, default aliases.yaml) and AWS_REGION.

flags:
`

// Load parses args (without the program and command name) and the
// environment (lookup, normally os.LookupEnv) into a validated Config.
// --help prints Usage and the flags to usage and returns flag.ErrHelp.
// Every other error is a *UsageError and nothing is printed: a flag that
// cannot be parsed stops at once (nil Config); bad variables and settings
// that Validate refuses are reported together, each with its flag and
// variable, and the Config is returned too so that callers can check
// further (the rest of the settings are as parsed, or their defaults).
func Load(args []string, lookup func(string) (string, bool), usage io.Writer) (*Config, error) {
	c := &Config{}
	fs := newFlagSet("serve", c)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), Usage)
		fs.PrintDefaults()
	}
	if err := ParseFlags(fs, args, usage); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, &UsageError{fmt.Errorf("unexpected arguments %q: serve takes only flags", fs.Args())}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	var errs []error
	if given["admin-token"] {
		// Any user on the machine can read a command line (ps, /proc).
		c.AdminToken = ""
		delete(given, "admin-token")
		errs = append(errs, fmt.Errorf("--admin-token on the command line is refused (anyone on the machine can read it with ps): set %s in the environment, from a Kubernetes Secret", EnvName("admin-token")))
	}
	fs.VisitAll(func(f *flag.Flag) {
		if given[f.Name] {
			return
		}
		if v, ok := lookup(EnvName(f.Name)); ok {
			if err := fs.Set(f.Name, v); err != nil {
				errs = append(errs, fmt.Errorf("%s=%s (--%s): %w", EnvName(f.Name), v, f.Name, explainValue(f, v, err)))
				_ = f.Value.Set(f.DefValue) // a failed Set may have zeroed it: validate the rest against the default
			}
		}
	})
	if err := errors.Join(append(errs, c.Validate())...); err != nil {
		return c, &UsageError{err}
	}
	return c, nil
}

// ParseFlags parses args with fs without printing anything on a mistake:
// --help (-h) prints fs.Usage to help and returns flag.ErrHelp; any other
// problem is a one-line *UsageError that names the flag and, for a bad
// value, says what a good one looks like ("a duration needs a unit").
func ParseFlags(fs *flag.FlagSet, args []string, help io.Writer) error {
	usage := fs.Usage
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	err := fs.Parse(args)
	fs.Usage = usage
	fs.SetOutput(help)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, flag.ErrHelp):
		if usage != nil {
			usage()
		} else {
			fmt.Fprintf(help, "usage of %s:\n", fs.Name())
			fs.PrintDefaults()
		}
		return err
	}
	return &UsageError{flagParseError(fs, err)}
}

// explainValue says in the user's words why s is no value for f (the
// flag package says "parse error").
func explainValue(f *flag.Flag, s string, err error) error {
	var cur any
	if g, ok := f.Value.(flag.Getter); ok {
		cur = g.Get()
	}
	switch cur.(type) {
	case time.Duration:
		if _, nerr := strconv.ParseFloat(s, 64); nerr == nil {
			return fmt.Errorf("a duration needs a unit, e.g. %ss (or ms, m, h)", s)
		}
		return errors.New("not a duration: want a number with a unit, e.g. 500ms, 2s, 5m, 24h")
	case int, int64, uint, uint64:
		return errors.New("not a whole number")
	case bool:
		return errors.New("want true or false")
	}
	return err
}

// flagParseError rewrites the flag package's errors into one line that
// names the flag with the same dashes the rest of the messages use.
func flagParseError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	for _, p := range []struct{ prefix, mid, sep string }{
		{"invalid value ", " for flag -", " "},    // invalid value "2" for flag -retry-min: parse error
		{"invalid boolean value ", " for -", "="}, // invalid boolean value "x" for -drop-spam: parse error
	} {
		rest, ok := strings.CutPrefix(msg, p.prefix)
		if !ok {
			continue
		}
		q, qerr := strconv.QuotedPrefix(rest)
		if qerr != nil {
			break
		}
		val, _ := strconv.Unquote(q)
		name, why, _ := strings.Cut(strings.TrimPrefix(rest[len(q):], p.mid), ": ")
		if f := fs.Lookup(name); f != nil {
			why = explainValue(f, val, errors.New(why)).Error()
		}
		return fmt.Errorf("--%s%s%s: %s", name, p.sep, val, why)
	}
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: "); ok {
		return fmt.Errorf("unknown flag --%s", strings.TrimLeft(name, "-"))
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: "); ok {
		return fmt.Errorf("flag --%s needs a value", strings.TrimLeft(name, "-"))
	}
	return err
}

// LoadOS is Load with the process's environment.
func LoadOS(args []string) (*Config, error) { return Load(args, os.LookupEnv, os.Stderr) }

// Setting names a setting the way users meet it: its flag and its variable.
func Setting(flagName string) string {
	return "--" + flagName + " / " + EnvName(flagName)
}

// Validate checks the settings that can be checked without I/O and reports
// every problem at once, each with its flag and variable.
func (c *Config) Validate() error {
	var errs []error
	bad := func(flagName, format string, args ...any) {
		sep := ": "
		if strings.HasPrefix(format, "is ") {
			sep = " "
		}
		errs = append(errs, errors.New(Setting(flagName)+sep+fmt.Sprintf(format, args...)))
	}
	for _, l := range []struct{ name, addr string }{{"listen", c.Listen}, {"health-listen", c.HealthListen}} {
		if _, _, err := net.SplitHostPort(l.addr); err != nil {
			bad(l.name, "%q: want host:port (%v)", l.addr, err)
		}
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			bad("admin-listen", "%q: want host:port or empty (%v)", c.AdminListen, err)
		}
	}
	if c.AdminListen != "" && c.AdminToken == "" && !LoopbackListen(c.AdminListen) {
		bad("admin-listen", "%s is not a loopback address and no admin token is set: anyone who reaches it could send mail as an alias. Set RELAY_ADMIN_TOKEN (from a Kubernetes Secret) or listen on 127.0.0.1, ::1 or localhost", c.AdminListen)
	}
	if err := admin.CheckToken(c.AdminToken); err != nil {
		bad("admin-token", "RELAY_ADMIN_TOKEN: %s", strings.TrimPrefix(err.Error(), "admin token: "))
	}
	for _, b := range c.S3Buckets {
		if strings.ContainsAny(b, "/: ") {
			bad("s3-buckets", "%q is not a bucket name (want the name only, not s3:// or an ARN)", b)
		}
	}
	if c.Listen == c.HealthListen && !anyPort(c.Listen) {
		bad("health-listen", "%s must differ from --listen: health needs its own listener", c.HealthListen)
	}
	if c.AdminListen != "" && !anyPort(c.AdminListen) && (c.AdminListen == c.Listen || c.AdminListen == c.HealthListen) {
		bad("admin-listen", "%s must differ from the other listeners", c.AdminListen)
	}
	if len(c.SNSTopicARNs) == 0 {
		bad("sns-topic-arns", "is required (comma-separated SNS topic ARNs, e.g. arn:aws:sns:us-east-1:123456789012:inbound)")
	}
	for _, arn := range c.SNSTopicARNs {
		if !strings.HasPrefix(arn, "arn:") {
			bad("sns-topic-arns", "%q is not an ARN (want arn:aws:sns:REGION:ACCOUNT:TOPIC)", arn)
		}
	}
	if c.SpoolDir == "" {
		bad("spool-dir", "is required")
	}
	if c.AliasesFile == "" {
		bad("aliases-file", "is required")
	}
	if c.Workers < 1 || c.Workers > 1024 {
		bad("workers", "%d: want 1..1024", c.Workers)
	}
	if c.SESAPI != "ses" && c.SESAPI != "sesv2" {
		bad("ses-api", "%q: want ses or sesv2", c.SESAPI)
	}
	if c.UnknownAlias != "drop" && c.UnknownAlias != "deadletter" {
		bad("unknown-alias", "%q: want drop or deadletter", c.UnknownAlias)
	}
	if c.AWSMaxAttempts < 1 || c.AWSMaxAttempts > 2 {
		bad("aws-max-attempts", "%d: want 1 or 2 (hidden retries caused the incident)", c.AWSMaxAttempts)
	}
	for _, b := range []struct {
		name string
		v    int64
	}{{"spool-max-messages", int64(c.SpoolMaxMessages)}, {"spool-max-bytes", c.SpoolMaxBytes}, {"sns-max-body-bytes", c.SNSMaxBodyBytes}, {"max-message-bytes", c.MaxMessageBytes}} {
		if b.v < 1 {
			bad(b.name, "%d: must be positive", b.v)
		}
	}
	if c.InFlightBytes < c.MaxMessageBytes {
		bad("inflight-bytes", "%d must be at least --max-message-bytes %d", c.InFlightBytes, c.MaxMessageBytes)
	}
	if c.S3DeleteBatch < 0 || c.S3DeleteBatch > MaxS3DeleteBatch {
		bad("s3-delete-batch", "%s: want 0 (one DeleteObject per mail) up to %s", c.S3DeleteBatch, MaxS3DeleteBatch)
	}
	if c.RetryMin <= 0 {
		bad("retry-min", "%s: must be positive", c.RetryMin)
	}
	if c.RetryMax < c.RetryMin || c.RetryMax > 24*time.Hour {
		bad("retry-max", "%s: want retry-min (%s) <= retry-max <= 24h", c.RetryMax, c.RetryMin)
	}
	if c.RetryMaxAge <= 0 {
		bad("retry-max-age", "%s: must be positive", c.RetryMaxAge)
	}
	if c.InboundMaxConns < 1 {
		bad("inbound-max-conns", "%d: must be positive", c.InboundMaxConns)
	}
	for _, a := range []struct{ name, v string }{
		{"virus-action", c.VirusAction}, {"spam-action", c.SpamAction}, {"dmarc-reject-action", c.DMARCRejectAction},
		{"dmarc-quarantine-action", c.DMARCQuarantineAction}, {"spf-action", c.SPFAction}, {"dkim-action", c.DKIMAction},
	} {
		if _, err := mailproc.ParseAction(a.v); err != nil {
			bad(a.name, "%q: want forward, tag or drop", a.v)
		}
	}
	if err := rewrite.CheckSubjectTag(c.SubjectTag); err != nil {
		bad("subject-tag", "%q: want printable text of at most 64 bytes without tabs or leading or trailing blanks", c.SubjectTag)
	}
	if c.ReplyKey != "" && len(c.ReplyKey) < reply.MinKeyBytes {
		bad("reply-key", "is %d bytes: want at least %d (e.g. openssl rand -base64 32)", len(c.ReplyKey), reply.MinKeyBytes)
	}
	if c.ReplyKeyPrevious != "" && len(c.ReplyKeyPrevious) < reply.MinKeyBytes {
		bad("reply-key-previous", "is %d bytes: want at least %d", len(c.ReplyKeyPrevious), reply.MinKeyBytes)
	}
	if c.ReplyKeyPrevious != "" && c.ReplyKey == "" {
		bad("reply-key-previous", "is set without --reply-key / RELAY_REPLY_KEY")
	}
	if c.ReplyMaxAge <= 0 {
		bad("reply-max-age", "%s: must be positive", c.ReplyMaxAge)
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"inbound-idle-timeout", c.InboundIdleTimeout}, {"inbound-body-timeout", c.InboundBodyTimeout}, {"sns-max-age", c.SNSMaxAge}} {
		if d.v <= 0 {
			bad(d.name, "%s: must be positive", d.v)
		}
	}
	if c.DatabaseURL != "" {
		if u, err := url.Parse(c.DatabaseURL); err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
			bad("database-url", "want postgres://USER:PASSWORD@HOST:PORT/DB (the value is not shown: it may hold a password)")
		}
	}
	if c.DatabaseLease < 3*time.Second || c.DatabaseLease > 10*time.Minute {
		bad("database-lease", "%s: want 3s..10m (the takeover time after a replica dies)", c.DatabaseLease)
	}
	c.validateIntake(bad)
	c.Pace.validate(bad)
	c.Feedback.validate(bad)
	return errors.Join(errs...)
}

// validateIntake checks --intake and the SQS settings.
func (c *Config) validateIntake(bad func(flagName, format string, args ...any)) {
	if len(c.Intake) == 0 {
		bad("intake", "is empty: want http, sqs or http,sqs")
	}
	for _, i := range c.Intake {
		if i != IntakeHTTP && i != IntakeSQS {
			bad("intake", "%q: want http, sqs or http,sqs", i)
		}
	}
	if !c.HasIntake(IntakeSQS) {
		return
	}
	if c.SQSQueueURL == "" {
		bad("sqs-queue-url", "is required with --intake sqs (https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE)")
	} else if u, err := url.Parse(c.SQSQueueURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		bad("sqs-queue-url", "%q: want an http(s) queue URL such as https://sqs.REGION.amazonaws.com/ACCOUNT/QUEUE", c.SQSQueueURL)
	}
	if c.SQSVisibilityTimeout < 3*time.Second || c.SQSVisibilityTimeout > 12*time.Hour {
		bad("sqs-visibility-timeout", "%s: want 3s..12h (SQS's range, whole seconds)", c.SQSVisibilityTimeout)
	}
	if c.SQSMaxMessages < 1 || c.SQSMaxMessages > 10 {
		bad("sqs-max-messages", "%d: want 1..10 (SQS's limit)", c.SQSMaxMessages)
	}
}

// LoopbackListen reports whether a listener address (host:port) binds
// loopback only: localhost or a loopback IP. An empty host (all interfaces)
// is not loopback.
func LoopbackListen(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
