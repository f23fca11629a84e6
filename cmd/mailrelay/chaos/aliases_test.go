package chaos

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/mail"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

// TestAliasesAndRepliesThroughBinary drives the real binary the way an
// operator and a user would: an alias created with the CLI receives mail;
// disabled, it does not (dropped alias_disabled); enabled again, it does.
// The admin API refuses the CLI without the token (401). The destination's
// reply to the forwarded mail's Reply-To reaches the original sender from
// the alias with the destination's address nowhere in it; a stranger's mail
// to that reply address and one to a tampered address are dropped.
func TestAliasesAndRepliesThroughBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary; skipped with -short")
	}
	dir := t.TempDir()
	st := newStage(t, dir, fakes.SESOptions{})
	bin, signer, prefix, s3, ses, aliasFile, home := st.bin, st.signer, st.certPrefix, st.s3, st.ses, st.aliasFile, st.home
	adminAddr := freeAddr(t)
	r := &relayProc{t: t, bin: bin, logPath: filepath.Join(dir, "relay.log"), inbound: freeAddr(t), health: freeAddr(t)}
	r.env = relayEnv(home, r, s3.URL(), ses.URL(), prefix, filepath.Join(dir, "spool"), aliasFile,
		"RELAY_ADMIN_LISTEN="+adminAddr, "RELAY_ADMIN_TOKEN="+adminToken,
		"RELAY_REPLY_KEY="+strings.Repeat("r", 32), "RELAY_LOG_LEVEL=info")
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.signal(syscall.SIGKILL, 5*time.Second) }()
	r.waitReady()

	// cli runs the binary's CLI against the relay's admin API.
	cli := func(token string, args ...string) (string, string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"HOME=" + home, "RELAY_ADMIN_URL=http://" + adminAddr}
		if token != "" {
			cmd.Env = append(cmd.Env, "RELAY_ADMIN_TOKEN="+token)
		}
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		err := cmd.Run()
		return stdout.String(), stderr.String(), err
	}
	var alias struct {
		Address   string   `json:"address"`
		ForwardTo []string `json:"forward_to"`
		State     string   `json:"state"`
	}
	out, errOut, err := cli(adminToken, "alias", "create", "--to", "dana@example.org", "--description", "shop signup")
	if err != nil {
		t.Fatalf("alias create: %v\n%s", err, errOut)
	}
	if err := json.Unmarshal([]byte(out), &alias); err != nil || alias.State != "enabled" ||
		!strings.HasSuffix(alias.Address, "@relay.example.com") || len(alias.ForwardTo) != 1 {
		t.Fatalf("alias create printed %q (%v)", out, err)
	}
	t.Logf("created %s", alias.Address)

	// Without the token: the CLI says what it needs, the API answers 401.
	if _, errOut, err := cli("", "alias", "list"); err == nil || !strings.Contains(errOut, "RELAY_ADMIN_TOKEN") {
		t.Errorf("alias list without the token: err %v, stderr %q", err, errOut)
	}
	if resp, err := http.Get("http://" + adminAddr + "/aliases"); err != nil || resp.StatusCode != 401 {
		t.Errorf("GET /aliases without the token: %v %v", resp, err)
	} else {
		resp.Body.Close()
	}

	seq := 0
	deliver := func(source, rcpt string, raw []byte) {
		t.Helper()
		seq++
		key := fmt.Sprintf("inbound/mail-%d", seq)
		if err := s3.Put(bucket, key, raw); err != nil {
			t.Fatal(err)
		}
		n := sesnotify.Received(fmt.Sprintf("mail-%d", seq), time.Now(), []string{rcpt}, sesnotify.S3Action(topic, bucket, key)).Pass()
		n.Mail.Source = source
		body := signer.Notification(topic, fmt.Sprintf("sns-%d", seq), "Amazon SES Email Receipt Notification", string(n.JSON()), "2")
		resp, err := http.Post("http://"+r.inbound+"/sns", "text/plain; charset=UTF-8", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("delivery %d: %d", seq, resp.StatusCode)
		}
	}
	original := func(subject string) []byte {
		return []byte("From: Newsletter <news@sender.example>\r\nTo: " + alias.Address + "\r\nSubject: " + subject +
			"\r\nMessage-ID: <" + strings.ReplaceAll(subject, " ", "-") + "@sender.example>\r\n\r\nHello!\r\n")
	}
	waitSent := func(n int) []fakes.Sent {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for len(ses.Sent()) < n {
			if time.Now().After(deadline) {
				t.Fatalf("%d sends, want %d; log:\n%s", len(ses.Sent()), n, r.logTail())
			}
			time.Sleep(20 * time.Millisecond)
		}
		return ses.Sent()
	}
	waitCount := func(outcome, reason string, want float64) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for messages(t, r, outcome, reason) < want {
			if time.Now().After(deadline) {
				t.Fatalf("mailrelay_messages_total{%s,%s} not %v; log:\n%s", outcome, reason, want, r.logTail())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	deliver("news@sender.example", alias.Address, original("first"))
	fwd := waitSent(1)[0]
	if len(fwd.Destinations) != 1 || fwd.Destinations[0] != "dana@example.org" {
		t.Fatalf("forwarded to %v", fwd.Destinations)
	}

	if _, errOut, err := cli(adminToken, "alias", "disable", alias.Address); err != nil {
		t.Fatalf("alias disable: %v\n%s", err, errOut)
	}
	deliver("news@sender.example", alias.Address, original("while disabled"))
	waitCount("dropped", "alias_disabled", 1)
	if out, _, err := cli(adminToken, "alias", "enable", alias.Address); err != nil || !strings.Contains(out, `"enabled"`) {
		t.Fatalf("alias enable: %v %q", err, out)
	}
	deliver("news@sender.example", alias.Address, original("enabled again"))
	waitSent(2)

	// The reply through the relay.
	m, err := mail.ReadMessage(bytes.NewReader(fwd.Raw))
	if err != nil {
		t.Fatal(err)
	}
	rt, err := mail.ParseAddress(m.Header.Get("Reply-To"))
	if err != nil || !strings.HasSuffix(rt.Address, "@relay.example.com") {
		t.Fatalf("Reply-To %q is no reply address (%v)", m.Header.Get("Reply-To"), err)
	}
	answer := []byte("From: Dana <dana@example.org>\r\nTo: " + rt.Address + "\r\nCc: Dana <dana@example.org>\r\nSubject: Re: first\r\n" +
		"In-Reply-To: <first@sender.example>\r\n\r\nYes please.\r\n\r\nDana <dana@example.org> wrote:\r\n")
	deliver("dana@example.org", rt.Address, answer)
	reply := waitSent(3)[2]
	if reply.Source != alias.Address || len(reply.Destinations) != 1 || reply.Destinations[0] != "news@sender.example" {
		t.Errorf("reply sent from %q to %v, want from %s to news@sender.example", reply.Source, reply.Destinations, alias.Address)
	}
	if bytes.Contains(bytes.ToLower(reply.Raw), []byte("dana@example.org")) {
		t.Errorf("the destination's address went out in the reply:\n%s", reply.Raw)
	}
	// A stranger, and a tampered reply address.
	deliver("mallory@example.net", rt.Address, answer)
	local, domain, _ := strings.Cut(rt.Address, "@")
	flip := map[byte]byte{'a': 'b'}[local[len(local)-1]]
	if flip == 0 {
		flip = 'a'
	}
	deliver("dana@example.org", local[:len(local)-1]+string(flip)+"@"+domain, answer)
	waitCount("dropped", "reply_not_allowed", 1)
	waitCount("dropped", "reply_invalid", 1)
	if n := len(ses.Sent()); n != 3 {
		t.Errorf("%d sends, want 3 (a stranger's or a tampered reply went out)", n)
	}
}

// messages reads mailrelay_messages_total{outcome,reason} from /metrics (0
// when the series does not exist yet).
func messages(t *testing.T, r *relayProc, outcome, reason string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + r.health + "/metrics")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	want := fmt.Sprintf(`mailrelay_messages_total{outcome=%q,reason=%q} `, outcome, reason)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), want); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}
