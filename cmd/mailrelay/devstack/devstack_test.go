package devstack

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/emersion/go-message/mail"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/inbound/admin"
)

// wait bounds every wait in these tests.
const wait = 20 * time.Second

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// start runs a playground in dir on free 127.0.0.1 ports, closed when the
// test ends.
func start(t *testing.T, dir string, mutate func(*Options)) *Stack {
	t.Helper()
	opts := Options{
		Dir:         dir,
		ControlAddr: "127.0.0.1:0", Listen: "127.0.0.1:0", HealthListen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	if mutate != nil {
		mutate(&opts)
	}
	// The context governs the playground's life: Close ends it.
	st, err := Start(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("relay stopped with %v", err)
		}
	})
	return st
}

func waitDone(t *testing.T, c interface {
	WaitFinished(context.Context, string) (Status, error)
}, sesID string) Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	s, err := c.WaitFinished(ctx, sesID)
	if err != nil {
		t.Fatalf("waiting for %s: %v (last status %+v)", sesID, err, s)
	}
	return s
}

// forwarded parses an outbox file and returns its header and raw bytes.
func forwarded(t *testing.T, path string) (mail.Header, []byte) {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	r, err := mail.CreateReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("outbox file %s: %v", path, err)
	}
	return r.Header, raw
}

// bodyOf returns what follows the header block.
func bodyOf(t *testing.T, raw []byte) []byte {
	t.Helper()
	_, body, ok := splitMail(raw)
	if !ok {
		t.Fatalf("no header/body separator in %q", raw)
	}
	return body
}

// checkCopy asserts a forwarded copy: From is the alias with the original
// sender's name, Reply-To the original sender, the body byte-identical.
func checkCopy(t *testing.T, path, alias, senderName, senderAddr string, src []byte) {
	t.Helper()
	h, raw := forwarded(t, path)
	from, err := h.AddressList("From")
	if err != nil || len(from) != 1 || from[0].Address != alias || !strings.Contains(from[0].Name, senderName) {
		t.Errorf("%s: From = %v (%v), want %s showing %q", path, from, err, alias, senderName)
	}
	replyTo, err := h.AddressList("Reply-To")
	if err != nil || len(replyTo) != 1 || replyTo[0].Address != senderAddr {
		t.Errorf("%s: Reply-To = %v (%v), want %s", path, replyTo, err, senderAddr)
	}
	for _, k := range []string{"Return-Path", "DKIM-Signature"} {
		if h.Has(k) {
			t.Errorf("%s: %s kept", path, k)
		}
	}
	if !bytes.Equal(bodyOf(t, raw), bodyOf(t, src)) {
		t.Errorf("%s: body changed in forwarding", path)
	}
}

func TestFreshDirForwardsSample(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "dev")
	st := start(t, dir, nil)

	aliasData, err := os.ReadFile(filepath.Join(dir, "aliases.yaml"))
	if err != nil || string(aliasData) != DefaultAliases {
		t.Errorf("aliases.yaml = %q (%v), want the default", aliasData, err)
	}
	if st.Sample == nil {
		t.Fatal("no sample pushed on a fresh dir")
	}
	if st.Sample.SNSStatus != http.StatusOK || !slices.Equal(st.Sample.Recipients, []string{"shop@relay.example.com"}) {
		t.Fatalf("sample delivery: %+v", st.Sample)
	}
	s := waitDone(t, st, st.Sample.SESMessageID)
	if s.State != StateForwarded || len(s.Copies) != 1 {
		t.Fatalf("sample status %+v, want one forwarded copy", s)
	}
	c := s.Copies[0]
	if filepath.Dir(c.Path) != filepath.Join(dir, "outbox") || c.From != "shop@relay.example.com" || !slices.Equal(c.To, []string{"you@example.org"}) {
		t.Errorf("sample copy %+v", c)
	}
	checkCopy(t, c.Path, "shop@relay.example.com", "Dora Sender", "dora@example.net", Sample())
	if _, err := os.Stat(filepath.Join(dir, "inbound", st.Sample.SESMessageID+".eml")); err != nil {
		t.Errorf("inbound copy of the sample: %v", err)
	}
}

const multipartMail = "From: Erin Example <erin@example.net>\r\n" +
	"To: shop+orders@relay.example.com, friend@example.org\r\n" +
	"Cc: Sales <sales@relay.example.com>\r\n" +
	"Subject: Invoice\r\n" +
	"Date: Tue, 24 Nov 2026 09:30:00 +0100\r\n" +
	"Message-ID: <invoice-1@example.net>\r\n" +
	"DKIM-Signature: v=1; a=rsa-sha256; d=example.net; s=s; b=abc\r\n" +
	"MIME-Version: 1.0\r\n" +
	"Content-Type: multipart/mixed; boundary=\"outer\"\r\n" +
	"\r\n" +
	"--outer\r\n" +
	"Content-Type: multipart/alternative; boundary=\"inner\"\r\n" +
	"\r\n" +
	"--inner\r\n" +
	"Content-Type: text/plain; charset=ISO-8859-1\r\n" +
	"Content-Transfer-Encoding: quoted-printable\r\n" +
	"\r\n" +
	"Gr=FC=DFe, see the invoice.  \r\n" +
	"--inner\r\n" +
	"Content-Type: text/html; charset=UTF-8\r\n" +
	"\r\n" +
	"<p>Grüße, see the invoice.</p>\r\n" +
	"--inner--\r\n" +
	"--outer\r\n" +
	"Content-Type: application/pdf; name=\"invoice.pdf\"\r\n" +
	"Content-Disposition: attachment; filename=\"invoice.pdf\"\r\n" +
	"Content-Transfer-Encoding: base64\r\n" +
	"\r\n" +
	"JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSL0ZpbHRlci9GbGF0ZURl\r\n" +
	"Y29kZT4+CnN0cmVhbQp4nDPQM1Qo5ypUMFAw0DMwslAwtTTVMzI2UTC0NNEzUShKTSxKTVEoSi0u\r\n" +
	"--outer--\r\n"

// TestMultipartThroughControl pushes a multipart mail through the control
// server: it goes to each relay-domain recipient's alias, rewritten, with
// the body byte for byte.
func TestMultipartThroughControl(t *testing.T) {
	st := start(t, t.TempDir(), func(o *Options) { o.NoSample = true })
	if st.Sample != nil {
		t.Fatal("sample pushed despite NoSample")
	}
	c := &Client{BaseURL: "http://" + st.ControlAddr}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := c.Send(ctx, []byte(multipartMail), nil)
	if err != nil {
		t.Fatal(err)
	}
	// friend@example.org is not on a relay domain: not a recipient.
	if res.SNSStatus != 200 || !slices.Equal(res.Recipients, []string{"shop+orders@relay.example.com", "sales@relay.example.com"}) {
		t.Fatalf("send result %+v", res)
	}
	s := waitDone(t, c, res.SESMessageID)
	if s.State != StateForwarded || len(s.Copies) != 2 || len(s.Outbox) != 2 {
		t.Fatalf("status %+v, want two forwarded copies", s)
	}
	byAlias := map[string]Copy{}
	for _, cp := range s.Copies {
		byAlias[cp.From] = cp
	}
	shop, sales := byAlias["shop@relay.example.com"], byAlias["sales@relay.example.com"]
	if !slices.Equal(shop.To, []string{"you@example.org"}) || !slices.Equal(sales.To, []string{"ops@example.org"}) {
		t.Fatalf("copies %+v, want shop to you@ and sales (catch-all) to ops@", s.Copies)
	}
	checkCopy(t, shop.Path, "shop@relay.example.com", "Erin Example", "erin@example.net", []byte(multipartMail))
	checkCopy(t, sales.Path, "sales@relay.example.com", "Erin Example", "erin@example.net", []byte(multipartMail))
	h, _ := forwarded(t, shop.Path)
	if subj, _ := h.Subject(); subj != "Invoice" || h.Get("To") != "shop+orders@relay.example.com, friend@example.org" {
		t.Errorf("kept headers changed: Subject %q To %q", subj, h.Get("To"))
	}
	if st.env.S3.Has(Bucket, res.ObjectKey) {
		t.Error("S3 object not deleted after forwarding")
	}

	// No relay-domain recipient and none given: refused before anything is stored.
	_, err = c.Send(ctx, []byte("From: a@example.net\r\nTo: b@example.org\r\n\r\nx\r\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "no recipient") {
		t.Errorf("send without recipient: %v", err)
	}
	if _, err := st.Send(ctx, []byte("no header"), nil); !errors.Is(err, ErrNoRecipient) {
		t.Errorf("Stack.Send without recipient: %v", err)
	}
	if _, err := c.Status(ctx, "nope"); err == nil || !strings.Contains(err.Error(), "404") {
		t.Errorf("status of an unknown id: %v", err)
	}
	info, err := c.Info(ctx)
	if err != nil || info.OutboxDir != st.OutboxDir || info.Inbound != "http://"+st.Relay.InboundAddr+"/sns" {
		t.Errorf("info %+v (%v)", info, err)
	}
}

// TestGarbageDeadLettered: a mail without a header separator is
// acknowledged (SNS must not retry it), then dead-lettered with a clear
// reason, visible through the admin API; its bytes stay in the bucket.
func TestGarbageDeadLettered(t *testing.T) {
	st := start(t, t.TempDir(), func(o *Options) { o.NoSample = true })
	c := &Client{BaseURL: "http://" + st.ControlAddr}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	garbage := []byte("this is not a mail: no header separator, just one line")
	res, err := c.Send(ctx, garbage, []string{"shop@relay.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	if res.SNSStatus != 200 {
		t.Fatalf("garbage answered %d (%s), want 200: acknowledged, then dealt with", res.SNSStatus, res.Answer)
	}
	s := waitDone(t, c, res.SESMessageID)
	if s.State != StateDeadLettered || !strings.HasPrefix(s.Reason, "malformed_mail") || len(s.Outbox) != 0 {
		t.Fatalf("status %+v, want dead-lettered for malformed_mail", s)
	}
	items, err := (&admin.Client{BaseURL: "http://" + st.Relay.AdminAddr}).List(ctx, 100)
	if err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].ID != res.SNSMessageID || !strings.Contains(items[0].Reason, "no header/body separator") {
		t.Fatalf("admin API lists %+v, want the garbage with its reason", items)
	}
	kept, err := st.env.S3.Get(Bucket, res.ObjectKey)
	if err != nil || !bytes.Equal(kept, garbage) {
		t.Errorf("the mail's bytes are not kept in the bucket: %q (%v)", kept, err)
	}
	if n := len(st.env.SES.Sent()); n != 0 {
		t.Errorf("garbage produced %d sends", n)
	}
}

const strictAliases = `domains: [relay.example.com]
aliases:
  - address: shop@relay.example.com
    forward_to: [you@example.org]
`

// TestUnknownAliasDropped: without a catch-all, mail for an unknown relay
// address is finished without a copy and counted as dropped.
func TestUnknownAliasDropped(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "aliases.yaml"), []byte(strictAliases), 0o600); err != nil {
		t.Fatal(err)
	}
	st := start(t, dir, func(o *Options) { o.NoSample = true })
	if data, _ := os.ReadFile(st.AliasesFile); string(data) != strictAliases {
		t.Fatal("an existing alias file was overwritten")
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	res, err := st.Send(ctx, []byte("From: a@example.net\r\nTo: nobody@relay.example.com\r\nSubject: hi\r\n\r\nhello\r\n"), nil)
	if err != nil || res.SNSStatus != 200 {
		t.Fatalf("send: %+v %v", res, err)
	}
	s := waitDone(t, st, res.SESMessageID)
	if s.State != StateDropped || len(s.Outbox) != 0 {
		t.Fatalf("status %+v, want dropped", s)
	}
	waitMetric(t, st, `mailrelay_messages_total{outcome="dropped",reason="unknown_alias"} 1`+"\n")
	if n := len(st.env.SES.Sent()); n != 0 {
		t.Errorf("dropped mail produced %d sends", n)
	}
}

// waitMetric waits until the relay's /metrics contains want.
func waitMetric(t *testing.T, st *Stack, want string) {
	t.Helper()
	deadline := time.Now().Add(wait)
	for {
		m := scrape(t, "http://"+st.Relay.HealthAddr+"/metrics")
		if strings.Contains(m, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("metrics lack %q:\n%s", want, grepLines(m, "mailrelay_messages_total"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func scrape(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

// TestRestartResumes: a mail still spooled when the playground stops is
// forwarded after the next start, from the kept inbound copy; the second
// start pushes no sample and keeps the alias file.
func TestRestartResumes(t *testing.T) {
	dir := t.TempDir()
	slowRetry := func(o *Options) {
		o.NoSample = true
		o.RelayArgs = []string{"--retry-min", "1s", "--retry-max", "1s"}
	}
	st := start(t, dir, slowRetry)
	errs := make([]error, 100)
	for i := range errs {
		errs[i] = fakes.ErrThrottling
	}
	st.env.SES.Fail(errs...)
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	raw := []byte("From: a@example.net\r\nTo: shop@relay.example.com\r\nMessage-ID: <resume@example.net>\r\n\r\nstill here\r\n")
	res, err := st.Send(ctx, raw, nil)
	if err != nil || res.SNSStatus != 200 {
		t.Fatalf("send: %+v %v", res, err)
	}
	// SES refused at least one attempt: the mail waits in the spool.
	waitMetric(t, st, `mailrelay_messages_total{outcome="retried"`)
	if s, err := st.Status(res.SESMessageID); err != nil || s.State != StatePending {
		t.Fatalf("before restart: %+v (%v), want pending", s, err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Status(res.SESMessageID); !errors.Is(err, ErrStopped) {
		t.Errorf("status of a stopped playground: %v", err)
	}

	st2 := start(t, dir, func(o *Options) { o.RelayArgs = []string{"--retry-min", "50ms", "--retry-max", "100ms"} })
	if st2.Sample != nil {
		t.Error("sample pushed again on an existing dir")
	}
	deadline := time.Now().Add(wait)
	for len(st2.env.SES.Sent()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the spooled mail was not forwarded after the restart")
		}
		time.Sleep(20 * time.Millisecond)
	}
	sent := st2.env.SES.Sent()[0]
	if !bytes.Equal(bodyOf(t, sent.Raw), []byte("still here\r\n")) {
		t.Errorf("forwarded %q", sent.Raw)
	}
	if _, err := os.Stat(filepath.Join(st2.OutboxDir, sent.ID+".eml")); err != nil {
		t.Errorf("outbox file: %v", err)
	}
}

func TestStartRefusesNonLoopbackControl(t *testing.T) {
	_, err := Start(context.Background(), Options{Dir: t.TempDir(), ControlAddr: "0.0.0.0:0"})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Fatalf("Start with a public control address: %v", err)
	}
}

func TestStartCleansUpOnError(t *testing.T) {
	// A bad relay flag fails after the stand-ins started; they must be
	// closed: their ports are free again.
	s3Addr, sesAddr := freeAddr(t), freeAddr(t)
	_, err := Start(context.Background(), Options{Dir: t.TempDir(), ControlAddr: "127.0.0.1:0",
		Listen: "127.0.0.1:0", HealthListen: "127.0.0.1:0", AdminListen: "127.0.0.1:0",
		S3Addr: s3Addr, SESAddr: sesAddr, RelayArgs: []string{"--workers", "0"}})
	if err == nil || !strings.Contains(err.Error(), "workers") {
		t.Fatalf("Start with --workers 0: %v", err)
	}
	for _, addr := range []string{s3Addr, sesAddr} {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Errorf("%s still in use after a failed Start: %v", addr, err)
			continue
		}
		ln.Close()
	}
}

// freeAddr returns a 127.0.0.1 address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
