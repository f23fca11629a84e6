package chaos

import (
	"bytes"
	"context"
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
	"github.com/mailrelay/mailrelay/inbound/sns"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

const adminToken = "chaos-admin-token-0123456789abcdef"

// TestAdminHostile runs the real binary with an admin token and sends the
// admin API the requests of the security review and their variants over
// real HTTP: each is refused with its status and none sends mail, deletes
// an S3 object or spools anything. Then the valid requests work: a
// reconcile reference is forwarded, an SNS message hours older than /sns
// accepts is redriven through the admin API, and the CLI says what it
// needs when the token is missing.
func TestAdminHostile(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary; skipped with -short")
	}
	dir := t.TempDir()
	st := newStage(t, dir, fakes.SESOptions{})
	bin, signer, prefix, s3, ses, aliasFile, home := st.bin, st.signer, st.certPrefix, st.s3, st.ses, st.aliasFile, st.home
	adminAddr := freeAddr(t)
	r := &relayProc{t: t, bin: bin, logPath: filepath.Join(dir, "relay.log"), inbound: freeAddr(t), health: freeAddr(t)}
	r.env = relayEnv(home, r, s3.URL(), ses.URL(), prefix, filepath.Join(dir, "spool"), aliasFile,
		"RELAY_ADMIN_LISTEN="+adminAddr, "RELAY_ADMIN_TOKEN="+adminToken, "RELAY_S3_BUCKETS="+bucket, "RELAY_LOG_LEVEL=info")
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.signal(syscall.SIGKILL, 5*time.Second) }()
	r.waitReady()

	// The mail a hostile request would send or lose: stored, waiting.
	const victimKey = "inbound/waiting"
	if err := s3.Put(bucket, victimKey, mailFor(1)); err != nil {
		t.Fatal(err)
	}
	base := "http://" + adminAddr
	client := &http.Client{Timeout: 10 * time.Second}
	send := func(method, path string, header map[string]string, body string) (int, string) {
		t.Helper()
		req, err := http.NewRequest(method, base+path, strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		if body == "" {
			req.Body, req.ContentLength = nil, 0
		}
		for k, v := range header {
			if k == "Host" {
				req.Host = v
				continue
			}
			req.Header.Set(k, v)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s: Content-Type %q", method, path, ct)
		}
		return resp.StatusCode, string(b)
	}
	bearer := "Bearer " + adminToken
	js := func(extra map[string]string) map[string]string {
		h := map[string]string{"Authorization": bearer, "Content-Type": "application/json"}
		for k, v := range extra {
			h[k] = v
		}
		return h
	}
	// The review's attack: an SES notification with inline content, sent
	// from an alias; and one with a FAIL verdict naming a waiting object.
	inline := sesnotify.Received("evil", time.Now(), []string{"shop@relay.example.com"},
		sesnotify.Action{Type: sesnotify.ActionSNS, Encoding: "UTF8"}).Pass()
	inline.Content = "From: \"IT Support\" <it@evil.example>\r\nTo: shop@relay.example.com\r\nSubject: reset your password\r\n\r\nclick\r\n"
	spamFail := sesnotify.Received("waiting", time.Now(), []string{"shop@relay.example.com"}, sesnotify.S3Action(topic, bucket, victimKey)).Pass()
	spamFail.Receipt.SpamVerdict = sesnotify.Verdict{Status: "FAIL"}
	ref := func(b, key, rcpt string) string {
		return fmt.Sprintf(`{"bucket":%q,"key":%q,"recipients":[%q]}`, b, key, rcpt)
	}
	forged := signer.Notification(topic, "forged-1", "", receivedS3("forged", victimKey), "2")
	forged = bytes.Replace(forged, []byte(victimKey), []byte("inbound/other"), 1)

	tests := []struct {
		name         string
		method, path string
		header       map[string]string
		body         string
		code         int
		want         string
	}{
		{"no token", "GET", "/deadletters", nil, "", 401, "RELAY_ADMIN_TOKEN"},
		{"wrong token", "GET", "/deadletters", map[string]string{"Authorization": "Bearer " + strings.Repeat("x", len(adminToken))}, "", 401, ""},
		{"token prefix", "GET", "/deadletters", map[string]string{"Authorization": bearer[:len(bearer)-4]}, "", 401, ""},
		{"token in Basic", "GET", "/deadletters", map[string]string{"Authorization": "Basic " + adminToken}, "", 401, ""},
		{"reconcile without token", "POST", "/reconcile", map[string]string{"Content-Type": "application/json"}, ref(bucket, victimKey, "shop@relay.example.com"), 401, ""},
		{"inline content notification", "POST", "/reconcile", js(nil), string(inline.JSON()), 400, "references only"},
		{"FAIL verdict notification", "POST", "/reconcile", js(nil), string(spamFail.JSON()), 400, "references only"},
		{"reference with content", "POST", "/reconcile", js(nil), `{"bucket":"` + bucket + `","key":"k","recipients":["shop@relay.example.com"],"content":"x"}`, 400, "unknown field"},
		{"bucket outside", "POST", "/reconcile", js(nil), ref("someone-elses", victimKey, "shop@relay.example.com"), 403, "not one of the relay's"},
		{"recipient off-domain", "POST", "/reconcile", js(nil), ref(bucket, victimKey, "ceo@victim.example"), 403, "domains"},
		{"form post", "POST", "/reconcile", js(map[string]string{"Content-Type": "application/x-www-form-urlencoded"}), "bucket=" + bucket, 415, ""},
		{"text/plain", "POST", "/deadletters/redrive", js(map[string]string{"Content-Type": "text/plain"}), `{"all":true}`, 415, ""},
		{"cross-site origin", "POST", "/deadletters/redrive", js(map[string]string{"Origin": "https://evil.example"}), `{"all":true}`, 403, "cross-site"},
		{"cross-site fetch", "GET", "/deadletters", js(map[string]string{"Sec-Fetch-Site": "cross-site"}), "", 403, ""},
		{"oversize", "POST", "/reconcile", js(nil), `{"bucket":"` + strings.Repeat("b", 100<<10) + `"}`, 413, ""},
		{"unknown field", "POST", "/deadletters/redrive", js(nil), `{"all":true,"purge":true}`, 400, "unknown field"},
		{"wrong method", "GET", "/reconcile", js(nil), "", 405, ""},
		{"unknown path", "GET", "/debug/vars", js(nil), "", 404, ""},
		{"profiles without token", "GET", "/debug/pprof/heap", nil, "", 401, ""},
		{"CPU profile with a wrong token", "GET", "/debug/pprof/profile?seconds=1", map[string]string{"Authorization": "Bearer " + strings.Repeat("x", len(adminToken))}, "", 401, ""},
		{"forged SNS redrive", "POST", "/sns/redrive", js(nil), string(forged), 403, "bad_signature"},
		{"SNS redrive of a confirmation", "POST", "/sns/redrive", js(nil), string(signer.SubscriptionConfirmation(topic, "https://sns.us-east-1.amazonaws.com/?Action=ConfirmSubscription")), 400, "not_a_notification"},
	}
	for _, tt := range tests {
		code, body := send(tt.method, tt.path, tt.header, tt.body)
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s: %d %s, want %d containing %q", tt.name, code, strings.TrimSpace(body), tt.code, tt.want)
		}
		if strings.Contains(body, adminToken) {
			t.Errorf("%s: the answer contains the token", tt.name)
		}
	}
	// Nothing happened: no mail sent, the waiting object still there,
	// nothing spooled or dead-lettered.
	time.Sleep(300 * time.Millisecond)
	if n := len(ses.Sent()); n != 0 {
		t.Fatalf("hostile requests sent %d mails", n)
	}
	if !s3.Has(bucket, victimKey) {
		t.Fatal("hostile requests deleted the waiting S3 object")
	}
	if code, body := send("GET", "/deadletters", js(nil), ""); code != 200 || strings.TrimSpace(body) != "[]" {
		t.Fatalf("dead letters after hostile requests: %d %s", code, body)
	}
	if n, err := r.gauge("mailrelay_queue_messages"); err != nil || n != 0 {
		t.Errorf("spool holds %v (%v) after hostile requests", n, err)
	}
	logs, _ := os.ReadFile(r.logPath)
	if bytes.Contains(logs, []byte(adminToken)) {
		t.Error("the log contains the token")
	}

	// The valid reference is forwarded once.
	if code, body := send("POST", "/reconcile", js(nil), ref(bucket, victimKey, "shop@relay.example.com")); code != 202 {
		t.Fatalf("valid reconcile: %d %s", code, body)
	}
	waitSent(t, ses, 1)

	// An SNS message from the dead-letter queue, 3 hours old: /sns refuses
	// it as a replay, the admin API takes it.
	if err := s3.Put(bucket, "inbound/dlq", mailFor(2)); err != nil {
		t.Fatal(err)
	}
	old := signer.Body(&sns.Message{Type: sns.TypeNotification, MessageId: "dlq-1", TopicArn: topic,
		Message: receivedS3("dlq", "inbound/dlq"), Timestamp: snstest.Timestamp(time.Now().Add(-3 * time.Hour))}, "2")
	resp, err := client.Post("http://"+r.inbound+"/sns", "text/plain; charset=UTF-8", bytes.NewReader(old))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Errorf("/sns answered %d to a 3-hour-old delivery, want 403", resp.StatusCode)
	}
	if code, body := send("POST", "/sns/redrive", js(nil), string(old)); code != 200 || !strings.Contains(body, "stored") {
		t.Fatalf("SNS redrive: %d %s", code, body)
	}
	if code, body := send("POST", "/sns/redrive", js(nil), string(old)); code != 200 || !strings.Contains(body, "duplicate") {
		t.Errorf("SNS redrive again: %d %s", code, body)
	}
	waitSent(t, ses, 2)

	// The CLI: without the token it says what it needs; with it, it works.
	cli := func(token string, args ...string) (int, string) {
		cmd := exec.Command(bin, args...)
		cmd.Env = []string{"HOME=" + home, "RELAY_ADMIN_URL=" + base}
		if token != "" {
			cmd.Env = append(cmd.Env, "RELAY_ADMIN_TOKEN="+token)
		}
		out, _ := cmd.CombinedOutput()
		return cmd.ProcessState.ExitCode(), string(out)
	}
	if code, out := cli("", "deadletter", "list"); code != 1 || !strings.Contains(out, "the admin API wants RELAY_ADMIN_TOKEN") {
		t.Errorf("deadletter list without token: exit %d: %s", code, out)
	}
	if code, out := cli("wrong-token-0123456789abcdef", "deadletter", "list"); code != 1 || !strings.Contains(out, "refused RELAY_ADMIN_TOKEN") {
		t.Errorf("deadletter list with a wrong token: exit %d: %s", code, out)
	}
	if code, out := cli(adminToken, "deadletter", "list"); code != 0 || !strings.Contains(out, "REASON") {
		t.Errorf("deadletter list with the token: exit %d: %s", code, out)
	}
	if code, out := cli(adminToken, "redrive-sns-dlq", "--queue-url", "http://127.0.0.1:1/q", "--relay", "http://127.0.0.1:8080/sns"); code != 2 || !strings.Contains(out, "admin API") {
		t.Errorf("redrive-sns-dlq --relay: exit %d: %s", code, out)
	}
	if err := r.signal(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Error(err)
	}
}

// TestAdminRefusedOpen: serve refuses (exit 2, a message naming the fix)
// an admin listener on every interface without a token, and a token given
// on the command line.
func TestAdminRefusedOpen(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary; skipped with -short")
	}
	dir := t.TempDir()
	bin := buildRelay(t, dir)
	aliasFile := filepath.Join(dir, "aliases.yaml")
	if err := os.WriteFile(aliasFile, []byte(aliasesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"HOME=" + dir, "AWS_REGION=us-east-1", "RELAY_SNS_TOPIC_ARNS=" + topic, "RELAY_ALIASES_FILE=" + aliasFile,
		"RELAY_SPOOL_DIR=" + filepath.Join(dir, "spool"), "RELAY_LISTEN=127.0.0.1:0", "RELAY_HEALTH_LISTEN=127.0.0.1:0"}
	for _, tt := range []struct {
		name string
		args []string
		env  []string
		want string
	}{
		{"all interfaces, no token", []string{"--admin-listen", "0.0.0.0:0"}, nil, "not a loopback address and no admin token"},
		{"all interfaces by variable, no token", nil, []string{"RELAY_ADMIN_LISTEN=:0"}, "RELAY_ADMIN_TOKEN"},
		{"token on the command line", []string{"--admin-token", adminToken}, nil, "--admin-token on the command line is refused"},
		{"short token", []string{"--admin-listen", "0.0.0.0:0"}, []string{"RELAY_ADMIN_TOKEN=short"}, "at least 16"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, bin, append([]string{"serve"}, tt.args...)...)
		cmd.Env = append(append([]string{}, env...), tt.env...)
		out, _ := cmd.CombinedOutput()
		cancel()
		if code := cmd.ProcessState.ExitCode(); code != 2 || !strings.Contains(string(out), tt.want) {
			t.Errorf("%s: exit %d, want 2 with %q:\n%s", tt.name, code, tt.want, out)
		}
		if strings.Contains(string(out), adminToken) {
			t.Errorf("%s: the token is printed", tt.name)
		}
	}
}

// waitSent waits (at most 15 s) until ses has sent n mails, and fails if
// more were sent.
func waitSent(t *testing.T, ses *fakes.SES, n int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for len(ses.Sent()) < n && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	if got := len(ses.Sent()); got != n {
		b, _ := json.Marshal(got)
		t.Fatalf("sent %s mails, want %d", b, n)
	}
}
