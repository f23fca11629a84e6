// Package devstack is the local playground behind `mailrelay dev`: the real
// relay (relay.Serve) wired to in-process stand-ins for its AWS
// dependencies, so a newcomer can watch a mail go through with one command
// and nothing but Go installed. The relay and the stand-ins are a
// relaytest.Env; the playground adds persistence, the control server and
// tracking of where each mail went.
//
//   - S3 is fakes.S3 (gofakes3, in memory). Every mail pushed is also kept
//     as <Dir>/inbound/<ses-id>.eml and loaded again on the next start, so
//     mail the spool still holds after a restart can be fetched.
//   - SES is fakes.SES; every copy the relay sends lands in <Dir>/outbox as
//     <send-id>.eml, the exact bytes the relay handed to SES.
//   - SNS is an snstest.Signer: a throw-away key whose certificate is served
//     on 127.0.0.1; the relay is configured to allow only its URL prefix.
//
// A small control server (127.0.0.1:8025 by default) plays the part of SES
// receiving mail: POST /send stores a raw mail in the fake bucket, builds
// the "Received" notification SES would publish, signs it (signature
// version 2) and delivers it to the relay's /sns as SNS would. GET /sent
// tells where the mail went. Client is its Go client.
package devstack

import (
	"context"
	"crypto/rand"
	_ "embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/relay/relaytest"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/mailproc/aliases"
)

// The playground's fixed names.
const (
	TopicARN = "arn:aws:sns:us-east-1:000000000000:mailrelay-dev-inbound"
	Bucket   = "mailrelay-dev-inbound"
	Region   = "us-east-1"
	// SampleName is the bundled sample's name in messages to the user.
	SampleName = "sample.eml"
)

// Defaults of Options.
const (
	DefaultDir          = "data/dev"
	DefaultControlAddr  = "127.0.0.1:8025"
	DefaultListen       = "127.0.0.1:8080"
	DefaultHealthListen = "127.0.0.1:8081"
	DefaultAdminListen  = "127.0.0.1:8082"
)

// DefaultAliases is the alias file written to <Dir>/aliases.yaml when
// there is none.
const DefaultAliases = `# Alias file of the mailrelay dev playground (format: see the operator contract).
# Change it, then restart 'mailrelay dev' or send the process SIGHUP.
domains: [relay.example.com]
aliases:
  - address: shop@relay.example.com     # exact alias (shop+anything@ too)
    forward_to: [you@example.org]
  - address: "@relay.example.com"       # catch-all: every other address of the domain
    forward_to: [ops@example.org]
`

//go:embed sample.eml
var sample []byte

// Sample returns the bundled sample mail (multipart/alternative, from
// dora@example.net to shop@relay.example.com).
func Sample() []byte { return slices.Clone(sample) }

// Options configure Start. Zero values take the defaults.
type Options struct {
	// Dir holds the playground's state: aliases.yaml, spool/, inbound/,
	// outbox/ (default DefaultDir).
	Dir string
	// ControlAddr is the control server's listen address
	// (DefaultControlAddr). It must be a loopback address.
	ControlAddr string
	// Listen, HealthListen and AdminListen are the relay's listeners
	// (defaults as `mailrelay serve`: DefaultListen, DefaultHealthListen,
	// DefaultAdminListen).
	Listen, HealthListen, AdminListen string
	// S3Addr and SESAddr are the stand-ins' listen addresses (default
	// 127.0.0.1 on a free port).
	S3Addr, SESAddr string
	// RelayArgs are extra `mailrelay serve` flags (e.g. "--workers", "2"),
	// applied after the playground's own. The environment is not read.
	RelayArgs []string
	// NoSample skips pushing the bundled sample on a fresh Dir.
	NoSample bool
	// Logger receives the relay's and the playground's logs (nil: discard).
	Logger *slog.Logger
}

// Stack is a running playground.
type Stack struct {
	// Dir and the paths in it, absolute.
	Dir, AliasesFile, SpoolDir, InboundDir, OutboxDir string
	// Relay has the relay's listener addresses, spool and metrics.
	Relay *relay.Relay
	// ControlAddr is the control server's address (host:port).
	ControlAddr string
	// S3URL and SESURL are the stand-ins' base URLs.
	S3URL, SESURL string
	// Sample is the bundled sample's delivery on a fresh Dir, else nil.
	Sample *SendResult

	log     *slog.Logger
	env     *relaytest.Env // the relay, the stand-ins and the signer
	track   *tracker
	control *http.Server

	done chan struct{}
	err  error // relay.Serve's, valid once done is closed
}

// SendResult is the acknowledgement of one mail pushed through the relay.
type SendResult struct {
	SESMessageID string   `json:"ses_message_id"` // also the S3 object key's last part
	SNSMessageID string   `json:"sns_message_id"` // the relay's spool id (dead-letter id)
	ObjectKey    string   `json:"object_key"`
	Recipients   []string `json:"recipients"`
	// SNSStatus is the relay's answer to the SNS delivery: 200 means the
	// notification is durably spooled; anything else means it is not.
	SNSStatus int    `json:"sns_status"`
	Answer    string `json:"answer,omitempty"` // the relay's answer body, if not 200
}

// Status is where a mail pushed through the playground is now.
type Status struct {
	SESMessageID string   `json:"ses_message_id"`
	State        string   `json:"state"`            // one of the State constants
	Reason       string   `json:"reason,omitempty"` // why it was dead-lettered
	Outbox       []string `json:"outbox"`           // forwarded copies (absolute paths)
	Copies       []Copy   `json:"copies"`           // the same copies, with alias and destinations
}

// Finished reports whether the relay is done with the mail.
func (s Status) Finished() bool { return s.State != StatePending }

// Start brings up the stand-ins, the relay and the control server, and
// pushes the bundled sample through if Dir was fresh (it had no outbox). It
// returns once the relay serves; everything runs until ctx ends or Close.
func Start(ctx context.Context, opts Options) (_ *Stack, err error) {
	opts = withDefaults(opts)
	if err := checkLoopback(opts.ControlAddr); err != nil {
		return nil, fmt.Errorf("control address: %w", err)
	}
	dir, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("dev dir: %w", err)
	}
	st := &Stack{
		Dir:        dir,
		InboundDir: filepath.Join(dir, "inbound"),
		OutboxDir:  filepath.Join(dir, "outbox"),
		log:        opts.Logger,
		done:       make(chan struct{}),
	}
	_, statErr := os.Stat(st.OutboxDir)
	fresh := errors.Is(statErr, fs.ErrNotExist)
	for _, d := range []string{st.InboundDir, st.OutboxDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("dev dir: %w", err)
		}
	}

	// The relay and its stand-ins: relaytest's, with the playground's
	// names, listeners and pace, every copy sent kept in the outbox.
	st.track = newTracker(st.OutboxDir)
	st.env, err = relaytest.NewEnv(relaytest.Options{
		Dir:      dir,
		Aliases:  DefaultAliases,
		TopicARN: TopicARN,
		Bucket:   Bucket,
		Args: append([]string{
			"--listen", opts.Listen, "--health-listen", opts.HealthListen, "--admin-listen", opts.AdminListen,
			"--workers", "4", "--retry-min", "500ms", "--retry-max", "10s",
			"--s3-timeout", "5s", "--ses-timeout", "5s", "--shutdown-timeout", "5s",
			"--delete-s3-objects=true",
		}, opts.RelayArgs...),
		S3Addr:  opts.S3Addr,
		SESAddr: opts.SESAddr,
		SES:     fakes.SESOptions{EMLDir: st.OutboxDir, OnSend: st.track.observe},
		Logger:  st.log,
	})
	if err != nil {
		return nil, err
	}
	// Undo whatever was started if a later step fails.
	defer func() {
		if err != nil {
			if st.control != nil {
				_ = st.control.Close()
			}
			_ = st.env.Close()
		}
	}()
	st.AliasesFile, st.SpoolDir = st.env.AliasesFile, st.env.Config.SpoolDir
	st.S3URL, st.SESURL = st.env.S3.URL(), st.env.SES.URL()
	if err := st.loadInbound(); err != nil {
		return nil, err
	}
	if err := st.env.Start(ctx); err != nil {
		return nil, fmt.Errorf("relay: %w", err)
	}
	st.Relay = st.env.Relay

	ln, err := net.Listen("tcp", opts.ControlAddr)
	if err != nil {
		return nil, fmt.Errorf("control listener: %w", err)
	}
	st.ControlAddr = ln.Addr().String()
	st.control = &http.Server{Handler: st.controlHandler(), ReadHeaderTimeout: 5 * time.Second}
	go func() {
		if err := st.control.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			st.log.Error("control server stopped", "err", err)
		}
	}()

	if fresh && !opts.NoSample {
		res, err := st.Send(ctx, Sample(), nil)
		if err != nil {
			return nil, fmt.Errorf("pushing the sample: %w", err)
		}
		st.Sample = &res
	}

	// The relay runs until ctx ends or Close; once it has drained, stop the
	// rest: nothing needs them.
	context.AfterFunc(ctx, st.env.Stop)
	go func() {
		<-st.env.Served()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = st.control.Shutdown(sctx)
		st.err = st.env.Close()
		close(st.done)
	}()
	return st, nil
}

func withDefaults(o Options) Options {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Dir, DefaultDir)
	def(&o.ControlAddr, DefaultControlAddr)
	def(&o.Listen, DefaultListen)
	def(&o.HealthListen, DefaultHealthListen)
	def(&o.AdminListen, DefaultAdminListen)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return o
}

// checkLoopback refuses a listen address that is not on a loopback
// interface: the control server delivers signed notifications to anyone.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return err
	}
	if host == "localhost" {
		return nil
	}
	ip := net.ParseIP(host)
	if ip == nil || !ip.IsLoopback() {
		return fmt.Errorf("%q: want a loopback address such as 127.0.0.1", addr)
	}
	return nil
}

// writeAtomic writes data to path through a temporary file and a rename.
func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

// loadInbound puts every mail kept in InboundDir back into the fake bucket,
// so spooled notifications from an earlier run find their object.
func (st *Stack) loadInbound() error {
	entries, err := os.ReadDir(st.InboundDir)
	if err != nil {
		return fmt.Errorf("reading %s: %w", st.InboundDir, err)
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !strings.HasSuffix(name, ".eml") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(st.InboundDir, name))
		if err != nil {
			return fmt.Errorf("reading kept mail: %w", err)
		}
		if err := st.env.Put(strings.TrimSuffix(name, ".eml"), data); err != nil {
			return err
		}
	}
	return nil
}

// Close stops the playground and waits until the relay has drained and
// every stand-in is closed. It returns relay.Serve's error.
func (st *Stack) Close() error {
	st.env.Stop()
	return st.Wait()
}

// Wait waits until the playground has stopped (its context ended or Close)
// and returns relay.Serve's error.
func (st *Stack) Wait() error {
	<-st.done
	return st.err
}

// Done is closed once the playground has stopped.
func (st *Stack) Done() <-chan struct{} { return st.done }

// relayDomains returns the relay domains of the current alias file.
func (st *Stack) relayDomains() (*aliases.Table, error) {
	t, err := aliases.Load(st.AliasesFile)
	if err != nil {
		return nil, fmt.Errorf("aliases: %w", err)
	}
	return t, nil
}

// ErrNoRecipient is returned by Send when no recipient was given and the
// mail has no To/Cc address on a relay domain.
var ErrNoRecipient = errors.New("no recipient: the mail has no To/Cc address on a relay domain; give one (to=...)")

// Send does what SES and SNS do when mail arrives: it stores raw in the
// fake bucket under a fresh SES message id, builds the Received
// notification for recipients (default: the mail's To and Cc addresses on a
// relay domain), signs it with signature version 2 and POSTs it to the
// relay's /sns. A relay answer other than 200 is reported in SendResult,
// not as an error.
func (st *Stack) Send(ctx context.Context, raw []byte, recipients []string) (SendResult, error) {
	m := parseMail(raw)
	if len(recipients) == 0 {
		table, err := st.relayDomains()
		if err != nil {
			return SendResult{}, err
		}
		seen := map[string]bool{}
		for _, a := range m.addresses("To", "Cc") {
			at := strings.LastIndexByte(a.Address, '@')
			addr := strings.ToLower(a.Address)
			if at > 0 && table.IsOurDomain(a.Address[at+1:]) && !seen[addr] {
				seen[addr] = true
				recipients = append(recipients, a.Address)
			}
		}
		if len(recipients) == 0 {
			return SendResult{}, ErrNoRecipient
		}
	}
	res := SendResult{
		SESMessageID: newSESID(),
		SNSMessageID: snstest.NewMessageID(),
		Recipients:   recipients,
	}
	res.ObjectKey = relaytest.Key(res.SESMessageID)

	// As SES: the object first, then the notification.
	if err := writeAtomic(filepath.Join(st.InboundDir, res.SESMessageID+".eml"), raw); err != nil {
		return SendResult{}, fmt.Errorf("keeping the mail: %w", err)
	}
	if err := st.env.Put(res.SESMessageID, raw); err != nil {
		return SendResult{}, err
	}
	rec := &record{
		sesID: res.SESMessageID, snsID: res.SNSMessageID, key: res.ObjectKey, at: time.Now(),
		messageID: m.messageID(), bodySum: m.bodySum, hasBody: m.ok,
		recipients: map[string]bool{}, copyKeys: map[string]bool{},
	}
	for _, r := range recipients {
		rec.recipients[normAddress(r)] = true
	}
	st.track.add(rec)

	note := notification(raw, res.SESMessageID, recipients, time.Now())
	code, answer, err := st.env.Post(ctx, st.env.Sign(res.SNSMessageID, note))
	if err != nil {
		return SendResult{}, err
	}
	res.SNSStatus = code
	if code != http.StatusOK {
		res.Answer = answer
		st.track.refused(res.SESMessageID)
	}
	st.log.Debug("delivered to the relay", "ses_message_id", res.SESMessageID, "sns_message_id", res.SNSMessageID,
		"recipients", recipients, "answer", code)
	return res, nil
}

// ErrUnknownMail is returned by Status for an id this playground did not
// send (or has forgotten).
var ErrUnknownMail = errors.New("no mail with this SES message id was sent through this playground")

// ErrStopped is returned by Status once the playground has stopped.
var ErrStopped = errors.New("the playground has stopped")

// Status tells where the mail with SES message id sesID is: pending,
// forwarded (with its copies in the outbox), dropped, or dead-lettered
// (with the reason).
func (st *Stack) Status(sesID string) (Status, error) {
	select {
	case <-st.done:
		return Status{}, ErrStopped
	default:
	}
	r, ok := st.track.get(sesID)
	if !ok {
		return Status{}, ErrUnknownMail
	}
	s := Status{SESMessageID: sesID, State: StatePending, Outbox: []string{}, Copies: []Copy{}}
	if r.refused {
		s.State = StateRefused
		return s, nil
	}
	// The relay deletes the object once a mail is forwarded or dropped,
	// after every copy was sent.
	if r.finished || !st.env.S3.Has(Bucket, r.key) {
		st.track.markFinished(sesID)
		if r2, _ := st.track.get(sesID); len(r2.copies) > 0 {
			s.State, s.Copies = StateForwarded, r2.copies
			for _, c := range r2.copies {
				s.Outbox = append(s.Outbox, c.Path)
			}
		} else {
			s.State = StateDropped
		}
		return s, nil
	}
	dls, err := st.Relay.Spool.DeadLetters(maxRecords)
	if err != nil {
		return Status{}, fmt.Errorf("reading dead letters: %w", err)
	}
	for _, d := range dls {
		if d.ID == r.snsID {
			s.State, s.Reason = StateDeadLettered, d.Reason
			break
		}
	}
	return s, nil
}

// WaitFinished polls Status until the mail is finished or ctx ends; it
// returns the last status seen either way, with ctx's error if it ended.
func (st *Stack) WaitFinished(ctx context.Context, sesID string) (Status, error) {
	return waitFinished(ctx, func() (Status, error) { return st.Status(sesID) })
}

// pollInterval is how often WaitFinished looks again.
const pollInterval = 50 * time.Millisecond

func waitFinished(ctx context.Context, status func() (Status, error)) (Status, error) {
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	for {
		s, err := status()
		if err != nil || s.Finished() {
			return s, err
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-t.C:
		}
	}
}

// newSESID returns a fresh id shaped like SES message ids (40 characters).
func newSESID() string {
	b := make([]byte, 20)
	rand.Read(b)
	return hex.EncodeToString(b)
}
