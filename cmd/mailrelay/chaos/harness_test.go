package chaos

// The harness shared by the tests that build and run the relay binary.

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/emersion/go-message/textproto"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
	"github.com/mailrelay/mailrelay/inbound/sns/snstest"
	"github.com/mailrelay/mailrelay/mailproc/sesnotify"
)

const (
	workers = 4

	topic  = "arn:aws:sns:us-east-1:123456789012:mailrelay-inbound"
	bucket = "mailrelay-inbound"

	aliasesYAML = `domains: [relay.example.com]
aliases:
  - address: shop@relay.example.com
    forward_to: [alice@example.org]
`
)

// relayEnv is the environment of a relay binary using the given stand-ins
// (S3, SES, SNS cert prefix), spool directory and alias file, with extra
// settings appended (later ones win).
func relayEnv(home string, r *relayProc, s3URL, sesURL, certPrefix, spoolDir, aliasFile string, extra ...string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=chaos", "AWS_SECRET_ACCESS_KEY=chaos",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_S3=" + s3URL, "AWS_ENDPOINT_URL_SES=" + sesURL,
		"RELAY_LISTEN=" + r.inbound, "RELAY_HEALTH_LISTEN=" + r.health, "RELAY_ADMIN_LISTEN=",
		"RELAY_SNS_TOPIC_ARNS=" + topic, "RELAY_SNS_CERT_URL_PREFIXES=" + certPrefix,
		"RELAY_SPOOL_DIR=" + spoolDir, "RELAY_ALIASES_FILE=" + aliasFile,
		"RELAY_WORKERS=" + strconv.Itoa(workers), "RELAY_RETRY_MIN=50ms", "RELAY_RETRY_MAX=500ms",
		"RELAY_S3_TIMEOUT=2s", "RELAY_SES_TIMEOUT=2s", "RELAY_SHUTDOWN_TIMEOUT=5s",
		"RELAY_LOG_FORMAT=text",
	}
	return append(env, extra...)
}

// moduleRoot returns the directory holding go.mod above the test's
// working directory.
func moduleRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for range 10 {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		dir = filepath.Dir(dir)
	}
	t.Fatal("go.mod not found above the working directory")
	return ""
}

// stage is what a test of the binary runs it against, all in one
// directory: the built binary, an SNS signer with its certificate server,
// the S3 and SES stand-ins, the alias file (aliasesYAML) and a home
// directory. Everything is closed when the test ends.
type stage struct {
	bin, aliasFile, home, certPrefix string
	signer                           *snstest.Signer
	s3                               *fakes.S3
	ses                              *fakes.SES
}

// newStage builds the binary into dir and starts the stand-ins, the SES
// one with sesOpts.
func newStage(t testing.TB, dir string, sesOpts fakes.SESOptions) *stage {
	t.Helper()
	st := &stage{bin: buildRelay(t, dir), aliasFile: filepath.Join(dir, "aliases.yaml"), home: filepath.Join(dir, "home")}
	var err error
	if st.signer, err = snstest.NewSigner(); err != nil {
		t.Fatal(err)
	}
	prefix, closeCert := st.signer.Serve()
	t.Cleanup(closeCert)
	st.certPrefix = prefix
	if st.s3, err = fakes.NewS3(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.s3.Close)
	st.ses = fakes.NewSES(sesOpts)
	if err := st.ses.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(st.ses.Close)
	if err := os.WriteFile(st.aliasFile, []byte(aliasesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(st.home, 0o700); err != nil {
		t.Fatal(err)
	}
	return st
}

// buildRelay builds ./cmd/mailrelay into dir and returns the binary's path.
func buildRelay(t testing.TB, dir string) string {
	t.Helper()
	bin := filepath.Join(dir, "mailrelay")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/mailrelay")
	cmd.Dir = moduleRoot(t)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freeAddr returns a 127.0.0.1 address with a port free right now; the
// relay binds it on every (re)start.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// relayProc runs the binary; start and kill may be called repeatedly.
type relayProc struct {
	t       testing.TB
	bin     string
	env     []string
	logPath string
	inbound string
	health  string

	mu     sync.Mutex
	cmd    *exec.Cmd
	exited chan struct{}
	starts int
}

// start runs the binary once more; it is safe from any goroutine.
func (r *relayProc) start() error {
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.starts++
	fmt.Fprintf(logf, "--- start %d at %s\n", r.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(r.bin, "serve")
	cmd.Env = r.env
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("starting relay: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		logf.Close()
		close(exited)
	}()
	r.cmd, r.exited = cmd, exited
	return nil
}

// signal sends sig and waits (bounded) for the process to exit.
func (r *relayProc) signal(sig syscall.Signal, wait time.Duration) error {
	r.mu.Lock()
	cmd, exited := r.cmd, r.exited
	r.mu.Unlock()
	if cmd == nil {
		return nil
	}
	if err := cmd.Process.Signal(sig); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return err
	}
	select {
	case <-exited:
		return nil
	case <-time.After(wait):
		_ = cmd.Process.Kill()
		<-exited
		return fmt.Errorf("relay did not exit within %v after %v", wait, sig)
	}
}

// waitReady polls /readyz until 200 or 15 s pass.
func (r *relayProc) waitReady() {
	r.t.Helper()
	client := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := client.Get("http://" + r.health + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	r.t.Fatalf("relay not ready within 15s; log:\n%s", r.logTail())
}

func (r *relayProc) logTail() string {
	b, _ := os.ReadFile(r.logPath)
	if len(b) > 8<<10 {
		b = b[len(b)-8<<10:]
	}
	return string(b)
}

// gauge reads one unlabelled metric from /metrics.
func (r *relayProc) gauge(name string) (float64, error) {
	resp, err := (&http.Client{Timeout: time.Second}).Get("http://" + r.health + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("metric %s not found", name)
}

// receivedS3 is an SES Received notification for a mail stored in S3.
func receivedS3(sesID, key string) string {
	at := time.Date(2026, 11, 23, 10, 0, 0, 0, time.UTC)
	n := sesnotify.Received(sesID, at, []string{"shop@relay.example.com"}, sesnotify.S3Action(topic, bucket, key)).Pass()
	n.Mail.Source = "dora@example.net"
	return string(n.JSON())
}

func mailFor(i int) []byte {
	return []byte(fmt.Sprintf("From: Dora <dora@example.net>\r\nTo: shop@relay.example.com\r\nSubject: chaos %d\r\n"+
		"Date: Mon, 23 Nov 2026 10:00:00 +0000\r\nMessage-ID: <chaos-%d@example.net>\r\n\r\nbody %d\r\n", i, i, i))
}

// messageID returns the Message-ID of a forwarded mail.
func messageID(raw []byte) string {
	h, err := textproto.ReadHeader(bufio.NewReader(bytes.NewReader(raw)))
	if err != nil {
		return ""
	}
	return strings.Trim(h.Get("Message-Id"), "<> ")
}

func countIDs(sent []fakes.Sent) int {
	ids := map[string]bool{}
	for _, s := range sent {
		ids[messageID(s.Raw)] = true
	}
	return len(ids)
}
