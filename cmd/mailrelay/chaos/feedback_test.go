package chaos

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

const feedbackAliasesYAML = `domains: [relay.example.com]
aliases:
  - address: shop@relay.example.com
    forward_to: [alice@example.org]
  - address: news@relay.example.com
    forward_to: [bob@example.org]
`

// sesBounce is an SES Bounce notification (the shape AWS documents) for a
// mail sent as alias to rcpt.
func sesBounce(kind, alias, rcpt, id string) string {
	return fmt.Sprintf(`{"notificationType":"Bounce","bounce":{"bounceType":%q,"bounceSubType":"General","bouncedRecipients":[{"emailAddress":%q,"action":"failed","status":"5.1.1","diagnosticCode":"smtp; 550 5.1.1 user unknown"}],"timestamp":"2026-11-23T12:00:00.000Z","feedbackId":%q,"reportingMTA":"dsn; a8-70.smtp-out.amazonses.com"},
"mail":{"timestamp":"2026-11-23T11:59:59.000Z","messageId":"sent-%s","source":%q,"sourceArn":"arn:aws:ses:us-east-1:123456789012:identity/relay.example.com","destination":[%q],"commonHeaders":{"from":["Dora via relay <%s>"],"to":[%q],"subject":"hello"}}}`,
		kind, rcpt, id, id, alias, rcpt, alias, rcpt)
}

// sesComplaint is an SES Complaint notification about a mail from alias.
func sesComplaint(alias, rcpt, id string) string {
	return fmt.Sprintf(`{"notificationType":"Complaint","complaint":{"complainedRecipients":[{"emailAddress":%q}],"timestamp":"2026-11-23T12:00:00.000Z","feedbackId":%q,"complaintFeedbackType":"abuse"},
"mail":{"timestamp":"2026-11-23T11:59:59.000Z","messageId":"sent-%s","source":%q,"destination":[%q],"commonHeaders":{"from":["Dora via relay <%s>"],"to":[%q],"subject":"hello"}}}`,
		rcpt, id, id, alias, rcpt, alias, rcpt)
}

// TestFeedbackEndToEnd runs the real binary with the SES stand-in and signed
// SES feedback on /sns: a hard bounce pauses a destination (its next mail is
// dead-lettered destination_paused, not sent), a soft bounce's short pause
// ends and mail flows again, three complaints disable a managed alias (its
// mail dropped alias_disabled, `alias show` says disabled, `alias enable`
// lifts it), a bounce for an unknown address changes nothing, a forged
// feedback notification is refused 403; every send names the
// configuration set with the alias tag.
func TestFeedbackEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildRelay(t, dir)
	signer, err := snstest.NewSigner()
	if err != nil {
		t.Fatal(err)
	}
	prefix, closeCert := signer.Serve()
	defer closeCert()
	s3, err := fakes.NewS3()
	if err != nil {
		t.Fatal(err)
	}
	defer s3.Close()
	ses := fakes.NewSES(fakes.SESOptions{})
	if err := ses.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer ses.Close()
	aliasFile := filepath.Join(dir, "aliases.yaml")
	if err := os.WriteFile(aliasFile, []byte(feedbackAliasesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	adminAddr := freeAddr(t)
	r := &relayProc{t: t, bin: bin, logPath: filepath.Join(dir, "relay.log"), inbound: freeAddr(t), health: freeAddr(t)}
	r.env = relayEnv(home, r, s3.URL(), ses.URL(), prefix, filepath.Join(dir, "spool"), aliasFile,
		"RELAY_ADMIN_LISTEN="+adminAddr, "RELAY_ADMIN_TOKEN="+adminToken, "RELAY_LOG_LEVEL=info",
		"RELAY_BOUNCE_PAUSE_SOFT=2s", "RELAY_SES_CONFIGURATION_SET=mailrelay-feedback")
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.signal(syscall.SIGKILL, 5*time.Second) }()
	r.waitReady()

	client := &http.Client{Timeout: 10 * time.Second}
	post := func(body []byte) int {
		t.Helper()
		resp, err := client.Post("http://"+r.inbound+"/sns", "text/plain; charset=UTF-8", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	seq := 0
	feedback := func(message string) {
		t.Helper()
		seq++
		if code := post(signer.Notification(topic, fmt.Sprintf("fb-%d", seq), "", message, "2")); code != 200 {
			t.Fatalf("feedback %d: /sns answered %d", seq, code)
		}
	}
	mail := func(rcpt string) {
		t.Helper()
		seq++
		key := fmt.Sprintf("inbound/m%d", seq)
		if err := s3.Put(bucket, key, mailFor(seq)); err != nil {
			t.Fatal(err)
		}
		n := sesnotify.Received(fmt.Sprintf("in-%d", seq), time.Now(), []string{rcpt}, sesnotify.S3Action(topic, bucket, key)).Pass()
		n.Mail.Source = "dora@example.net"
		if code := post(signer.Notification(topic, fmt.Sprintf("mail-%d", seq), "", string(n.JSON()), "2")); code != 200 {
			t.Fatalf("mail %d: /sns answered %d", seq, code)
		}
	}
	cli := func(args ...string) (int, string) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"HOME=" + home, "RELAY_ADMIN_URL=http://" + adminAddr, "RELAY_ADMIN_TOKEN=" + adminToken}
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	// eventually polls cond (at most 15 s), failing with what.
	eventually := func(what string, cond func() bool) {
		t.Helper()
		for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); time.Sleep(25 * time.Millisecond) {
			if cond() {
				return
			}
		}
		t.Fatalf("%s: not within 15 s; log:\n%s", what, r.logTail())
	}
	metric := func(series string) float64 {
		v, _ := r.gauge(series)
		return v
	}
	deadReasons := func() map[string]int {
		code, out := cli("deadletter", "list")
		m := map[string]int{}
		if code != 0 {
			return m
		}
		for _, reason := range []string{"destination_paused", "alias_disabled", "daily_cap"} {
			m[reason] = strings.Count(out, reason)
		}
		return m
	}
	showDest := func(addr string) map[string]any {
		code, out := cli("destination", "show", addr)
		var d map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &d) != nil {
			t.Fatalf("destination show %s: exit %d: %s", addr, code, out)
		}
		return d
	}

	if code, out := cli("alias", "create", "--to", "carol@example.org", "--address", "club@relay.example.com"); code != 0 {
		t.Fatalf("alias create: exit %d: %s", code, out)
	}

	// Mail flows; every send names the configuration set and the alias.
	mail("shop@relay.example.com")
	waitSent(t, ses, 1)
	if s := ses.Sent()[0]; s.ConfigurationSet != "mailrelay-feedback" || s.Tags["alias"] != "shop_relay_example_com" {
		t.Errorf("send without the configuration set or alias tag: %q %v", s.ConfigurationSet, s.Tags)
	}

	// A bounce for an address that is no destination of the alias changes
	// nothing.
	feedback(sesBounce("Permanent", "shop@relay.example.com", "stranger@example.org", "b0"))
	eventually("bounce for an unknown address handled", func() bool {
		return metric(`mailrelay_feedback_total{action="ignored",type="Bounce"}`) == 1
	})
	if code, out := cli("destination", "list"); code != 0 || strings.TrimSpace(out) != "[]" {
		t.Fatalf("after a bounce for an unknown address: exit %d: %s", code, out)
	}
	mail("shop@relay.example.com")
	waitSent(t, ses, 2)

	// A hard bounce pauses alice: the next mail for her is dead-lettered,
	// not sent.
	feedback(sesBounce("Permanent", "shop@relay.example.com", "alice@example.org", "b1"))
	eventually("hard bounce pauses alice", func() bool { return showDest("alice@example.org")["paused"] == true })
	if d := showDest("alice@example.org"); d["bounce_type"] != "Permanent" {
		t.Errorf("alice: %v", d)
	}
	mail("shop@relay.example.com")
	eventually("mail for a paused destination dead-lettered", func() bool { return deadReasons()["destination_paused"] == 1 })
	waitSent(t, ses, 2)

	// A soft bounce pauses bob for 2 s: held, then mail flows again.
	feedback(sesBounce("Transient", "news@relay.example.com", "bob@example.org", "b2"))
	eventually("soft bounce pauses bob", func() bool { return showDest("bob@example.org")["paused"] == true })
	mail("news@relay.example.com")
	eventually("mail for bob held", func() bool { return deadReasons()["destination_paused"] == 2 })
	eventually("bob's soft pause ends", func() bool { return showDest("bob@example.org")["paused"] == false })
	mail("news@relay.example.com")
	waitSent(t, ses, 3)
	if s := ses.Sent()[2]; s.Destinations[0] != "bob@example.org" || s.Tags["alias"] != "news_relay_example_com" {
		t.Errorf("after the soft pause: sent %v tags %v", s.Destinations, s.Tags)
	}

	// Three complaints disable the managed alias club.
	mail("club@relay.example.com")
	waitSent(t, ses, 4)
	for i := range 3 {
		feedback(sesComplaint("club@relay.example.com", "carol@example.org", fmt.Sprintf("c%d", i)))
	}
	eventually("three complaints disable club", func() bool {
		_, out := cli("alias", "show", "club@relay.example.com")
		return strings.Contains(out, `"state": "disabled"`)
	})
	mail("club@relay.example.com")
	eventually("mail for a disabled alias dropped", func() bool {
		return metric(`mailrelay_messages_total{outcome="dropped",reason="alias_disabled"}`) == 1
	})
	waitSent(t, ses, 4)
	if code, out := cli("alias", "enable", "club@relay.example.com"); code != 0 || !strings.Contains(out, `"state": "enabled"`) {
		t.Fatalf("alias enable: exit %d: %s", code, out)
	}
	mail("club@relay.example.com")
	waitSent(t, ses, 5)

	// A forged feedback notification (its message changed after signing)
	// is refused and changes nothing.
	forged := signer.Notification(topic, "forged-fb", "", sesBounce("Permanent", "news@relay.example.com", "bob@example.org", "b9"), "2")
	forged = bytes.Replace(forged, []byte("Permanent"), []byte("Transient"), 1)
	if code := post(forged); code != 403 {
		t.Errorf("forged feedback: /sns answered %d, want 403", code)
	}

	// Unpausing alice and redriving her mail delivers it.
	if code, out := cli("destination", "unpause", "alice@example.org"); code != 0 || !strings.Contains(out, `"unpaused": true`) {
		t.Fatalf("destination unpause: exit %d: %s", code, out)
	}
	if code, out := cli("deadletter", "redrive", "--all"); code != 0 {
		t.Fatalf("deadletter redrive: exit %d: %s", code, out)
	}
	waitSent(t, ses, 7) // alice's held mail, and bob's (his pause is over)
	if showDest("bob@example.org")["paused"] != false {
		t.Error("the forged bounce paused bob")
	}
	if err := r.signal(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Error(err)
	}
}
