package awsclient

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time so far.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkSDKPerMail measures the client side of the three calls the relay
// makes per mail (S3 GetObject of a 5 KB mail, SES SendRawEmail, S3
// DeleteObject) against minimal loopback stand-ins that answer with canned
// responses, so that the profile shows the SDK's per-call cost (endpoint
// resolution, signing, middlewares), the breaker and the timer.
func BenchmarkSDKPerMail(b *testing.B) {
	mail := bytes.Repeat([]byte("x"), 5<<10)
	s3srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		switch r.Method {
		case http.MethodGet:
			w.Header().Set("Content-Length", strconv.Itoa(len(mail)))
			w.Write(mail)
		case http.MethodDelete:
			w.WriteHeader(http.StatusNoContent)
		default:
			w.WriteHeader(http.StatusMethodNotAllowed)
		}
	}))
	defer s3srv.Close()
	sesResp := []byte(`<SendRawEmailResponse xmlns="http://ses.amazonaws.com/doc/2010-12-01/"><SendRawEmailResult><MessageId>0100-abc</MessageId></SendRawEmailResult><ResponseMetadata><RequestId>r</RequestId></ResponseMetadata></SendRawEmailResponse>`)
	sesSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "text/xml")
		w.Write(sesResp)
	}))
	defer sesSrv.Close()

	c, err := New(context.Background(), testOptions(s3srv.URL, sesSrv.URL))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	dest := []string{"someone@example.org"}
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	for b.Loop() {
		data, err := c.S3.Get(ctx, "inbound", "mail/abc")
		if err != nil {
			b.Fatal(err)
		}
		if _, err := c.SES.SendRaw(ctx, "alias@relay.example.com", dest, data); err != nil {
			b.Fatal(err)
		}
		if err := c.S3.Delete(ctx, "inbound", "mail/abc"); err != nil {
			b.Fatal(err)
		}
	}
	// The whole process: client and stand-ins together.
	b.ReportMetric(float64((cpuTime(b)-cpu0).Microseconds())/float64(b.N), "cpu-us/mail")
}
