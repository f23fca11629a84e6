package chaos

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/mailrelay/mailrelay/awsclient/fakes"
)

// TestSlotsCannotBeHoarded runs the real binary with --inbound-max-conns 4
// and fills every slot twice over: four idle keep-alive connections (one
// request each), then four slowloris connections (two sending a header a
// byte at a time, two drip-feeding a body). A real signed delivery on a
// new connection must still be answered 200 within 2 s, several times in a
// row: idle connections are closed first, slow senders after a short
// grace, instead of the new connection waiting for a slot.
func TestSlotsCannotBeHoarded(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs the relay binary; skipped with -short")
	}
	const (
		maxConns = 4
		within   = 2 * time.Second
	)
	dir := t.TempDir()
	st := newStage(t, dir, fakes.SESOptions{})
	bin, signer, prefix, s3, ses, aliasFile, home := st.bin, st.signer, st.certPrefix, st.s3, st.ses, st.aliasFile, st.home
	r := &relayProc{t: t, bin: bin, logPath: filepath.Join(dir, "relay.log"), inbound: freeAddr(t), health: freeAddr(t)}
	r.env = []string{
		"PATH=" + os.Getenv("PATH"), "HOME=" + home,
		"AWS_REGION=us-east-1", "AWS_ACCESS_KEY_ID=slots", "AWS_SECRET_ACCESS_KEY=slots",
		"AWS_CONFIG_FILE=" + filepath.Join(home, "none"), "AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(home, "none"),
		"AWS_EC2_METADATA_DISABLED=true",
		"AWS_ENDPOINT_URL_S3=" + s3.URL(), "AWS_ENDPOINT_URL_SES=" + ses.URL(),
		"RELAY_LISTEN=" + r.inbound, "RELAY_HEALTH_LISTEN=" + r.health, "RELAY_ADMIN_LISTEN=",
		"RELAY_SNS_TOPIC_ARNS=" + topic, "RELAY_SNS_CERT_URL_PREFIXES=" + prefix,
		"RELAY_SPOOL_DIR=" + filepath.Join(dir, "spool"), "RELAY_ALIASES_FILE=" + aliasFile,
		"RELAY_WORKERS=2", "RELAY_SHUTDOWN_TIMEOUT=5s", "RELAY_LOG_LEVEL=warn", "RELAY_LOG_FORMAT=text",
		fmt.Sprintf("RELAY_INBOUND_MAX_CONNS=%d", maxConns),
	}
	if err := r.start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = r.signal(syscall.SIGKILL, 5*time.Second) }()
	r.waitReady()

	next := 0
	delivery := func() []byte {
		next++
		if err := s3.Put(bucket, fmt.Sprintf("inbound/slots-%d", next), mailFor(next)); err != nil {
			t.Fatal(err)
		}
		return signer.Notification(topic, fmt.Sprintf("slots-sns-%d", next), "Amazon SES Email Receipt Notification",
			receivedS3(fmt.Sprintf("slots-ses-%d", next), fmt.Sprintf("inbound/slots-%d", next)), "2")
	}
	dial := func() net.Conn {
		c, err := net.DialTimeout("tcp", r.inbound, 2*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}

	// Four idle keep-alive connections, after one signed delivery each.
	var idle []net.Conn
	for range maxConns {
		c := dial()
		body := delivery()
		fmt.Fprintf(c, "POST /sns HTTP/1.1\r\nHost: relay\r\nContent-Type: text/plain; charset=UTF-8\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("delivery on keep-alive connection %d: %v", len(idle), err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || resp.Close {
			t.Fatalf("delivery on keep-alive connection %d: %d (close %v), want 200 kept alive", len(idle), resp.StatusCode, resp.Close)
		}
		idle = append(idle, c)
	}

	// Four slowloris connections, each writing a byte every 200 ms for at
	// most 8 s or until the relay closes it.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	defer func() { close(stop); wg.Wait() }()
	type slow struct {
		what   string
		opened time.Time
		closed chan time.Time // when the relay closed it
	}
	var slows []*slow
	for i := range maxConns {
		c := dial()
		s := &slow{what: "partial header", opened: time.Now(), closed: make(chan time.Time, 1)}
		start, drip := "POST /sns HTTP/1.1\r\nHost: relay\r\nX-Slow: ", byte('a')
		if i%2 == 1 {
			s.what = "drip-fed body"
			start, drip = "POST /sns HTTP/1.1\r\nHost: relay\r\nContent-Type: text/plain\r\nContent-Length: 100000\r\n\r\n{\"Type\":\"", 'x'
		}
		if _, err := io.WriteString(c, start); err != nil {
			t.Fatal(err)
		}
		slows = append(slows, s)
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 512)
			for deadline := time.Now().Add(8 * time.Second); time.Now().Before(deadline); {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := c.Write([]byte{drip}); err != nil {
					s.closed <- time.Now()
					return
				}
				c.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
				if _, err := c.Read(buf); err != nil {
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						continue
					}
					s.closed <- time.Now()
					return
				}
			}
		}()
	}
	time.Sleep(100 * time.Millisecond) // the relay accepts them

	// Real deliveries, each on a new connection, each within 2 s.
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	for i := range 3 {
		body := delivery()
		start := time.Now()
		resp, err := client.Post("http://"+r.inbound+"/sns", "text/plain; charset=UTF-8", bytes.NewReader(body))
		d := time.Since(start)
		if err != nil {
			t.Fatalf("delivery %d with every slot held: %v after %v; log:\n%s", i, err, d, r.logTail())
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		t.Logf("delivery %d with every slot held: %d in %v", i, resp.StatusCode, d.Round(time.Millisecond))
		if resp.StatusCode != 200 {
			t.Errorf("delivery %d answered %d, want 200", i, resp.StatusCode)
		}
		if d > within {
			t.Errorf("delivery %d took %v, want within %v", i, d, within)
		}
	}

	// The idle connections were closed to make room (the relay hangs up;
	// a read sees EOF or a reset).
	for i, c := range idle {
		c.SetReadDeadline(time.Now().Add(time.Second))
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("idle connection %d: read data, want closed", i)
		} else if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Errorf("idle connection %d still open", i)
		}
	}
	// Every slowloris connection is gone within the body or header timeout
	// (5 s each by default), most of them much sooner, evicted.
	for _, s := range slows {
		select {
		case at := <-s.closed:
			t.Logf("%s connection closed by the relay after %v", s.what, at.Sub(s.opened).Round(10*time.Millisecond))
		case <-time.After(time.Until(s.opened.Add(7 * time.Second))):
			t.Errorf("%s connection still open after 7s", s.what)
		}
	}
	if err := r.signal(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Error(err)
	}
}
