package chaos

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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

// moduleRoot returns the directory holding go.mod above the test's
// working directory.
func moduleRoot(t *testing.T) string {
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

// buildRelay builds ./cmd/mailrelay into dir and returns the binary's path.
func buildRelay(t *testing.T, dir string) string {
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
func freeAddr(t *testing.T) string {
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
	t       *testing.T
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

// TestKillNineUnderLoad posts signed notifications at a steady rate while
// the relay binary is SIGKILLed 3–5 times at random moments and restarted
// on the same spool; SNS-like senders retry every delivery not answered
// 200. At the end every acknowledged notification was forwarded exactly
// once, and nothing was dead-lettered. A duplicate is tolerated only when a
// kill explains it, and they are reported: the remaining window spans the
// whole SES call (a request SES received may be accepted although the
// relay died waiting for the answer) plus the fsync of the sent-record
// (mailproc: SendRaw, then spool.MarkSent with pebble.Sync).
func TestKillNineUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the relay binary; skipped with -short")
	}
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CHAOS_SEED"); s != "" {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("CHAOS_SEED: %v", err)
		}
		seed = v
	}
	t.Logf("seed %d (rerun with CHAOS_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))

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
	// SES takes a little time per send, so kills land while sends are in flight.
	ses := fakes.NewSES(fakes.SESOptions{Latency: 10 * time.Millisecond})
	if err := ses.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer ses.Close()

	aliasFile := filepath.Join(dir, "aliases.yaml")
	if err := os.WriteFile(aliasFile, []byte(aliasesYAML), 0o600); err != nil {
		t.Fatal(err)
	}
	home := filepath.Join(dir, "home")
	if err := os.Mkdir(home, 0o700); err != nil {
		t.Fatal(err)
	}
	r := &relayProc{t: t, bin: bin, logPath: filepath.Join(dir, "relay.log"), inbound: freeAddr(t), health: freeAddr(t)}
	r.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=chaos", "AWS_SECRET_ACCESS_KEY=chaos",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_S3=" + s3.URL(), "AWS_ENDPOINT_URL_SES=" + ses.URL(),
		"RELAY_LISTEN=" + r.inbound, "RELAY_HEALTH_LISTEN=" + r.health, "RELAY_ADMIN_LISTEN=",
		"RELAY_SNS_TOPIC_ARNS=" + topic, "RELAY_SNS_CERT_URL_PREFIXES=" + prefix,
		"RELAY_SPOOL_DIR=" + filepath.Join(dir, "spool"), "RELAY_ALIASES_FILE=" + aliasFile,
		"RELAY_WORKERS=" + strconv.Itoa(workers), "RELAY_RETRY_MIN=50ms", "RELAY_RETRY_MAX=500ms",
		"RELAY_S3_TIMEOUT=2s", "RELAY_SES_TIMEOUT=2s", "RELAY_SHUTDOWN_TIMEOUT=5s",
		"RELAY_LOG_LEVEL=warn", "RELAY_LOG_FORMAT=text",
	}
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.signal(syscall.SIGKILL, 5*time.Second) }()
	r.waitReady()

	// The load: n notifications at a steady rate over loadFor, each posted
	// by an SNS-like sender that retries until it is answered 200.
	const (
		n       = 400
		loadFor = 8 * time.Second
		senders = 16
	)
	for i := range n {
		if err := s3.Put(bucket, fmt.Sprintf("inbound/ses-%d", i), mailFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	var (
		acked    [n]atomic.Bool
		attempts atomic.Int64
		non200   atomic.Int64
		failed   atomic.Int64
	)
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	work := make(chan int)
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: senders}}
	for range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				body := signer.Notification(topic, fmt.Sprintf("sns-%d", i), "Amazon SES Email Receipt Notification",
					receivedS3(fmt.Sprintf("ses-%d", i), fmt.Sprintf("inbound/ses-%d", i)), "2")
				for delay := 50 * time.Millisecond; ctx.Err() == nil; delay = min(2*delay, time.Second) {
					attempts.Add(1)
					resp, err := client.Post("http://"+r.inbound+"/sns", "text/plain; charset=UTF-8", bytes.NewReader(body))
					if err == nil {
						_, _ = io.Copy(io.Discard, resp.Body)
						resp.Body.Close()
						if resp.StatusCode == 200 {
							acked[i].Store(true)
							break
						}
						non200.Add(1)
					} else {
						failed.Add(1)
					}
					select {
					case <-ctx.Done():
					case <-time.After(delay):
					}
				}
			}
		}()
	}

	// The kills, at sorted random moments within the load.
	kills := 3 + rng.IntN(3)
	var killAt []time.Duration
	for range kills {
		killAt = append(killAt, time.Duration(300+rng.IntN(int(loadFor/time.Millisecond)-300))*time.Millisecond)
	}
	slices.Sort(killAt)
	t.Logf("%d kills at %v into the load", kills, killAt)
	var killTimes []time.Time
	killerDone := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(killerDone)
		for _, at := range killAt {
			time.Sleep(time.Until(start.Add(at)))
			killTimes = append(killTimes, time.Now())
			if err := r.signal(syscall.SIGKILL, 5*time.Second); err != nil {
				t.Errorf("kill: %v", err)
				return
			}
			// Restart at once or after a short pause, like a kubelet would.
			time.Sleep(time.Duration(rng.IntN(300)) * time.Millisecond)
			if err := r.start(); err != nil {
				t.Errorf("restart: %v", err)
				return
			}
		}
	}()

	interval := loadFor / n
	for i := range n {
		time.Sleep(time.Until(start.Add(time.Duration(i) * interval)))
		select {
		case work <- i:
		case <-ctx.Done():
			t.Fatalf("load did not keep up: %v", ctx.Err())
		}
	}
	close(work)
	wg.Wait()
	<-killerDone
	r.waitReady()
	ackedCount := 0
	for i := range n {
		if acked[i].Load() {
			ackedCount++
		}
	}
	t.Logf("load: %d notifications, %d acknowledged, %d posts, %d non-200 answers, %d unanswered", n, ackedCount, attempts.Load(), non200.Load(), failed.Load())
	if ackedCount != n {
		t.Errorf("%d notifications never acknowledged within the bound", n-ackedCount)
	}

	// Wait for the relay to finish everything it accepted.
	deadline := time.Now().Add(30 * time.Second)
	for {
		q, err1 := r.gauge("mailrelay_queue_messages")
		if err1 == nil && q == 0 && countIDs(ses.Sent()) >= ackedCount {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("relay did not finish: queue %v (%v), %d distinct forwarded of %d acknowledged; log:\n%s", q, err1, countIDs(ses.Sent()), ackedCount, r.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if dl, err := r.gauge("mailrelay_deadletter_messages"); err != nil || dl != 0 {
		t.Errorf("dead letters %v (%v), want 0; log:\n%s", dl, err, r.logTail())
	}
	if err := r.signal(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Error(err)
	}

	// Exactly once, by Message-ID.
	sends := map[string][]time.Time{}
	for _, s := range ses.Sent() {
		id := messageID(s.Raw)
		if id == "" {
			t.Errorf("forwarded mail without Message-ID: %q", s.Raw[:min(200, len(s.Raw))])
			continue
		}
		sends[id] = append(sends[id], s.At)
	}
	windowDups := 0
	for i := range n {
		id := fmt.Sprintf("chaos-%d@example.net", i)
		at := sends[id]
		switch {
		case acked[i].Load() && len(at) == 0:
			t.Errorf("notification %d acknowledged but never forwarded (lost)", i)
		case len(at) > 1:
			if straddlesKill(at, killTimes) {
				windowDups += len(at) - 1
				t.Logf("notification %d forwarded %d times at %v across a kill at %v (the duplicate window)", i, len(at), rel(start, at), rel(start, killTimes))
			} else {
				t.Errorf("notification %d forwarded %d times at %v without a kill in between (kills at %v)", i, len(at), rel(start, at), rel(start, killTimes))
			}
		}
		delete(sends, id)
	}
	for id := range sends {
		t.Errorf("forwarded a mail that was never posted: %s", id)
	}
	// Each kill can catch at most one send in flight per worker.
	if max := len(killTimes) * workers; windowDups > max {
		t.Errorf("%d duplicates across %d kills: more than one send in flight per worker (%d)", windowDups, len(killTimes), workers)
	}
	t.Logf("kills %d, restarts %d, duplicates from the window (an SES send in flight or accepted, its sent-record not yet fsync'd): %d", len(killTimes), r.starts-1, windowDups)
}

func countIDs(sent []fakes.Sent) int {
	ids := map[string]bool{}
	for _, s := range sent {
		ids[messageID(s.Raw)] = true
	}
	return len(ids)
}

// straddlesKill reports whether a kill can explain the repeated sends at:
// one happened after the first send's request could have left the relay
// (its accept time less inFlight, a bound on the SES call seen from the
// stand-in) and before the last send. A request in flight when the relay
// dies may still be accepted by SES a moment after the kill.
func straddlesKill(at []time.Time, kills []time.Time) bool {
	const inFlight = 500 * time.Millisecond
	first, last := slices.MinFunc(at, time.Time.Compare), slices.MaxFunc(at, time.Time.Compare)
	for _, k := range kills {
		if !k.Before(first.Add(-inFlight)) && !k.After(last) {
			return true
		}
	}
	return false
}

// rel returns times as offsets from start, for messages.
func rel(start time.Time, ts []time.Time) []time.Duration {
	out := make([]time.Duration, len(ts))
	for i, t := range ts {
		out[i] = t.Sub(start).Round(time.Millisecond)
	}
	return out
}
