package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/mailrelay/mailrelay/cmd/mailrelay/config"
	"github.com/mailrelay/mailrelay/cmd/mailrelay/devstack"
	"github.com/mailrelay/mailrelay/telemetry"
)

const devUsage = `usage: mailrelay dev [flags] [-- serve flags]
       mailrelay dev send [--control ADDR] [--to ADDR,...] FILE.eml...

'mailrelay dev' runs the real relay on this machine with in-process stand-ins
for S3, SES and SNS: nothing leaves the machine, no AWS account is needed.
Forwarded mail lands as .eml files in <dir>/outbox. Flags after '--' are
passed to the relay as 'mailrelay serve' flags (e.g. -- --workers 2).

'mailrelay dev send' pushes mail through a running playground as SES and SNS
would, and prints where each one went.

flags of 'mailrelay dev':
`

// dev runs the playground, or with "send" pushes mail through a running one.
func dev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "send" {
		return devSend(ctx, args[1:], stdout, stderr)
	}
	var relayArgs []string
	if i := slices.Index(args, "--"); i >= 0 {
		args, relayArgs = args[:i], args[i+1:]
	}
	fs := flag.NewFlagSet("dev", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), devUsage)
		fs.PrintDefaults()
	}
	dir := fs.String("dir", devstack.DefaultDir, "playground state: aliases.yaml, spool/, inbound/, outbox/")
	listen := fs.String("listen", devstack.DefaultListen, "relay inbound listener (POST /sns)")
	healthListen := fs.String("health-listen", devstack.DefaultHealthListen, "relay health listener (/livez, /readyz, /metrics)")
	adminListen := fs.String("admin-listen", devstack.DefaultAdminListen, "relay admin API listener (dead letters)")
	control := fs.String("control", devstack.DefaultControlAddr, "control server of the playground (loopback only)")
	logLevel := fs.String("log-level", "warn", "relay log level on stderr: debug, info (every step of every mail), warn or error")
	noSample := fs.Bool("no-sample", false, "do not push the bundled sample mail on a fresh --dir")
	if err := config.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return &config.UsageError{Err: fmt.Errorf("dev: unexpected arguments %q (relay flags go after --)", fs.Args())}
	}
	log, err := telemetry.NewLogger(stderr, *logLevel, "text")
	if err != nil {
		return err
	}
	_, statErr := os.Stat(*dir)
	st, err := devstack.Start(ctx, devstack.Options{
		Dir: *dir, ControlAddr: *control,
		Listen: *listen, HealthListen: *healthListen, AdminListen: *adminListen,
		RelayArgs: relayArgs, NoSample: *noSample, Logger: log,
	})
	if err != nil {
		if errors.Is(statErr, os.ErrNotExist) {
			// Leave no half-made directory behind: the next run would
			// take it for a used one and skip the sample mail.
			_ = os.RemoveAll(*dir)
		}
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return fmt.Errorf("dev: %w", devStartError(err))
	}
	printDevBanner(stdout, st)
	if st.Sample != nil {
		printSample(ctx, stdout, st)
	}
	fmt.Fprintln(stdout, "\nRunning; Ctrl-C stops.")
	select {
	case <-st.Done():
		return st.Wait()
	case <-ctx.Done():
	}
	before := st.Relay.Spool.Stats()
	fmt.Fprintf(stdout, "\nstopping: draining the relay (%d notifications spooled)...\n", before.Messages)
	err = st.Wait()
	after := st.Relay.Spool.Stats()
	fmt.Fprintf(stdout, "stopped: drained %d, %d left in %s for the next start, %d dead letters kept\n",
		max(before.Messages-after.Messages, 0), after.Messages, display(st.SpoolDir), after.DeadLetters)
	return err
}

// devStartError words a busy port for people.
func devStartError(err error) error {
	if errors.Is(err, syscall.EADDRINUSE) {
		return fmt.Errorf("%w (is another 'mailrelay dev' or relay running? find it with 'lsof -i'; or pick other ports: see 'mailrelay dev --help')", err)
	}
	return err
}

// selfCommand is how the user can run this binary again from the working
// directory: bin/mailrelay after 'make build', "go run ./cmd/mailrelay"
// under go run, else "mailrelay" (on PATH) or the absolute path.
func selfCommand() string {
	exe, err := os.Executable()
	if err != nil {
		return "mailrelay"
	}
	if strings.Contains(exe, string(filepath.Separator)+"go-build") {
		return "go run ./cmd/mailrelay"
	}
	if p, err := exec.LookPath("mailrelay"); err == nil {
		if same, _ := filepath.EvalSymlinks(p); same == exe || p == exe {
			return "mailrelay"
		}
	}
	if d := display(exe); !filepath.IsAbs(d) && !strings.Contains(d, string(filepath.Separator)) {
		return "./" + d
	} else {
		return d
	}
}

// printDevBanner prints where to look.
func printDevBanner(w io.Writer, st *devstack.Stack) {
	info := st.Info()
	controlFlag := ""
	if st.ControlAddr != devstack.DefaultControlAddr {
		controlFlag = " --control " + st.ControlAddr
	}
	admin := "(disabled)"
	if info.Admin != "" {
		admin = info.Admin + "/deadletters   (" + selfCommand() + " deadletter list --admin " + st.Relay.AdminAddr + ")"
	}
	fmt.Fprintf(w, `mailrelay dev: the relay with stand-ins for S3, SES and SNS; nothing leaves this machine.

  send a mail   %s dev send%s FILE.eml
                or: curl --data-binary @FILE.eml 'http://%s/send?to=shop@relay.example.com'
  aliases       %s
  outbox        %s   (forwarded mail, one .eml per SES send)
  inbound       %s   (mail as received)
  relay /sns    %s
  health        %s/livez   %s/readyz
  metrics       %s/metrics
  admin         %s
  fake S3       %s
  fake SES      %s
`, selfCommand(), controlFlag, st.ControlAddr, display(info.AliasesFile), display(info.OutboxDir), display(info.InboundDir),
		info.Inbound, info.Health, info.Health, info.Health, admin, info.S3, info.SES)
}

// printSample waits (bounded) for the bundled sample and says where it went.
func printSample(ctx context.Context, w io.Writer, st *devstack.Stack) {
	res := *st.Sample
	fmt.Fprintln(w)
	if res.SNSStatus != 200 {
		fmt.Fprintf(w, "sample: the relay answered %d: %s\n", res.SNSStatus, res.Answer)
		return
	}
	fmt.Fprintf(w, "sample: %s to %s acknowledged (SES message id %s)\n", devstack.SampleName, strings.Join(res.Recipients, ", "), res.SESMessageID)
	wctx, cancel := context.WithTimeout(ctx, sendWait)
	defer cancel()
	s, err := st.WaitFinished(wctx, res.SESMessageID)
	printOutcome(w, "sample", s, err, st.Relay.AdminAddr)
}

// sendWait bounds the wait for a mail to be finished.
const sendWait = 10 * time.Second

// printOutcome says where a mail went; it reports whether it finished.
func printOutcome(w io.Writer, name string, s devstack.Status, err error, adminAddr string) bool {
	switch {
	case err != nil && !errors.Is(err, context.DeadlineExceeded):
		fmt.Fprintf(w, "%s: %v\n", name, err)
		return false
	case s.State == devstack.StateForwarded:
		for _, c := range s.Copies {
			fmt.Fprintf(w, "%s: forwarded as %s to %s: %s\n", name, c.From, strings.Join(c.To, ", "), display(c.Path))
		}
	case s.State == devstack.StateDropped:
		fmt.Fprintf(w, "%s: dropped: no recipient is an alias (counted in mailrelay_messages_total{outcome=\"dropped\"})\n", name)
	case s.State == devstack.StateDeadLettered:
		fmt.Fprintf(w, "%s: dead-lettered (kept, not lost): %s\n", name, s.Reason)
		if adminAddr != "" {
			fmt.Fprintf(w, "%s: see it with: %s deadletter list --admin %s\n", name, selfCommand(), adminAddr)
		}
	case s.State == devstack.StateRefused:
		fmt.Fprintf(w, "%s: refused by the relay: nothing was spooled\n", name)
		return false
	default:
		fmt.Fprintf(w, "%s: still pending after %s (the relay retries; see its log)\n", name, sendWait)
		return false
	}
	return true
}

// devSend implements `mailrelay dev send`.
func devSend(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("dev send", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), devUsage[:strings.Index(devUsage, "\n\n")+1]+"\nflags of 'mailrelay dev send':\n")
		fs.PrintDefaults()
	}
	control := fs.String("control", devstack.DefaultControlAddr, "control server of the running playground")
	var to []string
	fs.Func("to", "recipient, repeatable or comma-separated (default: the mail's To/Cc on a relay domain)", func(s string) error {
		to = append(to, config.SplitList(s)...)
		return nil
	})
	if err := config.ParseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return &config.UsageError{Err: errors.New("dev send: give at least one FILE.eml (- reads stdin)")}
	}
	c := &devstack.Client{BaseURL: "http://" + *control}
	adminAddr := ""
	if info, err := c.Info(ctx); err != nil {
		return err
	} else if info.Admin != "" {
		adminAddr = strings.TrimPrefix(info.Admin, "http://")
	}
	failed := 0
	for _, name := range fs.Args() {
		var raw []byte
		var err error
		if name == "-" {
			raw, err = io.ReadAll(io.LimitReader(os.Stdin, devstack.MaxMailBytes+1))
		} else {
			raw, err = os.ReadFile(name)
		}
		if err != nil {
			fmt.Fprintf(stdout, "%s: %v\n", name, err)
			failed++
			continue
		}
		res, err := c.Send(ctx, raw, to)
		if err != nil {
			fmt.Fprintf(stdout, "%s: not sent: %v\n", name, err)
			failed++
			continue
		}
		if res.SNSStatus != 200 {
			fmt.Fprintf(stdout, "%s: the relay answered %d (not stored; SNS would retry a 5xx): %s\n", name, res.SNSStatus, res.Answer)
			failed++
			continue
		}
		fmt.Fprintf(stdout, "%s: acknowledged by the relay (200) for %s; SES message id %s\n", name, strings.Join(res.Recipients, ", "), res.SESMessageID)
		wctx, cancel := context.WithTimeout(ctx, sendWait)
		s, err := c.WaitFinished(wctx, res.SESMessageID)
		cancel()
		if !printOutcome(stdout, name, s, err, adminAddr) {
			failed++
		}
	}
	if failed > 0 {
		return fmt.Errorf("dev send: %d of %d mails not acknowledged or not finished", failed, fs.NArg())
	}
	return nil
}

// display shortens path to be relative to the working directory when it
// is below it.
func display(path string) string {
	wd, err := os.Getwd()
	if err != nil {
		return path
	}
	rel, err := filepath.Rel(wd, path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return path
	}
	return rel
}
